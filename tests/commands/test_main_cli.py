"""``build.py`` itself: it runs as a script, runs the demo without a subcommand, and names bad
requests of every command in one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hw.flows.verilog import REPO_ROOT
from sim.commands import COMMANDS


def test_help_runs_as_a_script():
    result = subprocess.run([sys.executable, str(REPO_ROOT / "build.py"), "--help"],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for handler in COMMANDS:
        assert f"python build.py {handler.NAME}" in result.stdout, handler.NAME


@pytest.mark.parametrize("args, message", [
    (["bench", "dram"], "unknown bench 'dram'"),
    (["bench", "cache", "--trace-steps", "16"],
     "bench cache: --trace-steps must be more than the 16 warm-up steps, not 16"),
    (["bench", "cache", "--trace", "no/such/trace.npz"],
     "bench cache --trace: no/such/trace.npz: not a routing trace"),
    (["sd", "--new-tokens", "1", "--save-routing", "x.npz"], "--save-routing needs --new-tokens"),
    (["fpga", "--board", "de0"], "unknown board 'de0'; choose from ulx3s"),
    (["schedule", "--model", "llama"], "--model: unknown model 'llama'"),
    (["schedule", "--batch", "0"], "--batch must be a positive integer, not 0"),
    (["schedule", "--checkpoint", "no/such/dir"], "cannot load checkpoint no/such/dir"),
    (["schedule", "--model", "mixtral-8x7b", "--capacity", "1"],
     "mixtral-8x7b does not fit the paper machine"),
    (["demo", "--set", "decoding.tree=static:0"],
     "decoding.tree.widths[1] (children per node at depth 1) must be a positive integer, not 0"),
    (["demo", "--set", "decoding.tree=dynamic:nodes=300"], "tree.nodes is 300, more than the 255"),
    (["demo", "--set", "decoding.tree=static:15,16"],
     "decoding.tree: a verification pass of 4 sequences x 256 tokens = 1024 rows does not fit "
     "one part of"),
])
def test_bad_requests_are_named(run_build, args, message):
    code, _, stderr = run_build(*args)
    assert code != 0
    assert message in stderr


@pytest.mark.verilator
@pytest.mark.xdist_group("demo_top")
def test_main_job_is_the_demo(run_build):
    """The README's second command: Verilog of every block and the top, one Elastic-SD step of the
    default model scheduled and run on the Verilated accelerator, equal to the golden executor."""
    code, stdout, stderr = run_build()
    assert code == 0, stdout + stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    assert figures["match"] is True and figures["rtl_equals_executor"] is True
    assert figures["floats_reproduced"] is True and figures["lint_errors"] == 0
    assert figures["commands"] > 1000 and figures["cycles"] > figures["commands"]
    # every expert layer's outputs left the PEs through the dequantising units
    assert figures["mac_dq_commands"] >= figures["dequantised_outputs"] > 100
    assert 0 <= figures["acceptance_rate"] <= 1
    assert figures["phase_cycles"]["draft"] > 0 and figures["phase_cycles"]["verify"] > 0
    assert {Path(p).name for p in figures["verilog"]} == {
        f"{b}.v" for b in ("mac_array", "expert_cache", "hb_interface", "lpddr_port", "top")}
    assert {Path(p).parent.name for p in figures["verilog"]} == {"demo"}
    for phase in ("draft", "verify"):
        assert figures["bytes"][phase]["HB"] > 0
    assert figures["bytes"]["draft"]["LPDDR"] == 0       # drafting touches no LPDDR
    assert figures["bytes"]["verify"]["LPDDR"] > 0 and figures["bytes"]["verify"]["HB writes"] > 0
    assert "MATCH: the RTL's memories equal the golden executor's bit for bit" in stdout
