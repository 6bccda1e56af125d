"""End to end on Verilator: the golden MoE model decodes, the scheduler emits each step's stream,
the Verilated accelerator runs it from preloaded HB, LPDDR and input memories, and its memories
must equal the golden executor's bit for bit while the host's float part on its output memories
reproduces the golden model's expert and MoE block outputs (:mod:`sim.top.e2e`).

The default suite runs cached decoding on 2 PEs on the demo's machine (the one ``python build.py``
builds for the built-in model: same cache and memories, so no extra Verilator build) with a small
random model of the same layer and expert counts; the demo itself runs Elastic-SD there. Elastic-SD
here and other PE counts are ``slow``."""

import logging

import pytest

from sim.top.e2e import e2e_machine, run_end_to_end
from sim.commands.demo import DEMO_PES
from sw_model.model.moe import MoEConfig, MoEModel, random_weights
from sw_model.model.checkpoints import default_model

pytestmark = pytest.mark.verilator

log = logging.getLogger(__name__)


def _check(report, modes):
    assert {r["mode"] for r in report} == set(modes)
    for r in report:
        log.info("%s step %d on %d PEs: %d commands in %d parts, %d cycles %s", r["mode"],
                 r["step"], r["pes"], r["commands"], r["parts"], r["cycles"], r["phase_cycles"])
        assert r["match"], r["differences"]
        assert r["floats"], r["floats_checked"]
        phases = r["phase_cycles"]
        if r["mode"] == "elastic_sd":
            assert phases["draft"] > 0 and phases["verify"] > 0 and phases["cached"] == 0
        else:
            assert phases["cached"] > 0 and phases["draft"] == phases["verify"] == 0
        assert phases["setup"] > 0 and sum(phases.values()) <= r["cycles"]


@pytest.fixture(scope="module")
def demo_like():
    """A small random model with the built-in model's MoE layers, experts and top-k, and the
    demo's machine and cache capacity."""
    config = default_model()[0].config
    small = MoEConfig(vocab_size=64, hidden_size=64, num_layers=config.num_layers, num_heads=2,
                      num_kv_heads=1, head_dim=32, num_experts=config.num_experts,
                      top_k=config.top_k, expert_ffn=32, dense_layers=config.dense_layers,
                      dense_ffn=64 if config.dense_layers else 0, name="e2e-small")
    capacity = max(config.top_k, config.num_experts // 4)
    return MoEModel(small, random_weights(small, seed=4)), capacity, config


@pytest.mark.parametrize("mode, batch", [
    ("cached", 2),
    # the demo (tests/commands) runs Elastic-SD end to end on the same machine
    pytest.param("elastic_sd", 4, marks=pytest.mark.slow)])
def test_each_mode_on_the_demo_machine(demo_like, seed, mode, batch):
    model, capacity, config = demo_like
    params = e2e_machine(config, DEMO_PES, capacity)
    report, _ = run_end_to_end(model, [(mode, batch, 2)], pes=DEMO_PES, capacity=capacity,
                               seed=seed, params=params)
    _check(report, [mode])


def test_a_token_tree_step_on_the_demo_machine(demo_like, seed):
    """One token-tree Elastic-SD step (static 3,2: 9 draft nodes per sequence, one verification
    pass of 4 x 10 tokens) on the Verilated demo machine, bit for bit."""
    model, capacity, config = demo_like
    params = e2e_machine(config, DEMO_PES, capacity)
    report, _ = run_end_to_end(model, [("elastic_sd", 4, 1)], pes=DEMO_PES, capacity=capacity,
                               seed=seed, params=params, tree="static:3,2")
    _check(report, ["elastic_sd"])
    step = report[0]
    assert step["tree"] == {b: 9 for b in range(4)} and step["target_rows"] == 40
    assert step["proposed"] == 36 and all(0 <= n <= 2 for n in step["accepted"])


@pytest.mark.slow
@pytest.mark.parametrize("pes", [1, 3, 4])
def test_both_modes_other_pe_counts(demo_like, seed, pes):
    model, capacity, _ = demo_like
    report, params = run_end_to_end(model, [("elastic_sd", 5, 2), ("cached", 3, 2)], pes=pes,
                                    capacity=capacity, seed=seed)
    assert params.pes == pes
    _check(report, ["elastic_sd", "cached"])
