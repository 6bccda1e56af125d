"""``python build.py synth --quick`` and ``fpga --board ulx3s`` end to end (minutes each: slow;
Yosys and nextpnr: toolchain); ``synth`` without OpenSTA."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.toolchain


def _figures(run_build, *args):
    code, stdout, stderr = run_build(*args)
    assert code == 0, stdout[-3000:] + stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_build_synth_quick_reports_every_block(run_build):
    from hw.blocks import BLOCKS
    figures = _figures(run_build, "synth", "--quick")
    rows = {(r["block"], r["config"]): r for r in figures["synth"]}
    assert {block for block, _ in rows} == set(BLOCKS)
    assert all(r["area_um2"] > 0 and r["cells"] > 0 for r in rows.values())
    for r in rows.values():          # every block timed: a named path, fmax = 1 / delay
        assert r["critical_path_ns"] > 0 and r["path"]["start"] and r["path"]["end"]
        assert r["fmax_mhz"] == pytest.approx(1000 / r["critical_path_ns"], rel=1e-3)
        assert r["path"]["cells"] >= 2
    (aug,) = figures["augmentation"]
    assert aug["config"] == "default" and abs(aug["overhead"]) <= 0.03


def test_build_synth_without_opensta_says_which_package(run_build, monkeypatch):
    """No ``sta`` on PATH: one line naming the Debian package, before any synthesis."""
    monkeypatch.setenv("PATH", "")
    code, stdout, stderr = run_build("synth", "--quick")
    assert code == 1 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "synth: OpenSTA (the sta program) is not installed; install the Debian/Ubuntu package "
        "opensta (apt-get install opensta)")


@pytest.mark.slow
@pytest.mark.verilator
def test_build_fpga_board_ulx3s_writes_a_bitstream(run_build):
    figures = _figures(run_build, "fpga", "--board", "ulx3s")
    assert figures["selftest_passed"] and figures["corrupted_fails"]
    assert Path(figures["bitstream"]).stat().st_size == figures["bytes"] > 100_000
    assert figures["fmax_mhz"] >= figures["clock_mhz"]
