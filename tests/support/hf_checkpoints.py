"""Hugging Face checkpoints for tests, written independently of the loader: every tensor name is
spelled out by hand in the layout the ``transformers`` modelling code uses (``[out, in]``
weights), one small configuration per naming scheme (:data:`SCHEMES`).

Test support, not a test module: the checkpoint tests and the command-line tests both write
checkpoints with it.
"""

import json

import numpy as np
from safetensors.numpy import save_file

from sw_model.model.moe import ExpertWeights, MoEConfig

__all__ = ["BASE", "SCHEMES", "hf_tensors", "as_float32", "hf_config", "write"]

BASE = dict(vocab_size=96, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
            num_experts=8, top_k=2, expert_ffn=32, rms_eps=1e-5, rope_theta=10000.0)

# scheme -> (our config, extra config.json fields)
SCHEMES = {
    "mixtral": (MoEConfig(**BASE, norm_topk_prob=True),
                {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
                 "num_local_experts": 8, "intermediate_size": 32, "sliding_window": None}),
    "qwen2_moe": (MoEConfig(**BASE, norm_topk_prob=False, shared_ffn=64, shared_gate=True,
                            attention_bias=True),
                  {"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe",
                   "num_experts": 8, "moe_intermediate_size": 32, "intermediate_size": 128,
                   "shared_expert_intermediate_size": 64, "norm_topk_prob": False,
                   "decoder_sparse_step": 1, "mlp_only_layers": [], "sliding_window": 4096,
                   "use_sliding_window": False}),
    "qwen3_moe": (MoEConfig(**BASE, norm_topk_prob=True, qk_norm="head", dense_layers=(0,),
                            dense_ffn=96),
                  {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
                   "num_experts": 8, "moe_intermediate_size": 32, "intermediate_size": 96,
                   "norm_topk_prob": True, "mlp_only_layers": [0], "attention_bias": False}),
    "olmoe": (MoEConfig(**BASE, norm_topk_prob=False, qk_norm="full"),
              {"architectures": ["OlmoeForCausalLM"], "model_type": "olmoe", "num_experts": 8,
               "intermediate_size": 32, "norm_topk_prob": False, "clip_qkv": None}),
    "deepseek_v2": (MoEConfig(**{**BASE, "num_kv_heads": 4, "head_dim": 24},
                              norm_topk_prob=False, n_group=4, topk_group=2,
                              routed_scaling_factor=1.5, shared_ffn=64, dense_layers=(0,),
                              dense_ffn=96, attention="mla", kv_lora_rank=32, qk_rope_dim=8,
                              v_head_dim=16, rope_interleave=True, softmax_scale=24 ** -0.5),
                    {"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
                     "n_routed_experts": 8, "moe_intermediate_size": 32, "n_shared_experts": 2,
                     "intermediate_size": 96, "first_k_dense_replace": 1, "moe_layer_freq": 1,
                     "topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2,
                     "scoring_func": "softmax", "routed_scaling_factor": 1.5,
                     "norm_topk_prob": False, "kv_lora_rank": 32, "q_lora_rank": None,
                     "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
                     "num_key_value_heads": 4}),
    "deepseek_v3": (MoEConfig(**{**BASE, "num_kv_heads": 4, "head_dim": 24},
                              norm_topk_prob=True, scoring="sigmoid", score_bias=True,
                              n_group=4, topk_group=2, routed_scaling_factor=2.5, shared_ffn=32,
                              attention="mla", q_lora_rank=32, kv_lora_rank=32, qk_rope_dim=8,
                              v_head_dim=32, rope_interleave=True, softmax_scale=24 ** -0.5),
                    {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
                     "n_routed_experts": 8, "moe_intermediate_size": 32, "n_shared_experts": 1,
                     "intermediate_size": 96, "first_k_dense_replace": 0, "n_group": 4,
                     "topk_group": 2, "routed_scaling_factor": 2.5, "norm_topk_prob": True,
                     "kv_lora_rank": 32, "q_lora_rank": 32, "qk_nope_head_dim": 16,
                     "qk_rope_head_dim": 8, "v_head_dim": 32, "num_key_value_heads": 4}),
    "glm4_moe": (MoEConfig(**BASE, norm_topk_prob=True, scoring="sigmoid", score_bias=True,
                           n_group=2, topk_group=1, routed_scaling_factor=1.5, shared_ffn=32,
                           dense_layers=(0,), dense_ffn=96, qk_norm="head", attention_bias=True,
                           rotary_dim=8),
                 {"architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe",
                  "n_routed_experts": 8, "moe_intermediate_size": 32, "n_shared_experts": 1,
                  "intermediate_size": 96, "first_k_dense_replace": 1, "n_group": 2,
                  "topk_group": 1, "routed_scaling_factor": 1.5, "norm_topk_prob": True,
                  "partial_rotary_factor": 0.5, "use_qk_norm": True, "attention_bias": True}),
}


def hf_tensors(scheme, config, w):
    """``{name: array}`` in the scheme's Hugging Face naming, ``[out, in]`` weights."""
    t = {"model.embed_tokens.weight": w.embed, "model.norm.weight": w.final_norm,
         "lm_head.weight": w.lm_head.T}
    for i, lw in enumerate(w.layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = lw.attn_norm
        t[p + "post_attention_layernorm.weight"] = lw.ffn_norm
        if config.attention == "mla":
            a = p + "self_attn."
            if config.q_lora_rank:
                t[a + "q_a_proj.weight"] = lw.q_a.T
                t[a + "q_a_layernorm.weight"] = lw.q_a_norm
                t[a + "q_b_proj.weight"] = lw.q_b.T
            else:
                t[a + "q_proj.weight"] = lw.q.T
            t[a + "kv_a_proj_with_mqa.weight"] = lw.kv_a.T
            t[a + "kv_a_layernorm.weight"] = lw.kv_a_norm
            t[a + "kv_b_proj.weight"] = lw.kv_b.T
            t[a + "o_proj.weight"] = lw.o.T
        else:
            for n in "qkvo":
                t[p + f"self_attn.{n}_proj.weight"] = getattr(lw, n).T
        if config.attention_bias:
            for n in "qkv":
                t[p + f"self_attn.{n}_proj.bias"] = getattr(lw, f"{n}_bias")
        if config.qk_norm != "none":
            t[p + "self_attn.q_norm.weight"] = lw.q_norm
            t[p + "self_attn.k_norm.weight"] = lw.k_norm

        def swiglu(prefix, ffn, names=("gate_proj", "up_proj", "down_proj")):
            for name, m in zip(names, (ffn.gate, ffn.up, ffn.down)):
                t[f"{prefix}.{name}.weight"] = m.T

        if lw.dense is not None:
            swiglu(p + "mlp", lw.dense)
            continue
        if scheme == "mixtral":
            t[p + "block_sparse_moe.gate.weight"] = lw.router.T
            for e, ffn in enumerate(lw.experts):
                swiglu(p + f"block_sparse_moe.experts.{e}", ffn, ("w1", "w3", "w2"))
            continue
        t[p + "mlp.gate.weight"] = lw.router.T
        for e, ffn in enumerate(lw.experts):
            swiglu(p + f"mlp.experts.{e}", ffn)
        if scheme == "qwen2_moe":
            swiglu(p + "mlp.shared_expert", lw.shared)
            t[p + "mlp.shared_expert_gate.weight"] = lw.shared_gate.T
        elif lw.shared is not None:
            swiglu(p + "mlp.shared_experts", lw.shared)
        if lw.router_bias is not None:
            t[p + "mlp.gate.e_score_correction_bias"] = lw.router_bias
    return t


def as_float32(w):
    """The same weights rounded to float32 (what the checkpoint stores)."""
    r = lambda a: None if a is None else np.asarray(a, np.float32).astype(np.float64)
    ffn = lambda f: None if f is None else ExpertWeights(r(f.gate), r(f.up), r(f.down))
    for lw in w.layers:
        for name, value in vars(lw).items():
            if isinstance(value, np.ndarray):
                setattr(lw, name, r(value))
        lw.dense, lw.shared = ffn(lw.dense), ffn(lw.shared)
        lw.experts = None if lw.experts is None else [ffn(e) for e in lw.experts]
    w.embed, w.final_norm, w.lm_head = r(w.embed), r(w.final_norm), r(w.lm_head)
    return w


def hf_config(config, extra):
    """The ``config.json`` of ``config`` with the scheme's ``extra`` fields."""
    return {"vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_layers, "num_attention_heads": config.num_heads,
            "num_key_value_heads": config.num_kv_heads, "head_dim": config.head_dim,
            "num_experts_per_tok": config.top_k, "rms_norm_eps": config.rms_eps,
            "rope_theta": config.rope_theta, "tie_word_embeddings": False,
            "rope_scaling": None, **extra}


def write(path, scheme, tensors, config_json, shards=1):
    """Write ``config.json`` and the tensors (float32) into ``path``, in ``shards`` files with an
    index when more than one."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config_json))
    names = sorted(tensors)
    if shards == 1:
        save_file({n: np.ascontiguousarray(tensors[n], np.float32) for n in names},
                  str(path / "model.safetensors"))
        return
    weight_map = {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = names[s::shards]
        save_file({n: np.ascontiguousarray(tensors[n], np.float32) for n in part}, str(path / file))
        weight_map.update({n: file for n in part})
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
