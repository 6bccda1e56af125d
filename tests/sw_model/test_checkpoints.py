"""Hugging Face checkpoints in the Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE and DeepSeek naming schemes
load and give the same logits as the model built directly from the same tensors; bad checkpoints
get errors naming the tensor or field.

The checkpoints come from :mod:`tests.support.hf_checkpoints`, which spells every tensor name out by
hand, independently of the loader's tables.
"""

import dataclasses
import json
import struct

import numpy as np
import pytest

from sw_model.model.checkpoints import CheckpointError, load_checkpoint, read_config
from sw_model.model.moe import MoEModel, random_weights
from tests.support.hf_checkpoints import SCHEMES, as_float32, hf_config, hf_tensors, write

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
    assert found == scheme
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
    (dict(change_config=_set("rope_scaling", {"type": "dynamic", "factor": 2.0})),
     r"field 'rope_scaling' has rope type 'dynamic'"),
    (dict(change_config=_set("rope_scaling", {"type": "yarn", "factor": 4.0})),
     r"field 'rope_scaling' \(YaRN\) lacks 'original_max_position_embeddings'"),
    (dict(scheme="deepseek_v2", change_config=_set("kv_lora_rank", 64)),
     r"tensor 'model\.layers\.0\.self_attn\.kv_a_proj_with_mqa\.weight' \(layer 0 kv_a\) has "
     r"shape \(40, 64\), expected \(72, 64\)"),
    (dict(scheme="deepseek_v3", change_config=_set("topk_method", "greedy")),
     r"field 'topk_method' is 'greedy': deepseek_v3 routes by noaux_tc"),
    (dict(change_config=_set("num_hidden_layers", 1)),
     r"holds tensor 'model\.layers\.1\.[a-z_.]+' of layer 1, but config\.json declares 1 layers"),
    (dict(change_config=_set("num_experts", 4)),
     r"holds tensor '[a-z_.0-9]+experts\.[4-7]\.[a-z_.]+' of expert [4-7], but config\.json "
     r"declares 4 experts"),
    (dict(change_config=_set("num_attention_heads", 2)),
     r"tensor 'model\.layers\.0\.self_attn\.q_proj\.weight' \(layer 0 q\) has shape"),
    (dict(change_config=_set("model_type", "llama"), ),
     r"not an MoE architecture"),
    (dict(change_config=_set("attn_logit_softcapping", 30.0)),
     r"field 'attn_logit_softcapping' \(30\.0\) is not understood by the qwen3_moe loader"),
    (dict(change_tensors=_set("model.layers.0.self_attn.o_proj.weight",
                              np.full((64, 64), np.nan))),
     r"model\.safetensors: tensor 'model\.layers\.0\.self_attn\.o_proj\.weight' \(layer 0 o\) "
     r"holds NaN"),
    (dict(scheme="deepseek_v3", change_tensors=_drop("model.layers.0.mlp.gate.e_score_correction_bias")),
     r"lacks tensor 'model\.layers\.0\.mlp\.gate\.e_score_correction_bias'"),
    (dict(scheme="olmoe", change_config=_set("clip_qkv", 8.0)), "field 'clip_qkv' is 8.0"),
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


def test_bad_files_are_named(tmp_path):
    good = _checkpoint(tmp_path / "good")
    data = (good / "model.safetensors").read_bytes()
    cases = {"empty": (b"", "is empty"),
             "garbage": (b"\x00\x01garbage" * 100, "is not a safetensors file"),
             "truncated": (data[:len(data) // 2], "is truncated: tensor '"),
             "header": (data[:8] + b"{not json" + data[17:], "header is not a JSON object")}
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text((good / "config.json").read_text())
        (path / "model.safetensors").write_bytes(content)
        with pytest.raises(CheckpointError, match=message) as info:
            load_checkpoint(path)
        assert str(path / "model.safetensors") in str(info.value)
    with pytest.raises(CheckpointError, match="is a file; a checkpoint is a directory"):
        load_checkpoint(good / "config.json")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
