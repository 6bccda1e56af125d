"""Regenerate the tiny reference checkpoints under ``tests/data/checkpoints``.

Each is a small random model of one architecture, built and saved by the Hugging Face
``transformers`` library itself (so its ``config.json`` layout and tensor names are the library's),
with the library's own float64 logits on fixed prompts. The default test suite reads them with
NumPy only (tests/sw_model/test_reference_checkpoints.py); this script is the one place that needs
torch and transformers:

    pip install -e '.[reference]'              # transformers 4.x or 5.x, CPU torch
    python tests/data/make_reference_checkpoints.py

writes ``<model_type>-tf<major>/`` for the installed transformers (run it once under a 4.x and once
under a 5.x release for both layouts). Each directory holds ``config.json``, ``model.safetensors``
(bfloat16, as the real releases; GPT-OSS under 5.x with its experts in MXFP4 blocks and scales, as
the released GPT-OSS checkpoints store them), ``logits.npy`` (float64 ``[positions, vocab]``, the
prompts' positions one after the other) and ``reference.json`` (prompts and versions).

Weights are drawn so the models are not flat: N(0, 1/fan_in) matrices, norms near 1, small biases,
an LM head whose logits spread over a few units (so the INT8 model's top-1 is well defined).
"""

import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

OUT = Path(__file__).resolve().parent / "checkpoints"
MAJOR = int(transformers.__version__.split(".")[0])
PROMPT_LENGTHS = (13, 9, 16, 24)

COMMON = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, intermediate_size=64,
              tie_word_embeddings=False, rms_norm_eps=1e-6)
MLA = dict(num_key_value_heads=4, head_dim=8, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
           v_head_dim=16, n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
           n_shared_experts=1, first_k_dense_replace=1)
SPECS = {
    "mixtral": dict(num_local_experts=8, num_experts_per_tok=2, intermediate_size=32,
                    rope_theta=1e6),
    "qwen2_moe": dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                      shared_expert_intermediate_size=64, norm_topk_prob=False),
    "qwen3_moe": dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                      norm_topk_prob=True, mlp_only_layers=[0]),
    "olmoe": dict(num_experts=8, num_experts_per_tok=2, intermediate_size=32,
                  norm_topk_prob=False),
    "deepseek_v2": dict(MLA, q_lora_rank=None, topk_method="group_limited_greedy", n_group=4,
                        topk_group=2, routed_scaling_factor=1.5, n_shared_experts=2),
    "deepseek_v3": dict(MLA, q_lora_rank=32, n_group=4, topk_group=2,
                        routed_scaling_factor=2.5),
    "glm4_moe": dict(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                     n_shared_experts=1, first_k_dense_replace=1, n_group=2, topk_group=1,
                     use_qk_norm=True, attention_bias=True, routed_scaling_factor=1.5,
                     partial_rotary_factor=0.5),
    "gpt_oss": dict(num_local_experts=8, num_experts_per_tok=2, intermediate_size=64,
                    sliding_window=6),
}
if MAJOR >= 5:
    SPECS["glm4_moe_lite"] = dict(MLA, q_lora_rank=32, n_group=1, topk_group=1,
                                  routed_scaling_factor=1.8, qk_rope_head_dim=16,
                                  head_dim=16)
    # the real DeepSeek-V2(-Lite) configs scale their rotary embedding by YaRN (5.x folds its
    # mscale_all_dim into the softmax scale as DeepSeek's code does; 4.x does not)
    SPECS["deepseek_v2"]["rope_parameters"] = dict(
        rope_type="yarn", rope_theta=10000.0, factor=40.0, original_max_position_embeddings=4096,
        beta_fast=32.0, beta_slow=1.0, mscale=0.707, mscale_all_dim=0.707)
    SPECS["glm4_moe"]["rope_parameters"] = dict(rope_type="default", rope_theta=10000.0,
                                                partial_rotary_factor=0.5)
    del SPECS["glm4_moe"]["partial_rotary_factor"]


def fill(model, seed):
    """Draw every parameter and buffer that the checkpoint stores (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    normal = lambda shape, std: torch.randn(shape, generator=g, dtype=torch.float64) * std
    layers = model.config.num_hidden_layers
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("rotary_emb.inv_freq") or not t.is_floating_point():
                continue
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                v = 1.0 + normal(t.shape, 0.1)
            elif name.endswith("e_score_correction_bias"):
                v = normal(t.shape, 0.05)
            elif name.endswith("sinks"):
                v = normal(t.shape, 1.0)
            elif name.endswith("bias"):
                v = normal(t.shape, 0.1)
            elif name == "model.embed_tokens.weight":
                v = normal(t.shape, 1.0)
            elif name == "lm_head.weight":
                v = normal(t.shape, 12.0 / math.sqrt(t.shape[1]))
            else:
                fan_in = t.shape[-2] if name.endswith(("gate_up_proj", "experts.down_proj")) \
                    else t.shape[-1]
                branch = 0.5 / math.sqrt(layers) if ("o_proj" in name or "down_proj" in name) \
                    else 1.0
                v = normal(t.shape, branch / math.sqrt(fan_in))
            t.copy_(v.to(torch.bfloat16).to(t.dtype))      # the values the bf16 file holds


FP4 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=np.float64)


def mxfp4(w):
    """MXFP4 ``(blocks, scales, decoded)`` of ``w`` [experts, out, in]: per 32 inputs one E8M0
    scale (the smallest power of two that brings the block within +-6) and E2M1 codes (round
    to nearest)."""
    e, o, i = w.shape
    blocks = w.reshape(e, o, i // 32, 32)
    amax = np.abs(blocks).max(axis=-1)
    exp = np.ceil(np.log2(np.maximum(amax, 1e-30) / 6.0)).astype(np.int32)
    scaled = blocks / np.ldexp(1.0, exp)[..., None]
    mag = np.abs(np.argmin(np.abs(np.abs(scaled)[..., None] - FP4), axis=-1))
    codes = (mag | np.where(scaled < 0, 8, 0)).astype(np.uint8)
    decoded = np.where(codes >= 8, -1.0, 1.0) * FP4[codes & 7] * np.ldexp(1.0, exp)[..., None]
    packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    return packed, (exp + 127).astype(np.uint8), decoded.reshape(e, o, i)


def to_mxfp4(model, out):
    """Re-store GPT-OSS's experts in MXFP4 (blocks and scales) as the released checkpoints do;
    the model's own expert weights become the decoded values, so its logits are the reference."""
    state = load_file(str(out / "model.safetensors"))
    for i, layer in enumerate(model.model.layers):
        experts = layer.mlp.experts
        for proj in ("gate_up_proj", "down_proj"):
            p = getattr(experts, proj)                            # [E, in, out]
            w = p.detach().to(torch.float64).numpy().transpose(0, 2, 1)
            blocks, scales, decoded = mxfp4(w)
            with torch.no_grad():
                p.copy_(torch.from_numpy(decoded.transpose(0, 2, 1)).to(p.dtype))
            name = f"model.layers.{i}.mlp.experts.{proj}"
            del state[name]
            e, o, n = w.shape
            state[name + "_blocks"] = torch.from_numpy(
                np.ascontiguousarray(blocks.reshape(e, o, n // 32, 16)))
            state[name + "_scales"] = torch.from_numpy(np.ascontiguousarray(scales))
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((out / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))


def build(model_type, spec, seed):
    out = OUT / f"{model_type}-tf{MAJOR}"
    out.mkdir(parents=True, exist_ok=True)
    kwargs = {**COMMON, **spec}
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(seed)
    eager = dict(attn_implementation="eager")
    if MAJOR >= 5:
        eager["experts_implementation"] = "eager"    # the grouped kernels refuse float64
    model = AutoModelForCausalLM.from_config(config, **eager)
    fill(model, seed)
    # saved from a bf16 copy: casting the live model would round its rotary buffers too
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    model = model.to(torch.float64).eval()
    for name, module in model.named_modules():
        if name.endswith("mlp.gate"):
            # the routers compute in float32 whatever the model's type; widen what they hand on
            module.register_forward_hook(lambda m, i, out: tuple(
                t.double() if torch.is_tensor(t) and t.dtype == torch.float32 else t
                for t in out) if isinstance(out, tuple) else out)
    if model_type == "gpt_oss" and MAJOR >= 5:
        to_mxfp4(model, out)
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, config.vocab_size, n).tolist() for n in PROMPT_LENGTHS]
    with torch.no_grad():
        logits = [model(torch.tensor([p])).logits[0].numpy() for p in prompts]
    np.save(out / "logits.npy", np.concatenate(logits).astype(np.float64))
    (out / "reference.json").write_text(json.dumps({
        "model_type": model_type, "prompts": prompts, "transformers": transformers.__version__,
        "torch": torch.__version__, "dtype": "float64 logits from bfloat16 weights",
        "seed": seed}, indent=1))
    print(f"{out.name}: {sum(p.numel() for p in model.parameters())} parameters", flush=True)


def main(names):
    for k, (model_type, spec) in enumerate(SPECS.items()):
        if not names or model_type in names:
            build(model_type, spec, seed=100 + k)


if __name__ == "__main__":
    main(sys.argv[1:])
