"""The cocotb benches on the Verilated expert-cache controller (marker ``verilator``): mixed traces
compared response by response with the golden model, pinned entries under attack, throughput; and
the hit-rate table of the bench (the golden model alone)."""

import dataclasses
import json

import pytest

from hw.params import CACHE_DEFAULT, CACHE_FREQUENCY, CACHE_PAPER
from sim.expert_cache.bench import hit_rate_table
from sim.expert_cache.run import run_cache_batch, run_cache_bench



def _summary(tmp_path):
    return json.loads((tmp_path / "summary.jsonl").read_text().splitlines()[-1])


@pytest.mark.verilator
@pytest.mark.parametrize("requests", [pytest.param(10000, id="10000")])
def test_default_preset(seed, tmp_path, requests):
    """``requests`` mixed requests (three fifths under idle cycles and back-pressure), every
    response beat equal to the golden model's, every status seen; plus the pinning and throughput
    tests."""
    tests, _ = run_cache_bench(CACHE_DEFAULT, seed=seed, env={
        "ELMOE_CACHE_OPS": str(requests), "ELMOE_SUMMARY": str(tmp_path / "summary.jsonl")})
    assert tests == 3
    summary = _summary(tmp_path)
    assert summary["requests"] >= requests and summary["beats"] >= summary["requests"]
    assert all(summary["statuses"][s] > 0 for s in ("HIT", "MISS", "OK", "NO_ROOM", "BAD_RANGE",
                                                    "BAD_OPCODE", "ABSENT", "PRESENT", "PINNED"))


@pytest.mark.verilator
def test_frequency_policy_global_capacity(seed, tmp_path):
    tests, _ = run_cache_bench(CACHE_FREQUENCY, seed=seed, env={
        "ELMOE_CACHE_OPS": "10000", "ELMOE_SUMMARY": str(tmp_path / "summary.jsonl")})
    assert tests == 3 and _summary(tmp_path)["beats"] >= 10000


@pytest.mark.verilator
def test_bench_detects_a_wrong_golden_model(bench_must_fail):
    """Hardware with the frequency policy, golden model with LRU: a victim must differ."""
    bench_must_fail(run_cache_bench, CACHE_FREQUENCY,
                    dataclasses.replace(CACHE_FREQUENCY, policy="LRU"), "mixed_traces",
                    {"ELMOE_CACHE_OPS": "3000"})


@pytest.mark.verilator
@pytest.mark.slow
def test_paper_preset(seed):
    tests, _ = run_cache_bench(CACHE_PAPER, seed=seed, env={"ELMOE_CACHE_OPS": "20000"})
    assert tests == 3


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("params", [CACHE_DEFAULT, CACHE_FREQUENCY], ids=["lru", "frequency"])
def test_long_run_free_running(params, seed, tmp_path):
    """The long run: 100,000 mixed requests (three fifths under idle cycles and back-pressure)
    played from a simulation memory, every response beat equal to the golden model's."""
    tests, _ = run_cache_batch(params, 100000, seed=seed,
                               env={"ELMOE_SUMMARY": str(tmp_path / "summary.jsonl")})
    assert tests == 1
    summary = _summary(tmp_path)
    assert summary["requests"] >= 100000 and summary["beats"] >= summary["requests"]


def test_hit_rates_grow_with_capacity_and_the_frequency_set_wins_at_large_batch(seed):
    """The bench's hit-rate table (the golden model replaying generated traces): every rate a
    fraction that grows with capacity; at batch 16 the frequency set beats LRU, which thrashes."""
    rates = hit_rate_table(seed, steps=64)
    for batch in rates.values():
        for policy in ("lru", "frequency"):
            row = [batch[policy][c] for c in ("10%", "25%", "50%")]
            assert all(0 <= r <= 1 for r in row) and row == sorted(row), (policy, row)
    big = rates[16]
    assert all(big["frequency"][c] > big["lru"][c] for c in ("10%", "25%", "50%"))
    with pytest.raises(ValueError, match="more than the 16 warm-up steps, not 16"):
        hit_rate_table(seed, steps=16)


def test_the_bench_measures_the_machines_own_cache():
    """``bench cache``'s last table is the machine's cache, not the study's: its slots, ways and
    policy decide the hit rates on traces of its shape."""
    from dataclasses import replace
    from hw.machines import MACHINES
    from sim.expert_cache.bench import machine_hit_rates, machine_trace_shape
    paper = MACHINES["paper"].cache
    shape = machine_trace_shape(paper)
    assert (shape["layers"], shape["num_experts"], shape["top_k"]) == (4, 64, 6)
    frequency = machine_hit_rates(paper, seed=1, steps=48)
    lru = machine_hit_rates(replace(paper, policy="LRU"), seed=1, steps=48)
    smaller = machine_hit_rates(replace(paper, slots=32, ways=8, select_capacity=8), seed=1,
                                steps=48)
    assert set(frequency) == {1, 4, 16} and frequency != lru
    assert all(smaller[b] < frequency[b] for b in (4, 16))
