"""Hugging Face MoE checkpoints (``config.json`` + ``*.safetensors``) into the golden model.

Supported tensor naming schemes (``architectures`` in config.json, or ``model_type``):

* ``mixtral``   MixtralForCausalLM: ``block_sparse_moe.gate``, ``block_sparse_moe.experts.<e>.w1/w3/w2``
  (gate/up/down); softmax router renormalised over the top-k.
* ``qwen2_moe`` Qwen2MoeForCausalLM: ``mlp.gate``, ``mlp.experts.<e>.{gate,up,down}_proj``, one
  shared expert ``mlp.shared_expert.*`` with a sigmoid gate ``mlp.shared_expert_gate``; q/k/v
  biases; dense layers from ``mlp_only_layers`` / ``decoder_sparse_step``.
* ``qwen3_moe`` Qwen3MoeForCausalLM: as Qwen2-MoE without shared experts; per-head q/k RMSNorm.
* ``olmoe``     OlmoeForCausalLM: ``mlp.gate``, ``mlp.experts.*``; q/k RMSNorm over the whole
  projection.
* ``deepseek``  DeepseekV2/V3ForCausalLM-style MoE: ``mlp.gate`` (``e_score_correction_bias`` for
  ``topk_method: noaux_tc``), ``mlp.experts.*``, ``mlp.shared_experts.*``, dense first layers
  (``first_k_dense_replace``), softmax or sigmoid scoring, group-limited routing, scaling factor.
  **Attention must be standard** (``q_proj``/``k_proj``/``v_proj``/``o_proj``): DeepSeek's
  multi-head latent attention (MLA: ``kv_lora_rank``, ``kv_a_proj_with_mqa``) is not modelled and
  is refused with an error saying so.

Weights (HF stores ``[out, in]``) are transposed to the model's ``[in, out]`` and quantised on load.
Shards: ``model.safetensors.index.json`` (its ``weight_map``), else every ``*.safetensors`` file.
Tensors are read through ``safetensors.safe_open``; BF16 tensors, which NumPy cannot represent,
are decoded from the file's raw bytes (the documented safetensors layout) to float32 exactly.
Every error names the file, field or tensor that is wrong.
"""

import json
import logging
import struct
from pathlib import Path

import numpy as np
from safetensors import safe_open

from sw_model.model.moe import (ExpertWeights, LayerWeights, MoEConfig, ModelWeights, MoEModel,
                                check_weights, linear_names)

__all__ = ["CheckpointError", "read_config", "TensorStore", "load_weights", "load_checkpoint",
           "ARCHITECTURES", "DEFAULT_MODEL_DIR", "default_model"]

log = logging.getLogger(__name__)

#: ``architectures`` entries (and ``model_type`` values) to naming schemes.
ARCHITECTURES = {
    "MixtralForCausalLM": "mixtral", "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3MoeForCausalLM": "qwen3_moe", "OlmoeForCausalLM": "olmoe",
    "DeepseekV2ForCausalLM": "deepseek", "DeepseekV3ForCausalLM": "deepseek",
}
MODEL_TYPES = {"mixtral": "mixtral", "qwen2_moe": "qwen2_moe", "qwen3_moe": "qwen3_moe",
               "olmoe": "olmoe", "deepseek_v2": "deepseek", "deepseek_v3": "deepseek"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the offending field or tensor."""


def _field(cfg, name, default=None, required=False):
    if name in cfg and cfg[name] is not None:
        return cfg[name]
    if required:
        raise CheckpointError(f"config.json lacks the field '{name}'")
    return default


def _scheme(cfg):
    archs = cfg.get("architectures") or []
    for a in archs:
        if a in ARCHITECTURES:
            return ARCHITECTURES[a]
    if not archs and cfg.get("model_type") in MODEL_TYPES:
        return MODEL_TYPES[cfg["model_type"]]
    known = ", ".join(ARCHITECTURES)
    raise CheckpointError(
        f"config.json field 'architectures' is {archs!r} (model_type {cfg.get('model_type')!r}): "
        f"not an MoE architecture this loader knows ({known})")


def read_config(path):
    """``(MoEConfig, scheme)`` from ``path/config.json``."""
    path = Path(path)
    file = path / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{path} has no config.json")
    try:
        cfg = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file} is not valid JSON: {exc}") from None
    scheme = _scheme(cfg)
    f = lambda name, default=None: _field(cfg, name, default)
    req = lambda name: _field(cfg, name, required=True)
    if f("rope_scaling") is not None:
        raise CheckpointError("config.json field 'rope_scaling' is set; only plain RoPE is modelled")
    if f("sliding_window") is not None and f("use_sliding_window", True):
        raise CheckpointError("config.json field 'sliding_window' is set; sliding-window attention "
                              "is not modelled")
    hidden, layers, heads = req("hidden_size"), req("num_hidden_layers"), req("num_attention_heads")
    common = dict(vocab_size=req("vocab_size"), hidden_size=hidden, num_layers=layers,
                  num_heads=heads, num_kv_heads=f("num_key_value_heads", heads),
                  head_dim=f("head_dim", hidden // heads), rms_eps=float(f("rms_norm_eps", 1e-6)),
                  rope_theta=float(f("rope_theta", 10000.0)),
                  tie_embeddings=bool(f("tie_word_embeddings", False)),
                  name=f("_name_or_path", None) or scheme, top_k=req("num_experts_per_tok"))
    if scheme == "mixtral":
        extra = dict(num_experts=req("num_local_experts"), expert_ffn=req("intermediate_size"),
                     norm_topk_prob=True)
    elif scheme in ("qwen2_moe", "qwen3_moe"):
        step, only = f("decoder_sparse_step", 1), f("mlp_only_layers", [])
        dense = tuple(i for i in range(layers) if i in only or (i + 1) % step)
        extra = dict(num_experts=req("num_experts"), expert_ffn=req("moe_intermediate_size"),
                     norm_topk_prob=bool(f("norm_topk_prob", False)), dense_layers=dense,
                     dense_ffn=req("intermediate_size") if dense else 0)
        if scheme == "qwen2_moe":
            shared = f("shared_expert_intermediate_size", 0)
            # Qwen2-MoE's q/k/v projections always carry biases (no config field).
            extra.update(shared_ffn=shared, shared_gate=bool(shared), attention_bias=True)
        else:
            extra.update(qk_norm="head", attention_bias=bool(f("attention_bias", False)))
    elif scheme == "olmoe":
        if f("clip_qkv") is not None:
            raise CheckpointError("config.json field 'clip_qkv' is set; q/k/v clipping is not "
                                  "modelled")
        extra = dict(num_experts=req("num_experts"), expert_ffn=req("intermediate_size"),
                     norm_topk_prob=bool(f("norm_topk_prob", False)), qk_norm="full",
                     attention_bias=bool(f("attention_bias", False)))
    else:
        if f("kv_lora_rank") is not None or f("q_lora_rank") is not None:
            raise CheckpointError(
                "config.json field 'kv_lora_rank'/'q_lora_rank' is set: DeepSeek multi-head latent "
                "attention (MLA) is not supported; only DeepSeek-style MoE with standard "
                "q/k/v/o attention loads")
        first, freq = f("first_k_dense_replace", 0), f("moe_layer_freq", 1)
        dense = tuple(i for i in range(layers) if i < first or (i - first) % freq)
        method = f("topk_method", "greedy")
        if method not in ("greedy", "group_limited_greedy", "noaux_tc"):
            raise CheckpointError(f"config.json field 'topk_method' is {method!r}; expected greedy, "
                                  f"group_limited_greedy or noaux_tc")
        groups = method != "greedy"
        shared = f("n_shared_experts", 0) or 0
        extra = dict(num_experts=req("n_routed_experts"), expert_ffn=req("moe_intermediate_size"),
                     norm_topk_prob=bool(f("norm_topk_prob", False)),
                     scoring=f("scoring_func", "softmax"),
                     routed_scaling_factor=float(f("routed_scaling_factor", 1.0)),
                     n_group=f("n_group", 1) if groups else 1,
                     topk_group=f("topk_group", 1) if groups else 1,
                     score_bias=method == "noaux_tc", shared_ffn=shared * req("moe_intermediate_size"),
                     dense_layers=dense, dense_ffn=req("intermediate_size") if dense else 0,
                     attention_bias=bool(f("attention_bias", False)))
    try:
        return MoEConfig(**common, **extra), scheme
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config.json describes an unsupported model: {exc}") from None


class TensorStore:
    """Lazy access to the tensors of a (possibly sharded) safetensors checkpoint."""

    def __init__(self, path):
        self.path = Path(path)
        index = self.path / "model.safetensors.index.json"
        self.where = {}
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise CheckpointError(f"{index} has no valid 'weight_map': {exc}") from None
            for name, shard in weight_map.items():
                file = self.path / shard
                if not file.is_file():
                    raise CheckpointError(f"{index} maps tensor '{name}' to the missing shard "
                                          f"'{shard}'")
                self.where[name] = file
        else:
            files = sorted(self.path.glob("*.safetensors"))
            if not files:
                raise CheckpointError(f"{self.path} holds no *.safetensors file")
            for file in files:
                with safe_open(file, framework="numpy") as f:
                    for name in f.keys():
                        self.where[name] = file

    def __contains__(self, name):
        return name in self.where

    def names(self):
        return list(self.where)

    def get(self, name, what=""):
        if name not in self.where:
            raise CheckpointError(f"checkpoint {self.path} lacks tensor '{name}'"
                                  + (f" ({what})" if what else ""))
        file = self.where[name]
        with safe_open(file, framework="numpy") as f:
            if name not in f.keys():
                raise CheckpointError(f"shard {file.name} lacks tensor '{name}' its index maps "
                                      f"there")
            dtype = f.get_slice(name).get_dtype()
            if dtype == "BF16":
                return _read_bf16(file, name)
            return np.asarray(f.get_tensor(name))


def _read_bf16(file, name):
    """A BF16 tensor as float32, from the safetensors layout: an 8-byte little-endian header
    length, a JSON header with ``dtype``, ``shape`` and ``data_offsets``, then the data."""
    with open(file, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
        start, end = header[name]["data_offsets"]
        fh.seek(8 + n + start)
        raw = np.frombuffer(fh.read(end - start), dtype="<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(header[name]["shape"])


def _names(scheme, layer, config):
    """HF tensor name (without ``.weight``) of each :func:`sw_model.model.moe.linear_names`
    entry."""
    p = f"model.layers.{layer}."
    names = {"attn_norm": p + "input_layernorm", "ffn_norm": p + "post_attention_layernorm",
             "q": p + "self_attn.q_proj", "k": p + "self_attn.k_proj",
             "v": p + "self_attn.v_proj", "o": p + "self_attn.o_proj",
             "q_bias": p + "self_attn.q_proj", "k_bias": p + "self_attn.k_proj",
             "v_bias": p + "self_attn.v_proj",
             "q_norm": p + "self_attn.q_norm", "k_norm": p + "self_attn.k_norm"}
    ffn = lambda ours, theirs, parts: names.update(
        {f"{ours}.{a}": f"{theirs}.{b}" for a, b in zip(("gate", "up", "down"), parts)})
    proj = ("gate_proj", "up_proj", "down_proj")
    ffn("dense", p + "mlp", proj)
    if scheme == "mixtral":
        names["router"] = p + "block_sparse_moe.gate"
        for e in range(config.num_experts):
            ffn(f"experts.{e}", p + f"block_sparse_moe.experts.{e}", ("w1", "w3", "w2"))
    else:
        names["router"] = p + "mlp.gate"
        names["router_bias"] = p + "mlp.gate.e_score_correction_bias"
        for e in range(config.num_experts):
            ffn(f"experts.{e}", p + f"mlp.experts.{e}", proj)
        ffn("shared", p + ("mlp.shared_expert" if scheme == "qwen2_moe" else "mlp.shared_experts"),
            proj)
        names["shared_gate"] = p + "mlp.shared_expert_gate"
    return names


class _Layers:
    """The decoder layers of a checkpoint, read one at a time as they are iterated (so a model is
    quantised layer by layer without holding every float weight at once)."""

    def __init__(self, read, count):
        self._read, self._count = read, count

    def __len__(self):
        return self._count

    def __iter__(self):
        return (self._read(i) for i in range(self._count))


def load_weights(path):
    """``(config, ModelWeights, scheme)`` of a checkpoint directory. The embedding, final norm and
    LM head are read now; ``weights.layers`` reads each layer when iterated."""
    config, scheme = read_config(path)
    store = TensorStore(path)
    for name in store.names():
        if "kv_a_proj_with_mqa" in name or "kv_b_proj" in name:
            raise CheckpointError(f"tensor '{name}' belongs to DeepSeek multi-head latent attention "
                                  f"(MLA), which is not supported")

    def tensor(name, shape, what, suffix=".weight", transpose=False):
        full = name if name.endswith("e_score_correction_bias") else name + suffix
        value = store.get(full, what)
        want = shape[::-1] if transpose else shape
        if value.shape != tuple(want):
            raise CheckpointError(f"tensor '{full}' ({what}) has shape {tuple(value.shape)}, "
                                  f"expected {tuple(want)}")
        if not np.issubdtype(value.dtype, np.floating):
            raise CheckpointError(f"tensor '{full}' ({what}) has dtype {value.dtype}, expected a "
                                  f"floating-point type")
        value = value.astype(np.float64)
        return value.T if transpose else value

    c = config

    def layer(i):
        hf = _names(scheme, i, c)
        values = {}
        for ours, shape in linear_names(c, i).items():
            suffix = ".bias" if ours.endswith("_bias") and ours != "router_bias" else ".weight"
            values[ours] = tensor(hf[ours], shape, f"layer {i} {ours}", suffix,
                                  transpose=len(shape) == 2)
        ffn = lambda prefix: ExpertWeights(*(values[f"{prefix}.{p}"] for p in ("gate", "up", "down")))
        lw = LayerWeights(**{k: values.get(k) for k in (
            "attn_norm", "q", "k", "v", "o", "ffn_norm", "q_bias", "k_bias", "v_bias", "q_norm",
            "k_norm", "router", "router_bias", "shared_gate")})
        if i in c.dense_layers:
            lw.dense = ffn("dense")
        else:
            lw.experts = [ffn(f"experts.{e}") for e in range(c.num_experts)]
            if c.shared_ffn:
                lw.shared = ffn("shared")
        return lw

    embed = tensor("model.embed_tokens", (c.vocab_size, c.hidden_size), "token embedding")
    final = tensor("model.norm", (c.hidden_size,), "final norm")
    if c.tie_embeddings and "lm_head.weight" not in store:
        lm_head = embed.T.copy()
    else:
        lm_head = tensor("lm_head", (c.hidden_size, c.vocab_size), "LM head", transpose=True)
    weights = ModelWeights(embed=embed, layers=_Layers(layer, c.num_layers), final_norm=final,
                           lm_head=lm_head)
    check_weights(config, weights, layers=False)
    return config, weights, scheme


def load_checkpoint(path, keep_float=False):
    """An :class:`MoEModel` (quantised on load) from a checkpoint directory; also its scheme."""
    config, weights, scheme = load_weights(path)
    log.info("loaded %s (%s naming)", config.describe(), scheme)
    return MoEModel(config, weights, keep_float=keep_float), scheme


#: The built-in default model: the trained standard top-k byte-level MoE shipped with the package
#: (``python build.py train`` reproduces it; :mod:`sw_model.train.training`).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "elmoe-byte-standard"


def default_model():
    """``(model, description)``: the built-in default every command falls back to (the one place
    that says what it is): the trained standard model of
    :data:`DEFAULT_MODEL_DIR` (Qwen3-MoE layout: 4 layers, hidden 128, 32 experts x 64, top-4,
    byte vocabulary), loaded through :func:`load_checkpoint`. Random-weight
    models stay available as ``MoEModel(DEFAULT_CONFIG, random_weights(DEFAULT_CONFIG))``."""
    model = load_checkpoint(DEFAULT_MODEL_DIR)[0]
    return model, f"built-in {model.config.name} (trained, {DEFAULT_MODEL_DIR.name})"
