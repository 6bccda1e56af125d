"""The golden MoE model records its routing in the routing-trace format that the cache studies
replay (``build.py sd --save-routing`` -> ``build.py bench cache --trace``)."""

import numpy as np
import pytest

from sim.expert_cache.bench import recorded_hit_rates
from sw_model.decode.decoding import record_routing
from sw_model.model.moe import TINY_CONFIG
from sw_model.model.routing_traces import load_routing_trace

PROMPTS = 5
TINY_SEED = 5
PROMPT_SEED = 31
PROMPT_TOKENS = 8


def test_recorded_routing_is_each_sequences_own(tiny, prompts):
    """Every sequence's slice of the batch's trace is what the model routes that sequence to when
    it decodes alone: rows are not mixed up between sequences, steps or layers."""
    new = 6
    trace = record_routing(tiny, prompts, new)
    layers = TINY_CONFIG.moe_layers
    assert trace.experts.shape == (new - 1, len(prompts), len(layers), TINY_CONFIG.top_k)
    assert trace.num_experts == TINY_CONFIG.num_experts
    for b, prompt in enumerate(prompts):
        alone = record_routing(tiny, [prompt], new)
        assert np.array_equal(trace.experts[:, b], alone.experts[:, 0]), b
    # and independently of the recorder: a forward pass of the first decoded token
    kv = tiny.new_cache(1, len(prompts[0]) + new)
    first = int(np.argmax(tiny.forward(kv, [prompts[0]], last_only=True).logits[0][-1]))
    res = tiny.forward(kv, [[first]])
    for i, layer in enumerate(layers):
        assert np.array_equal(trace.experts[0, 0, i], res.routes[layer].experts[0])


def test_recorded_trace_round_trips_and_replays(tiny, prompts, tmp_path):
    trace = record_routing(tiny, prompts, 9)
    path = trace.save(tmp_path / "routing.npz")
    loaded = load_routing_trace(path)
    assert np.array_equal(loaded.experts, trace.experts)
    assert loaded.num_experts == trace.num_experts
    rates, warmup = recorded_hit_rates(loaded)
    assert warmup == 2                       # a quarter of 8 steps
    for policy in ("lru", "frequency"):
        values = [rates[policy][c] for c in ("10%", "25%", "50%")]
        assert all(0 <= v <= 1 for v in values)
    assert rates["lru"]["50%"] > 0           # half the experts resident: some reuse must hit


def test_record_routing_needs_a_decode_step(tiny, prompts):
    with pytest.raises(ValueError, match="max_new must be at least 2"):
        record_routing(tiny, prompts, 1)
