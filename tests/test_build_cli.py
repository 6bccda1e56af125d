"""``build.py``: the Verilog it writes lints clean, and bad requests get clear errors."""

import json
import re
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
def test_verilog_every_preset_lints_without_errors():
    result = run_build("verilog")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout.strip().splitlines()[-1])["verilog"]
    assert {(r["block"], r["preset"]) for r in rows} == {
        (b, p) for b in ("mac_array", "expert_cache", "hb_interface", "lpddr_port")
        for p in ("default", "paper")} | {("top", "default")}
    assert all(r["lint_errors"] == 0 for r in rows)


@pytest.mark.parametrize("args, message", [
    (["bench", "dram"], "unknown bench 'dram'"),
    (["bench", "cache", "--preset", "huge"], "unknown preset 'huge'"),
    (["bench", "mac", "--preset", "huge"], "unknown preset 'huge'"),
    (["bench", "cache", "--trace", "no/such/trace.npz"],
     "bench cache --trace: no/such/trace.npz: not a routing trace"),
    (["sd", "--new-tokens", "1", "--save-routing", "x.npz"], "--save-routing needs --new-tokens"),
    (["fpga", "--board", "de0"], "unknown board 'de0'; choose from ulx3s"),
    (["schedule", "--model", "llama"], "--model: unknown model 'llama'"),
    (["schedule", "--batch", "0"], "--batch must be a positive integer, not 0"),
    (["schedule", "--checkpoint", "no/such/dir"], "cannot load checkpoint no/such/dir"),
    (["schedule", "--model", "mixtral-8x7b", "--capacity", "1"],
     "mixtral-8x7b does not fit the paper machine"),
])
def test_bad_requests_are_named(args, message):
    result = run_build(*args)
    assert result.returncode != 0
    assert message in result.stderr


def test_main_job_is_the_demo():
    """The README's second command: Verilog of every block and the top, one Elastic-SD step of the
    default model scheduled and run on the Verilated accelerator, equal to the golden executor."""
    result = run_build()
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["match"] is True and figures["rtl_equals_executor"] is True
    assert figures["floats_reproduced"] is True and figures["lint_errors"] == 0
    assert figures["commands"] > 1000 and figures["cycles"] > figures["commands"]
    assert 0 <= figures["acceptance_rate"] <= 1
    assert figures["phase_cycles"]["draft"] > 0 and figures["phase_cycles"]["verify"] > 0
    assert {Path(p).name for p in figures["verilog"]} == {
        f"{b}_default.v" for b in ("mac_array", "expert_cache", "hb_interface", "lpddr_port",
                                   "top")}
    for phase in ("draft", "verify"):
        assert figures["bytes"][phase]["HB"] > 0
    assert figures["bytes"]["draft"]["LPDDR"] == 0       # drafting touches no LPDDR
    assert figures["bytes"]["verify"]["LPDDR"] > 0 and figures["bytes"]["verify"]["HB writes"] > 0
    assert "MATCH: the RTL's memories equal the golden executor's bit for bit" in result.stdout


@pytest.mark.slow
def test_check_runs_every_block_against_its_golden_model():
    """``build.py check`` (the former main job), shortened."""
    result = run_build("check", "--dots", "100")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 cocotb tests passed" in result.stdout
    assert re.search(r"[1-9][0-9]* group dot products bit-exact", result.stdout)
    assert re.search(r"3 cocotb tests passed, [1-9][0-9]* response beats equal", result.stdout)
    assert result.stdout.count("1 cocotb test passed, 128 KiB per channel written and read back "
                               "byte-exactly") == 1
    assert result.stdout.count("1 cocotb test passed, 256 KiB per channel written and read back "
                               "byte-exactly") == 1


def test_bench_mac_figures():
    """Cycle counts are deterministic, so the bench's figures can be checked here (its wall-clock
    time is not). A short stream: utilization includes the pipeline fill."""
    result = run_build("bench", "mac", "--ops", "250")
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("block", "full_weights_per_cycle", "draft_weights_per_cycle", "utilization_full",
                "utilization_draft", "cells", "cells_without_augmentation",
                "augmentation_overhead"):
        assert key in figures, key
    assert figures["block"] == "mac_array"
    assert figures["draft_weights_per_cycle"] == 2 * figures["full_weights_per_cycle"]
    assert figures["utilization_full"] >= 0.99 and figures["utilization_draft"] >= 0.99
    assert figures["cells"] > figures["cells_without_augmentation"] > 0
    assert 0 < figures["augmentation_overhead"] <= 0.03


def test_bench_cache_figures(tmp_path):
    """Lookup rate and latency come from the Verilated RTL (cycle counts are deterministic); the
    hit rates from the golden model: each a fraction, growing with capacity. A routing trace the
    golden MoE model recorded (``sd --save-routing``) is replayed too."""
    trace = tmp_path / "routing.npz"
    sd = run_build("sd", "--batch", "2", "--new-tokens", "9", "--save-routing", str(trace))
    assert sd.returncode == 0, sd.stdout + sd.stderr
    assert json.loads(sd.stdout.strip().splitlines()[-1])["routing_trace"] == str(trace)
    assert "target routing (8 steps x 2 sequences x 4 MoE layers x top-4) written" in sd.stdout
    result = run_build("bench", "cache", "--ops", "300", "--trace", str(trace))
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("block", "lookups_per_cycle", "lookup_latency_cycles", "hit_rates",
                "hit_rates_by_batch"):
        assert key in figures, key
    assert figures["block"] == "expert_cache" and figures["lookups"] == 300
    assert figures["lookups_per_cycle"] >= 0.99
    assert 1 <= figures["lookup_latency_cycles"] <= 2
    for batch in figures["hit_rates_by_batch"].values():
        for policy in ("lru", "frequency"):
            rates = [batch[policy][c] for c in ("10%", "25%", "50%")]
            assert all(0 <= r <= 1 for r in rates) and rates == sorted(rates), (policy, rates)
    # Elastic-SD's case: at batch 16 the frequency set beats LRU, which thrashes
    big = figures["hit_rates_by_batch"]["16"]
    assert all(big["frequency"][c] > big["lru"][c] for c in ("10%", "25%", "50%"))
    recorded = figures["recorded_trace"]
    assert (recorded["steps"], recorded["batch"], recorded["layers"], recorded["top_k"]) == \
        (8, 2, 4, 4)
    assert all(0 <= r <= 1 for rates in recorded["hit_rates"].values() for r in rates.values())
    assert f"recorded trace {trace}" in result.stdout


def test_bench_hb_figures():
    """Cycle counts are deterministic, so the HB bench's figures can be checked here; shorter
    streams than the default (efficiency then includes a little more fill and drain)."""
    result = run_build("bench", "hb", "--words", "4096", "--probes", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("block", "hb_seq_read_efficiency", "hb_seq_write_efficiency",
                "hb_random_read_efficiency", "hb_random_write_efficiency",
                "lpddr_seq_read_efficiency", "lpddr_seq_write_efficiency",
                "lpddr_random_read_efficiency", "latency_cycles_median", "latency_cycles_min",
                "latency_cycles_max"):
        assert key in figures, key
    assert figures["block"] == "hb_interface"
    assert figures["hb_seq_read_efficiency"] >= 0.97
    assert figures["lpddr_seq_read_efficiency"] >= 0.97
    # random accesses pay activates and precharges: honest timing cannot make them free
    assert 0 < figures["hb_random_read_efficiency"] < figures["hb_seq_read_efficiency"]
    assert (figures["latency_cycles_min"] <= figures["latency_cycles_median"]
            <= figures["latency_cycles_max"])
    timing = figures["hb_timing"]
    assert figures["latency_cycles_min"] >= timing["t_cl"]


def _schedule(*args):
    result = run_build("schedule", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["valid"] is True and figures["round_trip"] is True
    files = [Path(f) for f in figures["files"]]
    assert len(files) == 2 * (1 + figures["steps"])
    from hw.isa import assemble, decode, encode
    for binary in files[::2]:
        text = binary.with_suffix(".txt")
        assert encode(assemble(text.read_text())) == binary.read_bytes()
        assert decode(binary.read_bytes())[-1].op.name == "END"
    return figures, result.stdout


def test_schedule_default_model_both_modes():
    for batch, mode in ((4, "elastic_sd"), (2, "cached")):
        figures, out = _schedule("--batch", str(batch), "--steps", "1", "--seed", "3")
        assert figures["mode"] == mode and figures["machine"] == "default"
        assert figures["commands"] == figures["per_step"][0]["commands"] > 100
        phases = {"elastic_sd": {"draft", "verify"}, "cached": {"cached"}}[mode]
        assert set(figures["bytes"]) == phases
        assert "LPDDR read B" in out and "HB write B" in out


@pytest.mark.parametrize("model", ["olmoe-1b-7b"])
def test_schedule_zoo_model_on_the_paper_machine(model):
    figures, _ = _schedule("--model", model, "--batch", "2", "--steps", "1")
    assert figures["machine"] == "paper" and figures["pes"] == 32
    assert figures["plan"]["fits"] == {"HB": True, "LPDDR": True}
    assert figures["bytes"]["cached"]["LPDDR"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["qwen3-30b-a3b", "glm-4.7-flash", "deepseek-v2-lite",
                                   "gpt-oss-20b", "mixtral-8x7b", "olmoe-1b-7b",
                                   "qwen1.5-moe-a2.7b", "phi-3.5-moe"])
@pytest.mark.parametrize("batch", [2, 4])
def test_schedule_every_zoo_model(model, batch):
    figures, _ = _schedule("--model", model, "--batch", str(batch), "--steps", "1")
    assert figures["mode"] == ("cached" if batch < 4 else "elastic_sd")
    assert figures["commands"] > 0 and figures["plan"]["fits"] == {"HB": True, "LPDDR": True}
