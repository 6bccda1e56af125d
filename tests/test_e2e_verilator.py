"""End to end on Verilator: the golden MoE model decodes, the scheduler emits each step's stream,
the Verilated accelerator runs it from preloaded HB, LPDDR and input memories, and its memories
must equal the golden executor's bit for bit while the host's float part on its output memory
reproduces the golden model's expert and MoE block outputs (:mod:`sim.e2e`).

The default suite runs cached decoding on the demo's machine (the built-in model, 2 PEs: the
Verilator build ``python build.py`` makes, so no extra build) -- the demo test runs its Elastic-SD
step -- and both modes on a small model with 2 PEs; other PE counts are ``slow``."""

import logging

import pytest

from sim.e2e import run_end_to_end
from sw_model.moe import TINY_CONFIG, MoEModel, random_weights

pytestmark = pytest.mark.verilator

log = logging.getLogger(__name__)


def _check(report, modes):
    assert {r["mode"] for r in report} == set(modes)
    for r in report:
        log.info("%s step %d on %d PEs: %d commands, %d cycles %s", r["mode"], r["step"],
                 r["pes"], r["commands"], r["cycles"], r["phase_cycles"])
        assert r["match"], r["differences"]
        assert r["floats"], r["floats_checked"]
        phases = r["phase_cycles"]
        if r["mode"] == "elastic_sd":
            assert phases["draft"] > 0 and phases["verify"] > 0 and phases["cached"] == 0
        else:
            assert phases["cached"] > 0 and phases["draft"] == phases["verify"] == 0
        assert phases["setup"] > 0 and sum(phases.values()) <= r["cycles"]


@pytest.fixture(scope="module")
def tiny():
    return MoEModel(TINY_CONFIG, random_weights(TINY_CONFIG, seed=3))


def test_small_model_both_modes_two_pes(tiny, seed):
    report, params = run_end_to_end(tiny, [("elastic_sd", 4, 2), ("cached", 2, 2)], pes=2,
                                    capacity=4, seed=seed)
    assert params.pes == 2
    _check(report, ["elastic_sd", "cached"])


@pytest.mark.slow
@pytest.mark.parametrize("pes", [1, 3, 4])
def test_small_model_both_modes_other_pe_counts(tiny, seed, pes):
    report, params = run_end_to_end(tiny, [("elastic_sd", 5, 2), ("cached", 3, 2)], pes=pes,
                                    capacity=4, seed=seed)
    assert params.pes == pes
    _check(report, ["elastic_sd", "cached"])
