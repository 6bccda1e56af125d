"""Token-tree Elastic-SD in the golden model: the tree attention mask, greedy tree decoding equal to
target-only greedy decoding, recursive rejection sampling keeping the target's law (chi-square at
significance 0.001 with fixed seeds; a wrong rule fails the same test), and bad shapes refused."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sw_model.decode import decoding
from sw_model.decode.decoding import SDConfig, elastic_sd, target_greedy
from sw_model.decode.draft_policies import make_policy
from sw_model.decode.policy import DEFAULT_POLICY, PolicyError, apply_policy_sets
from sw_model.decode.step_record import StepRecorder
from sw_model.decode.tree import (TREE_LIMIT, TreeShape, _draw_without_replacement,
                                  accept_tree_greedy, accept_tree_sampling,
                                  accept_tree_sampling_iid, parse_tree, tree_path)
from sw_model.model.checkpoints import load_checkpoint, read_config
from sw_model.model.corpus import heldout_prompts
from sw_model.model.moe import TINY_CONFIG, MoEModel, TreeSpan, random_weights, softmax
from sw_model.train.training import VARIANTS, model_dir

from tests.support.stats import ALPHA, chi_square_p

CHECKPOINTS = Path(__file__).resolve().parents[1] / "data" / "checkpoints"
SHAPES = ["static:1,1,1", "static:3,2,1", "static:2,2,2,1", "dynamic:nodes=12,depth=5,k=3,width=4"]


# -- the tree mask ------------------------------------------------------------------------------------

def _variant(name):
    config = read_config(CHECKPOINTS / name)[0]
    return MoEModel(config, random_weights(config, seed=3))


@pytest.fixture(scope="module", params=["tiny", "gpt_oss-tf5", "deepseek_v3-tf4"])
def attention_model(request):
    """The tiny model (grouped-query attention), a sliding-window model with sinks (GPT-OSS
    layout) and an MLA model (DeepSeek-V3 layout)."""
    if request.param == "tiny":
        return MoEModel(TINY_CONFIG, random_weights(TINY_CONFIG, seed=1))
    return _variant(request.param)


def test_a_tree_pass_equals_each_path_run_alone(attention_model):
    """Every node's logits in one tree pass, and over a tree built one depth per pass, equal the
    logits of its root-to-node path decoded as a plain continuation, bit for bit."""
    m = attention_model
    rng = np.random.default_rng(5)
    prompt = rng.integers(0, m.config.vocab_size, 9)
    parents = [-1, 0, 0, 1, 2, 2, 3, 5, 5]
    tokens = rng.integers(0, m.config.vocab_size, len(parents))
    kv = m.new_cache(1, 40)
    m.forward(kv, [prompt])
    base = int(kv.length[0])
    whole = m.forward(kv, [tokens], trees=[TreeSpan(parents, base)]).logits[0]
    for node in range(len(parents)):
        path = tree_path(parents, node)
        kv2 = m.new_cache(1, 40)
        m.forward(kv2, [prompt])
        alone = m.forward(kv2, [tokens[path]]).logits[0][-1]
        assert np.array_equal(alone, whole[node]), (node, path)
    kv3 = m.new_cache(1, 40)
    m.forward(kv3, [prompt])
    depth = TreeSpan(parents, base).depth
    by_depth = []
    for d in range(depth.max() + 1):
        nodes = np.flatnonzero(depth == d)
        span = TreeSpan(parents[:nodes[-1] + 1], base, nodes[0])
        by_depth.append(m.forward(kv3, [tokens[nodes]], trees=[span]).logits[0])
    assert np.array_equal(np.concatenate(by_depth), whole)


def test_a_sliding_window_counts_positions_by_depth():
    """With a window shorter than the tree's slots, a deep node still sees the keys within the
    window of its position (base + depth), not of its slot."""
    base_config = read_config(CHECKPOINTS / "gpt_oss-tf5")[0]
    config = dataclasses.replace(base_config, sliding_window=4)
    m = MoEModel(config, random_weights(config, seed=2))
    rng = np.random.default_rng(2)
    prompt = rng.integers(0, config.vocab_size, 6)
    parents = [-1, 0, 0, 0, 0, 0, 1, 6, 7]        # the deep path sits behind five siblings
    tokens = rng.integers(0, config.vocab_size, len(parents))
    kv = m.new_cache(1, 32)
    m.forward(kv, [prompt])
    whole = m.forward(kv, [tokens], trees=[TreeSpan(parents, 6)]).logits[0]
    kv2 = m.new_cache(1, 32)
    m.forward(kv2, [prompt])
    alone = m.forward(kv2, [tokens[tree_path(parents, 8)]]).logits[0][-1]
    assert np.array_equal(alone, whole[8])


@pytest.mark.parametrize("parents, message", [
    ([0, 0], "parents\\[0\\] must be -1"),
    ([-1, 1], "node 1's parent 1 is not an earlier node"),
    ([-1, 0, -1], "node 2's parent -1"),
])
def test_bad_tree_spans_are_named(parents, message):
    with pytest.raises(ValueError, match=message):
        TreeSpan(parents, 0)


def test_a_tree_pass_must_start_where_the_cache_ends():
    m = MoEModel(TINY_CONFIG, random_weights(TINY_CONFIG, seed=1))
    kv = m.new_cache(1, 16)
    m.forward(kv, [[1, 2, 3]])
    with pytest.raises(ValueError, match="holds 3 positions, but its tree pass starts at node 0 "
                                         "of a tree at 2"):
        m.forward(kv, [[4, 5]], trees=[TreeSpan([-1, 0], 2)])
    with pytest.raises(ValueError, match="runs past the tree's 2 nodes"):
        m.forward(kv, [[4, 5, 6]], trees=[TreeSpan([-1, 0], 3)])
    assert kv.length[0] == 3                               # nothing was appended


# -- greedy: exactly target-only greedy decoding ----------------------------------------------------

@pytest.fixture(scope="module")
def random_prompts():
    rng = np.random.default_rng(11)
    return [rng.integers(0, TINY_CONFIG.vocab_size, rng.integers(1, 10)) for _ in range(40)]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_greedy_tree_decoding_is_target_greedy_on_random_models(seed, shape, random_prompts):
    """4 shapes x 2 random models x 40 prompts (320 prompt decodes)."""
    m = MoEModel(TINY_CONFIG, random_weights(TINY_CONFIG, seed=seed))
    reference = target_greedy(m, random_prompts, 10)
    result = elastic_sd(m, random_prompts, 10, make_policy("resident"),
                        SDConfig(capacity=2, tree=shape))
    assert all(np.array_equal(a, b) for a, b in zip(reference, result.tokens))
    s = result.summary()
    assert s["accepted"] > 0 and s["verified"] > s["tokens"] - len(random_prompts)


def _trained(variant):
    return load_checkpoint(model_dir(variant))[0]


@pytest.mark.parametrize("variant, shape", [
    (VARIANTS[0], "static:4,2,1"),
    pytest.param(VARIANTS[1], "dynamic:nodes=16,depth=6,k=4,width=6", marks=pytest.mark.slow)])
def test_greedy_tree_decoding_is_target_greedy_on_the_trained_models(variant, shape):
    """40 held-out prompts on a shipped model (the standard one in the default suite, with the
    random models above over 200 prompts; the slow tests add the elastic one and run 200 per model
    and shape)."""
    m = _trained(variant)
    prompts = heldout_prompts(np.random.default_rng(3), 40, 8, 24)
    reference = target_greedy(m, prompts, 5)
    result = elastic_sd(m, prompts, 5, make_policy("resident"), SDConfig(capacity=8, tree=shape))
    assert all(np.array_equal(a, b) for a, b in zip(reference, result.tokens))


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", ["static:4,2,1", "static:2,2,2,2", "static:8,1,1",
                                   "dynamic:nodes=32,depth=8,k=4,width=8"])
def test_greedy_tree_decoding_is_target_greedy_over_200_prompts(variant, shape):
    m = _trained(variant)
    prompts = heldout_prompts(np.random.default_rng(4), 200, 8, 48)
    reference = target_greedy(m, prompts, 12)
    result = elastic_sd(m, prompts, 12, make_policy("resident"),
                        SDConfig(capacity=8, tree=shape))
    assert all(np.array_equal(a, b) for a, b in zip(reference, result.tokens))


def test_a_chain_shape_is_the_chain(random_prompts):
    """The static shape 1,1,1,1 decodes and accepts exactly like a chain of 4 drafts."""
    m = MoEModel(TINY_CONFIG, random_weights(TINY_CONFIG, seed=1))
    chain = elastic_sd(m, random_prompts, 10, make_policy("resident"), SDConfig(capacity=2))
    tree = elastic_sd(m, random_prompts, 10, make_policy("resident"),
                      SDConfig(capacity=2, tree="static:1,1,1,1"))
    assert [s.accept_lengths for s in chain.steps] == [s.accept_lengths for s in tree.steps]
    assert chain.summary() == tree.summary()


def test_greedy_acceptance_follows_the_target_argmax():
    # root 0 -> nodes 1 (token 5), 2 (token 7); node 2 -> 3 (token 1), 4 (token 2)
    tokens, parents = [9, 5, 7, 1, 2], [-1, 0, 0, 2, 2]
    logits = np.zeros((5, 10))
    logits[0, 7] = logits[2, 2] = logits[4, 6] = 1.0
    assert accept_tree_greedy(tokens, parents, logits) == ([2, 4], 6)
    logits[0] = 0
    logits[0, 3] = 1
    assert accept_tree_greedy(tokens, parents, logits) == ([], 3)


def test_accepting_a_wrong_path_would_not_be_lossless(random_prompts, monkeypatch):
    """The losslessness tests can fail: accepting the first child whatever the target says breaks
    equality with target greedy decoding."""
    m = MoEModel(TINY_CONFIG, random_weights(TINY_CONFIG, seed=1))
    reference = target_greedy(m, random_prompts, 10)

    def first_child(tokens, parents, logits):
        kids = [j for j, p in enumerate(parents) if p == 0]
        return [kids[0]], int(np.argmax(logits[kids[0]]))
    monkeypatch.setattr(decoding, "accept_tree_greedy", first_child)
    result = elastic_sd(m, random_prompts, 10, make_policy("resident"),
                        SDConfig(capacity=2, tree="static:3,2"))
    assert not all(np.array_equal(a, b) for a, b in zip(reference, result.tokens))


def test_step_records_carry_the_tree(random_prompts):
    m = MoEModel(TINY_CONFIG, random_weights(TINY_CONFIG, seed=1))
    recorder = StepRecorder()
    elastic_sd(m, random_prompts[:6], 6, make_policy("resident"),
               SDConfig(capacity=2, tree="static:3,2"), recorder=recorder)
    for step in recorder.steps:
        assert step.gamma == 2 and len(step.draft_passes) == 2
        sizes = [len(step.trees[b][0]) for b in step.sequences]
        assert all(n == 10 for n in sizes)                       # root + 3 + 6
        layer = step.layers[0]
        assert len(step.target_routes[layer]) == sum(sizes)
        assert len(step.draft_routes[0][layer]) == len(step.sequences)       # the roots
        assert len(step.draft_routes[1][layer]) == 3 * len(step.sequences)   # depth 1
        assert step.proposed == 9 * len(step.sequences)
        for b, n in zip(step.sequences, step.accepted):
            assert 0 <= n <= 2


# -- sampling: the target's law ------------------------------------------------------------------------

P = np.array([0.30, 0.05, 0.25, 0.10, 0.22, 0.08])
Q = np.array([0.10, 0.30, 0.20, 0.25, 0.05, 0.10])


def _first_tokens(rule, n, children, seed):
    rng = np.random.default_rng(seed)
    counts, accepted = np.zeros(len(P)), 0
    for _ in range(n):
        kids = _draw_without_replacement(Q, children, rng)
        tokens, parents = [0] + kids, [-1] + [0] * len(kids)
        path, nxt = rule(tokens, parents, [Q] + [None] * len(kids), [P] * len(tokens), rng)
        counts[tokens[path[0]] if path else nxt] += 1
        accepted += bool(path)
    return counts, accepted / n


@pytest.mark.parametrize("children", [1, 3, 6])
def test_recursive_rejection_without_replacement_emits_the_target_law(children):
    counts, accepted = _first_tokens(accept_tree_sampling, 20000, children, 7)
    assert chi_square_p(counts, P)[2] > ALPHA
    # one child: the chain's min(1, p/q) rule; every token a child: something is always accepted
    assert 0.3 < accepted < 1.0 if children < len(P) else accepted == 1.0


def test_the_with_replacement_rule_on_trees_without_replacement_fails_the_test():
    counts, _ = _first_tokens(accept_tree_sampling_iid, 20000, 3, 7)
    assert chi_square_p(counts, P)[2] < ALPHA


def test_a_rule_that_skips_the_residual_fails_the_test():
    counts, _ = _first_tokens(_no_residual, 20000, 3, 7)
    assert chi_square_p(counts, P)[2] < ALPHA


def test_drawing_without_replacement_has_the_sequential_law():
    """Gumbel top-2 ordering: the first draw follows q, the second q without the first."""
    rng = np.random.default_rng(3)
    n = 20000
    first, second_after_0 = np.zeros(6), np.zeros(6)
    for _ in range(n):
        a, b = _draw_without_replacement(Q, 2, rng)
        first[a] += 1
        if a == 1:
            second_after_0[b] += 1
    assert chi_square_p(first, Q)[2] > ALPHA
    rest = Q.copy()
    rest[1] = 0
    assert chi_square_p(second_after_0, rest / rest.sum())[2] > ALPHA
    assert _draw_without_replacement(np.array([0.5, 0.0, 0.5]), 3, rng) in ([0, 2], [2, 0])


VOCAB = 16


@pytest.fixture(scope="module")
def small_vocab():
    config = dataclasses.replace(TINY_CONFIG, vocab_size=VOCAB, name="tiny-16")
    return MoEModel(config, random_weights(config, seed=4, logit_scale=1.5))


def _pair_table(model, prompt):
    f = lambda seqs: np.array([model.forward(model.new_cache(1, 8), [s], last_only=True)
                               .logits[0][-1] for s in seqs])
    p1 = softmax(f([prompt]))[0]
    p2 = softmax(f([np.append(prompt, a) for a in range(VOCAB)]))
    return p1[:, None] * p2


def _no_residual(tokens, parents, draft_probs, target_probs, rng):
    """A wrong rule: when every child is rejected, sample the target itself instead of the
    residual ``norm(max(p - q, 0))``."""
    kids = [[j for j, p in enumerate(parents) if p == node] for node in range(len(parents))]
    node, path = 0, []
    while True:
        p, q = np.asarray(target_probs[node]), draft_probs[node]
        nxt = next((c for c in kids[node] if rng.random() * q[tokens[c]] < p[tokens[c]]), None)
        if nxt is None:
            return path, int(rng.choice(len(p), p=p / p.sum()))
        path.append(nxt)
        node = nxt


# Slow (20 s of CPU for the pair of 6000-sequence decodes): the default suite checks the rule alone
# against the target law above, and the with-replacement and no-residual rules failing that test.
@pytest.mark.slow
@pytest.mark.parametrize("shape, wrong", [
    ("static:3,2", True), ("dynamic:nodes=5,depth=2,k=3,width=3", False)])
def test_tree_sampling_end_to_end_keeps_the_target_law(small_vocab, shape, wrong, monkeypatch):
    """6000 sequences of one prompt at temperature 1: the law of the tree step's first token
    (after the prefill's) matches the target's exact marginal; a rule that skips the residual
    fails the same test."""
    prompt = np.array([3, 7, 1])
    n = 6000
    sd = SDConfig(capacity=2, temperature=1.0, draft_bits="truncation", tree=shape)
    marginal = _pair_table(small_vocab, prompt).sum(axis=0)

    def p_value():
        result = elastic_sd(small_vocab, [prompt] * n, 2, make_policy("resident"), sd,
                            rng=np.random.default_rng(99))
        second = np.array(result.tokens)[:, 1]
        stat, df, p = chi_square_p(np.bincount(second, minlength=VOCAB), marginal)
        assert df >= 8
        return p, result.summary()["acceptance_rate"]

    p, rate = p_value()
    assert p > ALPHA and 0.05 < rate < 0.95
    if wrong:
        monkeypatch.setattr(decoding, "accept_tree_sampling", _no_residual)
        assert p_value()[0] < ALPHA


# -- shapes and bad input -------------------------------------------------------------------------------

def test_shapes_parse_and_count_their_nodes():
    assert parse_tree("chain") is None
    s = parse_tree("static:4,2,1")
    assert (s.nodes, s.depth, s.spec) == (4 + 8 + 8, 3, "static:4,2,1")
    d = parse_tree("dynamic:nodes=16")
    assert (d.nodes, d.depth, d.k, d.width) == (16, 8, 4, 16)
    assert parse_tree(d.spec) == d
    assert parse_tree("static:1,1,1").is_chain
    assert SDConfig(tree="static:3,2").verify_tokens == 10
    assert SDConfig(gamma=5).verify_tokens == 6


def test_dynamic_trees_stay_within_their_budget(random_prompts):
    m = MoEModel(TINY_CONFIG, random_weights(TINY_CONFIG, seed=2))
    recorder = StepRecorder()
    elastic_sd(m, random_prompts[:8], 8, make_policy("resident"),
               SDConfig(capacity=2, tree="dynamic:nodes=7,depth=4,k=3,width=3"),
               recorder=recorder)
    for step in recorder.steps:
        for tokens, parents in step.trees.values():
            depth = TreeSpan(parents, 0).depth
            assert len(tokens) - 1 == 7 and depth.max() <= 4
            assert max(np.bincount(depth)[1:]) <= 3
            for node in range(len(tokens)):
                kids = [tokens[j] for j, p in enumerate(parents) if p == node]
                assert len(kids) <= 3 and len(set(kids)) == len(kids)


@pytest.mark.parametrize("spec, levels", [
    ("static:3,2,1", (1, 3, 6, 6)),
    ("dynamic:nodes=7,depth=4,k=3,width=3", (1, 3, 3, 1)),
    ("dynamic:nodes=9,depth=2,k=2,width=8", (1, 2, 4)),
    ("dynamic:nodes=12,depth=5,k=3,width=4", (1, 3, 4, 4, 1)),
])
def test_the_levels_of_a_shape_are_those_the_draft_grows(random_prompts, spec, levels):
    """``TreeShape.levels`` (what the performance model's draft passes carry) is fixed by the
    shape: every recorded tree has exactly those nodes per depth."""
    assert parse_tree(spec).levels == levels
    m = MoEModel(TINY_CONFIG, random_weights(TINY_CONFIG, seed=4))
    recorder = StepRecorder()
    elastic_sd(m, random_prompts[:4], 6, make_policy("resident"), SDConfig(capacity=2, tree=spec),
               recorder=recorder)
    for step in recorder.steps:
        for tokens, parents in step.trees.values():
            assert tuple(np.bincount(TreeSpan(parents, 0).depth)) == levels


@pytest.mark.parametrize("spec, message", [
    ("static:0", r"tree.widths\[1\] \(children per node at depth 1\) must be a positive integer"),
    ("static:2,0,1", r"tree.widths\[2\]"),
    ("static:", "static widths must be comma-separated integers"),
    ("static:16,16", f"tree.widths 16,16 make 272 draft nodes, more than the {TREE_LIMIT}"),
    ("dynamic:nodes=0", "tree.nodes must be a positive integer, not 0"),
    ("dynamic:nodes=4,depth=6", r"tree.depth \(6\) cannot exceed tree.nodes \(4\)"),
    ("dynamic:nodes=300", f"tree.nodes is 300, more than the {TREE_LIMIT}"),
    ("dynamic:nodes=8,k=0", "tree.k must be a positive integer"),
    ("dynamic:nodes=8,width=x", "tree.width must be an integer, not 'x'"),
    ("dynamic:depth=3", "dynamic needs nodes="),
    ("dynamic:nodes=8,fan=2", "dynamic takes nodes=, depth=, k=, width="),
    ("bush:3", "tree must be 'chain'"),
])
def test_bad_shapes_are_named_before_decoding(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_tree(spec)
    with pytest.raises(ValueError, match=message):
        SDConfig(tree=spec)
    with pytest.raises(PolicyError, match=message):
        apply_policy_sets(DEFAULT_POLICY, [f'tree="{spec}"'])


def test_the_policy_names_the_tree():
    policy = apply_policy_sets(DEFAULT_POLICY, ['tree="static:4,2,1"'])
    assert policy.tree == "static:4,2,1" and "tree static:4,2,1" in policy.describe()
    assert DEFAULT_POLICY.tree == "chain"
    with pytest.raises(ValueError, match="a static tree needs at least one depth"):
        TreeShape("static", widths=())


def test_a_verification_pass_too_large_for_a_part_is_refused_before_decoding():
    """The scheduler's bound: every token of the pass might pick one expert, whose job must fit
    one part; the error names the shape field and the most tokens that fit."""
    from sim.top.e2e import e2e_machine, run_end_to_end
    from sw_model.compiler.scheduler import check_pass_fits, max_job_rows
    from sw_model.compiler.weight_layout import WeightLayout
    m = MoEModel(TINY_CONFIG, random_weights(TINY_CONFIG, seed=1))
    params = e2e_machine(TINY_CONFIG, 2, 4)
    layout = WeightLayout(TINY_CONFIG, params)
    most = max_job_rows(layout)
    check_pass_fits(layout, 1, most)
    with pytest.raises(ValueError, match=f"decoding.tree: a verification pass of 1 sequences x "
                                         f"{most + 1} tokens"):
        check_pass_fits(layout, 1, most + 1)
    batch = most // 256 + 1                          # 255 draft nodes: 256 tokens a sequence
    calls = []
    m.observer = calls.append
    with pytest.raises(ValueError, match=f"at most {most // batch} tokens per sequence "
                                         f"\\({most // batch - 1} draft nodes\\) at batch {batch}"):
        run_end_to_end(m, [("elastic_sd", batch, 1)], pes=2, capacity=4, params=params,
                       tree="static:15,16")
    assert not calls                                 # refused before any decoding
