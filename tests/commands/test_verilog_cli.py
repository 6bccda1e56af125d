"""``build.py verilog``: the Verilog it writes lints clean."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.verilator


def test_verilog_of_one_machine_lints_without_errors(run_build):
    code, stdout, stderr = run_build("verilog", "--machine", "tiny")
    assert code == 0, stdout + stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    rows = {row["block"]: row for row in figures["verilog"]}
    assert set(rows) == {"mac_array", "expert_cache", "hb_interface", "lpddr_port", "top"}
    assert all(row["lint_errors"] == 0 for row in rows.values())
    assert {Path(row["path"]).parent.name for row in rows.values()} == {"tiny"}
    text = Path(rows["mac_array"]["path"]).read_text()
    assert "module mac_array" in text and "weights__payload" in text
    text = Path(rows["expert_cache"]["path"]).read_text()
    assert "module expert_cache" in text and "req__payload" in text and "resp__payload" in text
    for block in ("hb_interface", "lpddr_port", "top"):
        assert f"module {block}" in Path(rows[block]["path"]).read_text()
    # the top is hierarchical: one PE module and one HB channel module, an instance per PE
    text = Path(rows["top"]["path"]).read_text()
    assert text.count("module top_pe(") == text.count("module top_hb_channel(") == 1
    assert text.count("\n  top_pe ") == text.count("\n  top_hb_channel ") == 2


@pytest.mark.slow
def test_verilog_every_machine_lints_without_errors(run_build):
    code, stdout, stderr = run_build("verilog")
    assert code == 0, stdout + stderr
    rows = json.loads(stdout.strip().splitlines()[-1])["verilog"]
    blocks = ("mac_array", "expert_cache", "hb_interface", "lpddr_port", "top")
    assert {(r["block"], r["machine"]) for r in rows} == {
        (b, m) for b in blocks for m in ("tiny", "demo", "paper")}
    assert all(r["path"] and r["lint_errors"] == 0 for r in rows)
    # the paper's top is hierarchical: its 32 PEs are instances of one PE module
    (paper_top,) = [r for r in rows if (r["block"], r["machine"]) == ("top", "paper")]
    text = Path(paper_top["path"]).read_text()
    assert text.count("module top_pe(") == 1 and text.count("\n  top_pe ") == 32
    assert text.count("module top_hb_channel(") == 1 and text.count("\n  top_hb_channel ") == 32
