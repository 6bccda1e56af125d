"""``build.py check``: every block's Verilog and a short golden-versus-RTL check of each."""

import re

import pytest

pytestmark = pytest.mark.verilator


@pytest.mark.slow
def test_check_runs_every_block_against_its_golden_model(run_build):
    """``build.py check`` (the former main job), shortened."""
    code, stdout, stderr = run_build("check", "--dots", "100")
    assert code == 0, stdout + stderr
    assert "4 cocotb tests passed" in stdout
    assert re.search(r"[1-9][0-9]* group dot products bit-exact", stdout)
    assert re.search(r"3 cocotb tests passed, [1-9][0-9]* response beats equal", stdout)
    assert stdout.count("1 cocotb test passed, 128 KiB per channel written and read back "
                        "byte-exactly") == 1
    assert stdout.count("1 cocotb test passed, 256 KiB per channel written and read back "
                        "byte-exactly") == 1
