"""The golden MoE model: its arithmetic is the bit-nested MAC's, FULL is within a derived bound of
float64, split MSB+LSB equals FULL exactly, routing follows each model's rule, batching is invisible."""

import dataclasses

import numpy as np
import pytest

from hw.params import MacMode
from sw_model.golden.mac_array import DRAFT_METHODS, draft_weights, reference_group_sums
from sw_model.decode.decoding import LRUExpertCache
from sw_model.model.moe import (DEFAULT_CONFIG, TINY_CONFIG, MoEModel, PassPlan, Precision, QLinear,
                                random_weights, route_scores, top_k_route)
from sw_model.golden.quant import quantize_activations

TINY_SEED = 3

#: A model with every optional feature of the block under test: shared expert with a sigmoid gate.
SHARED = dataclasses.replace(TINY_CONFIG, shared_ffn=64, shared_gate=True, name="tiny-shared")


def test_group_sums_are_the_reference_mac_in_every_mode(rng):
    w = rng.standard_normal((96, 40))
    lin = QLinear(w)
    x = quantize_activations(rng.standard_normal((7, 96)) * 3)
    for mode in (MacMode.FULL, MacMode.MSB, MacMode.LSB, MacMode.DRAFT):
        got = lin.group_sums(x, mode).transpose(1, 0, 2)
        ref = reference_group_sums(x.codes, lin.quant.codes, mode, 32)
        assert np.array_equal(got, ref), mode
    for method in DRAFT_METHODS:
        got = lin.group_sums(x, MacMode.DRAFT, method).transpose(1, 0, 2)
        weff = draft_weights(lin.quant.codes, method)
        ref = np.einsum("tgk,gkn->tgn", x.codes.astype(np.int64).reshape(7, 3, 32),
                        weff.reshape(3, 32, 40))
        assert np.array_equal(got, ref), method


def test_large_layers_recompute_w_eff_with_the_same_result(rng, monkeypatch):
    lin = QLinear(rng.standard_normal((64, 48)))
    x = quantize_activations(rng.standard_normal((5, 64)))
    cached = {m: lin.group_sums(x, m) for m in MacMode}
    assert len(lin._cache) == len(MacMode)
    monkeypatch.setattr(QLinear, "CACHE_WEIGHTS", 0)
    big = QLinear(lin.quant.dequantize())      # same codes again: already on the grid
    assert np.array_equal(big.quant.codes, lin.quant.codes)
    for m in MacMode:
        assert np.array_equal(big.group_sums(x, m), cached[m])
    assert not big._cache


def test_group_sums_exact_at_the_extremes():
    """Worst case magnitudes: every activation -128 against every code -128 (the float32 products
    must still be exact integers)."""
    lin = QLinear(np.ones((64, 4)))
    lin.quant.codes[:] = -128
    x = quantize_activations(np.ones((1, 64)))
    x.codes[:] = -128
    sums = lin.group_sums(x, MacMode.FULL)
    assert np.array_equal(sums, np.full((2, 1, 4), 32 * 128 * 128))


def test_split_msb_plus_lsb_equals_full_exactly(tiny, rng):
    lin = tiny.layers[0]["experts"][1].gate
    x = quantize_activations(rng.standard_normal((9, 64)))
    full = lin.group_sums(x, MacMode.FULL)
    assert np.array_equal(lin.group_sums(x, MacMode.MSB) + lin.group_sums(x, MacMode.LSB), full)
    for e, ffn in enumerate(tiny.layers[1]["experts"]):
        assert np.array_equal(ffn(x, Precision.SPLIT), ffn(x, Precision.FULL)), e
    # a whole forward pass with every expert split gives bit-identical logits
    prompts = [rng.integers(0, 64, n) for n in (3, 5, 1)]
    a = tiny.forward(tiny.new_cache(3, 8), prompts)
    b = tiny.forward(tiny.new_cache(3, 8), prompts,
                     PassPlan(precision=lambda layer, e: Precision.SPLIT))
    for la, lb in zip(a.logits, b.logits):
        assert np.array_equal(la, lb)


def _linear_bound(x, lin):
    """|x @ w - (quantised x) @ (quantised w)| per output, x exact.

    With w = s_w q_w + dw and x = s_x q_x + dx: |dw| <= s_w / 2 (round to nearest; when the FP16
    scale rounds down and the code clips at 127, |dw| <= amax - 127 s_w <= 127 s_w 2**-11 / (1 -
    2**-11) < s_w / 2), |dx| <= s_x / 2 likewise. So |x w - x^ w^| <= sum_k |x_k| |dw_kn| +
    |w^_kn| |dx_k| <= sum_k |x_k| s_w[g(k), n] / 2 + |w^_kn| s_x / 2. The float part (group
    scaling in float64) adds at most ~G * 2**-53 relative; 1e-9 of sum |x^||w^| covers it.
    """
    s_w = np.repeat(lin.quant.scales.astype(np.float64), 32, axis=0)       # [K, N]
    w_hat = lin.quant.codes.astype(np.float64) * s_w
    s_x = quantize_activations(x).scales.astype(np.float64)[:, None]
    x_hat = quantize_activations(x).dequantize().astype(np.float64)
    return (np.abs(x) @ (s_w / 2) + (s_x / 2) * np.abs(w_hat).sum(axis=0)
            + 1e-9 * (np.abs(x_hat) @ np.abs(w_hat)))


def _ffn_bound(x, ffn):
    """Bound for one SwiGLU FFN at FULL versus float64, propagated from :func:`_linear_bound`.

    g, u exact (float64) vs g^, u^ (FULL): |g - g^| <= Eg, |u - u^| <= Eu. silu is L-Lipschitz with
    L = max |silu'| = 1.0998 < 1.1, so with a = silu(g) u: |a - a^| <= L Eg (|u^| + Eu) +
    |silu(g^)| Eu =: Ea. Down projection of the computed a^ (quantised again): |a W - Q(a^) W^| <=
    sum_k Ea_k |w_kn| + (the linear bound of a^ against W).
    """
    xq = quantize_activations(x)
    g, u = ffn.gate(xq), ffn.up(xq)
    eg, eu = _linear_bound(x, ffn.gate), _linear_bound(x, ffn.up)
    a_hat = g / (1 + np.exp(-g)) * u
    ea = 1.1 * eg * (np.abs(u) + eu) + np.abs(g / (1 + np.exp(-g))) * eu
    return ea @ np.abs(ffn.down.w) + _linear_bound(a_hat, ffn.down)


@pytest.mark.parametrize("config", [SHARED, DEFAULT_CONFIG], ids=lambda c: c.name)
def test_full_matches_float64_within_the_derived_bound(config, rng):
    """One MoE block (routed experts, and a gated shared expert if the model has one) at FULL against
    the same block in float64 with unquantised weights and activations, under the same routing."""
    model = MoEModel(config, random_weights(config, seed=5), keep_float=True)
    x = rng.standard_normal((40, config.hidden_size))
    scores, select = route_scores(config, x @ model.layers[0]["router"].w)
    route = top_k_route(config, scores, select)
    full = model.moe_block(0, x, route, Precision.FULL)
    ref = model.moe_block(0, x, route, Precision.REFERENCE)
    lay = model.layers[0]
    bound = np.zeros_like(x)
    for r in range(len(x)):
        for e, w in zip(route.experts[r], route.weights[r]):
            bound[r] += abs(w) * _ffn_bound(x[r:r + 1], lay["experts"][e])[0]
    if lay["shared"] is not None:
        # shared expert times sigmoid(gate): |s(z)y - s(z^)y^| <= |y^| Ez / 4 + (s(z^) + Ez / 4) Ey
        xq = quantize_activations(x)
        y_hat, z_hat = lay["shared"](xq), lay["shared_gate"](xq)
        ey, ez = _ffn_bound(x, lay["shared"]), _linear_bound(x, lay["shared_gate"])
        sig = 1 / (1 + np.exp(-z_hat))
        bound += np.abs(y_hat) * ez / 4 + (sig + ez / 4) * ey
    err = np.abs(full - ref)
    assert (err <= bound).all(), (err - bound).max()
    assert err.max() > 0                    # quantisation did happen
    # Worst case through two chained layers is loose (observed/bound ~ 1/100 here); the layer-level
    # test below shows the same bound is tight enough to separate INT8 from 4-bit arithmetic.


def test_linear_layer_error_is_what_the_quantisation_step_predicts(rng):
    """One quantised linear layer against float64: the worst-case bound holds, the RMS error equals
    the uniform-rounding prediction sqrt(sum x^2 s_w^2 / 12 + s_x^2 / 12 sum w^^2) within 25 %
    (seeded; 2560 outputs), and DRAFT arithmetic (a 16x coarser step) breaks the INT8 bound."""
    lin = QLinear(rng.standard_normal((128, 64)) / np.sqrt(128), keep_float=True)
    x = rng.standard_normal((40, 128))
    ref = x @ lin.w
    xq = quantize_activations(x)
    bound = _linear_bound(x, lin)
    err = np.abs(lin(xq, Precision.FULL) - ref)
    assert (err <= bound).all()
    s_w = np.repeat(lin.quant.scales.astype(np.float64), 32, axis=0)
    s_x = xq.scales.astype(np.float64)[:, None]
    w_hat = lin.quant.codes * s_w
    predicted = np.sqrt(((x ** 2) @ (s_w ** 2 / 12) + s_x ** 2 / 12 * (w_hat ** 2).sum(0)).mean())
    assert 0.75 < np.sqrt((err ** 2).mean()) / predicted < 1.25
    assert (np.abs(lin(xq, Precision.DRAFT) - ref) > bound).any()


def test_batched_ragged_forward_equals_one_sequence_at_a_time(tiny, rng):
    prompts = [rng.integers(0, 64, n) for n in (1, 7, 3, 12, 5)]
    batched = tiny.forward(tiny.new_cache(5, 16), prompts)
    for b, p in enumerate(prompts):
        alone = tiny.forward(tiny.new_cache(1, 16), [p])
        assert np.array_equal(alone.logits[0], batched.logits[b])
        cache = tiny.new_cache(1, 16)
        for j, t in enumerate(p):
            step = tiny.forward(cache, [[t]])
            assert np.array_equal(step.logits[0][0], batched.logits[b][j])


def test_kv_rollback_then_rewrite_gives_the_same_logits(tiny, rng):
    p = rng.integers(0, 64, 6)
    cache = tiny.new_cache(1, 16)
    tiny.forward(cache, [p[:3]])
    first = tiny.forward(cache, [p[3:]]).logits[0]
    cache.length[0] = 3
    tiny.forward(cache, [rng.integers(0, 64, 5)])          # a rejected speculation
    cache.length[0] = 3
    assert np.array_equal(tiny.forward(cache, [p[3:]]).logits[0], first)


ROUTING_CASES = [
    dict(scoring="softmax", norm_topk_prob=True),
    dict(scoring="softmax", norm_topk_prob=False, routed_scaling_factor=2.5),
    dict(scoring="softmax", norm_topk_prob=False, n_group=4, topk_group=2),
    dict(scoring="sigmoid", norm_topk_prob=True, score_bias=True, n_group=4, topk_group=2),
    dict(scoring="sigmoid", norm_topk_prob=False),
]


@pytest.mark.parametrize("case", ROUTING_CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_routing_rules_against_brute_force(case, rng):
    c = dataclasses.replace(TINY_CONFIG, top_k=3, **case)
    logits = rng.standard_normal((50, 8)) * 2
    bias = rng.standard_normal(8) * 0.1 if c.score_bias else None
    scores, select = route_scores(c, logits, bias)
    route = top_k_route(c, scores, select)
    for r in range(50):
        if c.scoring == "softmax":
            s = np.exp(logits[r]) / np.exp(logits[r]).sum()
            sel = s
        else:
            s = 1 / (1 + np.exp(-logits[r]))
            sel = s + (bias if bias is not None else 0)
        eligible = list(range(8))
        if c.n_group > 1:
            groups = sel.reshape(4, 2)
            g = groups.max(1) if c.scoring == "softmax" else np.sort(groups, 1)[:, -2:].sum(1)
            best = sorted(range(4), key=lambda i: -g[i])[:2]
            eligible = [e for e in eligible if e // 2 in best]
        chosen = sorted(eligible, key=lambda e: -sel[e])[:3]
        w = s[chosen] / (s[chosen].sum() if c.norm_topk_prob else 1) * c.routed_scaling_factor
        assert list(route.experts[r]) == chosen
        assert np.allclose(route.weights[r], w, rtol=1e-12)


def test_draft_routing_keeps_the_ranking_inside_the_resident_set(rng):
    c = dataclasses.replace(TINY_CONFIG, top_k=2)
    logits = rng.standard_normal((30, 8))
    scores, select = route_scores(c, logits)
    allowed = np.array([1, 0, 1, 1, 0, 0, 1, 0], bool)
    route = top_k_route(c, scores, select, allowed=allowed)
    for r in range(30):
        ranking = [e for e in np.argsort(-scores[r], kind="stable") if allowed[e]]
        assert list(route.experts[r]) == ranking[:2]


def test_default_model_is_a_scaled_qwen3():
    c = DEFAULT_CONFIG
    assert (c.num_heads // c.num_kv_heads, c.qk_norm, c.norm_topk_prob) == (4, "head", True)
    assert c.hidden_size == c.num_heads * c.head_dim


@pytest.mark.parametrize("change, message", [
    (dict(hidden_size=48), "hidden_size (48) must be a multiple of the quantisation group 32"),
    (dict(expert_ffn=40), "expert_ffn (40) must be a multiple"),
    (dict(top_k=9), "top_k (9) exceeds num_experts (8)"),
    (dict(num_kv_heads=3), "num_heads (4) must be a multiple of num_kv_heads (3)"),
    (dict(scoring="relu"), "scoring must be one of"),
    (dict(dense_layers=(5,)), "dense_layers holds 5"),
    (dict(num_layers=0), "num_layers must be a positive integer"),
    (dict(n_group=3), "n_group (3) must divide num_experts (8)"),
])
def test_bad_configs_are_named(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dataclasses.replace(TINY_CONFIG, **change)


def test_bad_weights_and_inputs_are_named(tiny):
    w = random_weights(TINY_CONFIG, seed=1)
    w.layers[1].experts[3].up = np.zeros((64, 32))
    with pytest.raises(ValueError, match=r"layers\.1\.experts\.3\.up must have shape \(64, 64\)"):
        MoEModel(TINY_CONFIG, w)
    w = random_weights(TINY_CONFIG, seed=1)
    w.layers[0].router = None
    with pytest.raises(ValueError, match=r"layers\.0\.router is missing"):
        MoEModel(TINY_CONFIG, w)
    cache = tiny.new_cache(2, 4)
    with pytest.raises(ValueError, match="beyond the KV cache capacity 4"):
        tiny.forward(cache, [[1, 2, 3], [1, 2, 3, 4, 5]])
    assert list(cache.length) == [0, 0]                       # nothing half-done
    with pytest.raises(ValueError, match="sequence 1 holds token ids outside 0..63"):
        tiny.forward(cache, [[1], [64]])
    with pytest.raises(ValueError, match="got 1 token chunks for a cache of batch 2"):
        tiny.forward(cache, [[1]])


def test_lru_cache_interface():
    cache = LRUExpertCache(2)
    assert [cache.access(0, e) for e in (1, 2, 1, 3, 2, 1)] == [False, False, True, False, False,
                                                               False]
    assert cache.resident(0) == {2, 1}
    assert cache.select(0, [3, 2]) == ([3], [1])
    assert cache.resident(0) == {2, 3} and cache.resident(1) == frozenset()
    with pytest.raises(ValueError, match="3 experts selected for 2 slots"):
        cache.select(0, [1, 2, 3])
    with pytest.raises(ValueError, match="capacity must be a positive integer"):
        LRUExpertCache(0)
