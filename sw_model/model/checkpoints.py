"""Hugging Face MoE checkpoints (``config.json`` + ``*.safetensors``) into the golden model.

Architectures (``architectures`` in config.json, else ``model_type``), with the tensor names the
``transformers`` library saves (its 4.x and 5.x releases write the same tensor names):

* ``mixtral``       Mixtral: ``block_sparse_moe.gate``, ``block_sparse_moe.experts.<e>.w1/w3/w2``;
  softmax router renormalised over the top-k.
* ``qwen2_moe``     Qwen2-MoE (Qwen1.5-MoE): ``mlp.gate``, ``mlp.experts.<e>.{gate,up,down}_proj``,
  one shared expert with a sigmoid gate, q/k/v biases (``qkv_bias``), dense layers from
  ``mlp_only_layers`` / ``decoder_sparse_step``.
* ``qwen3_moe``     Qwen3-MoE: as Qwen2-MoE without shared experts; per-head q/k RMSNorm.
* ``olmoe``         OLMoE: q/k RMSNorm over the whole projection.
* ``deepseek_v2``   DeepSeek-V2/V2-Lite: multi-head latent attention (MLA: optional query LoRA,
  compressed KV latent plus a shared rotary key, interleaved rotary pairs), softmax routing
  (``topk_method`` greedy or group-limited), shared experts, dense first layers.
* ``deepseek_v3``   DeepSeek-V3: MLA; sigmoid routing with the score-correction bias
  (``e_score_correction_bias``) and group-limited choice (groups ranked by their best two
  experts): the routing of the model type, whatever ``topk_method``/``scoring_func`` say or omit.
* ``glm4_moe``      GLM-4.5/4.6 MoE: grouped-query attention with partial rotary dims, optional
  per-head q/k norm and q/k/v biases; DeepSeek-V3 routing; shared experts; dense first layers.
* ``glm4_moe_lite`` GLM-4.7-Flash: MLA with DeepSeek-V3 routing.
* ``gpt_oss``       GPT-OSS: attention sinks, alternating sliding-window and full attention
  (``layer_types``), q/k/v/o biases, a router with a bias and softmax over the top-k logits,
  experts stored fused (``mlp.experts.gate_up_proj`` [experts, hidden, 2 ffn] with gate and up
  interleaved, plus biases) as floats or in MXFP4 (``*_blocks``/``*_scales``), the clamped SwiGLU.

Both config layouts: transformers 4.x (top-level ``rope_theta``/``rope_scaling``,
``partial_rotary_factor``) and 5.x (``rope_parameters``); expert counts under any of the names the
releases use. **Nothing is silently ignored**: every config field is applied, checked to have a
value that changes nothing, or on an allow-list of fields without effect on inference
(:data:`INERT_FIELDS`); any other field is refused with a message naming it. Every tensor of the
checkpoint must be used (multi-token-prediction layers declared by ``num_nextn_predict_layers``
excepted), so a config that declares fewer layers or experts than the files hold is refused.

Tensors are memory-mapped straight from the safetensors files (the header is parsed here, so a
truncated or garbage file is named) and quantised one tensor at a time as the layers are read: no
float copy of the whole model is ever held. MXFP4 experts are decoded (FP4 E2M1 elements, one
power-of-two scale per 32) to floats and re-quantised to INT8 with FP16 group scales; the relative
RMS error of that step is measured and reported in ``model.checkpoint_info``.
Every error is a :class:`CheckpointError` whose message names the file, field or tensor.
"""

import json
import logging
import re
from pathlib import Path

import numpy as np

from sw_model.model.moe import (MoEConfig, ModelWeights, MoEModel, QLinear, check_weights,
                                layer_of, linear_names)

__all__ = ["CheckpointError", "read_config", "TensorStore", "load_weights", "load_checkpoint",
           "ARCHITECTURES", "MODEL_TYPES", "DEFAULT_MODEL_DIR", "default_model", "INERT_FIELDS"]

log = logging.getLogger(__name__)

#: ``architectures`` entries to schemes.
ARCHITECTURES = {
    "MixtralForCausalLM": "mixtral", "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3MoeForCausalLM": "qwen3_moe", "OlmoeForCausalLM": "olmoe",
    "DeepseekV2ForCausalLM": "deepseek_v2", "DeepseekV3ForCausalLM": "deepseek_v3",
    "Glm4MoeForCausalLM": "glm4_moe", "Glm4MoeLiteForCausalLM": "glm4_moe_lite",
    "GptOssForCausalLM": "gpt_oss",
}
#: ``model_type`` values to schemes.
MODEL_TYPES = {s: s for s in ARCHITECTURES.values()}

MLA_SCHEMES = ("deepseek_v2", "deepseek_v3", "glm4_moe_lite")
#: Schemes routed as DeepSeek-V3: sigmoid scores, score-correction bias, groups by best two.
V3_ROUTING = ("deepseek_v3", "glm4_moe", "glm4_moe_lite")

#: Config fields with no effect on inference arithmetic (token ids, training-only settings, cache
#: and output switches, bookkeeping).
INERT_FIELDS = {
    "architectures", "model_type", "_name_or_path", "transformers_version", "torch_dtype", "dtype",
    "bos_token_id", "eos_token_id", "pad_token_id", "use_cache", "output_router_logits",
    "router_aux_loss_coef", "aux_loss_alpha", "seq_aux", "router_jitter_noise",
    "input_jitter_noise", "initializer_range", "attention_dropout", "max_position_embeddings",
    "auto_map", "ep_size", "num_nextn_predict_layers", "initial_context_length", "rope_theta",
    "rope_scaling", "rope_parameters", "partial_rotary_factor",
    "id2label", "label2id", "return_dict", "output_hidden_states", "output_attentions",
    "is_encoder_decoder", "chunk_size_feed_forward", "problem_type", "z_loss_coef",
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the offending file, field or
    tensor."""


# -- config ----------------------------------------------------------------------------------------

class _Fields:
    """config.json's fields; remembers which were read, so the rest can be refused."""

    def __init__(self, cfg, file):
        self.cfg, self.file, self.used = cfg, file, set()

    def __contains__(self, name):
        return self.cfg.get(name) is not None

    def get(self, name, default=None):
        self.used.add(name)
        value = self.cfg.get(name)
        return default if value is None else value

    def req(self, name):
        self.used.add(name)
        if self.cfg.get(name) is None:
            raise CheckpointError(f"{self.file} lacks the field '{name}'")
        return self.cfg[name]

    def one_of(self, *names, required=True):
        """The value of whichever of ``names`` is set (they must agree if several are)."""
        found = {n: self.cfg[n] for n in names if self.cfg.get(n) is not None}
        self.used.update(names)
        if len(set(map(json.dumps, found.values()))) > 1:
            raise CheckpointError(f"{self.file} fields {', '.join(map(repr, found))} disagree: "
                                  f"{found}")
        if not found:
            if required:
                raise CheckpointError(f"{self.file} lacks the field '{names[0]}'"
                                      + (f" (or {', '.join(map(repr, names[1:]))})"
                                         if len(names) > 1 else ""))
            return None
        return next(iter(found.values()))

    def expect(self, name, allowed, why):
        """Accept ``name`` only with a value in ``allowed`` (absent is fine)."""
        self.used.add(name)
        value = self.cfg.get(name)
        if value is not None and value not in allowed:
            raise CheckpointError(f"{self.file} field '{name}' is {value!r}: {why}")
        return value

    def refuse(self, name, why):
        self.used.add(name)
        raise CheckpointError(f"{self.file} field '{name}' is {self.cfg.get(name)!r}: {why}")

    def leftovers(self):
        return [n for n in self.cfg if n not in self.used and n not in INERT_FIELDS
                and not n.startswith("elmoe_")]


def _scheme(cfg, file):
    archs = cfg.get("architectures") or []
    kind = cfg.get("model_type")
    for a in archs:
        if a in ARCHITECTURES:
            if kind is not None and kind != ARCHITECTURES[a]:
                raise CheckpointError(f"{file} field 'model_type' is {kind!r} but "
                                      f"'architectures' names {a}: not an MoE architecture "
                                      f"this loader can trust")
            return ARCHITECTURES[a]
    if not archs and cfg.get("model_type") in MODEL_TYPES:
        return MODEL_TYPES[cfg["model_type"]]
    known = ", ".join(ARCHITECTURES)
    raise CheckpointError(
        f"{file} field 'architectures' is {archs!r} (model_type {cfg.get('model_type')!r}): "
        f"not an MoE architecture this loader knows ({known})")


_YARN_KEYS = {"factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "mscale",
              "mscale_all_dim", "attention_factor", "truncate"}


def _rope(f, head_dim):
    """``(theta, scaling pairs, partial rotary factor)`` from either config layout."""
    cfg, file = f.cfg, f.file
    if cfg.get("rope_parameters") is not None:
        params = cfg["rope_parameters"]
        if not isinstance(params, dict):
            raise CheckpointError(f"{file} field 'rope_parameters' is not an object")
        if params and all(isinstance(v, dict) for v in params.values()):
            # per layer type: one set of parameters for every type is all this model knows
            kinds = list(params.values())
            if any(k != kinds[0] for k in kinds):
                raise CheckpointError(f"{file} field 'rope_parameters' differs between layer "
                                      f"types {list(params)}; one rotary embedding is modelled")
            params = kinds[0]
        params = dict(params)
        if "rope_theta" not in params:
            raise CheckpointError(f"{file} field 'rope_parameters' lacks 'rope_theta'")
        theta = params.pop("rope_theta")
        if cfg.get("rope_theta") is not None and cfg["rope_theta"] != theta:
            raise CheckpointError(f"{file} fields 'rope_theta' ({cfg['rope_theta']}) and "
                                  f"'rope_parameters' ({theta}) disagree")
        kind = params.pop("rope_type", params.pop("type", "default"))
        partial = params.pop("partial_rotary_factor", cfg.get("partial_rotary_factor"))
        where = "rope_parameters"
    else:
        theta = cfg.get("rope_theta")
        theta = 10000.0 if theta is None else theta
        params = dict(cfg.get("rope_scaling") or {})
        kind = params.pop("rope_type", params.pop("type", "default"))
        partial = cfg.get("partial_rotary_factor")
        where = "rope_scaling"
    if kind not in ("default", "linear", "yarn"):
        raise CheckpointError(f"{file} field '{where}' has rope type {kind!r}; only plain, "
                              f"linear and YaRN rotary embeddings are modelled")
    known = {"default": set(), "linear": {"factor"}, "yarn": _YARN_KEYS}[kind]
    unknown = sorted(set(params) - known)
    if unknown:
        raise CheckpointError(f"{file} field '{where}' holds {unknown} for rope type {kind!r}; "
                              f"not modelled")
    if kind != "default":
        if kind == "yarn":
            if params.get("original_max_position_embeddings") is None:
                raise CheckpointError(f"{file} field '{where}' (YaRN) lacks "
                                      f"'original_max_position_embeddings'")
            if params.get("factor") is None:
                params["factor"] = (f.req("max_position_embeddings")
                                    / params["original_max_position_embeddings"])
        elif params.get("factor") is None:
            raise CheckpointError(f"{file} field '{where}' (linear) lacks 'factor'")
        params = {k: v for k, v in params.items() if v is not None}
        params["type"] = kind
    else:
        params = {}
    return float(theta), tuple(sorted(params.items())), partial


def read_config(path):
    """``(MoEConfig, scheme)`` from ``path/config.json``."""
    path = Path(path)
    if path.is_file():
        raise CheckpointError(f"{path} is a file; a checkpoint is a directory holding config.json "
                              f"and *.safetensors")
    if not path.is_dir():
        raise CheckpointError(f"{path} does not exist")
    file = path / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{path} has no config.json")
    try:
        cfg = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{file} is not a JSON object")
    scheme = _scheme(cfg, file)
    f = _Fields(cfg, file)
    config = _config(f, scheme)
    left = f.leftovers()
    if left:
        raise CheckpointError(f"{file} field '{left[0]}' ({cfg[left[0]]!r}) is not understood by "
                              f"the {scheme} loader and may change the arithmetic; refusing "
                              f"rather than ignoring it")
    return config, scheme


def _config(f, scheme):
    hidden, layers = f.req("hidden_size"), f.req("num_hidden_layers")
    heads = f.req("num_attention_heads")
    f.expect("hidden_act", ("silu",), "only SiLU-gated FFNs are modelled")
    f.expect("pretraining_tp", (1,), "tensor-parallel slicing of the reference is not modelled")
    f.expect("mlp_bias", (False,), "biases on dense/shared FFNs are not modelled")
    head_dim = f.get("head_dim") or hidden // heads
    theta, scaling, partial = _rope(f, head_dim)
    common = dict(vocab_size=f.req("vocab_size"), hidden_size=hidden, num_layers=layers,
                  num_heads=heads, num_kv_heads=f.get("num_key_value_heads", heads),
                  head_dim=head_dim, rms_eps=float(f.get("rms_norm_eps", 1e-6)),
                  rope_theta=theta, rope_scaling=scaling,
                  tie_embeddings=bool(f.get("tie_word_embeddings", False)),
                  name=f.cfg.get("_name_or_path") or scheme, top_k=f.req("num_experts_per_tok"))
    if partial is not None and float(partial) != 1.0:
        if scheme != "glm4_moe":
            raise CheckpointError(f"{f.file} sets partial_rotary_factor {partial}; partial "
                                  f"rotary dims are modelled for glm4_moe only")
        common["rotary_dim"] = int(head_dim * float(partial))
    if scheme not in ("qwen2_moe", "qwen3_moe", "mixtral"):
        f.expect("use_sliding_window", (False,), "sliding-window attention is modelled for "
                                                 "GPT-OSS only")
    extra = {"mixtral": _mixtral, "qwen2_moe": _qwen, "qwen3_moe": _qwen, "olmoe": _olmoe,
             "gpt_oss": _gpt_oss, "glm4_moe": _glm}.get(scheme, _deepseek)(f, scheme, common)
    try:
        return MoEConfig(**{**common, **extra})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{f.file} describes an unsupported model: {exc}") from None


def _full_attention_only(f):
    if f.get("use_sliding_window", False):
        f.refuse("use_sliding_window", "sliding-window attention is modelled for GPT-OSS only")
    f.used.update(("sliding_window", "max_window_layers"))
    types = f.get("layer_types")
    if types is not None and any(t != "full_attention" for t in types):
        f.refuse("layer_types", "only full attention is modelled for this architecture")


def _mixtral(f, scheme, common):
    if f.get("sliding_window"):
        f.refuse("sliding_window", "sliding-window attention is modelled for GPT-OSS only")
    return dict(num_experts=f.one_of("num_local_experts", "num_experts"),
                expert_ffn=f.req("intermediate_size"), norm_topk_prob=True)


def _sparse_layers(f, layers):
    step, only = f.get("decoder_sparse_step", 1), f.get("mlp_only_layers", [])
    return tuple(i for i in range(layers) if i in only or (i + 1) % step)


def _qwen(f, scheme, common):
    _full_attention_only(f)
    dense = _sparse_layers(f, common["num_layers"])
    extra = dict(num_experts=f.one_of("num_experts", "num_local_experts"),
                 expert_ffn=f.req("moe_intermediate_size"),
                 norm_topk_prob=bool(f.get("norm_topk_prob", False)), dense_layers=dense,
                 dense_ffn=f.req("intermediate_size") if dense else 0)
    f.used.add("intermediate_size")
    if scheme == "qwen2_moe":
        shared = f.get("shared_expert_intermediate_size", 0)
        # Qwen2-MoE's q/k/v projections carry biases unless ``qkv_bias`` says otherwise
        extra.update(shared_ffn=shared, shared_gate=bool(shared),
                     attention_bias=bool(f.get("qkv_bias", True)))
    else:
        extra.update(qk_norm="head", attention_bias=bool(f.get("attention_bias", False)))
    return extra


def _olmoe(f, scheme, common):
    if f.get("clip_qkv") is not None:
        f.refuse("clip_qkv", "q/k/v clipping is not modelled")
    return dict(num_experts=f.one_of("num_experts", "num_local_experts"),
                expert_ffn=f.req("intermediate_size"),
                norm_topk_prob=bool(f.get("norm_topk_prob", False)), qk_norm="full",
                attention_bias=bool(f.get("attention_bias", False)))


def _gpt_oss(f, scheme, common):
    types = f.req("layer_types")
    if len(types) != common["num_layers"] or set(types) - {"sliding_attention", "full_attention"}:
        f.refuse("layer_types", f"expected {common['num_layers']} entries of sliding_attention / "
                                f"full_attention")
    sliding = tuple(i for i, t in enumerate(types) if t == "sliding_attention")
    quant = f.get("quantization_config")
    fmt = "int8"
    if quant is not None:
        if quant.get("quant_method") != "mxfp4":
            f.refuse("quantization_config", "only MXFP4 expert weights are read")
        fmt = "mxfp4"
    top_k = common["top_k"]
    if f.get("experts_per_token", top_k) != top_k:
        f.refuse("experts_per_token", f"disagrees with num_experts_per_tok ({top_k})")
    bias = bool(f.get("attention_bias", True))
    return dict(num_experts=f.one_of("num_local_experts", "num_experts"),
                expert_ffn=f.req("intermediate_size"), norm_topk_prob=True,
                attention_bias=bias, o_bias=bias, attention_sinks=True,
                sliding_window=f.req("sliding_window") if sliding else 0, sliding_layers=sliding,
                router_logit_bias=True, expert_bias=True, activation="clamped",
                swiglu_alpha=float(f.get("swiglu_alpha", 1.702)),
                swiglu_limit=float(f.get("swiglu_limit", 7.0)), expert_format=fmt)


#: Defaults of the fields transformers' config classes fill in when config.json omits them, per
#: model type (the routing of the type, never a generic fallback).
_TYPE_DEFAULTS = {
    "deepseek_v2": dict(n_group=1, topk_group=1, routed_scaling_factor=1.0,
                        first_k_dense_replace=0, topk_method="greedy"),
    "deepseek_v3": dict(n_group=8, topk_group=4, routed_scaling_factor=2.5,
                        first_k_dense_replace=3, norm_topk_prob=True, rope_interleave=True),
    "glm4_moe": dict(n_group=1, topk_group=1, routed_scaling_factor=1.0, first_k_dense_replace=1,
                     norm_topk_prob=True),
    "glm4_moe_lite": dict(n_group=1, topk_group=1, routed_scaling_factor=1.8,
                          first_k_dense_replace=1, norm_topk_prob=True, rope_interleave=True),
}


def _routing(f, scheme, common):
    d = _TYPE_DEFAULTS[scheme]
    get = lambda name: f.get(name, d.get(name))
    layers = common["num_layers"]
    if "mlp_layer_types" in f:
        kinds = f.get("mlp_layer_types")
        if len(kinds) != layers or set(kinds) - {"dense", "sparse"}:
            f.refuse("mlp_layer_types", f"expected {layers} entries of dense / sparse")
        dense = tuple(i for i, k in enumerate(kinds) if k == "dense")
        f.used.add("first_k_dense_replace")
    else:
        dense = tuple(range(min(get("first_k_dense_replace"), layers)))
    f.expect("moe_layer_freq", (1,), "only consecutive MoE layers after the dense ones are "
                                     "modelled (as transformers does)")
    experts, ffn = f.one_of("n_routed_experts", "num_local_experts"), f.req("moe_intermediate_size")
    shared = f.get("n_shared_experts", 0) or 0
    extra = dict(num_experts=experts, expert_ffn=ffn, shared_ffn=shared * ffn, dense_layers=dense,
                 dense_ffn=f.req("intermediate_size") if dense else 0,
                 routed_scaling_factor=float(get("routed_scaling_factor")))
    f.used.add("intermediate_size")
    if scheme in V3_ROUTING:
        f.expect("topk_method", ("noaux_tc",), f"{scheme} routes by noaux_tc (sigmoid scores with "
                                               f"the score-correction bias)")
        f.expect("scoring_func", ("sigmoid",), f"{scheme} scores experts with a sigmoid")
        extra.update(scoring="sigmoid", score_bias=True, n_group=get("n_group"),
                     topk_group=get("topk_group"), norm_topk_prob=bool(get("norm_topk_prob")))
    else:
        method = get("topk_method")
        if method not in ("greedy", "group_limited_greedy"):
            f.refuse("topk_method", "DeepSeek-V2 routes by greedy or group_limited_greedy")
        f.expect("scoring_func", ("softmax",), "DeepSeek-V2 scores experts with a softmax")
        if f.get("norm_topk_prob", False):
            f.refuse("norm_topk_prob", "transformers' DeepSeek-V2 never renormalises the top-k "
                                       "weights and DeepSeek's own code does: ambiguous")
        groups = method == "group_limited_greedy"
        extra.update(scoring="softmax", norm_topk_prob=False,
                     n_group=get("n_group") if groups else 1,
                     topk_group=get("topk_group") if groups else 1)
        f.used.update(("n_group", "topk_group"))
    return extra


def _glm(f, scheme, common):
    extra = _routing(f, scheme, common)
    extra.update(qk_norm="head" if f.get("use_qk_norm", False) else "none",
                 attention_bias=bool(f.get("attention_bias", False)))
    return extra


def _deepseek(f, scheme, common):
    extra = _routing(f, scheme, common)
    heads = common["num_heads"]
    kv_heads = f.get("num_key_value_heads", heads)
    if kv_heads != heads:
        f.refuse("num_key_value_heads", f"MLA expands keys and values for all {heads} heads")
    if f.get("attention_bias", False):
        f.refuse("attention_bias", "biases on the MLA projections are not modelled")
    nope, rope = f.req("qk_nope_head_dim"), f.req("qk_rope_head_dim")
    if f.get("qk_head_dim", nope + rope) != nope + rope:
        f.refuse("qk_head_dim", f"must be qk_nope_head_dim + qk_rope_head_dim ({nope + rope})")
    f.used.add("head_dim")      # transformers sets it to qk_rope_head_dim; the dims above rule
    interleave = True if scheme == "deepseek_v2" else bool(
        f.get("rope_interleave", _TYPE_DEFAULTS[scheme].get("rope_interleave")))
    scaling = dict(common["rope_scaling"])
    scale = (nope + rope) ** -0.5
    if scaling.get("mscale_all_dim"):
        # DeepSeek folds YaRN's mscale into the softmax scale of every dim
        m = 0.1 * scaling["mscale_all_dim"] * np.log(scaling["factor"]) + 1.0 \
            if scaling["factor"] > 1 else 1.0
        scale *= m * m
    common.update(num_kv_heads=heads, head_dim=nope + rope)
    extra.update(attention="mla", q_lora_rank=f.get("q_lora_rank") or 0,
                 kv_lora_rank=f.req("kv_lora_rank"), qk_rope_dim=rope,
                 v_head_dim=f.req("v_head_dim"), rope_interleave=interleave,
                 softmax_scale=float(scale))
    return extra


# -- tensors ---------------------------------------------------------------------------------------

#: safetensors dtypes to NumPy (BF16 is read as its bits and widened).
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
           "I16": "<i2", "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8",
           "BOOL": "?"}


class _File:
    """One safetensors file: an 8-byte little-endian header length, a JSON header of
    ``{name: {dtype, shape, data_offsets}}``, then the data; tensors memory-mapped on demand."""

    def __init__(self, file):
        self.file = Path(file)
        try:
            size = self.file.stat().st_size
            with open(self.file, "rb") as fh:
                head = fh.read(8)
                if size == 0:
                    raise CheckpointError(f"{self.file} is empty")
                if len(head) < 8:
                    raise CheckpointError(f"{self.file} is not a safetensors file (only {size} "
                                          f"bytes)")
                n = int.from_bytes(head, "little")
                if n > size - 8:
                    raise CheckpointError(f"{self.file} is not a safetensors file or is "
                                          f"truncated: its header claims {n} bytes, the file "
                                          f"holds {size - 8} after the length")
                raw = fh.read(n)
        except OSError as exc:
            raise CheckpointError(f"cannot read {self.file}: {exc.strerror}") from None
        try:
            header = json.loads(raw)
            assert isinstance(header, dict)
        except (ValueError, AssertionError):
            raise CheckpointError(f"{self.file} is not a safetensors file: its header is not a "
                                  f"JSON object") from None
        header.pop("__metadata__", None)
        self.start, self.tensors = 8 + n, {}
        for name, info in header.items():
            try:
                dtype, shape, (a, b) = info["dtype"], list(info["shape"]), info["data_offsets"]
                width = np.dtype(_DTYPES[dtype]).itemsize
            except (KeyError, TypeError, ValueError):
                raise CheckpointError(f"{self.file}: tensor '{name}' has a malformed or "
                                      f"unsupported header entry {info!r}") from None
            if b - a != width * int(np.prod(shape, dtype=np.int64)) or a < 0:
                raise CheckpointError(f"{self.file}: tensor '{name}' spans bytes {a}..{b}, which "
                                      f"does not fit its {dtype} shape {shape}")
            if self.start + b > size:
                raise CheckpointError(f"{self.file} is truncated: tensor '{name}' ends at byte "
                                      f"{self.start + b}, the file has {size}")
            self.tensors[name] = (dtype, tuple(shape), a)

    def read(self, name):
        dtype, shape, a = self.tensors[name]
        if not int(np.prod(shape, dtype=np.int64)):
            return np.zeros(shape, _DTYPES[dtype])
        data = np.memmap(self.file, dtype=_DTYPES[dtype], mode="r", offset=self.start + a,
                         shape=shape)
        if dtype == "BF16":
            return (data.astype(np.uint32) << 16).view(np.float32)
        return data


class TensorStore:
    """The tensors of a (possibly sharded) safetensors checkpoint, memory-mapped on demand."""

    def __init__(self, path):
        self.path = Path(path)
        index = self.path / "model.safetensors.index.json"
        self.where, self.files = {}, {}
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
                assert isinstance(weight_map, dict)
            except (json.JSONDecodeError, KeyError, TypeError, AssertionError) as exc:
                raise CheckpointError(f"{index} has no valid 'weight_map': {exc}") from None
            for name, shard in weight_map.items():
                file = self.path / shard
                if not file.is_file():
                    raise CheckpointError(f"{index} maps tensor '{name}' to the missing shard "
                                          f"'{shard}'")
                if file not in self.files:
                    self.files[file] = _File(file)
                if name not in self.files[file].tensors:
                    raise CheckpointError(f"shard {file} lacks tensor '{name}' that {index.name} "
                                          f"maps there")
                self.where[name] = file
        else:
            files = sorted(self.path.glob("*.safetensors"))
            if not files:
                raise CheckpointError(f"{self.path} holds no *.safetensors file")
            for file in files:
                self.files[file] = _File(file)
                for name in self.files[file].tensors:
                    if name in self.where:
                        raise CheckpointError(f"tensor '{name}' is in both {self.where[name]} "
                                              f"and {file}")
                    self.where[name] = file

    def __contains__(self, name):
        return name in self.where

    def names(self):
        return list(self.where)

    @property
    def nbytes(self):
        return sum(f.file.stat().st_size for f in self.files.values())

    def dtype(self, name):
        return self.files[self.where[name]].tensors[name][0]

    def get(self, name, what=""):
        if name not in self.where:
            raise CheckpointError(f"checkpoint {self.path} lacks tensor '{name}'"
                                  + (f" ({what})" if what else ""))
        return self.files[self.where[name]].read(name)

    def file_of(self, name):
        return self.where[name]


# -- names -----------------------------------------------------------------------------------------

_PROJ = ("gate_proj", "up_proj", "down_proj")


def _names(scheme, layer, config):
    """``{ours: HF tensor name}`` for every entry of :func:`linear_names` (GPT-OSS experts
    excepted: they are fused, see :func:`_gpt_oss_experts`)."""
    c = config
    p = f"model.layers.{layer}."
    a = p + "self_attn."
    names = {"attn_norm": p + "input_layernorm.weight",
             "ffn_norm": p + "post_attention_layernorm.weight",
             "q": a + "q_proj.weight", "k": a + "k_proj.weight", "v": a + "v_proj.weight",
             "o": a + "o_proj.weight", "q_bias": a + "q_proj.bias", "k_bias": a + "k_proj.bias",
             "v_bias": a + "v_proj.bias", "o_bias": a + "o_proj.bias",
             "q_norm": a + "q_norm.weight", "k_norm": a + "k_norm.weight", "sinks": a + "sinks",
             "q_a": a + "q_a_proj.weight", "q_a_norm": a + "q_a_layernorm.weight",
             "q_b": a + "q_b_proj.weight", "kv_a": a + "kv_a_proj_with_mqa.weight",
             "kv_a_norm": a + "kv_a_layernorm.weight", "kv_b": a + "kv_b_proj.weight"}

    def ffn(ours, theirs, parts=_PROJ):
        names.update({f"{ours}.{x}": f"{theirs}.{y}.weight"
                      for x, y in zip(("gate", "up", "down"), parts)})
    ffn("dense", p + "mlp")
    if scheme == "mixtral":
        names["router"] = p + "block_sparse_moe.gate.weight"
        for e in range(c.num_experts):
            ffn(f"experts.{e}", p + f"block_sparse_moe.experts.{e}", ("w1", "w3", "w2"))
    elif scheme == "gpt_oss":
        names["router"] = p + "mlp.router.weight"
        names["router_logit_bias"] = p + "mlp.router.bias"
    else:
        names["router"] = p + "mlp.gate.weight"
        names["router_bias"] = p + "mlp.gate.e_score_correction_bias"
        for e in range(c.num_experts):
            ffn(f"experts.{e}", p + f"mlp.experts.{e}")
        ffn("shared", p + ("mlp.shared_expert" if scheme == "qwen2_moe" else "mlp.shared_experts"))
        names["shared_gate"] = p + "mlp.shared_expert_gate.weight"
    return names


def _gpt_oss_expert_names(layer, config):
    """The fused expert tensors of a GPT-OSS layer, ``{name: (what, shape, dtype kind)}``."""
    c = config
    p = f"model.layers.{layer}.mlp.experts."
    E, h, f = c.num_experts, c.hidden_size, c.expert_ffn
    out = {p + "gate_up_proj_bias": ("expert gate/up biases", (E, 2 * f)),
           p + "down_proj_bias": ("expert down biases", (E, h))}
    if c.expert_format == "mxfp4":
        out.update({p + "gate_up_proj_blocks": ("MXFP4 gate/up blocks", (E, 2 * f, h // 32, 16)),
                    p + "gate_up_proj_scales": ("MXFP4 gate/up scales", (E, 2 * f, h // 32)),
                    p + "down_proj_blocks": ("MXFP4 down blocks", (E, h, f // 32, 16)),
                    p + "down_proj_scales": ("MXFP4 down scales", (E, h, f // 32))})
    else:
        out.update({p + "gate_up_proj": ("expert gate/up", (E, h, 2 * f)),
                    p + "down_proj": ("expert down", (E, f, h))})
    return out


#: MXFP4 (OCP microscaling, E2M1 elements): the value of each 4-bit code.
FP4_VALUES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                       -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32)


def mxfp4_decode(blocks, scales):
    """Float32 ``[out, in]`` of MXFP4 ``blocks`` [out, in/32, 16] (two codes per byte, low nibble
    first) with E8M0 ``scales`` [out, in/32] (a power of two, ``2**(s - 127)``)."""
    blocks = np.asarray(blocks, dtype=np.uint8)
    vals = np.empty(blocks.shape[:-1] + (32,), dtype=np.float32)
    vals[..., 0::2] = FP4_VALUES[blocks & 0x0F]
    vals[..., 1::2] = FP4_VALUES[blocks >> 4]
    vals = np.ldexp(vals, np.asarray(scales, np.int32)[..., None] - 127)
    return vals.reshape(blocks.shape[0], -1)


class _Layers:
    """The decoder layers of a checkpoint, read one at a time as they are iterated (so a model is
    quantised layer by layer without holding every float weight at once)."""

    def __init__(self, read, count, progress=None):
        self._read, self._count, self._progress = read, count, progress

    def __len__(self):
        return self._count

    def __iter__(self):
        for i in range(self._count):
            layer = self._read(i)
            if self._progress is not None:
                self._progress(i + 1, self._count)
            yield layer


def _expected(scheme, config, store):
    """``{HF name: (what, shape, layer)}`` of every tensor the model reads."""
    c = config
    out = {"model.embed_tokens.weight": ("token embedding", (c.vocab_size, c.hidden_size), None),
           "model.norm.weight": ("final norm", (c.hidden_size,), None)}
    if not (c.tie_embeddings and "lm_head.weight" not in store):
        out["lm_head.weight"] = ("LM head", (c.vocab_size, c.hidden_size), None)
    for i in range(c.num_layers):
        hf = _names(scheme, i, c)
        for ours, shape in linear_names(c, i).items():
            if scheme == "gpt_oss" and ours.startswith("experts."):
                continue
            out[hf[ours]] = (f"layer {i} {ours}", shape[::-1], i)
        if scheme == "gpt_oss" and i not in c.dense_layers:
            for name, (what, shape) in _gpt_oss_expert_names(i, c).items():
                out[name] = (f"layer {i} {what}", shape, i)
    return out


def _check_names(scheme, config, store, nextn):
    c = config
    expected = _expected(scheme, c, store)
    for name, (what, _, _) in expected.items():
        if name not in store:
            raise CheckpointError(f"checkpoint {store.path} lacks tensor '{name}' ({what})")
    layer_of = re.compile(r"model\.layers\.(\d+)\.")
    expert_of = re.compile(r"\.experts\.(\d+)\.")
    for name in store.names():
        if name in expected or name.endswith("rotary_emb.inv_freq"):
            continue
        m = layer_of.match(name)
        if m and c.num_layers <= int(m.group(1)) < c.num_layers + nextn:
            continue        # a multi-token-prediction layer (num_nextn_predict_layers)
        file = store.file_of(name)
        if m and int(m.group(1)) >= c.num_layers:
            raise CheckpointError(f"{file} holds tensor '{name}' of layer {m.group(1)}, but "
                                  f"config.json declares {c.num_layers} layers")
        e = expert_of.search(name)
        if e and int(e.group(1)) >= c.num_experts:
            raise CheckpointError(f"{file} holds tensor '{name}' of expert {e.group(1)}, but "
                                  f"config.json declares {c.num_experts} experts per layer")
        raise CheckpointError(f"{file} holds tensor '{name}', which the {scheme} model that "
                              f"config.json describes does not use")
    return expected


def load_weights(path, progress=None, keep_float=False, info=None):
    """``(config, ModelWeights, scheme)`` of a checkpoint directory. The embedding, final norm
    and LM head are read now; ``weights.layers`` reads each layer when iterated, memory-mapping and
    quantising one tensor at a time (``keep_float``: also keep float64 copies, for the reference
    path). ``progress(done, total)`` is called after each layer; ``info`` (a dict) receives load
    figures (MXFP4 re-quantisation error)."""
    config, scheme = read_config(path)
    cfg = json.loads((Path(path) / "config.json").read_text())
    store = TensorStore(path)
    expected = _check_names(scheme, config, store, int(cfg.get("num_nextn_predict_layers") or 0))
    info = {} if info is None else info
    err = info.setdefault("_mxfp4", [0.0, 0.0])
    c = config

    def tensor(name, quantise=False, bias=None):
        what, shape, _ = expected[name]
        value = store.get(name, what)
        if value.shape != tuple(shape):
            raise CheckpointError(f"tensor '{name}' ({what}) has shape {tuple(value.shape)}, "
                                  f"expected {tuple(shape)}")
        if not np.issubdtype(value.dtype, np.floating):
            raise CheckpointError(f"tensor '{name}' ({what}) has dtype {store.dtype(name)}, "
                                  f"expected a floating-point type")
        return _finite(value, name, store, quantise, keep_float, what)

    def layer(i):
        hf = _names(scheme, i, c)
        values = {}
        for ours, shape in linear_names(c, i).items():
            if scheme == "gpt_oss" and ours.startswith("experts."):
                continue
            values[ours] = tensor(hf[ours], quantise=len(shape) == 2)
        if scheme == "gpt_oss" and i not in c.dense_layers:
            values.update(_gpt_oss_experts(store, i, c, expected, keep_float, err))
        return layer_of(c, i, values)

    embed = tensor("model.embed_tokens.weight").astype(np.float32)
    final = tensor("model.norm.weight")
    if "lm_head.weight" in expected:
        lm_head = tensor("lm_head.weight", quantise=True)
    else:
        lm_head = QLinear(embed.T, keep_float=keep_float, name="lm_head")
    weights = ModelWeights(embed=embed, layers=_Layers(layer, c.num_layers, progress),
                           final_norm=final, lm_head=lm_head)
    check_weights(config, weights, layers=False)
    return config, weights, scheme


def _finite(value, name, store, quantise, keep_float, what):
    """``value`` checked for NaN/inf (in blocks, memory-mapped) and, for a matrix, quantised
    (``[out, in]`` transposed to ``[in, out]``); vectors come back as float64."""
    flat = value.reshape(-1)
    step = 1 << 22
    for j in range(0, flat.size, step):
        if not np.isfinite(flat[j:j + step]).all():
            raise CheckpointError(f"{store.file_of(name)}: tensor '{name}' ({what}) holds NaN or "
                                  f"infinite values")
    if quantise:
        return QLinear(value.T, keep_float=keep_float, name=name)
    return np.array(value, dtype=np.float64) if value.ndim == 1 else value


def _gpt_oss_experts(store, i, c, expected, keep_float, err):
    """GPT-OSS's fused experts of layer ``i`` as ``{experts.<e>.<part>: value}``: gate and up
    de-interleaved from ``gate_up_proj`` (even and odd columns), MXFP4 decoded and re-quantised
    (its squared error and norm added to ``err``)."""
    names = _gpt_oss_expert_names(i, c)
    p = f"model.layers.{i}.mlp.experts."

    def get(suffix):
        name = p + suffix
        value = store.get(name, expected[name][0])
        if value.shape != expected[name][1]:
            raise CheckpointError(f"tensor '{name}' ({expected[name][0]}) has shape "
                                  f"{tuple(value.shape)}, expected {expected[name][1]}")
        if c.expert_format == "mxfp4" and ("blocks" in suffix or "scales" in suffix):
            if store.dtype(name) != "U8":
                raise CheckpointError(f"tensor '{name}' has dtype {store.dtype(name)}, expected "
                                      f"U8 (MXFP4)")
            return value
        return _finite(value, name, store, False, False, expected[name][0])

    out = {}
    gu_bias, down_bias = get("gate_up_proj_bias"), get("down_proj_bias")
    if c.expert_format == "mxfp4":
        gu_blocks, gu_scales = get("gate_up_proj_blocks"), get("gate_up_proj_scales")
        d_blocks, d_scales = get("down_proj_blocks"), get("down_proj_scales")
    else:
        gu, down = get("gate_up_proj"), get("down_proj")
    for e in range(c.num_experts):
        if c.expert_format == "mxfp4":
            w_gu = mxfp4_decode(gu_blocks[e], gu_scales[e]).T       # [hidden, 2 ffn]
            w_down = mxfp4_decode(d_blocks[e], d_scales[e]).T       # [ffn, hidden]
        else:
            w_gu, w_down = gu[e], down[e]
        parts = {"gate": w_gu[:, 0::2], "up": w_gu[:, 1::2], "down": w_down}
        for part, w in parts.items():
            lin = QLinear(w, keep_float=keep_float, name=f"{p}{e}.{part}")
            if c.expert_format == "mxfp4":
                w64 = np.asarray(w, np.float64)
                err[0] += float(((lin.quant.dequantize() - w64) ** 2).sum())
                err[1] += float((w64 ** 2).sum())
            out[f"experts.{e}.{part}"] = lin
        out[f"experts.{e}.gate_bias"] = np.asarray(gu_bias[e, 0::2], np.float64)
        out[f"experts.{e}.up_bias"] = np.asarray(gu_bias[e, 1::2], np.float64)
        out[f"experts.{e}.down_bias"] = np.asarray(down_bias[e], np.float64)
    return out


def load_checkpoint(path, keep_float=False, progress=None):
    """An :class:`MoEModel` (quantised on load) from a checkpoint directory; also its scheme.
    ``model.checkpoint_info`` holds the scheme, the files' size, the KV cache bytes per token and,
    for MXFP4 experts, the relative RMS error of their re-quantisation to INT8 G32."""
    info = {}
    config, weights, scheme = load_weights(path, progress, keep_float, info)
    try:
        model = MoEModel(config, weights, keep_float=keep_float)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    sq, norm = info.pop("_mxfp4")
    model.checkpoint_info = {
        "scheme": scheme, "path": str(path), "bytes": TensorStore(path).nbytes,
        "expert_format": config.expert_format,
        "kv_bytes_per_token": config.num_layers * config.kv_bytes_per_token,
        "mxfp4_requant_rel_rms_error": float(np.sqrt(sq / norm)) if norm else None}
    log.info("loaded %s (%s naming)", config.describe(), scheme)
    return model, scheme


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
