"""The cocotb benches on the Verilated expert-cache controller (marker ``verilator``): mixed traces
compared response by response with the golden model, pinned entries under attack, throughput."""

import dataclasses
import json

import pytest

from hw.params import CACHE_DEFAULT, CACHE_FREQUENCY, CACHE_PAPER
from sim.benches import run_cache_bench
from sim.runner import CocotbFailure

pytestmark = pytest.mark.verilator


def _summary(tmp_path):
    return json.loads((tmp_path / "summary.jsonl").read_text().splitlines()[-1])


def test_default_preset_100000_requests(seed, tmp_path):
    """100,000 mixed requests (three fifths under idle cycles and back-pressure), every response
    beat equal to the golden model's; plus the pinning and throughput tests."""
    tests, _ = run_cache_bench(CACHE_DEFAULT, seed=seed, env={
        "ELMOE_CACHE_OPS": "100000", "ELMOE_SUMMARY": str(tmp_path / "summary.jsonl")})
    assert tests == 3
    summary = _summary(tmp_path)
    assert summary["requests"] >= 100000 and summary["beats"] >= summary["requests"]
    assert all(summary["statuses"][s] > 0 for s in ("HIT", "MISS", "OK", "NO_ROOM", "BAD_RANGE",
                                                    "BAD_OPCODE", "ABSENT", "PRESENT", "PINNED"))


def test_frequency_policy_global_capacity(seed, tmp_path):
    tests, _ = run_cache_bench(CACHE_FREQUENCY, seed=seed, env={
        "ELMOE_CACHE_OPS": "30000", "ELMOE_SUMMARY": str(tmp_path / "summary.jsonl")})
    assert tests == 3 and _summary(tmp_path)["beats"] >= 30000


def test_bench_detects_a_wrong_golden_model(seed):
    """Hardware with the frequency policy, golden model with LRU: a victim must differ."""
    wrong = dataclasses.replace(CACHE_FREQUENCY, policy="LRU")
    with pytest.raises(CocotbFailure, match="failed"):
        run_cache_bench(CACHE_FREQUENCY, testcase="mixed_traces", golden=wrong, seed=seed,
                        env={"ELMOE_CACHE_OPS": "3000"})


@pytest.mark.slow
def test_paper_preset(seed):
    tests, _ = run_cache_bench(CACHE_PAPER, seed=seed, env={"ELMOE_CACHE_OPS": "20000"})
    assert tests == 3
