"""``build.py bench mac|cache|hb``: the figures of the benchmarks on the Verilated RTL."""

import json

import pytest

pytestmark = pytest.mark.verilator


@pytest.mark.slow
@pytest.mark.toolchain
def test_bench_mac_figures(run_build):
    """Cycle counts are deterministic, so the bench's figures can be checked here (its wall-clock
    time is not). A short stream: utilization includes the pipeline fill."""
    code, stdout, stderr = run_build("bench", "mac", "--ops", "250")
    assert code == 0, stdout + stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    for key in ("block", "full_weights_per_cycle", "draft_weights_per_cycle", "utilization_full",
                "utilization_draft", "cells", "cells_without_augmentation",
                "augmentation_overhead"):
        assert key in figures, key
    assert figures["block"] == "mac_array"
    assert figures["draft_weights_per_cycle"] == 2 * figures["full_weights_per_cycle"]
    assert figures["utilization_full"] >= 0.99 and figures["utilization_draft"] >= 0.99
    assert figures["cells"] > figures["cells_without_augmentation"] > 0
    assert 0 < figures["augmentation_overhead"] <= 0.03


@pytest.mark.slow
def test_bench_cache_figures(run_build, tmp_path):
    """Lookup rate and latency come from the Verilated RTL (cycle counts are deterministic); the
    hit rates from the golden model: each a fraction, growing with capacity. A routing trace the
    golden MoE model recorded (``sd --save-routing``) is replayed too."""
    trace = tmp_path / "routing.npz"
    code, stdout, stderr = run_build("sd", "--batch", "2", "--new-tokens", "9", "--save-routing",
                                     str(trace))
    assert code == 0, stdout + stderr
    assert json.loads(stdout.strip().splitlines()[-1])["routing_trace"] == str(trace)
    assert "target routing (8 steps x 2 sequences x 4 MoE layers x top-4) written" in stdout
    code, stdout, stderr = run_build("bench", "cache", "--ops", "300", "--trace-steps", "96",
                                     "--trace", str(trace))
    assert code == 0, stdout + stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    for key in ("block", "lookups_per_cycle", "lookup_latency_cycles", "hit_rates",
                "hit_rates_by_batch"):
        assert key in figures, key
    assert figures["block"] == "expert_cache" and figures["lookups"] == 300
    assert figures["trace"]["steps"] == 96
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
    assert f"recorded trace {trace}" in stdout


@pytest.mark.slow
def test_bench_hb_figures(run_build):
    """Cycle counts are deterministic, so the HB bench's figures can be checked here; shorter
    streams than the default (efficiency then includes a little more fill and drain)."""
    code, stdout, stderr = run_build("bench", "hb", "--words", "4096", "--probes", "20")
    assert code == 0, stdout + stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
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
