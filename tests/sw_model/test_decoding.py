"""Decoding: Elastic-SD is lossless against target-only greedy decoding for every draft policy and
draft-bit policy; cached decoding is the target; per-step statistics add up."""


import numpy as np
import pytest

import sw_model.decode.decoding as decoding
from sw_model.golden.mac_array import DRAFT_METHODS
from sw_model.decode.decoding import (LRUExpertCache, SDConfig, cached_decode, decode, elastic_sd,
                                      target_greedy)
from sw_model.decode.draft_policies import POLICY_NAMES, frequency_set, make_policy
from sw_model.model.moe import TINY_CONFIG, TINY_VARIANT_CONFIG, MoEModel, random_weights

PROMPTS = 200
TINY_SEED = 11
PROMPT_SEED = 2024
PROMPT_TOKENS = 12
NEW = 8


@pytest.mark.parametrize("bits", DRAFT_METHODS)
@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_elastic_sd_greedy_is_lossless(tiny, prompts, reference, policy, bits):
    sd = SDConfig(gamma=3, capacity=4, draft_bits=bits)
    result = elastic_sd(tiny, prompts, NEW, make_policy(policy), sd)
    mismatched = [b for b, (a, r) in enumerate(zip(result.tokens, reference))
                  if not np.array_equal(a, r)]
    assert not mismatched, f"{len(mismatched)} of {PROMPTS} prompts differ, first {mismatched[0]}"
    summary = result.summary()
    # both verification outcomes occur, so the equality above is not vacuous
    assert 0.2 < summary["acceptance_rate"] < 0.95
    assert summary["mean_accepted_length"] > 1.5


#: DeepSeek-V3-like routing (sigmoid, selection bias, groups, scaling), a dense first layer, a shared
#: expert, and Qwen2-like attention biases: every optional path of the model.

@pytest.fixture(scope="module")
def variant(prompts):
    model = MoEModel(TINY_VARIANT_CONFIG, random_weights(TINY_VARIANT_CONFIG, seed=12))
    return model, target_greedy(model, prompts[:100], NEW)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_elastic_sd_is_lossless_on_a_deepseek_like_variant(variant, prompts, policy):
    model, reference = variant
    result = elastic_sd(model, prompts[:100], NEW, make_policy(policy), SDConfig(capacity=4))
    assert all(np.array_equal(a, r) for a, r in zip(result.tokens, reference))
    assert 0.2 < result.summary()["acceptance_rate"] < 0.95


def test_accepting_every_draft_would_not_be_lossless(tiny, prompts, reference, monkeypatch):
    """The lossless check can fail: with verification disabled the output changes."""
    monkeypatch.setattr(decoding, "accept_greedy",
                        lambda drafts, logits: (len(drafts), int(np.argmax(logits[-1]))))
    result = elastic_sd(tiny, prompts, NEW, make_policy("resident"), SDConfig(capacity=4))
    differ = sum(not np.array_equal(a, r) for a, r in zip(result.tokens, reference))
    assert differ > PROMPTS // 4


def test_gamma_one_and_long_drafts_are_lossless(tiny, prompts, reference):
    for gamma in (1, 6):
        result = elastic_sd(tiny, prompts[:50], NEW, make_policy("resident"),
                            SDConfig(gamma=gamma, capacity=3))
        assert all(np.array_equal(a, r) for a, r in zip(result.tokens, reference[:50])), gamma


def test_cached_decoding_is_the_target(tiny, prompts, reference):
    result = cached_decode(tiny, prompts[:20], NEW, capacity=6)
    assert all(np.array_equal(a, r) for a, r in zip(result.tokens, reference[:20]))
    # at a small batch (where cached decoding runs) the LRU cache hits; at 20 it thrashes
    result = cached_decode(tiny, prompts[:2], NEW, capacity=6)
    assert all(np.array_equal(a, r) for a, r in zip(result.tokens, reference[:2]))
    s = result.summary()
    assert s["hits"] > 0 and s["misses"] > 0
    assert s["mean_accepted_length"] == 1.0 and s["acceptance_rate"] is None


def test_threshold_selects_the_mode(tiny, prompts):
    sd = SDConfig(threshold=4, capacity=4)
    assert decode(tiny, prompts[:3], 4, make_policy("resident"), sd).steps[0].mode == "cached"
    assert decode(tiny, prompts[:4], 4, make_policy("resident"), sd).steps[0].mode == "elastic_sd"


def _bytes(model):
    w, s = model.expert_weights, model.expert_scale_bytes
    return w // 2 + s, w // 2, w + s


def test_cached_step_byte_accounting(tiny, prompts):
    """A cached step: hits read MSB + scales from HB and LSB from LPDDR, misses all 8 bits and scales
    from LPDDR; the dense weights come from HB once per pass."""
    result = cached_decode(tiny, prompts[:5], 4, capacity=5)
    msb_s, lsb, full_s = _bytes(tiny)
    for s in result.steps:
        assert s.hits + s.misses == sum(s.loads["target"])
        assert s.hb_expert_bytes == s.hits * msb_s
        assert s.lpddr_bytes == s.hits * lsb + s.misses * full_s
        assert s.hb_dense_bytes == tiny.dense_bytes
        assert all(t <= TINY_CONFIG.num_experts for t in s.touched["target"])


class RecordingCache(LRUExpertCache):
    """The LRU cache, recording each select call (the frequency set Elastic-SD installs)."""

    def __init__(self, capacity):
        super().__init__(capacity)
        self.log = []

    def select(self, layer, experts):
        self.log.append((layer, sorted(experts), sorted(self.resident(layer))))
        return super().select(layer, experts)


def test_elastic_sd_step_accounting(tiny, prompts):
    """Draft reads only resident experts' upper nibbles from HB; verification splits resident
    experts and reads the others from LPDDR; the installed set is the draft's most frequent experts,
    chosen before verification; its fills are written to HB (piggy-backed on misses)."""
    cache = RecordingCache(4)
    result = elastic_sd(tiny, prompts[:30], NEW, make_policy("resident"), SDConfig(capacity=4),
                        cache=cache)
    msb_s, lsb, full_s = _bytes(tiny)
    n_layers = len(result.layers)
    for s in result.steps:
        assert s.lpddr_bytes >= s.hits * lsb + s.misses * full_s
        draft_bytes = s.hb_expert_bytes - s.hits * msb_s
        assert draft_bytes == sum(s.loads["draft"]) * msb_s      # every draft read is from HB
        assert all(t <= 4 for t in s.touched["draft"])            # only resident experts drafted
        fills = s.hb_write_bytes // msb_s
        assert s.hb_write_bytes == fills * msb_s
        assert s.lpddr_bytes - s.hits * lsb - s.misses * full_s <= fills * msb_s
        assert s.proposed == SDConfig().gamma * s.sequences and 0 <= s.accepted <= s.proposed
        assert s.emitted <= s.accepted + s.sequences               # the tail past NEW is dropped
        assert s.hb_dense_bytes == (SDConfig().gamma + 1) * tiny.dense_bytes   # drafts + verify
    assert len(cache.log) == n_layers * (1 + len(result.steps))  # start + one per step
    assert result.prefill.emitted + sum(s.emitted for s in result.steps) == 30 * NEW


def test_next_resident_set_is_the_draft_frequency_set(tiny, prompts):
    """Each step's counts are the draft router's top-k picks (gamma tokens x sequences x k per
    layer), the installed set is their frequency set, and the set does move."""
    policy = make_policy("resident")
    seen = []
    original = policy.next_resident

    def recording(layer, counts, cache):
        chosen = original(layer, counts, cache)
        seen.append((layer, counts.copy(), sorted(cache.resident(layer)), chosen))
        return chosen

    policy.next_resident = recording
    cache = LRUExpertCache(4)
    result = elastic_sd(tiny, prompts[:30], NEW, policy, SDConfig(gamma=3, capacity=4),
                        cache=cache)
    per_step = iter(result.steps)
    for i in range(0, len(seen), 2):
        step = next(per_step)
        for layer, counts, current, chosen in seen[i:i + 2]:
            assert counts.sum() == 3 * step.sequences * TINY_CONFIG.top_k
            assert chosen == frequency_set(counts, 4, current)
    assert any(current != chosen for _, _, current, chosen in seen)
    assert sum(s.hb_write_bytes for s in result.steps) > 0


def test_frequency_set_ties():
    assert frequency_set([5, 0, 5, 1, 0], 2) == [0, 2]
    assert frequency_set([0, 0, 0, 0], 2, current=[3, 1]) == [1, 3]      # idle: keep the set
    assert frequency_set([1, 1, 0, 2], 2, current=[1]) == [1, 3]


def test_specmoe_substitutes_the_most_similar_pinned_expert(tiny, prompts):
    policy = make_policy("specmoe")
    cache = LRUExpertCache(3)
    counts = {l: np.arange(8)[::-1].copy() for l in TINY_CONFIG.moe_layers}
    policy.start(tiny, cache, counts)
    assert policy.pinned[0] == [0, 1, 2] and cache.resident(0) == {0, 1, 2}
    sim = policy.similarity[1]
    assert np.allclose(np.diag(sim), 1.0)
    for e in range(3, 8):
        assert policy.substitute(1, e) == [0, 1, 2][int(np.argmax(sim[e, :3]))]
    assert policy.next_resident(0, np.ones(8), cache) == [0, 1, 2]


@pytest.mark.parametrize("call, message", [
    (lambda m, p: elastic_sd(m, p, 4, make_policy("resident"), SDConfig(capacity=1)),
     r"capacity \(1 experts per layer\) must hold at least top_k \(2\)"),
    (lambda m, p: elastic_sd(m, [np.array([1, 99])], 4, make_policy("resident")),
     "prompt 0 holds token ids outside 0..63"),
    (lambda m, p: cached_decode(m, [np.array([], dtype=np.int64)], 4),
     "prompt 0 must be a non-empty 1-D array"),
    (lambda m, p: target_greedy(m, p, 0), "max_new must be a positive integer"),
    (lambda m, p: make_policy("oracle"), "draft policy must be one of"),
    (lambda m, p: SDConfig(gamma=0), "SDConfig.gamma must be a positive integer"),
    (lambda m, p: SDConfig(draft_bits="float"), "SDConfig.draft_bits must be one of"),
    (lambda m, p: SDConfig(temperature=-1.0), "SDConfig.temperature must be"),
    (lambda m, p: elastic_sd(m, p, 4, make_policy("elastic-k", 2)),
     r"k_draft \(2\) must be below the model's top_k \(2\)"),
])
def test_bad_requests_are_named(tiny, prompts, call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny, prompts[:4])


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_elastic_sd_is_lossless_on_the_default_model(policy):
    """The built-in default (a scaled-down Qwen3-MoE), 200 prompts of 4..24 tokens, 16 new tokens."""
    from sw_model.model.moe import DEFAULT_CONFIG
    model = MoEModel(DEFAULT_CONFIG, random_weights(DEFAULT_CONFIG, seed=0))
    rng = np.random.default_rng(5)
    prompts = [rng.integers(0, DEFAULT_CONFIG.vocab_size, rng.integers(4, 25)) for _ in range(200)]
    reference = target_greedy(model, prompts, 16)
    result = elastic_sd(model, prompts, 16, make_policy(policy), SDConfig(gamma=4, capacity=8))
    assert all(np.array_equal(a, r) for a, r in zip(result.tokens, reference))
    assert 0.1 < result.summary()["acceptance_rate"] < 0.95
