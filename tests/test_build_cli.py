"""``build.py``: the Verilog it writes lints clean, and bad requests get clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim.runner import REPO_ROOT

pytestmark = pytest.mark.verilator


def run_build(*args):
    return subprocess.run([sys.executable, str(REPO_ROOT / "build.py"), *args], cwd=REPO_ROOT,
                          capture_output=True, text=True)


def test_verilog_default_preset_lints_without_errors():
    result = run_build("verilog", "--preset", "default")
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    (row,) = figures["verilog"]
    assert row["block"] == "mac_array" and row["lint_errors"] == 0
    text = Path(row["path"]).read_text()
    assert "module mac_array" in text and "weights__payload" in text


@pytest.mark.slow
def test_verilog_every_preset_lints_without_errors():
    result = run_build("verilog")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout.strip().splitlines()[-1])["verilog"]
    assert {r["preset"] for r in rows} == {"default", "paper"}
    assert all(r["lint_errors"] == 0 for r in rows)


@pytest.mark.parametrize("args, message", [
    (["bench", "cache"], "unknown bench 'cache'"),
    (["bench", "mac", "--preset", "huge"], "unknown preset 'huge'"),
])
def test_bad_requests_are_named(args, message):
    result = run_build(*args)
    assert result.returncode != 0
    assert message in result.stderr
