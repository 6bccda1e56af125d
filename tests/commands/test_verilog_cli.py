"""``build.py verilog``: the Verilog it writes lints clean."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.verilator


def test_verilog_default_preset_lints_without_errors(run_build):
    code, stdout, stderr = run_build("verilog", "--preset", "default")
    assert code == 0, stdout + stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    rows = {row["block"]: row for row in figures["verilog"]}
    assert set(rows) == {"mac_array", "expert_cache", "hb_interface", "lpddr_port", "top"}
    assert all(row["lint_errors"] == 0 for row in rows.values())
    text = Path(rows["mac_array"]["path"]).read_text()
    assert "module mac_array" in text and "weights__payload" in text
    text = Path(rows["expert_cache"]["path"]).read_text()
    assert "module expert_cache" in text and "req__payload" in text and "resp__payload" in text
    for block in ("hb_interface", "lpddr_port", "top"):
        assert f"module {block}" in Path(rows[block]["path"]).read_text()


@pytest.mark.slow
def test_verilog_every_preset_lints_without_errors(run_build):
    code, stdout, stderr = run_build("verilog")
    assert code == 0, stdout + stderr
    rows = json.loads(stdout.strip().splitlines()[-1])["verilog"]
    assert {(r["block"], r["preset"]) for r in rows} == {
        (b, p) for b in ("mac_array", "expert_cache", "hb_interface", "lpddr_port")
        for p in ("default", "paper")} | {("top", "default")}
    assert all(r["lint_errors"] == 0 for r in rows)
