"""The performance model with token trees: the measured tree acceptance and its mapping, the tree's
phases (verify tokens, draft passes), the chain kept exactly as it was, and a tree too large for
one part of the machine refused by name."""

from dataclasses import replace

import numpy as np
import pytest

from hw.params import TOP_PAPER
from sw_model.decode.tree import parse_tree
from sw_model.perf import hardware as hwmod
from sw_model.perf.measured import (CHAIN_WINDOW_UNION, TREE_BUDGET_SHAPES, TREE_SEQUENCE_UNION,
                                    TREE_SHARES, TREE_TOKENS_PER_VERIFICATION)
from sw_model.perf.methods import (Settings, check_verify_fits, part_tokens, plan_step,
                                   step_result)
from sw_model.perf.suite import evaluate_config
from sw_model.perf.workload import ACCEPTANCE, AcceptanceModel, effective_draws, \
    measured_tree_specs

HW = hwmod.elmoe3d(TOP_PAPER)
TREE = "static:2,1,1,1"


# -- the measured tables and their mapping -------------------------------------------------------

def test_every_measured_shape_is_complete_and_within_its_bounds():
    for budget, specs in TREE_BUDGET_SHAPES.items():
        assert specs[0] == f"chain:{budget}"
        for spec in specs:
            assert len(TREE_TOKENS_PER_VERIFICATION[spec]) == len(TREE_SHARES)
            assert len(TREE_SEQUENCE_UNION[spec]) == len(TREE_SHARES)
            shape = parse_tree(spec) if not spec.startswith("chain:") else None
            nodes = shape.nodes if shape else budget
            depth = shape.depth if shape else budget
            assert nodes <= budget
            assert all(1 <= e <= depth + 1 for e in TREE_TOKENS_PER_VERIFICATION[spec])
    for share, curve in CHAIN_WINDOW_UNION.items():
        assert curve[0] > 0 and all(np.diff(curve) >= 0), share   # a union only grows


def test_tree_tokens_per_verification_follow_the_table_and_interpolate_in_log2_share():
    a = ACCEPTANCE
    for spec in measured_tree_specs():
        shape = parse_tree(spec)
        table = TREE_TOKENS_PER_VERIFICATION[spec]
        for share, e in zip(TREE_SHARES, table):
            # measured, not lifted to the paper's chain floor
            assert a.tree_length(spec, share) == pytest.approx(e)
        # halfway between 1/4 and 1/2 in log2(share) is the mean of the two
        mid = 2 ** ((np.log2(0.25) + np.log2(0.5)) / 2)
        assert a.tree_length(spec, mid) == pytest.approx((table[1] + table[2]) / 2)
        # below 1/8: linear in the share down to 1 (no resident expert to draft with)
        assert a.tree_length(spec, 0.0) == pytest.approx(1.0)
        assert a.tree_length(spec, 0.0625) == pytest.approx((1 + table[0]) / 2)
        assert a.tree_length(spec, 1.0) <= shape.depth + 1


def test_the_tree_window_is_the_measured_growth_over_a_chain_of_as_many_tokens():
    a = ACCEPTANCE
    spec = measured_tree_specs()[0]
    shape = parse_tree(spec)
    tokens = shape.nodes + 1
    for i, share in enumerate(TREE_SHARES):
        growth = (effective_draws(TREE_SEQUENCE_UNION[spec][i])
                  / effective_draws(CHAIN_WINDOW_UNION[share][tokens - 1]))
        assert a.tree_growth(spec, share) == pytest.approx(growth)
        assert a.tree_window(spec, share) == pytest.approx(max(1.0, tokens * growth))
    assert replace(a, tree_union="chain").tree_window(spec, 0.3) == tokens


def test_effective_draws_are_the_inverse_of_uniform_occupancy():
    e = 32
    for draws in (1, 5, 40):
        union = e * (1 - (1 - 1 / e) ** draws)
        assert effective_draws(union, e) == pytest.approx(draws)
    with pytest.raises(ValueError, match="a union of 32"):
        effective_draws(32, 32)


@pytest.mark.parametrize("make, message", [
    (lambda: ACCEPTANCE.tree_length("static:3,3,3", 0.5),
     "decoding.tree static:3,3,3: no measured acceptance for this shape"),
    (lambda: ACCEPTANCE.tree_length(TREE, 1.5), "resident fraction"),
    (lambda: AcceptanceModel(tree_union="tree"), "AcceptanceModel.tree_union"),
    (lambda: AcceptanceModel(share=0.0), "AcceptanceModel.share"),
    (lambda: AcceptanceModel(trees=(("static:2", (1.5, 4.0, 1.5, 1.5), (4, 4, 4, 4)),)),
     r"AcceptanceModel.trees\['static:2'\]"),
    (lambda: Settings(tree="static:0"), r"tree.widths\[1\]"),
    (lambda: plan_step(HW, "qwen3-30b-a3b", 8, "elastic_sd", Settings(tree="static:5,5")),
     "decoding.tree static:5,5: no measured acceptance"),
])
def test_bad_tree_inputs_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# -- the chain unchanged, the tree's phases ------------------------------------------------------

#: (PEs, model, batch) -> (seconds, joules) per token of a gamma-4 chain step, as the model gave
#: them before trees existed.
CHAIN_BEFORE = {
    (32, "qwen3-30b-a3b", 4): (0.010240677979461722, 0.061180030976043714),
    (32, "gpt-oss-20b", 16): (0.0008828291431594423, 0.006836698384210109),
    (16, "qwen3-30b-a3b", 16): (0.007703543712346805, 0.04244446979231907),
    (16, "deepseek-v2-lite", 64): (0.0010126987784233484, 0.006092707849591631),
}


@pytest.mark.parametrize("key", list(CHAIN_BEFORE))
@pytest.mark.parametrize("tree", [None, "chain"])
def test_the_chain_is_unchanged(key, tree):
    pes, model, batch = key
    hw = hwmod.elmoe3d(TOP_PAPER.with_pes(pes))
    r = step_result(hw, plan_step(hw, model, batch, "elastic_sd", Settings(tree=tree)))
    assert (r.s_per_token, r.j_per_token) == pytest.approx(CHAIN_BEFORE[key], rel=1e-12)
    assert [label for label, _, _ in r.plan.phases] == ["draft", "verify"]


@pytest.mark.parametrize("spec", [TREE, "dynamic:nodes=16,depth=4,k=4,width=4"])
def test_a_tree_drafts_one_pass_per_depth_and_verifies_every_node(spec):
    shape = parse_tree(spec)
    batch = 8
    plan = plan_step(HW, "qwen3-30b-a3b", batch, "elastic_sd", Settings(tree=spec))
    drafts = [(n, w) for label, n, w in plan.phases if label == "draft"]
    verify = [(n, w) for label, n, w in plan.phases if label == "verify"]
    assert [n for n, _ in drafts] == [1] * shape.depth
    assert [w.tokens for _, w in drafts] == [batch * width for width in shape.levels[:-1]]
    assert len(verify) == 1 and verify[0][1].tokens == batch * (shape.nodes + 1)
    fraction = plan.info["resident_fraction"]
    assert plan.tokens == pytest.approx(batch * ACCEPTANCE.tree_length(spec, fraction))
    assert plan.info["draft"] == shape.spec and plan.info["verify_tokens"] == shape.nodes + 1


def test_a_tree_s_wider_union_costs_lpddr_bytes():
    """The measured growth makes the verification touch more experts, which stream their lower
    nibbles (or whole) from LPDDR: more far bytes than the same tree touching a chain's."""
    s = Settings(tree="static:4,1,1,1")
    chain_like = replace(s, acceptance=replace(s.acceptance, tree_union="chain"))
    plans = [plan_step(HW, "qwen3-30b-a3b", 1, "elastic_sd", x) for x in (s, chain_like)]
    assert plans[0].info["verify_window"] > plans[1].info["verify_window"] == 17
    far = [sum(w.far_read for label, _, w in p.phases if label == "verify") for p in plans]
    assert far[0] > far[1]


def test_the_headline_takes_the_tree_from_the_configuration():
    config = {"gamma": 4, "threshold": 4, "resident_policy": "frequency", "machine": TOP_PAPER}
    chain = evaluate_config(config, ["gpt-oss-20b"], [1, 16])
    tree = evaluate_config(dict(config, tree=TREE), ["gpt-oss-20b"], [1, 16])
    # batch 1 runs cached decoding either way; batch 16 runs the draft shape
    assert chain["points"][0]["s"] == tree["points"][0]["s"]
    assert chain["points"][1]["s"] != tree["points"][1]["s"]


# -- one part of the machine ---------------------------------------------------------------------

def test_one_part_holds_the_tokens_of_one_job_s_inputs():
    # qwen3-30b-a3b: hidden 2048 and expert FFN 768 are 64 + 24 groups of 32, one beat each,
    # plus two scale words per 16-token tile: 90 words of input_words 8192 -> 91 tiles
    assert part_tokens(TOP_PAPER, "qwen3-30b-a3b") == 91 * 16
    assert part_tokens(TOP_PAPER, "gpt-oss-20b") == (8192 // 182) * 16


def test_the_limit_is_the_scheduler_s():
    """A job of ``part_tokens`` rows fits one part of the scheduler's input memory; one more token
    tile does not."""
    from hw.machines import DEMO_MACHINE
    from sw_model.compiler.scheduler import Job, _Emitter
    from sw_model.compiler.weight_layout import WeightLayout, machine_for
    from sw_model.model.moe import DEFAULT_CONFIG
    from sw_model.perf.zoo import shape_from_config
    machine = machine_for(DEFAULT_CONFIG, "elastic_sd", DEMO_MACHINE, grow=True, input_words=256)
    layout = WeightLayout(DEFAULT_CONFIG, machine)
    limit = part_tokens(machine, shape_from_config(DEFAULT_CONFIG, "default"))
    layer = DEFAULT_CONFIG.moe_layers[0]
    fits = _Emitter(layout, split=True)
    fits.barrier("verify")
    fits.job(Job("miss", 0, layer, 0, tuple(range(limit))))
    tile = machine.mac.tokens
    over = _Emitter(layout, split=True)
    over.barrier("verify")
    with pytest.raises(ValueError, match="alone does not fit"):
        over.job(Job("miss", 0, layer, 0, tuple(range(limit + tile))))


def test_a_tree_too_large_for_one_part_is_named():
    small = replace(TOP_PAPER, input_words=512)
    with pytest.raises(ValueError, match=r"decoding.tree static:2,1,1,1: a verification pass "
                                         r"carries 9 tokens per sequence, 144 at batch 16, more "
                                         r"than one part of the machine holds for "
                                         r"qwen3-30b-a3b \(80 tokens"):
        check_verify_fits(TREE, small, ["qwen3-30b-a3b"], [1, 16])
    check_verify_fits(TREE, small, ["qwen3-30b-a3b"], [8])
    check_verify_fits(None, small, ["qwen3-30b-a3b"], [256])       # the chain is not checked
    with pytest.raises(ValueError, match="decoding.tree"):
        evaluate_config({"gamma": 4, "threshold": 4, "resident_policy": "frequency",
                         "machine": small, "tree": TREE}, ["qwen3-30b-a3b"], [16])
