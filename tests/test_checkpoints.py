"""Hugging Face checkpoints in the Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE and DeepSeek naming schemes
load and give the same logits as the model built directly from the same tensors; bad checkpoints
get errors naming the tensor or field.

The writer here spells every tensor name out by hand (independently of the loader's tables), in the
layout the Hugging Face ``transformers`` modelling code uses: ``[out, in]`` weights.
"""

import dataclasses
import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from sw_model.checkpoints import CheckpointError, load_checkpoint, read_config
from sw_model.moe import ExpertWeights, MoEConfig, MoEModel, random_weights

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
    "deepseek_v2": (MoEConfig(**BASE, norm_topk_prob=False, n_group=4, topk_group=2,
                              routed_scaling_factor=1.5, shared_ffn=64, dense_layers=(0,),
                              dense_ffn=96),
                    {"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
                     "n_routed_experts": 8, "moe_intermediate_size": 32, "n_shared_experts": 2,
                     "intermediate_size": 96, "first_k_dense_replace": 1, "moe_layer_freq": 1,
                     "topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2,
                     "scoring_func": "softmax", "routed_scaling_factor": 1.5,
                     "norm_topk_prob": False, "kv_lora_rank": None, "q_lora_rank": None}),
    "deepseek_v3": (MoEConfig(**BASE, norm_topk_prob=True, scoring="sigmoid", score_bias=True,
                              n_group=4, topk_group=2, routed_scaling_factor=2.5, shared_ffn=32),
                    {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
                     "n_routed_experts": 8, "moe_intermediate_size": 32, "n_shared_experts": 1,
                     "intermediate_size": 96, "first_k_dense_replace": 0,
                     "topk_method": "noaux_tc", "n_group": 4, "topk_group": 2,
                     "scoring_func": "sigmoid", "routed_scaling_factor": 2.5,
                     "norm_topk_prob": True}),
}


def hf_tensors(scheme, config, w):
    """``{name: array}`` in the scheme's Hugging Face naming, ``[out, in]`` weights."""
    t = {"model.embed_tokens.weight": w.embed, "model.norm.weight": w.final_norm,
         "lm_head.weight": w.lm_head.T}
    for i, lw in enumerate(w.layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = lw.attn_norm
        t[p + "post_attention_layernorm.weight"] = lw.ffn_norm
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
        elif scheme.startswith("deepseek") and lw.shared is not None:
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
    return {"vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_layers, "num_attention_heads": config.num_heads,
            "num_key_value_heads": config.num_kv_heads, "head_dim": config.head_dim,
            "num_experts_per_tok": config.top_k, "rms_norm_eps": config.rms_eps,
            "rope_theta": config.rope_theta, "tie_word_embeddings": False,
            "rope_scaling": None, **extra}


def write(path, scheme, tensors, config_json, shards=1):
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


def logits_of(model, prompts):
    return model.forward(model.new_cache(len(prompts), 16), prompts).logits


PROMPTS = [np.array([5, 17, 3, 90, 1]), np.array([42]), np.array([7, 7, 8])]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_checkpoint_gives_the_logits_of_the_direct_model(scheme, tmp_path):
    config, extra = SCHEMES[scheme]
    weights = as_float32(random_weights(config, seed=8))
    direct = MoEModel(config, weights)
    shards = 3 if scheme in ("qwen3_moe", "deepseek_v2") else 1
    write(tmp_path, scheme, hf_tensors(scheme, config, weights), hf_config(config, extra), shards)
    loaded, found = load_checkpoint(tmp_path)
    assert found == scheme.split("_v")[0]
    assert dataclasses.replace(loaded.config, name=config.name) == config
    for a, b in zip(logits_of(loaded, PROMPTS), logits_of(direct, PROMPTS)):
        assert np.array_equal(a, b)
    # and the experts are really used: another expert's weights change the logits
    changed = as_float32(random_weights(config, seed=8))
    layer = config.moe_layers[0]
    changed.layers[layer].experts[0], changed.layers[layer].experts[1] = (
        changed.layers[layer].experts[1], changed.layers[layer].experts[0])
    other = MoEModel(config, changed)
    assert any(not np.array_equal(a, b)
               for a, b in zip(logits_of(loaded, PROMPTS), logits_of(other, PROMPTS)))


def write_bf16(file, tensors):
    """A safetensors file of BF16 tensors, written from the format's specification (8-byte header
    length, JSON header with dtype/shape/data_offsets, raw little-endian data)."""
    header, blobs, offset = {}, [], 0
    for name, value in tensors.items():
        bits = (np.ascontiguousarray(value, np.float32).view(np.uint32) >> 16).astype("<u2")
        data = bits.tobytes()
        header[name] = {"dtype": "BF16", "shape": list(value.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    file.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_bf16_checkpoint_loads_exactly(tmp_path):
    config, extra = SCHEMES["mixtral"]
    weights = random_weights(config, seed=9)
    tensors = hf_tensors("mixtral", config, weights)
    truncated = {n: (np.asarray(v, np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)
                 for n, v in tensors.items()}
    (tmp_path / "config.json").write_text(json.dumps(hf_config(config, extra)))
    write_bf16(tmp_path / "model.safetensors", truncated)
    loaded, _ = load_checkpoint(tmp_path)
    # the same values (bf16 is float32 with the low 16 bits zero) written as float32
    write(tmp_path / "f32", "mixtral", truncated, hf_config(config, extra))
    direct, _ = load_checkpoint(tmp_path / "f32")
    for a, b in zip(logits_of(loaded, PROMPTS), logits_of(direct, PROMPTS)):
        assert np.array_equal(a, b)


def _checkpoint(tmp_path, scheme="qwen3_moe", change_config=None, change_tensors=None):
    config, extra = SCHEMES[scheme]
    tensors = hf_tensors(scheme, config, random_weights(config, seed=1))
    cfg = hf_config(config, extra)
    (change_config or (lambda c: None))(cfg)
    (change_tensors or (lambda t: None))(tensors)
    write(tmp_path, scheme, tensors, cfg)
    return tmp_path


def _drop(key):
    return lambda d: d.pop(key)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


BAD = [
    (dict(change_tensors=_drop("model.layers.1.mlp.experts.3.up_proj.weight")),
     r"lacks tensor 'model\.layers\.1\.mlp\.experts\.3\.up_proj\.weight' \(layer 1 experts\.3\.up\)"),
    (dict(change_tensors=_set("model.layers.1.mlp.gate.weight", np.zeros((7, 64)))),
     r"tensor 'model\.layers\.1\.mlp\.gate\.weight' \(layer 1 router\) has shape \(7, 64\), "
     r"expected \(8, 64\)"),
    (dict(change_tensors=_set("model.layers.0.self_attn.q_norm.weight", np.zeros(64))),
     r"'model\.layers\.0\.self_attn\.q_norm\.weight' \(layer 0 q_norm\) has shape \(64,\)"),
    (dict(change_tensors=_drop("lm_head.weight")), r"lacks tensor 'lm_head\.weight' \(LM head\)"),
    (dict(change_config=_set("architectures", ["LlamaForCausalLM"])),
     r"field 'architectures' is \['LlamaForCausalLM'\].*not an MoE architecture"),
    (dict(change_config=_drop("num_experts_per_tok")),
     "config.json lacks the field 'num_experts_per_tok'"),
    (dict(change_config=_set("moe_intermediate_size", 40)),
     r"unsupported model: MoEConfig\.expert_ffn \(40\) must be a multiple"),
    (dict(change_config=_set("rope_scaling", {"type": "yarn"})), "field 'rope_scaling' is set"),
    (dict(scheme="deepseek_v2", change_config=_set("kv_lora_rank", 512)),
     r"'kv_lora_rank'/'q_lora_rank' is set: DeepSeek multi-head latent attention \(MLA\) is not "
     r"supported"),
    (dict(scheme="deepseek_v2",
          change_tensors=_set("model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
                              np.zeros((4, 64)))),
     r"tensor 'model\.layers\.0\.self_attn\.kv_a_proj_with_mqa\.weight' belongs to DeepSeek "
     r"multi-head latent attention \(MLA\)"),
    (dict(scheme="deepseek_v3", change_tensors=_drop("model.layers.0.mlp.gate.e_score_correction_bias")),
     r"lacks tensor 'model\.layers\.0\.mlp\.gate\.e_score_correction_bias'"),
    (dict(scheme="olmoe", change_config=_set("clip_qkv", 8.0)), "field 'clip_qkv' is set"),
]


@pytest.mark.parametrize("change, message", BAD)
def test_bad_checkpoints_are_named(tmp_path, change, message):
    path = _checkpoint(tmp_path, **change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="has no config.json"):
        read_config(tmp_path)
    config, extra = SCHEMES["olmoe"]
    (tmp_path / "config.json").write_text(json.dumps(hf_config(config, extra)))
    with pytest.raises(CheckpointError, match=r"holds no \*\.safetensors file"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="maps tensor 'model.norm.weight' to the missing "
                                              "shard 'model-00002-of-00002.safetensors'"):
        load_checkpoint(tmp_path)
