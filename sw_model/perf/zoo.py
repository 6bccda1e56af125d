"""The shapes the performance model needs of each MoE model, taken from the model zoo.

Layers, hidden size, expert FFN, experts, top-k, shared and dense FFNs, vocabulary and GQA heads
come from :mod:`sw_model.model.zoo` (the scheduler's table of public model configurations).
The zoo keeps the golden model's architecture, so where the real model differs in what the memory
system moves, :data:`OVERRIDES` restores it: MLA attention (GLM-4.7-Flash, DeepSeek-V2-Lite: far
fewer attention weights and a compressed KV cache) and GPT-OSS-20B's MXFP4 experts (stored as is:
only the expert axis of ELMoE-3D applies). GLM-4.7-Flash's MLA sizes are not in its zoo entry and
are *assumed* (20 heads, q_lora 768, qk 192+64, v 256, kv_lora 512).
"""

from dataclasses import dataclass
import functools
from pathlib import Path

from hw.params import ParamsRecord, QUANT_GROUP
from sw_model.model import zoo as model_zoo

__all__ = ["ModelShape", "ZOO", "PAPER_MODELS", "get_model", "SCALE_BYTES", "shape_from_config",
           "OVERRIDES"]

#: FP16 scale bytes per group of QUANT_GROUP INT8 weights (docs/number-format.md).
SCALE_BYTES = 2
#: MXFP4: 4-bit elements plus one 8-bit shared exponent per 32 (OCP MX spec), bits per weight.
MXFP4_BITS = 4 + 8 / 32


@dataclass(frozen=True)
class ModelShape(ParamsRecord):
    """One MoE model as byte and operation counts see it.

    ``layers`` decoder layers, the first ``dense_layers`` with a dense SwiGLU FFN of ``dense_ffn``;
    the others MoE with ``experts`` routed SwiGLU experts of ``expert_ffn`` (top ``top_k``) plus
    ``shared`` shared experts of ``shared_ffn``. ``attn_params`` weights per layer (all
    projections); ``kv_bytes`` bytes of KV cache per token and layer (FP16 entries, assumed);
    ``attn_macs_per_ctx`` multiply-accumulates per token, layer and context position (scores and
    values over all heads). ``expert_bits`` 8 (INT8, bit-nested) or MXFP4 (experts stored as is:
    only the expert axis of ELMoE-3D applies).
    """
    name: str
    layers: int
    hidden: int
    expert_ffn: int
    experts: int
    top_k: int
    attn_params: int
    kv_bytes: int
    attn_macs_per_ctx: int
    vocab: int
    dense_layers: int = 0
    dense_ffn: int = 0
    shared: int = 0
    shared_ffn: int = 0
    expert_bits: float = 8.0

    def __post_init__(self):
        for name in ("layers", "hidden", "expert_ffn", "experts", "top_k", "attn_params",
                     "kv_bytes", "attn_macs_per_ctx", "vocab"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelShape {self.name}: {name} must be a positive integer, "
                                 f"not {value!r}")
        if not 0 <= self.dense_layers < self.layers:
            raise ValueError(f"ModelShape {self.name}: dense_layers ({self.dense_layers}) must be "
                             f"in [0, layers={self.layers})")
        if self.top_k > self.experts:
            raise ValueError(f"ModelShape {self.name}: top_k ({self.top_k}) exceeds experts "
                             f"({self.experts})")
        if self.expert_bits not in (8.0, MXFP4_BITS):
            raise ValueError(f"ModelShape {self.name}: expert_bits must be 8 or MXFP4 "
                             f"({MXFP4_BITS}), not {self.expert_bits!r}")

    # -- counts ----------------------------------------------------------------------------------
    @property
    def moe_layers(self):
        return self.layers - self.dense_layers

    @property
    def expert_weights(self):
        """Weights of one routed expert (gate, up, down)."""
        return 3 * self.hidden * self.expert_ffn

    @property
    def bit_nested(self):
        """INT8 experts split into an HB upper nibble and an LPDDR lower nibble."""
        return self.expert_bits == 8.0

    @property
    def expert_full_bytes(self):
        """One expert as stored in LPDDR: INT8 codes plus FP16 group scales, or MXFP4."""
        w = self.expert_weights
        if self.bit_nested:
            return w + w // QUANT_GROUP * SCALE_BYTES
        return int(w * MXFP4_BITS / 8)

    @property
    def expert_msb_bytes(self):
        """What HB holds of a resident expert: upper nibbles plus scales (MXFP4: all of it)."""
        w = self.expert_weights
        return w // 2 + w // QUANT_GROUP * SCALE_BYTES if self.bit_nested else self.expert_full_bytes

    @property
    def expert_lsb_bytes(self):
        """What verification of a resident expert still streams from LPDDR (MXFP4: nothing)."""
        return self.expert_weights // 2 if self.bit_nested else 0

    @property
    def dense_weights(self):
        """Everything but routed experts and the embedding table: attention, routers, shared and
        dense FFNs, LM head."""
        per_moe = self.attn_params + self.hidden * self.experts \
            + self.shared * 3 * self.hidden * self.shared_ffn
        per_dense = self.attn_params + 3 * self.hidden * self.dense_ffn
        return (self.moe_layers * per_moe + self.dense_layers * per_dense
                + self.vocab * self.hidden)

    @property
    def dense_bytes(self):
        """Dense weights in INT8 with FP16 group scales (read once per forward pass)."""
        w = self.dense_weights
        return w + w // QUANT_GROUP * SCALE_BYTES

    @property
    def total_expert_bytes(self):
        return self.moe_layers * self.experts * self.expert_full_bytes

    @property
    def active_weights(self):
        """Weights one token multiplies with (dense plus its top-k routed experts)."""
        return self.dense_weights + self.moe_layers * self.top_k * self.expert_weights

    def kv_bytes_per_sequence(self, context):
        return self.layers * self.kv_bytes * context


def _gqa(hidden, q_heads, kv_heads, head_dim):
    """Grouped-query attention: q, k, v, o weights; FP16 KV bytes; MACs per context position."""
    params = hidden * head_dim * (2 * q_heads + 2 * kv_heads)
    return params, 2 * 2 * kv_heads * head_dim, 2 * q_heads * head_dim


def _mla(hidden, heads, q_lora, qk_nope, qk_rope, v_dim, kv_lora):
    """Multi-head latent attention (DeepSeek-V2 style): weights; FP16 latent KV bytes (compressed
    kv plus the rope key); MACs per context position with the absorbed form (scores and values
    against the kv_lora-rank latent per head)."""
    q = hidden * heads * (qk_nope + qk_rope) if not q_lora else \
        hidden * q_lora + q_lora * heads * (qk_nope + qk_rope)
    kv = hidden * (kv_lora + qk_rope) + kv_lora * heads * (qk_nope + v_dim)
    o = heads * v_dim * hidden
    return q + kv + o, 2 * (kv_lora + qk_rope), heads * (2 * kv_lora + qk_rope)


def shape_from_config(config, name=None, attention=None, expert_bits=8.0):
    """The :class:`ModelShape` of a :class:`sw_model.model.moe.MoEConfig` (GQA attention from its
    heads unless ``attention`` = (weights, KV bytes, MACs per context position) is given)."""
    c = config
    if attention is None and getattr(c, "attention", "gqa") == "mla":
        attention = _mla(c.hidden_size, c.num_heads, c.q_lora_rank, c.head_dim - c.qk_rope_dim,
                         c.qk_rope_dim, c.value_dim, c.kv_lora_rank)
    if getattr(c, "expert_format", "int8") == "mxfp4":
        expert_bits = MXFP4_BITS
    params, kv, macs = attention or _gqa(c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim)
    dense = tuple(c.dense_layers)
    if dense != tuple(range(len(dense))):
        raise ValueError(f"{c.name}: dense layers {dense} are not the first layers")
    return ModelShape(name=name or c.name, layers=c.num_layers, hidden=c.hidden_size,
                      expert_ffn=c.expert_ffn, experts=c.num_experts, top_k=c.top_k,
                      attn_params=params, kv_bytes=kv, attn_macs_per_ctx=macs,
                      vocab=c.vocab_size, dense_layers=len(dense), dense_ffn=c.dense_ffn,
                      shared=1 if c.shared_ffn else 0, shared_ffn=c.shared_ffn,
                      expert_bits=expert_bits)


#: What the performance model needs beyond the zoo's golden-model shapes (module docstring).
OVERRIDES = {
    "glm-4.7-flash": {"attention": _mla(2048, 20, 768, 192, 64, 256, 512)},
    # the public config: MLA, kv rank 512; 16 heads, no q_lora, qk 128+64, v 128 (public config)
    "deepseek-v2-lite": {"attention": _mla(2048, 16, 0, 128, 64, 128, 512)},
    "gpt-oss-20b": {"expert_bits": MXFP4_BITS},
}

#: The model zoo as the performance model sees it, by the zoo's names.
ZOO = {name: shape_from_config(entry.config, name, **OVERRIDES.get(name, {}))
       for name, entry in model_zoo.ZOO.items()}

#: The four models of the ELMoE-3D paper's evaluation.
PAPER_MODELS = ("qwen3-30b-a3b", "glm-4.7-flash", "deepseek-v2-lite", "gpt-oss-20b")


@functools.lru_cache(maxsize=16)
def checkpoint_shape(path):
    """The :class:`ModelShape` of a Hugging Face checkpoint directory (its config.json only),
    named by the path as given; ValueError (a CheckpointError) naming what is wrong."""
    from sw_model.model.checkpoints import read_config
    config, _ = read_config(path)
    return shape_from_config(config, str(path))


def get_model(name):
    """The shape of model ``name`` (case-insensitive; ``default``: the golden model's built-in
    shape, whose routing ``build.py sd --save-routing`` records; a checkpoint directory: its
    config's shape), or ValueError listing the known ones."""
    if isinstance(name, ModelShape):
        return name
    if (Path(str(name)) / "config.json").is_file():
        return checkpoint_shape(str(name))
    if str(name).lower() == "default":
        from sw_model.model.moe import DEFAULT_CONFIG
        return shape_from_config(DEFAULT_CONFIG, "default")
    for key, shape in ZOO.items():
        if key.lower() == str(name).lower():
            return shape
    raise ValueError(f"unknown model {name!r}; known: {', '.join(ZOO)}, default")
