"""The decoders' expert cache played by the cache controller's golden model: Elastic-SD stays
lossless, the next resident set is the controller's SELECT, the recorded request trace replays on a
fresh golden model and on the RTL (Amaranth simulator) with identical responses, bad inputs are
named."""

import logging

import numpy as np
import pytest

from hw.params import CacheOp, CachePolicy, CacheStatus, SelectScope
from sim.expert_cache.ops import compare_responses
from sw_model.decode.cache_bridge import ControllerExpertCache, controller_params
from sw_model.decode.decoding import (LRUExpertCache, SDConfig, cached_decode, decode, elastic_sd,
                                      make_cache, target_greedy)
from sw_model.decode.draft_policies import POLICY_NAMES, make_policy
from sw_model.golden.expert_cache import ExpertCacheModel, replay
from sw_model.model.moe import TINY_CONFIG, TINY_VARIANT_CONFIG, MoEModel, random_weights
from sim.amaranth_streams import PRESSURE
from sim.expert_cache.ops import run_in_amaranth

PROMPTS = 40
TINY_SEED = 11
PROMPT_SEED = 77
PROMPT_TOKENS = 12
NEW = 6


def ops(cache):
    return [CacheOp(r.op) for r in cache.requests]


class WatchedController(ControllerExpertCache):
    """Records each SELECT round's picks, the counters SELECT saw, and the chosen sets."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rounds = []

    def select_by_counts(self, picks):
        chosen = super().select_by_counts(picks)
        counts = {l: self.model.counts(i) for i, l in enumerate(self.layers)}
        self.rounds.append((picks, counts, chosen))
        return chosen


def controller_rule(counts, capacity):
    """The controller's SELECT written independently: per layer the ``capacity`` most counted
    experts with a non-zero count, ties to the lower id."""
    return sorted(sorted((e for e in range(len(counts)) if counts[e] > 0),
                         key=lambda e: (-counts[e], e))[:capacity])


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_elastic_sd_with_the_controller_is_lossless(tiny, prompts, reference, policy):
    cache = WatchedController(TINY_CONFIG, 4, policy="FREQUENCY")
    result = elastic_sd(tiny, prompts, NEW, make_policy(policy), SDConfig(capacity=4),
                        cache=cache)
    assert all(np.array_equal(a, r) for a, r in zip(result.tokens, reference))
    s = result.summary()
    assert 0.2 < s["acceptance_rate"] < 0.95 and s["hits"] > 0
    # the start set and (frequency-set policies) every step's set came from the controller
    rounds = 1 + (len(result.steps) if policy != "specmoe" else 0)
    assert len(cache.rounds) == rounds
    assert ops(cache).count(CacheOp.SELECT) == ops(cache).count(CacheOp.RESET_COUNTS) == rounds
    for picks, counts, chosen in cache.rounds:
        for i, layer in enumerate(cache.layers):
            rows = picks[layer]
            assert np.array_equal(counts[layer],
                                  np.bincount(rows[rows >= 0], minlength=TINY_CONFIG.num_experts))
            assert chosen[layer] == controller_rule(counts[layer], 4)
            assert len(chosen[layer]) >= TINY_CONFIG.top_k
    assert {CacheStatus(b.status) for b in cache.responses} <= {
        CacheStatus.OK, CacheStatus.HIT, CacheStatus.MISS}


def test_next_set_is_installed_before_verification_and_resident_after(tiny, prompts):
    """Each step's SELECT picks are resident after the step; the step's HB writes are the keys the
    SELECT installed (the decoders' byte accounting sees them)."""
    cache = WatchedController(TINY_CONFIG, 4, policy="FREQUENCY")
    result = elastic_sd(tiny, prompts[:12], NEW, make_policy("resident"), SDConfig(capacity=4),
                        cache=cache)
    for layer, experts in cache.rounds[-1][2].items():
        assert set(experts) <= cache.resident(layer)
    installs = sum(1 for t in cache.trace if t.request.op == CacheOp.SELECT
                   for b in t.responses if not b.last and b.status is CacheStatus.OK)
    msb_s = tiny.expert_weights // 2 + tiny.expert_scale_bytes
    step_writes = sum(s.hb_write_bytes for s in result.steps) // msb_s
    first_round = sum(1 for b in next(t for t in cache.trace if t.request.op == CacheOp.SELECT)
                      .responses if not b.last and b.status is CacheStatus.OK)
    assert step_writes == installs - first_round > 0


def test_the_controller_rule_wins_over_frequency_set():
    """A tie between a resident expert and a lower-id absent one: frequency_set keeps the
    resident one, the controller takes the lower id; zero-count experts are not picked and stay."""
    cache = ControllerExpertCache(TINY_CONFIG, 2, policy="FREQUENCY")
    cache.select(0, [5, 6])
    chosen = cache.select_by_counts({0: np.array([[6, 2]]), 1: np.array([[1, 3]])})
    assert chosen == {0: [2, 6], 1: [1, 3]}
    assert cache.resident(0) == {2, 6} and cache.resident(1) == {1, 3}
    assert cache.select(0, [2, 6]) == ([2], [5])          # the changes SELECT made
    assert cache.select(0, [2, 6]) == ([], [])            # reported once
    # a layer with fewer counted experts than its quota keeps unpicked keys resident
    chosen = cache.select_by_counts({0: np.array([[0, -1]]), 1: np.array([[1, 3]])})
    assert chosen[0] == [0] and cache.resident(0) >= {0}
    assert sum(len(cache.resident(l)) for l in cache.layers) <= cache.params.slots


def test_elastic_sd_on_an_lru_controller_installs_frequency_sets(tiny, prompts, reference):
    """With the LRU policy the controller offers no SELECT-based sets: the policy picks
    frequency_set and select() installs it with PIN / INSTALL / UNPIN; still lossless, each layer
    holds exactly the chosen set, nothing stays pinned."""
    cache = ControllerExpertCache(TINY_CONFIG, 3, policy="LRU")
    assert not hasattr(cache, "frequency_select")
    policy = make_policy("resident")
    seen = []
    original = policy.next_resident

    def recording(layer, counts, cache):
        chosen = original(layer, counts, cache)
        seen.append((layer, chosen))
        return chosen

    policy.next_resident = recording
    result = elastic_sd(tiny, prompts, NEW, policy, SDConfig(capacity=3), cache=cache)
    assert all(np.array_equal(a, r) for a, r in zip(result.tokens, reference))
    assert len(seen) == 2 * len(result.steps)
    for layer, chosen in seen[-2:]:
        assert cache.resident(layer) == set(chosen)
    requests = ops(cache)
    assert CacheOp.SELECT not in requests and CacheOp.COUNT not in requests
    assert requests.count(CacheOp.PIN) == requests.count(CacheOp.UNPIN) > 0
    assert not cache.model.pinned()
    assert sum(s.hb_write_bytes for s in result.steps) > 0


def test_cached_decoding_with_the_controller(tiny, prompts, reference):
    cache = make_cache(None, TINY_CONFIG, 4, "cached")
    assert isinstance(cache, ControllerExpertCache) and cache.params.policy is CachePolicy.LRU
    result = cached_decode(tiny, prompts[:3], NEW, cache=cache)
    assert all(np.array_equal(a, r) for a, r in zip(result.tokens, reference[:3]))
    s = result.summary()
    requests = ops(cache)
    lookups = requests.count(CacheOp.LOOKUP)
    total_hits = s["hits"] + result.prefill.hits
    total_misses = s["misses"] + result.prefill.misses
    assert lookups == total_hits + total_misses
    assert requests.count(CacheOp.INSTALL) == total_misses
    assert set(requests) == {CacheOp.LOOKUP, CacheOp.INSTALL} and s["hits"] > 0
    assert isinstance(make_cache("lru", TINY_CONFIG, 4, "elastic_sd"), LRUExpertCache)


@pytest.mark.parametrize("batch, mode, policy", [(2, "cached", CachePolicy.LRU),
                                                 (4, "elastic_sd", CachePolicy.FREQUENCY)])
def test_decode_uses_the_controller_by_default(tiny, prompts, reference, monkeypatch, batch, mode,
                                               policy):
    """Below the batch threshold decode() runs cached decoding on an LRU controller, at it
    Elastic-SD on a FREQUENCY controller; either way every access goes through the controller's
    requests, and the tokens are the target's."""
    made = []

    class Recorded(ControllerExpertCache):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr("sw_model.decode.cache_bridge.ControllerExpertCache", Recorded)
    result = decode(tiny, prompts[:batch], 3, make_policy("resident"),
                    SDConfig(capacity=4, threshold=4))
    assert [c.params.policy for c in made] == [policy]
    assert result.summary()["mode"] == mode
    assert all(np.array_equal(a, r[:3]) for a, r in zip(result.tokens, reference[:batch]))
    lookups = ops(made[0]).count(CacheOp.LOOKUP)
    assert lookups > 0 and (mode != "cached" or lookups == sum(
        s.hits + s.misses for s in [result.prefill, *result.steps]))


def test_moe_layers_after_dense_layers_are_mapped(prompts):
    model = MoEModel(TINY_VARIANT_CONFIG, random_weights(TINY_VARIANT_CONFIG, seed=12))
    assert TINY_VARIANT_CONFIG.moe_layers == [1, 2]
    cache = ControllerExpertCache(TINY_VARIANT_CONFIG, 4, policy="FREQUENCY")
    assert cache.params.layers == 2 and cache.params.slots == 8
    result = elastic_sd(model, prompts[:8], 4, make_policy("resident"), SDConfig(capacity=4),
                        cache=cache)
    reference = target_greedy(model, prompts[:8], 4)
    assert all(np.array_equal(a, r) for a, r in zip(result.tokens, reference))
    assert {r.layer for r in cache.requests if r.op == CacheOp.COUNT} == {0, 1}
    assert all(len(cache.resident(l)) >= TINY_VARIANT_CONFIG.top_k for l in (1, 2))
    assert replay(ExpertCacheModel(cache.params), cache.requests) == cache.responses


def short_traces(tiny, prompts):
    """Controller traces of short decodes: cached (LRU), Elastic-SD with the controller's SELECT
    (FREQUENCY), and Elastic-SD on an LRU controller (sets from frequency_set, installed by
    select(): PIN / INSTALL / UNPIN)."""
    traces = {"cached": ControllerExpertCache(TINY_CONFIG, 4, policy="LRU"),
              "elastic_sd": ControllerExpertCache(TINY_CONFIG, 4, policy="FREQUENCY"),
              "elastic_sd_lru": ControllerExpertCache(TINY_CONFIG, 3, policy="LRU")}
    cached_decode(tiny, prompts[:3], 8, cache=traces["cached"])
    # draft length 3: enough steps in 6 tokens that each trace holds 100 requests or more
    elastic_sd(tiny, prompts[:6], 6, make_policy("resident"), SDConfig(gamma=3, capacity=4),
               cache=traces["elastic_sd"])
    elastic_sd(tiny, prompts[:6], 6, make_policy("resident"), SDConfig(gamma=3, capacity=3),
               cache=traces["elastic_sd_lru"])
    return traces


@pytest.fixture(scope="module")
def traces(tiny, prompts):
    return short_traces(tiny, prompts)


@pytest.mark.parametrize("mode", ["cached", "elastic_sd", "elastic_sd_lru"])
def test_trace_replays_on_a_fresh_golden_model(traces, mode):
    cache = traces[mode]
    assert replay(ExpertCacheModel(cache.params), cache.requests) == cache.responses
    assert len({r.tag for r in cache.requests}) == len(cache.requests)   # tags tell them apart


@pytest.mark.parametrize("pressure", PRESSURE)
@pytest.mark.parametrize("mode", ["cached", "elastic_sd", "elastic_sd_lru"])
def test_trace_replays_on_the_rtl(traces, mode, pressure):
    """The requests a short decode issued, run through the RTL: every response beat identical."""
    cache = traces[mode]
    assert len(cache.requests) >= 100
    got = run_in_amaranth(cache.params, cache.requests, 3, *PRESSURE[pressure])
    assert compare_responses(got, cache.responses) == len(cache.responses)


def test_top_up_when_a_select_leaves_a_layer_short():
    """Direct mapped: both layers' picks share sets, layer 0 gets NO_ROOM for both; the adapter
    tops it up to top_k with PIN/INSTALL/UNPIN, and the trace still replays."""
    cache = ControllerExpertCache(TINY_CONFIG, 4, policy="FREQUENCY", ways=1)
    picks = {0: np.array([[0, 1]] * 2), 1: np.array([[0, 1]] * 3)}
    chosen = cache.select_by_counts(picks)
    select = next(t for t in cache.trace if t.request.op == CacheOp.SELECT)
    assert [b.status for b in select.responses[:-1]] == [
        CacheStatus.OK, CacheStatus.OK, CacheStatus.NO_ROOM, CacheStatus.NO_ROOM]
    assert chosen == {0: [2, 3], 1: [0, 1]}
    assert cache.resident(0) == {2, 3} and cache.resident(1) == {0, 1}
    assert not cache.model.pinned()
    assert CacheOp.PIN in ops(cache) and CacheOp.UNPIN in ops(cache)
    assert replay(ExpertCacheModel(cache.params), cache.requests) == cache.responses


def test_counters_do_not_saturate_by_default_and_warn_when_they_could(caplog):
    assert controller_params(TINY_CONFIG, 4).counter_width == 16
    cache = ControllerExpertCache(TINY_CONFIG, 2, policy="FREQUENCY", counter_width=2)
    with caplog.at_level(logging.WARNING, logger="sw_model.decode.cache_bridge"):
        cache.select_by_counts({0: np.array([[0, 1]] * 5), 1: np.array([[2, 3]])})
    assert "2-bit counters may saturate" in caplog.text
    assert cache.model.counts(0)[:2] == (3, 3)


def test_params_follow_the_model():
    p = controller_params(TINY_CONFIG, 3, policy="FREQUENCY")
    assert (p.slots, p.ways, p.layers, p.experts, p.select_capacity) == (6, 6, 2, 8, 3)
    assert p.select_scope is SelectScope.PER_LAYER and p.policy is CachePolicy.FREQUENCY


@pytest.mark.parametrize("call, error, message", [
    (lambda: ControllerExpertCache(TINY_CONFIG, 1), ValueError,
     r"capacity \(1 experts per layer\) must hold at least top_k \(2\)"),
    (lambda: ControllerExpertCache(TINY_CONFIG, 9), ValueError,
     r"capacity \(9 experts per layer\) exceeds the 8 experts"),
    (lambda: ControllerExpertCache(TINY_CONFIG, 4, ways=3), ValueError, "multiple of ways"),
    (lambda: ControllerExpertCache(TINY_CONFIG, 4, policy="FIFO"), ValueError, "policy"),
    (lambda: ControllerExpertCache(TINY_VARIANT_CONFIG, 4).access(0, 1), ValueError,
     r"layer 0 is not an MoE layer of the model \(MoE layers: \[1, 2\]\)"),
    (lambda: ControllerExpertCache(TINY_CONFIG, 4).access(1, 8), ValueError,
     r"expert 8 of layer 1 is outside 0..7"),
    (lambda: ControllerExpertCache(TINY_CONFIG, 4).resident(5), ValueError,
     "layer 5 is not an MoE layer"),
    (lambda: ControllerExpertCache(TINY_CONFIG, 2).select(0, [0, 1, 2]), ValueError,
     "layer 0: 3 experts selected for 2 slots"),
    (lambda: ControllerExpertCache(TINY_CONFIG, 2).select_by_counts({0: np.array([[0, 1]])}),
     ValueError, "needs the FREQUENCY policy"),
    (lambda: ControllerExpertCache(TINY_CONFIG, 2, "FREQUENCY").select_by_counts(
        {7: np.array([[0, 1]])}), ValueError, "layer 7 is not an MoE layer"),
    (lambda: ControllerExpertCache(TINY_CONFIG, 2, "FREQUENCY").select_by_counts(
        {0: np.array([[0, 8]])}), ValueError, r"layer 0: expert ids outside 0..7"),
    (lambda: make_cache("fifo", TINY_CONFIG, 4, "cached"), ValueError,
     "cache model must be one of controller, lru"),
])
def test_bad_inputs_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_bad_inputs_leave_no_trace():
    cache = ControllerExpertCache(TINY_CONFIG, 2, "FREQUENCY")
    cache.access(0, 1)
    before = (list(cache.trace), cache.model.snapshot())
    for call in (lambda: cache.access(3, 0), lambda: cache.select(1, [0, 1, 2]),
                 lambda: cache.select_by_counts({0: np.array([[9, 0]])})):
        with pytest.raises(ValueError):
            call()
    assert (cache.trace, cache.model.snapshot()) == before
