"""The Verilator runner's options that need no simulator build."""

import pytest

from sim.runner import PORTS_ONLY, _public_config, build
from sim.top_system import TOP_NAME, TOP_PUBLIC


def test_public_config_lists_the_ports_and_the_named_signals():
    assert _public_config("dut", PORTS_ONLY).splitlines() == [
        "`verilator_config", 'public_flat_rw -module "dut" -var "*"']
    lines = _public_config(TOP_NAME, TOP_PUBLIC).splitlines()
    assert lines[1] == f'public_flat_rw -module "{TOP_NAME}" -var "*"'
    assert 'public_flat_rw -module "elmoe_dram_storage" -var "words"' in lines
    assert f'public_flat_rw -module "{TOP_NAME}.top.processor" -var "slot_*"' in lines
    assert len(lines) == 2 + len(TOP_PUBLIC)


@pytest.mark.parametrize("public", [("words",), (("dut", ""),), (("dut", 'a"b'),),
                                    ((1, "x"),)])
def test_bad_public_signals_are_named_before_anything_is_built(public, tmp_path, monkeypatch):
    monkeypatch.setattr("sim.runner.BUILD_ROOT", tmp_path)
    with pytest.raises(ValueError, match="a public signal is a"):
        build("dut", "module dut; endmodule\n", public=public)
    assert not (tmp_path / "sim").exists() or not any((tmp_path / "sim").iterdir())
