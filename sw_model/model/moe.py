"""The golden MoE language model: NumPy, every linear layer through the bit-nested number format.

Architecture (a decoder-only transformer as in Mixtral, Qwen2/3-MoE, OLMoE and DeepSeek-style MoE):
token embedding; per layer RMSNorm, grouped-query attention with rotary positions and a KV cache
(optional q/k RMSNorm per head or over the whole projection, optional q/k/v biases), RMSNorm, and
either a dense SwiGLU FFN or an MoE block (router, routed SwiGLU experts, optional shared experts
with an optional sigmoid gate); final RMSNorm and LM head.

The number format (docs/number-format.md) applies to **every** linear layer: weights are INT8 codes
with one FP16 scale per 32 reduction positions, activations INT8 with one scale per token. A layer
computes the integer group partial sums of ``x * w_eff`` (exactly what the MAC array computes), then
scales them in float64 by the FP16 group scale and the token scale. Routed and shared experts run at
the precision a pass asks for (:class:`Precision`): FULL (the INT8 target), SPLIT (the MSB partial
from HB plus the LSB partial from LPDDR, added as integers: identical to FULL), or DRAFT (a 4-bit
draft weight chosen by a draft-bit method of :func:`sw_model.golden.mac_array.draft_weights`).
Attention projections, router, dense FFNs and LM head always run FULL (the dense layers held in HB).

Batch invariance (why the code looks the way it does): a token's logits must not depend on which
other tokens share its pass, or greedy Elastic-SD could not equal target-only decoding token for
token. Integer group sums are exact whatever the summation order (each is an integer below 2**20,
so float32 matrix products of code values are exact); everything else is elementwise or a
*sequential* sum along one axis (:func:`seq_sum`), whose value cannot depend on the batch shape or
on trailing masked (zero) terms. pytest checks batched logits equal per-sequence logits bit for bit.
"""

from dataclasses import dataclass, replace
import enum
import logging
import weakref

import numpy as np

from hw.params import MacMode, ParamsRecord, QUANT_GROUP
from sw_model.golden import dequant
from sw_model.golden.mac_array import draft_weights, effective_weights
from sw_model.golden.quant import (QuantActivations, QuantWeights, quantize_activations,
                                   quantize_weights)

__all__ = ["MoEConfig", "Precision", "ExpertWeights", "LayerWeights", "ModelWeights",
           "QLinear", "QFFN", "KVCache", "MoEModel", "Route", "PassPlan", "ForwardResult", "TreeSpan",
           "random_weights", "layer_of", "MoECall", "ExpertCall",
           "seq_sum", "route_scores", "rope_frequencies", "as_qlinear", "DEFAULT_CONFIG", "TINY_CONFIG", "TINY_VARIANT_CONFIG",
           "linear_names"]

log = logging.getLogger(__name__)

SCORINGS = ("softmax", "sigmoid")
QK_NORMS = ("none", "head", "full")
ATTENTIONS = ("gqa", "mla")
ACTIVATIONS = ("silu", "clamped")
ROPE_TYPES = ("default", "linear", "yarn")
EXPERT_FORMATS = ("int8", "mxfp4")
#: RMSNorm epsilon of MLA's latent norms (q_a_layernorm, kv_a_layernorm): the reference
#: implementation builds them with its default, not the config's ``rms_norm_eps``.
LATENT_NORM_EPS = 1e-6


class Precision(enum.Enum):
    """How an expert's matrices are evaluated in one pass."""
    FULL = "full"          # INT8 target, 8 bits read at once (a miss: all from LPDDR)
    SPLIT = "split"        # INT8 target as MSB partial (HB) + LSB partial (LPDDR), integer sum
    DRAFT = "draft"        # 4-bit draft weights (method chosen per pass)
    REFERENCE = "float64"  # unquantised float64 weights and activations (the reference model)


def _positive_int(owner, name, value, zero_ok=False):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}.{name} must be an int, not {value!r}")
    if value < 0 or (value == 0 and not zero_ok):
        raise ValueError(f"{owner}.{name} must be a {'non-negative' if zero_ok else 'positive'} "
                         f"integer, not {value}")


@dataclass(frozen=True)
class MoEConfig(ParamsRecord):
    """Shape and routing rule of an MoE model.

    ``expert_ffn`` is the width of one routed expert; ``shared_ffn`` the total width of the shared
    expert(s) (0: none; several shared experts of width f are one SwiGLU of width n*f); layers in
    ``dense_layers`` have a dense SwiGLU FFN of width ``dense_ffn`` instead of an MoE block.
    Routing: ``scoring`` softmax (optionally renormalised over the top-k: ``norm_topk_prob``) or
    sigmoid (GLM/DeepSeek-V3 style, optional per-expert selection bias ``score_bias``); with
    ``n_group > 1`` only experts in the ``topk_group`` best groups are eligible (group score: the
    best expert for softmax, the sum of the best two for sigmoid). Selected weights are multiplied
    by ``routed_scaling_factor``.
    """
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    num_experts: int
    top_k: int
    expert_ffn: int
    # routing
    norm_topk_prob: bool = True
    scoring: str = "softmax"
    score_bias: bool = False
    n_group: int = 1
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    # shared and dense feed-forward layers
    shared_ffn: int = 0
    shared_gate: bool = False
    dense_layers: tuple = ()
    dense_ffn: int = 0
    # attention
    qk_norm: str = "none"
    attention_bias: bool = False
    rms_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_embeddings: bool = False
    name: str = "moe"
    # multi-head latent attention (DeepSeek-V2/V3)
    attention: str = "gqa"
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_dim: int = 0
    v_head_dim: int = 0
    # rotary positions
    rotary_dim: int = 0
    rope_interleave: bool = False
    rope_scaling: tuple = ()
    softmax_scale: float = 0.0
    # GPT-OSS: output bias, sliding window, sinks, router bias, clamped SwiGLU, expert biases
    o_bias: bool = False
    sliding_window: int = 0
    sliding_layers: tuple = ()
    attention_sinks: bool = False
    router_logit_bias: bool = False
    activation: str = "silu"
    swiglu_alpha: float = 1.702
    swiglu_limit: float = 7.0
    expert_bias: bool = False
    expert_format: str = "int8"

    def __post_init__(self):
        owner = type(self).__name__
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads",
                     "head_dim", "num_experts", "top_k", "expert_ffn", "n_group", "topk_group"):
            _positive_int(owner, name, getattr(self, name))
        for name in ("shared_ffn", "dense_ffn", "q_lora_rank", "kv_lora_rank", "qk_rope_dim",
                     "v_head_dim", "rotary_dim", "sliding_window"):
            _positive_int(owner, name, getattr(self, name), zero_ok=True)
        for name, allowed in (("attention", ATTENTIONS), ("activation", ACTIVATIONS),
                              ("expert_format", EXPERT_FORMATS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{owner}.{name} must be one of {allowed}, not "
                                 f"{getattr(self, name)!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"{owner}.num_heads ({self.num_heads}) must be a multiple of "
                             f"num_kv_heads ({self.num_kv_heads})")
        reductions = [("hidden_size", self.hidden_size), ("expert_ffn", self.expert_ffn),
                      ("shared_ffn", self.shared_ffn), ("dense_ffn", self.dense_ffn),
                      ("num_heads * v_head_dim", self.num_heads * self.value_dim)]
        if self.attention == "mla":
            if not self.kv_lora_rank or not self.qk_rope_dim:
                raise ValueError(f"{owner}: MLA needs kv_lora_rank and qk_rope_dim")
            if self.head_dim <= self.qk_rope_dim:
                raise ValueError(f"{owner}.head_dim ({self.head_dim}) must exceed qk_rope_dim "
                                 f"({self.qk_rope_dim}): it is qk_nope_dim + qk_rope_dim")
            reductions += [("q_lora_rank", self.q_lora_rank), ("kv_lora_rank", self.kv_lora_rank)]
        if self.rope_dim % 2 or not 0 < self.rope_dim <= self.head_dim:
            raise ValueError(f"{owner}: the rotary dims ({self.rope_dim}) must be even and within "
                             f"head_dim ({self.head_dim})")
        object.__setattr__(self, "rope_scaling", tuple(sorted(
            (str(k), v) for k, v in dict(self.rope_scaling).items())))
        if dict(self.rope_scaling).get("type", "default") not in ROPE_TYPES:
            raise ValueError(f"{owner}.rope_scaling type must be one of {ROPE_TYPES}, not "
                             f"{dict(self.rope_scaling).get('type')!r}")
        sliding = tuple(int(i) for i in self.sliding_layers)
        object.__setattr__(self, "sliding_layers", sliding)
        if sliding and not self.sliding_window:
            raise ValueError(f"{owner}.sliding_window must be positive when sliding_layers is set")
        if any(not 0 <= i < self.num_layers for i in sliding):
            raise ValueError(f"{owner}.sliding_layers {sliding} lie outside the layers")
        for name, size in reductions:
            if size % QUANT_GROUP:
                raise ValueError(f"{owner}.{name} ({size}) must be a multiple of the quantisation "
                                 f"group {QUANT_GROUP}: it is a reduction dimension")
        if self.top_k > self.num_experts:
            raise ValueError(f"{owner}.top_k ({self.top_k}) exceeds num_experts "
                             f"({self.num_experts})")
        if self.scoring not in SCORINGS:
            raise ValueError(f"{owner}.scoring must be one of {SCORINGS}, not {self.scoring!r}")
        if self.qk_norm not in QK_NORMS:
            raise ValueError(f"{owner}.qk_norm must be one of {QK_NORMS}, not {self.qk_norm!r}")
        if self.num_experts % self.n_group or self.topk_group > self.n_group:
            raise ValueError(f"{owner}: n_group ({self.n_group}) must divide num_experts "
                             f"({self.num_experts}) and be >= topk_group ({self.topk_group})")
        if self.n_group > 1 and self.topk_group * (self.num_experts // self.n_group) < self.top_k:
            raise ValueError(f"{owner}: topk_group ({self.topk_group}) groups of "
                             f"{self.num_experts // self.n_group} experts cannot hold top_k "
                             f"({self.top_k}) experts")
        dense = tuple(int(i) for i in self.dense_layers)
        object.__setattr__(self, "dense_layers", dense)
        for i in dense:
            if not 0 <= i < self.num_layers:
                raise ValueError(f"{owner}.dense_layers holds {i}, outside 0..{self.num_layers - 1}")
        if dense and not self.dense_ffn:
            raise ValueError(f"{owner}.dense_ffn must be positive when dense_layers is set")
        if self.shared_gate and not self.shared_ffn:
            raise ValueError(f"{owner}.shared_gate needs shared_ffn > 0")
        if not (self.rms_eps > 0 and self.rope_theta > 0 and self.routed_scaling_factor > 0):
            raise ValueError(f"{owner}: rms_eps, rope_theta and routed_scaling_factor must be "
                             f"positive")

    @property
    def moe_layers(self):
        return [i for i in range(self.num_layers) if i not in self.dense_layers]

    @property
    def value_dim(self):
        """Dims of one value head (``v_head_dim``, else ``head_dim``)."""
        return self.v_head_dim or self.head_dim

    @property
    def rope_dim(self):
        """Dims of a query/key head that rotate."""
        if self.attention == "mla":
            return self.qk_rope_dim
        return self.rotary_dim or self.head_dim

    @property
    def kv_bytes_per_token(self):
        """Bytes of KV cache one token needs in one layer, FP16 entries, as the hardware holds
        them: GQA keys and values of the KV heads; MLA the compressed latent plus the shared
        rotary key (the per-head keys and values are re-expanded from it)."""
        if self.attention == "mla":
            return 2 * (self.kv_lora_rank + self.qk_rope_dim)
        return 2 * self.num_kv_heads * (self.head_dim + self.value_dim)

    @property
    def expert_weight_count(self):
        """Weights of one routed expert (gate, up and down)."""
        return 3 * self.hidden_size * self.expert_ffn

    def to_dict(self):
        d = super().to_dict()
        d["dense_layers"] = list(self.dense_layers)
        d["sliding_layers"] = list(self.sliding_layers)
        d["rope_scaling"] = dict(self.rope_scaling)
        return d

    def describe(self):
        if self.attention == "mla":
            attn = (f"MLA {self.num_heads} heads x {self.head_dim}/{self.value_dim}, kv rank "
                    f"{self.kv_lora_rank}" + (f", q rank {self.q_lora_rank}" if self.q_lora_rank
                                              else ""))
        else:
            attn = f"{self.num_heads}/{self.num_kv_heads} heads x {self.head_dim}"
        return (f"{self.name}: {self.num_layers} layers, hidden {self.hidden_size}, "
                f"{self.num_experts} experts x ffn {self.expert_ffn}, top-{self.top_k}, "
                f"{attn}, vocab {self.vocab_size}")


#: The built-in default: Qwen3-30B-A3B (48 layers, hidden 2048, 128 experts x 768, top-8, 32/4
#: heads x 128, per-head q/k norm, renormalised softmax top-k, vocab 151936) scaled down: layers / 12,
#: hidden / 8, experts / 4 with top-k / 2 (a token activates 1/8 of the experts instead of 1/16, so
#: a small batch still leaves experts untouched), expert width / 8, heads / 4 (GQA ratio 4 kept),
#: head dim / 4, vocab 512.
DEFAULT_CONFIG = MoEConfig(vocab_size=512, hidden_size=256, num_layers=4, num_heads=8,
                           num_kv_heads=2, head_dim=32, num_experts=32, top_k=4, expert_ffn=96,
                           norm_topk_prob=True, qk_norm="head", rms_eps=1e-6,
                           rope_theta=1e6, name="qwen3-moe-scaled")

#: The smallest useful model, for tests: fast enough to decode hundreds of prompts.
TINY_CONFIG = MoEConfig(vocab_size=64, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                        head_dim=16, num_experts=8, top_k=2, expert_ffn=64, name="tiny")

#: The tiny model with every architectural option the golden model has switched on (sigmoid
#: scoring with a bias, group-limited routing, scaling, shared and dense FFNs, biases, full q/k
#: norm), for tests.
TINY_VARIANT_CONFIG = replace(TINY_CONFIG, num_layers=3, scoring="sigmoid", score_bias=True,
                              n_group=4, topk_group=2, routed_scaling_factor=2.0, shared_ffn=32,
                              dense_layers=(0,), dense_ffn=64, attention_bias=True,
                              qk_norm="full", name="tiny-variant")


# -- weights -----------------------------------------------------------------------------------------

@dataclass
class ExpertWeights:
    """One SwiGLU FFN, reduction axis first: ``gate``, ``up`` [hidden, ffn]; ``down`` [ffn, hidden]
    (each a float array or an already quantised :class:`QLinear`); optional biases."""
    gate: np.ndarray
    up: np.ndarray
    down: np.ndarray
    gate_bias: np.ndarray = None
    up_bias: np.ndarray = None
    down_bias: np.ndarray = None


@dataclass
class LayerWeights:
    """Weights of one decoder layer, reduction axis first (``x @ w``): float arrays, or for the
    matrices already quantised :class:`QLinear` (a loader quantises as it reads). GQA uses ``q``
    (or MLA without a query LoRA), ``k``, ``v``; MLA ``q_a``/``q_a_norm``/``q_b`` (with a query
    LoRA), ``kv_a`` [hidden, kv_lora_rank + qk_rope_dim], ``kv_a_norm``, ``kv_b`` [kv_lora_rank,
    heads * (qk_nope_dim + v_head_dim)]."""
    attn_norm: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    o: np.ndarray
    ffn_norm: np.ndarray
    q_a: np.ndarray = None
    q_a_norm: np.ndarray = None
    q_b: np.ndarray = None
    kv_a: np.ndarray = None
    kv_a_norm: np.ndarray = None
    kv_b: np.ndarray = None
    o_bias: np.ndarray = None
    sinks: np.ndarray = None             # [heads]
    router_logit_bias: np.ndarray = None  # [experts]
    q_bias: np.ndarray = None
    k_bias: np.ndarray = None
    v_bias: np.ndarray = None
    q_norm: np.ndarray = None
    k_norm: np.ndarray = None
    router: np.ndarray = None            # [hidden, experts]
    router_bias: np.ndarray = None       # [experts]: selection-only bias (score_bias)
    experts: list = None                 # ExpertWeights per routed expert
    shared: ExpertWeights = None
    shared_gate: np.ndarray = None       # [hidden, 1]
    dense: ExpertWeights = None


@dataclass
class ModelWeights:
    embed: np.ndarray                    # [vocab, hidden]
    layers: list
    final_norm: np.ndarray
    lm_head: np.ndarray                  # [hidden, vocab]


def linear_names(config, layer):
    """Shapes every tensor of ``layer`` must have, as ``{name: shape}`` (names as in
    :class:`LayerWeights`, experts as ``experts.<e>.<gate|up|down>[_bias]``)."""
    c = config
    h, kd = c.hidden_size, c.num_kv_heads * c.head_dim
    qd, vd = c.num_heads * c.head_dim, c.num_heads * c.value_dim
    shapes = {"attn_norm": (h,), "ffn_norm": (h,)}
    if c.attention == "mla":
        if c.q_lora_rank:
            shapes.update(q_a=(h, c.q_lora_rank), q_a_norm=(c.q_lora_rank,),
                          q_b=(c.q_lora_rank, qd))
        else:
            shapes["q"] = (h, qd)
        nope = c.head_dim - c.qk_rope_dim
        shapes.update(kv_a=(h, c.kv_lora_rank + c.qk_rope_dim), kv_a_norm=(c.kv_lora_rank,),
                      kv_b=(c.kv_lora_rank, c.num_heads * (nope + c.value_dim)), o=(vd, h))
    else:
        kvd = c.num_kv_heads * c.value_dim
        shapes.update(q=(h, qd), k=(h, kd), v=(h, kvd), o=(vd, h))
        if c.attention_bias:
            shapes.update(q_bias=(qd,), k_bias=(kd,), v_bias=(kvd,))
    if c.o_bias:
        shapes["o_bias"] = (h,)
    if c.attention_sinks:
        shapes["sinks"] = (c.num_heads,)
    if c.qk_norm == "head":
        shapes.update(q_norm=(c.head_dim,), k_norm=(c.head_dim,))
    elif c.qk_norm == "full":
        shapes.update(q_norm=(qd,), k_norm=(kd,))

    def ffn(prefix, f, bias=False):
        out = {f"{prefix}.gate": (h, f), f"{prefix}.up": (h, f), f"{prefix}.down": (f, h)}
        if bias:
            out.update({f"{prefix}.gate_bias": (f,), f"{prefix}.up_bias": (f,),
                        f"{prefix}.down_bias": (h,)})
        return out
    if layer in c.dense_layers:
        shapes.update(ffn("dense", c.dense_ffn))
        return shapes
    shapes["router"] = (h, c.num_experts)
    if c.router_logit_bias:
        shapes["router_logit_bias"] = (c.num_experts,)
    if c.score_bias:
        shapes["router_bias"] = (c.num_experts,)
    for e in range(c.num_experts):
        shapes.update(ffn(f"experts.{e}", c.expert_ffn, c.expert_bias))
    if c.shared_ffn:
        shapes.update(ffn("shared", c.shared_ffn))
        if c.shared_gate:
            shapes["shared_gate"] = (h, 1)
    return shapes


def _get(layer_weights, name):
    parts = name.split(".")
    if parts[0] == "experts":
        return getattr(layer_weights.experts[int(parts[1])], parts[2])
    obj = getattr(layer_weights, parts[0])
    return getattr(obj, parts[1]) if len(parts) > 1 else obj


def check_weights(config, weights, layers=True):
    """Raise ``ValueError`` naming the first tensor that is missing or has the wrong shape
    (``layers=False``: only the embedding, final norm, LM head and the layer count)."""
    c = config
    expect = {"embed": (c.vocab_size, c.hidden_size), "final_norm": (c.hidden_size,),
              "lm_head": (c.hidden_size, c.vocab_size)}
    for name, shape in expect.items():
        value = getattr(weights, name)
        if value is None or _shape(value) != shape:
            raise ValueError(f"tensor {name} must have shape {shape}, got "
                             f"{None if value is None else _shape(value)}")
    if len(weights.layers) != c.num_layers:
        raise ValueError(f"weights hold {len(weights.layers)} layers, config says {c.num_layers}")
    if layers:
        for i, lw in enumerate(weights.layers):
            check_layer(config, i, lw)


def _shape(value):
    return value.shape if isinstance(value, QLinear) else np.shape(value)


def check_layer(config, i, lw):
    """Raise ``ValueError`` naming the first tensor of layer ``i`` that is missing or misshapen."""
    c = config
    if lw.experts is not None and i not in c.dense_layers and len(lw.experts) != c.num_experts:
        raise ValueError(f"layer {i} holds {len(lw.experts)} experts, config says "
                         f"{c.num_experts}")
    for name, shape in linear_names(c, i).items():
        try:
            value = _get(lw, name)
        except (AttributeError, TypeError, IndexError):
            value = None
        if value is None:
            raise ValueError(f"tensor layers.{i}.{name} is missing")
        if _shape(value) != shape:
            raise ValueError(f"tensor layers.{i}.{name} must have shape {shape}, got "
                             f"{_shape(value)}")
        if not isinstance(value, QLinear) and not np.isfinite(value).all():
            raise ValueError(f"tensor layers.{i}.{name} holds non-finite values")


def random_weights(config, seed=0, logit_scale=4.0, residual_scale=0.5):
    """Seeded random float weights for ``config``.

    Linear weights are N(0, 1/fan_in); every residual branch's output projection is further scaled
    by ``residual_scale / sqrt(layers)`` so the residual stream stays O(1); the LM head is scaled so
    logits have a standard deviation near ``logit_scale`` (peaked enough for drafts to agree often).
    """
    c = config
    rng = np.random.default_rng(seed)
    h = c.hidden_size
    branch = residual_scale / np.sqrt(c.num_layers)
    lin = lambda k, n, s=1.0: rng.standard_normal((k, n)) * (s / np.sqrt(k))
    norm = lambda n: 1.0 + 0.1 * rng.standard_normal(n)
    layers = []
    for i in range(c.num_layers):
        values = {}
        shapes = linear_names(c, i)
        first = [n for n in _DRAW_FIRST if n in shapes]
        for name in first + [n for n in shapes if n not in first]:
            shape = shapes[name]
            last = name.rsplit(".", 1)[-1]
            if last in ("attn_norm", "ffn_norm", "q_norm", "k_norm", "q_a_norm", "kv_a_norm"):
                values[name] = norm(shape[0])
            elif name == "router":
                values[name] = lin(*shape, 2.0)
            elif name == "router_bias":
                values[name] = 0.05 * rng.standard_normal(shape)
            elif name == "sinks":
                values[name] = rng.standard_normal(shape)
            elif len(shape) == 1:
                values[name] = 0.1 * rng.standard_normal(shape)
            else:
                values[name] = lin(*shape, branch if last in ("o", "down") else 1.0)
        layers.append(layer_of(c, i, values))
    embed = rng.standard_normal((c.vocab_size, h))
    lm_head = embed.T.copy() if c.tie_embeddings else lin(h, c.vocab_size, logit_scale)
    if c.tie_embeddings:
        lm_head *= logit_scale / np.sqrt(h)
        embed = lm_head.T.copy()
    return ModelWeights(embed=embed, layers=layers, final_norm=norm(h), lm_head=lm_head)


#: The order random_weights draws a layer's first tensors in (fixed: seeded weights must not change).
_DRAW_FIRST = ("attn_norm", "q", "k", "v", "o", "ffn_norm", "q_bias", "k_bias", "v_bias", "q_norm",
               "k_norm")


def layer_of(config, i, values):
    """A :class:`LayerWeights` from ``{name: value}`` named as :func:`linear_names` names them."""
    ffn = lambda prefix: ExpertWeights(*(values.get(f"{prefix}.{p}") for p in (
        "gate", "up", "down", "gate_bias", "up_bias", "down_bias")))
    plain = {k: v for k, v in values.items() if "." not in k}
    lw = LayerWeights(**{"q": None, "k": None, "v": None, **plain})
    if i in config.dense_layers:
        lw.dense = ffn("dense")
    else:
        lw.experts = [ffn(f"experts.{e}") for e in range(config.num_experts)]
        if config.shared_ffn:
            lw.shared = ffn("shared")
    return lw


# -- arithmetic -------------------------------------------------------------------------------------

def rope_frequencies(config):
    """``(inv_freq, factor)`` of ``config``'s rotary embedding: the inverse frequency of each
    rotating pair and the factor cos and sin are multiplied by (YaRN's attention factor, else 1),
    for plain, ``linear`` (frequencies divided by ``factor``) and ``yarn`` scaling as the
    reference implementation (transformers' ``modeling_rope_utils``) computes them."""
    c = config
    d, base = c.rope_dim, c.rope_theta
    inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    params = dict(c.rope_scaling)
    kind = params.get("type", "default")
    if kind == "default":
        return inv, 1.0
    factor = float(params["factor"])
    if kind == "linear":
        return inv / factor, 1.0
    mscale = lambda scale, m=1.0: 1.0 if scale <= 1 else 0.1 * m * np.log(scale) + 1.0
    attention = params.get("attention_factor")
    if attention is None:
        m, m_all = params.get("mscale"), params.get("mscale_all_dim")
        attention = (mscale(factor, m) / mscale(factor, m_all) if m and m_all
                     else mscale(factor))
    fast, slow = params.get("beta_fast") or 32, params.get("beta_slow") or 1
    original = params["original_max_position_embeddings"]
    dim_of = lambda rotations: (d * np.log(original / (rotations * 2 * np.pi))) / (2 * np.log(base))
    low, high = dim_of(fast), dim_of(slow)
    if params.get("truncate", True):
        low, high = np.floor(low), np.ceil(high)
    low, high = max(low, 0), min(high, d - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(d // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    extrapolate = 1 - ramp
    inv = (inv / factor) * (1 - extrapolate) + inv * extrapolate
    return inv, float(attention)


def seq_sum(a, axis=-1):
    """Sum along ``axis`` strictly left to right (a running sum's last element).

    Unlike ``np.sum`` (pairwise, blocked) its value depends only on the summed values in order, not
    on the array's other dimensions, and trailing zeros leave it unchanged.
    """
    a = np.asarray(a)
    if a.shape[axis] == 0:
        return np.zeros(np.delete(a.shape, axis % a.ndim), dtype=a.dtype)
    return np.take(np.cumsum(a, axis=axis), -1, axis=axis)


def sigmoid(x):
    """Overflow-free logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def rms_norm(x, weight, eps):
    return x / np.sqrt(seq_sum(x * x) / x.shape[-1] + eps)[..., None] * weight


def softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.expand_dims(seq_sum(e, axis), axis)


#: Bytes of float32 ``w_eff`` all :class:`QLinear` caches hold together.
_CACHED = [0]


def _release_cache(held):
    _CACHED[0] -= held[0]


class QLinear:
    """A linear layer ``y = x @ w (+ bias)`` in the number format of docs/number-format.md.

    ``w`` [in, out] is quantised on construction to INT8 codes with FP16 scales per group of
    :data:`QUANT_GROUP` inputs; the float weights are kept only for :attr:`Precision.REFERENCE`.
    """

    def __init__(self, w, bias=None, keep_float=False, name="linear"):
        self.name = name
        self.k, self.n = np.shape(w)
        if keep_float:
            w = np.asarray(w, dtype=np.float64)
        # Quantised in column blocks of about QUANT_CHUNK weights, so a large matrix (an LM head,
        # a memory-mapped tensor) never exists as a whole float64 copy.
        step = max(1, self.QUANT_CHUNK // max(self.k, 1))
        parts = [quantize_weights(np.asarray(w[:, j:j + step], dtype=np.float64), QUANT_GROUP)
                 for j in range(0, self.n, step)]
        self.quant = parts[0] if len(parts) == 1 else QuantWeights(
            codes=np.concatenate([q.codes for q in parts], axis=1),
            scales=np.concatenate([q.scales for q in parts], axis=1), group=QUANT_GROUP)
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float64)
        self.w = w if keep_float else None
        self.groups = self.k // QUANT_GROUP
        self._cache = {}
        self._held = [0]
        weakref.finalize(self, _release_cache, self._held)

    #: Weights quantised at once (the float64 working set of one step: 32 MiB).
    QUANT_CHUNK = 1 << 22
    #: Layers with at most this many weights keep their float32 ``w_eff`` per mode (fast small
    #: models) while all such caches together stay under :data:`CACHE_BYTES`; larger ones recompute
    #: it per call, so a checkpoint costs ~1 byte per weight plus a fixed allowance.
    CACHE_WEIGHTS = 1 << 18
    CACHE_BYTES = 256 << 20

    @property
    def shape(self):
        return (self.k, self.n)

    def effective(self, mac_mode, draft_method="augmented"):
        """``w_eff`` of the codes in ``mac_mode`` as float32 ``[G, group, N]`` (exact integers)."""
        key = (mac_mode, draft_method if mac_mode is MacMode.DRAFT else None)
        w = self._cache.get(key)
        if w is None:
            q = self.quant.codes
            eff = (draft_weights(q, draft_method) if mac_mode is MacMode.DRAFT
                   else effective_weights(q, mac_mode))
            w = eff.astype(np.float32).reshape(self.groups, QUANT_GROUP, self.n)
            if (self.k * self.n <= self.CACHE_WEIGHTS
                    and _CACHED[0] + w.nbytes <= self.CACHE_BYTES):
                self._cache[key] = w
                self._held[0] += w.nbytes
                _CACHED[0] += w.nbytes
        return w

    def group_sums(self, xq, mac_mode, draft_method="augmented"):
        """Integer group partial sums ``[G, tokens, N]`` of activation codes times ``w_eff``.

        Every product and partial sum is an integer of magnitude below 2**20 < 2**24, so float32
        matrix products are exact in any summation order (the BLAS may block as it likes).
        """
        codes = xq.codes.astype(np.float32).reshape(-1, self.groups, QUANT_GROUP)
        codes = np.ascontiguousarray(codes.transpose(1, 0, 2))     # BLAS wants contiguous stacks
        return np.matmul(codes, self.effective(mac_mode, draft_method))

    def __call__(self, x, precision=Precision.FULL, draft_method="augmented"):
        """``x``: a :class:`QuantActivations` (or a float array for REFERENCE / to be quantised)."""
        if precision is Precision.REFERENCE:
            if self.w is None:
                raise ValueError(f"{self.name} was built without float weights (keep_float)")
            x = x.dequantize() if isinstance(x, QuantActivations) else np.asarray(x, np.float64)
            y = np.asarray(x, np.float64) @ self.w
            return y if self.bias is None else y + self.bias
        if not isinstance(x, QuantActivations):
            x = quantize_activations(x)
        if precision is Precision.FULL:
            sums = self.group_sums(x, MacMode.FULL)
        elif precision is Precision.SPLIT:
            # Two separate partials, as HB (MSB) and LPDDR (LSB) deliver them, added as integers.
            sums = self.group_sums(x, MacMode.MSB) + self.group_sums(x, MacMode.LSB)
        elif precision is Precision.DRAFT:
            sums = self.group_sums(x, MacMode.DRAFT, draft_method)
        else:
            raise ValueError(f"precision must be a Precision, not {precision!r}")
        return self.scale(sums, x.scales)

    def scale(self, sums, token_scales):
        """The PE's dequantising arithmetic (:mod:`sw_model.golden.dequant`): binary32
        ``sum_g sums[g] * group_scale[g]`` (sequential over g, one rounding per operation), times
        the token scale; the bias (if any) is added on the host in float64."""
        y = dequant.dequantize(sums, self.quant.scales, token_scales).astype(np.float64)
        return y if self.bias is None else y + self.bias

    @property
    def nbytes_int8(self):
        return self.k * self.n

    @property
    def nbytes_scales(self):
        return 2 * self.groups * self.n


def as_qlinear(w, bias=None, keep_float=False, name="linear"):
    """``w`` as a :class:`QLinear` (already one: kept, with ``bias`` attached if given)."""
    if isinstance(w, QLinear):
        if bias is not None:
            w.bias = np.asarray(bias, dtype=np.float64)
        return w
    return QLinear(w, bias, keep_float, name)


class QFFN:
    """A gated FFN (an expert, a shared expert or a dense FFN) of three :class:`QLinear`:
    SwiGLU (``activation`` silu) or GPT-OSS's clamped form (``clamped``, with ``alpha`` and
    ``limit``); biases if the weights carry them."""

    def __init__(self, weights, keep_float=False, name="ffn", activation="silu", alpha=1.702,
                 limit=7.0):
        self.gate = as_qlinear(weights.gate, weights.gate_bias, keep_float, f"{name}.gate")
        self.up = as_qlinear(weights.up, weights.up_bias, keep_float, f"{name}.up")
        self.down = as_qlinear(weights.down, weights.down_bias, keep_float, f"{name}.down")
        self.name = name
        self.activation, self.alpha, self.limit = activation, alpha, limit

    def __call__(self, xq, precision=Precision.FULL, draft_method="augmented", hidden=None):
        """``hidden``: a list that receives the down projection's quantised input, if given."""
        h = self.activate(self.gate(xq, precision, draft_method),
                          self.up(xq, precision, draft_method))
        if precision is not Precision.REFERENCE:
            h = quantize_activations(h)
            if hidden is not None:
                hidden.append(h)
        return self.down(h, precision, draft_method)

    def activate(self, g, u):
        """The gated activation of the gate and up outputs (the down projection's input)."""
        if self.activation == "clamped":
            g = np.minimum(g, self.limit)
            u = np.clip(u, -self.limit, self.limit)
            return (u + 1.0) * (g * sigmoid(self.alpha * g))
        return g * sigmoid(g) * u

    @property
    def weight_count(self):
        return sum(l.k * l.n for l in (self.gate, self.up, self.down))

    @property
    def scale_bytes(self):
        return sum(l.nbytes_scales for l in (self.gate, self.up, self.down))


# -- what an observer sees ----------------------------------------------------------------------------

@dataclass
class ExpertCall:
    """One routed expert in one MoE block: its ``rows`` of the pass, their combine ``weights``, the
    ``precision`` it ran at, its quantised inputs (``x``: gate and up; ``hidden``: down) and its
    float ``out`` ``[rows, hidden_size]``."""
    expert: int
    rows: np.ndarray
    weights: np.ndarray
    precision: Precision
    x: QuantActivations
    hidden: QuantActivations
    out: np.ndarray


@dataclass
class MoECall:
    """One MoE block of one forward pass: ``layer``, its quantised input ``x`` (all rows), the
    ``route`` taken, the routed ``experts`` (:class:`ExpertCall`, in the order they were added),
    the shared expert's (gated) output ``shared`` (or None) and the block output ``y``."""
    layer: int
    x: QuantActivations
    route: object
    experts: list
    shared: np.ndarray
    y: np.ndarray


# -- routing -----------------------------------------------------------------------------------------

@dataclass
class Route:
    """Routing of ``rows`` tokens in one layer: ``experts[r, j]`` (-1: no expert in slot j) and
    ``weights[r, j]`` in rank order."""
    experts: np.ndarray
    weights: np.ndarray


def route_scores(config, logits, router_bias=None):
    """``(scores, select)``: the weights' source and the scores experts are ranked by."""
    if config.scoring == "softmax":
        scores = softmax(logits)
        return scores, scores
    scores = sigmoid(logits)
    select = scores + router_bias if router_bias is not None else scores
    return scores, select


def top_k_route(config, scores, select, k=None, allowed=None):
    """Top-k by ``select`` (ties to the lower index), restricted to ``allowed`` (bool [experts]) and
    to the best groups; weights from ``scores`` by the model's rule."""
    c = config
    k = c.top_k if k is None else k
    select = np.array(select, dtype=np.float64)
    if allowed is not None:
        select[:, ~np.asarray(allowed, bool)] = -np.inf
    if c.n_group > 1:
        grouped = select.reshape(len(select), c.n_group, -1)
        if c.scoring == "softmax":
            gscore = grouped.max(axis=2)
        else:
            top2 = -np.sort(-grouped, axis=2)[:, :, :2]
            gscore = np.where(np.isinf(top2).any(axis=2), top2.max(axis=2), top2.sum(axis=2))
        order = np.argsort(-gscore, axis=1, kind="stable")[:, :c.topk_group]
        keep = np.zeros_like(gscore, dtype=bool)
        np.put_along_axis(keep, order, True, axis=1)
        select = np.where(np.repeat(keep, c.num_experts // c.n_group, axis=1), select, -np.inf)
    idx = np.argsort(-select, axis=1, kind="stable")[:, :k]
    valid = np.isfinite(np.take_along_axis(select, idx, axis=1))
    w = np.where(valid, np.take_along_axis(scores, idx, axis=1), 0.0)
    if c.norm_topk_prob:
        w = w / (seq_sum(w)[:, None] + (1e-20 if c.scoring == "sigmoid" else 0.0))
    w = w * c.routed_scaling_factor
    return Route(experts=np.where(valid, idx, -1), weights=w)


# -- KV cache and forward pass -----------------------------------------------------------------------

class KVCache:
    """Per-layer keys ``[batch, capacity, kv_heads, head_dim]``, values ``[..., value_dim]`` and
    per-sequence lengths. MLA keeps the keys and values re-expanded from its latent (one per
    query head): the same numbers as expanding the cached latent at every pass, since each
    position's expansion depends on that position alone; :attr:`nbytes_per_token` counts what the
    hardware holds (the latent).

    A forward pass appends at ``length[b]``; a caller may roll a sequence back by lowering its
    length (the slots are overwritten by the next pass).
    """

    def __init__(self, config, batch, capacity):
        _positive_int("KVCache", "batch", batch)
        _positive_int("KVCache", "capacity", capacity)
        heads = config.num_heads if config.attention == "mla" else config.num_kv_heads
        self.k = [np.zeros((batch, capacity, heads, config.head_dim))
                  for _ in range(config.num_layers)]
        self.v = [np.zeros((batch, capacity, heads, config.value_dim))
                  for _ in range(config.num_layers)]
        self.length = np.zeros(batch, dtype=np.int64)
        self.batch, self.capacity = batch, capacity
        self.nbytes_per_token = config.num_layers * config.kv_bytes_per_token


class TreeSpan:
    """One sequence's token tree in a forward pass (:meth:`MoEModel.forward`'s ``trees``).

    Node 0 is the tree's root; every other node ``j`` hangs below ``parents[j]`` (an earlier node),
    so the nodes are in topological order. Node ``j`` occupies KV slot ``base + j`` and sits at
    position ``base + depth[j]``; its query sees the ``base`` committed keys and the keys of its
    ancestors and itself, nothing else (the tree attention mask). ``base`` is the sequence's KV
    length before the root. A pass runs nodes ``start .. start + n - 1`` (its ``chunks[b]``, ``n``
    tokens, with the cache's length at ``base + start``), so a tree can be built over several
    passes: a draft runs one depth per pass, verification the whole tree at once.
    """

    def __init__(self, parents, base, start=0):
        parents = np.asarray(parents, dtype=np.int64).reshape(-1)
        if parents.size == 0 or parents[0] != -1:
            raise ValueError("a tree's node 0 is its root: parents[0] must be -1")
        n = parents.size
        if n > 1 and np.any((parents[1:] < 0) | (parents[1:] >= np.arange(1, n))):
            bad = int(np.flatnonzero((parents[1:] < 0) | (parents[1:] >= np.arange(1, n)))[0]) + 1
            raise ValueError(f"tree node {bad}'s parent {int(parents[bad])} is not an earlier "
                             f"node")
        self.parents, self.base, self.start = parents, int(base), int(start)
        self.depth = np.zeros(n, dtype=np.int64)
        #: ``ancestors[j, a]``: node ``a`` is ``j`` or one of its ancestors
        self.ancestors = np.eye(n, dtype=bool)
        for j in range(1, n):
            self.depth[j] = self.depth[parents[j]] + 1
            self.ancestors[j] |= self.ancestors[parents[j]]

    def __len__(self):
        return self.parents.size


@dataclass
class ForwardResult:
    """``logits[b]``: ``[n_b, vocab]`` for sequence b's new tokens (or its last one only);
    ``routes[layer]``: the :class:`Route` the pass used for all rows (None for dense layers);
    ``wanted[layer]``: the router's unrestricted top-k on the same rows (equal to ``routes`` for a
    target pass; what a draft would have chosen without its policy); ``row_seq``: the sequence of
    each row."""
    logits: list
    routes: list
    wanted: list
    row_seq: np.ndarray


@dataclass
class PassPlan:
    """How a forward pass runs its experts: ``route(layer, scores, select) -> Route`` and
    ``precision(layer, expert) -> Precision``, with ``draft_method`` for DRAFT."""
    route: object = None
    precision: object = None
    draft_method: str = "augmented"
    #: Every linear layer on float64 weights and unquantised activations (needs ``keep_float``):
    #: the float reference of the whole model.
    reference: bool = False


class MoEModel:
    """A quantised MoE model; see the module docstring for the arithmetic."""

    def __init__(self, config, weights, keep_float=False):
        """``weights.layers`` may be any sized iterable (a loader yields layers one at a time, so
        only one layer's float weights are alive at once); each is checked as it arrives."""
        if not isinstance(config, MoEConfig):
            raise TypeError(f"config must be an MoEConfig, not {config!r}")
        check_weights(config, weights, layers=False)
        self.config = config
        c, kf = config, keep_float
        # kept in its float type (a loader hands float32, exact for bf16/fp16/fp32 checkpoints);
        # rows become float64 on use
        self.embed = np.asarray(weights.embed)
        if not np.issubdtype(self.embed.dtype, np.floating):
            self.embed = self.embed.astype(np.float64)
        self.final_norm = np.asarray(weights.final_norm, dtype=np.float64)
        self.lm_head = as_qlinear(weights.lm_head, keep_float=kf, name="lm_head")
        self.layers = []
        f64 = lambda a: None if a is None else np.asarray(a, dtype=np.float64)
        ffn = lambda w, name: QFFN(w, kf, name, c.activation, c.swiglu_alpha, c.swiglu_limit)
        for i, lw in enumerate(weights.layers):
            check_layer(config, i, lw)
            lin = lambda name, bias=None: (None if getattr(lw, name) is None else as_qlinear(
                getattr(lw, name), bias, kf, f"layers.{i}.{name}"))
            layer = {"attn_norm": f64(lw.attn_norm), "ffn_norm": f64(lw.ffn_norm),
                     "q_norm": f64(lw.q_norm), "k_norm": f64(lw.k_norm),
                     "q_a_norm": f64(lw.q_a_norm), "kv_a_norm": f64(lw.kv_a_norm),
                     "sinks": f64(lw.sinks),
                     "q": lin("q", lw.q_bias), "k": lin("k", lw.k_bias), "v": lin("v", lw.v_bias),
                     "q_a": lin("q_a"), "q_b": lin("q_b"), "kv_a": lin("kv_a"),
                     "kv_b": lin("kv_b"), "o": lin("o", lw.o_bias)}
            if i in c.dense_layers:
                layer["dense"] = ffn(lw.dense, f"layers.{i}.dense")
            else:
                layer["router"] = lin("router", lw.router_logit_bias)
                layer["router_bias"] = f64(lw.router_bias)
                layer["experts"] = [ffn(e, f"layers.{i}.experts.{j}")
                                    for j, e in enumerate(lw.experts)]
                layer["shared"] = ffn(lw.shared, f"layers.{i}.shared") if c.shared_ffn else None
                layer["shared_gate"] = lin("shared_gate") if c.shared_gate else None
            self.layers.append(layer)
        self._inv_freq, self._rope_factor = rope_frequencies(c)
        self._scale = c.softmax_scale or 1.0 / np.sqrt(c.head_dim)
        self._target = PassPlan()
        self._reference = PassPlan(reference=True)
        #: Called with a :class:`MoECall` after every MoE block when set (the scheduler's record);
        #: None costs nothing.
        self.observer = None

    # -- sizes used by the byte accounting -----------------------------------------------------------
    @property
    def expert_weights(self):
        """Weights (codes) of one routed expert."""
        return self.config.expert_weight_count

    @property
    def expert_scale_bytes(self):
        c = self.config
        return 2 * (2 * (c.hidden_size // QUANT_GROUP) * c.expert_ffn
                    + (c.expert_ffn // QUANT_GROUP) * c.hidden_size)

    @property
    def dense_bytes(self):
        """INT8 codes plus FP16 scales of everything but the routed experts (attention, routers,
        shared and dense FFNs, LM head): read from HB once per forward pass."""
        total = self.lm_head.nbytes_int8 + self.lm_head.nbytes_scales
        for layer in self.layers:
            for name in ("q", "k", "v", "o", "q_a", "q_b", "kv_a", "kv_b", "router",
                         "shared_gate"):
                lin = layer.get(name)
                if lin is not None:
                    total += lin.nbytes_int8 + lin.nbytes_scales
            for name in ("dense", "shared"):
                ffn = layer.get(name)
                if ffn is not None:
                    total += ffn.weight_count + ffn.scale_bytes
        return total

    def new_cache(self, batch, capacity):
        return KVCache(self.config, batch, capacity)

    # -- the pass ------------------------------------------------------------------------------------
    def forward(self, cache, chunks, plan=None, last_only=False, trees=None):
        """Run the new tokens ``chunks[b]`` (int array, possibly empty) of every sequence ``b``.

        Appends their keys and values to ``cache`` and advances ``cache.length``. ``plan`` (a
        :class:`PassPlan`) chooses routing and expert precision; the default is the target (full
        top-k, FULL). ``trees[b]``: a :class:`TreeSpan` when sequence ``b``'s tokens are nodes of a
        token tree (tree mask and positions by depth), None for a plain continuation. Returns a
        :class:`ForwardResult`.
        """
        c = self.config
        plan = plan or self._target
        if len(chunks) != cache.batch:
            raise ValueError(f"got {len(chunks)} token chunks for a cache of batch {cache.batch}")
        chunks = [np.asarray(t, dtype=np.int64).reshape(-1) for t in chunks]
        lens = np.array([len(t) for t in chunks], dtype=np.int64)
        for b, t in enumerate(chunks):
            if t.size and (t.min() < 0 or t.max() >= c.vocab_size):
                raise ValueError(f"sequence {b} holds token ids outside 0..{c.vocab_size - 1}")
            if cache.length[b] + lens[b] > cache.capacity:
                raise ValueError(f"sequence {b} would reach {cache.length[b] + lens[b]} positions, "
                                 f"beyond the KV cache capacity {cache.capacity}")
        row_seq = np.repeat(np.arange(cache.batch), lens)
        offsets = np.arange(len(row_seq)) - np.repeat(np.cumsum(lens) - lens, lens)
        slot = cache.length[row_seq] + offsets
        pos = slot.copy()
        trees = self._check_trees(cache, trees, lens)
        if trees is not None:
            first = np.cumsum(lens) - lens
            for b, t in enumerate(trees):
                if t is not None and lens[b]:
                    nodes = t.start + np.arange(lens[b])
                    pos[first[b]:first[b] + lens[b]] = t.base + t.depth[nodes]
        x = (self.embed[np.concatenate(chunks)].astype(np.float64) if len(row_seq)
             else np.zeros((0, c.hidden_size)))
        act = self._act if not plan.reference else (lambda h: h)
        routes, wanted = [], []
        for i, layer in enumerate(self.layers):
            h = rms_norm(x, layer["attn_norm"], c.rms_eps)
            x = x + self._attention(i, layer, h, cache, row_seq, pos, lens, plan, slot, trees)
            h = rms_norm(x, layer["ffn_norm"], c.rms_eps)
            if "dense" in layer:
                x = x + layer["dense"](act(h), self._dense_precision(plan))
                routes.append(None)
                wanted.append(None)
            else:
                y, route, want = self._moe(i, layer, h, plan)
                x = x + y
                routes.append(route)
                wanted.append(want)
        cache.length += lens
        ends = np.cumsum(lens)
        if last_only:
            take = ends[lens > 0] - 1
        else:
            take = np.arange(len(row_seq))
        logits_rows = self.lm_head(act(rms_norm(x[take], self.final_norm, c.rms_eps)),
                                   self._dense_precision(plan))
        logits, start = [], 0
        for b in range(cache.batch):
            n = (1 if lens[b] else 0) if last_only else lens[b]
            logits.append(logits_rows[start:start + n])
            start += n
        return ForwardResult(logits=logits, routes=routes, wanted=wanted, row_seq=row_seq)

    @staticmethod
    def _check_trees(cache, trees, lens):
        if trees is None:
            return None
        if len(trees) != cache.batch:
            raise ValueError(f"got {len(trees)} tree spans for a cache of batch {cache.batch}")
        for b, t in enumerate(trees):
            if t is None:
                continue
            if not isinstance(t, TreeSpan):
                raise TypeError(f"trees[{b}] must be a TreeSpan or None, not {t!r}")
            if cache.length[b] != t.base + t.start:
                raise ValueError(f"sequence {b}: the KV cache holds {cache.length[b]} positions, "
                                 f"but its tree pass starts at node {t.start} of a tree at "
                                 f"{t.base}")
            if t.start + lens[b] > len(t):
                raise ValueError(f"sequence {b}: a pass of {lens[b]} tokens from node {t.start} "
                                 f"runs past the tree's {len(t)} nodes")
        return trees

    def reference_logits(self, prompts):
        """Float64 logits of every position of each prompt, with every weight unquantised (the
        model must be built with ``keep_float``): the float reference path."""
        cache = self.new_cache(len(prompts), max(len(p) for p in prompts))
        return self.forward(cache, prompts, self._reference).logits

    @staticmethod
    def _act(h):
        return quantize_activations(h)

    @staticmethod
    def _dense_precision(plan):
        return Precision.REFERENCE if plan.reference else Precision.FULL

    def _rope(self, x, pos):
        """Rotate the rotary dims of ``x`` [rows, heads, dims] (the first ``rope_dim`` dims; MLA:
        all of ``x``, which is the rotary part) for positions ``pos``."""
        c = self.config
        d = len(self._inv_freq) * 2
        ang = pos[:, None].astype(np.float64) * self._inv_freq[None, :]
        cos = np.cos(ang)[:, None, :] * self._rope_factor
        sin = np.sin(ang)[:, None, :] * self._rope_factor
        rot, rest = x[..., :d], x[..., d:]
        if c.rope_interleave:
            # pairs (2i, 2i+1) rotate by frequency i; laid out as halves (the same dot products)
            rot = np.concatenate([rot[..., 0::2], rot[..., 1::2]], axis=-1)
        x1, x2 = rot[..., :d // 2], rot[..., d // 2:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], axis=-1)

    def _attention(self, i, layer, h, cache, row_seq, pos, lens, plan, slot=None, trees=None):
        c = self.config
        ref = plan.reference
        prec = self._dense_precision(plan)
        act = (lambda a: a) if ref else self._act
        hq = act(h)
        n = len(h)
        if c.attention == "mla":
            if layer["q_a"] is not None:
                qa = rms_norm(layer["q_a"](hq, prec), layer["q_a_norm"], LATENT_NORM_EPS)
                q = layer["q_b"](act(qa), prec)
            else:
                q = layer["q"](hq, prec)
            q = q.reshape(n, c.num_heads, c.head_dim)
            kva = layer["kv_a"](hq, prec)
            latent = rms_norm(kva[:, :c.kv_lora_rank], layer["kv_a_norm"], LATENT_NORM_EPS)
            k_pe = self._rope(kva[:, None, c.kv_lora_rank:], pos)
            nope = c.head_dim - c.qk_rope_dim
            kvb = layer["kv_b"](act(latent), prec).reshape(n, c.num_heads, nope + c.value_dim)
            k = np.concatenate([kvb[..., :nope],
                                np.broadcast_to(k_pe, (n, c.num_heads, c.qk_rope_dim))], axis=-1)
            v = kvb[..., nope:]
            q = np.concatenate([q[..., :nope], self._rope(q[..., nope:], pos)], axis=-1)
        else:
            q, k, v = layer["q"](hq, prec), layer["k"](hq, prec), layer["v"](hq, prec)
            if c.qk_norm == "full":
                q = rms_norm(q, layer["q_norm"], c.rms_eps)
                k = rms_norm(k, layer["k_norm"], c.rms_eps)
            q, k = (a.reshape(n, -1, c.head_dim) for a in (q, k))
            v = v.reshape(n, -1, c.value_dim)
            if c.qk_norm == "head":
                q = rms_norm(q, layer["q_norm"], c.rms_eps)
                k = rms_norm(k, layer["k_norm"], c.rms_eps)
            q, k = self._rope(q, pos), self._rope(k, pos)
        slot = pos if slot is None else slot
        cache.k[i][row_seq, slot] = k
        cache.v[i][row_seq, slot] = v
        out = np.zeros((n, c.num_heads, c.value_dim))
        active = np.flatnonzero(lens)
        if not len(active):
            return layer["o"](act(out.reshape(0, -1)), prec)
        q = q * self._scale
        start = np.cumsum(lens) - lens
        window = c.sliding_window if i in c.sliding_layers else 0
        # Chunks of sequences, padded to the longest query and key counts in the chunk; masked
        # keys trail the valid ones, so sequential sums see only exact zeros after the real terms.
        budget = 1 << 22
        width = c.num_heads * max(c.head_dim, c.value_dim)
        b0 = 0
        while b0 < len(active):
            b1, nmax, lmax = b0, 0, 0
            while b1 < len(active):
                b = active[b1]
                n2, l2 = max(nmax, lens[b]), max(lmax, cache.length[b] + lens[b])
                if b1 > b0 and (b1 - b0 + 1) * n2 * l2 * width > budget:
                    break
                nmax, lmax, b1 = n2, l2, b1 + 1
            self._attend(i, cache, q, out, active[b0:b1], lens, start, window, layer["sinks"],
                         trees)
            b0 = b1
        return layer["o"](act(out.reshape(n, -1)), prec)

    def _attend(self, i, cache, q, out, sel, lens, start, window=0, sinks=None, trees=None):
        c = self.config
        nh = c.num_heads
        rep = nh // cache.k[i].shape[2]
        nmax = int(lens[sel].max())
        lmax = int((cache.length[sel] + lens[sel]).max())
        qp = np.zeros((len(sel), nmax, nh, q.shape[-1]))
        qi = np.arange(nmax)
        rows = start[sel][:, None] + qi[None, :]
        valid_q = qi[None, :] < lens[sel][:, None]
        qp[valid_q] = q[rows[valid_q]]
        keys = np.repeat(cache.k[i][sel, :lmax], rep, axis=2)      # [S, L, nh, hd]
        vals = np.repeat(cache.v[i][sel, :lmax], rep, axis=2)
        scores = seq_sum(qp[:, :, None] * keys[:, None], axis=-1)   # [S, n, L, nh]
        last = (cache.length[sel][:, None] + qi[None, :])           # last visible key per query
        mask = np.arange(lmax)[None, None, :] <= last[:, :, None]   # [S, n, L]
        if window:
            mask &= np.arange(lmax)[None, None, :] > last[:, :, None] - window
        for s_, b in enumerate(sel):
            t = trees[b] if trees is not None else None
            if t is not None:
                mask[s_] = self._tree_mask(t, lens[b], nmax, lmax, window)
        scores = np.where(mask[..., None], scores, -np.inf)
        scores[~valid_q] = 0.0                                      # padded queries: no -inf rows
        if sinks is None:
            p = softmax(scores, axis=2)
        else:
            # a learned per-head logit joins every denominator (and no numerator)
            m = np.maximum(np.max(scores, axis=2, keepdims=True), sinks[None, None, None, :])
            e = np.exp(scores - m)
            p = e / (seq_sum(e, axis=2)[:, :, None, :] + np.exp(sinks[None, None, None, :] - m))
        o = seq_sum(p[..., None] * vals[:, None], axis=2)           # [S, n, nh, vd]
        out[rows[valid_q]] = o[valid_q]

    @staticmethod
    def _tree_mask(t, n, nmax, lmax, window):
        """``[nmax, lmax]``: which KV slots the pass's ``n`` tree nodes see (see :class:`TreeSpan`);
        a sliding window measures positions (committed slots: their index; tree slots: base plus
        depth)."""
        mask = np.zeros((nmax, lmax), dtype=bool)
        mask[:n, :t.base] = True
        nodes = t.start + np.arange(n)
        seen = min(len(t), lmax - t.base)
        mask[:n, t.base:t.base + seen] = t.ancestors[nodes, :seen]
        if window:
            keypos = np.arange(lmax)
            keypos[t.base:t.base + seen] = t.base + t.depth[:seen]
            qpos = t.base + t.depth[nodes]
            mask[:n] &= keypos[None, :] > qpos[:, None] - window
        return mask

    def _moe(self, i, layer, h, plan):
        c = self.config
        xq = h if plan.reference else quantize_activations(h)
        logits = layer["router"](xq, self._dense_precision(plan))
        scores, select = route_scores(c, logits, layer["router_bias"])
        wanted = top_k_route(c, scores, select)
        route = plan.route(i, scores, select) if plan.route is not None else wanted
        if plan.reference:
            precision = lambda layer, expert: Precision.REFERENCE
        else:
            precision = plan.precision or (lambda layer, expert: Precision.FULL)
        call = MoECall(i, xq, route, [], None, None) if self.observer is not None else None
        y = self._combine(layer, xq, route, lambda e: precision(i, e), plan.draft_method, call)
        if call is not None:
            call.y = y
            self.observer(call)
        return y, route, wanted

    def _combine(self, layer, x, route, precision_of, draft_method="augmented", call=None):
        """Routed experts (each once, on its rows, weights of repeated picks summed; added in
        expert order) plus the shared expert, which runs FULL (or REFERENCE with REFERENCE).
        ``call``: a :class:`MoECall` to fill in, or None."""
        reference = isinstance(x, np.ndarray)
        y = np.zeros((len(x.codes) if not reference else len(x), self.config.hidden_size))
        for e in np.unique(route.experts[route.experts >= 0]):
            hit = route.experts == e
            rows = np.flatnonzero(hit.any(axis=1))
            w = seq_sum(np.where(hit[rows], route.weights[rows], 0.0))
            sub = (x[rows] if reference
                   else QuantActivations(codes=x.codes[rows], scales=x.scales[rows]))
            precision = precision_of(int(e))
            hidden = [] if call is not None else None
            out = layer["experts"][e](sub, precision, draft_method, hidden)
            y[rows] = y[rows] + w[:, None] * out
            if call is not None:
                call.experts.append(ExpertCall(int(e), rows, w, precision, sub, hidden[0], out))
        if layer["shared"] is not None:
            dense = Precision.REFERENCE if reference else Precision.FULL
            s = layer["shared"](x, dense)
            if layer["shared_gate"] is not None:
                s = s * sigmoid(layer["shared_gate"](x, dense))
            y = y + s
            if call is not None:
                call.shared = s
        return y

    # -- the reference ---------------------------------------------------------------------------
    def moe_block(self, layer, h, route, precision):
        """One MoE block's output for inputs ``h`` [rows, hidden] under a given ``route`` with every
        routed expert at ``precision`` (the shared expert FULL); REFERENCE runs everything on
        float64 weights and unquantised inputs."""
        x = h if precision is Precision.REFERENCE else quantize_activations(h)
        return self._combine(self.layers[layer], x, route, lambda e: precision)
