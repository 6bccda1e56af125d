"""The committed reference checkpoints (tests/data/checkpoints: tiny random models written by the
``transformers`` library itself, its 4.x and 5.x layouts, with its own float64 logits on fixed
prompts; tests/data/make_reference_checkpoints.py regenerates them) load, and:

* the float path (every weight unquantised) equals transformers' logits to 1e-5 relative;
* the INT8 path agrees with transformers' top-1 token on at least 95% of positions;
* greedy Elastic-SD equals target-only greedy decoding.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from sw_model.decode.decoding import SDConfig, elastic_sd, target_greedy
from sw_model.decode.draft_policies import make_policy
from sw_model.model.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[1] / "data" / "checkpoints"
CHECKPOINTS = sorted(p.name for p in ROOT.iterdir() if (p / "config.json").is_file())
#: Every architecture the loader reads, in the layouts of both transformers releases (GLM-4.7-Flash's
#: glm4_moe_lite exists in 5.x only).
EXPECTED = {f"{arch}-tf{major}" for arch in ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe",
                                             "deepseek_v2", "deepseek_v3", "glm4_moe", "gpt_oss")
            for major in (4, 5)} | {"glm4_moe_lite-tf5"}


def reference(name):
    path = ROOT / name
    ref = json.loads((path / "reference.json").read_text())
    return path, [np.array(p) for p in ref["prompts"]], np.load(path / "logits.npy")


def test_every_architecture_and_layout_is_there():
    assert set(CHECKPOINTS) == EXPECTED
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    assert total < 8e6


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_float_path_equals_transformers_and_int8_agrees(name):
    path, prompts, want = reference(name)
    model, scheme = load_checkpoint(path, keep_float=True)
    assert scheme == name.rsplit("-", 1)[0]
    got = np.concatenate(model.reference_logits(prompts))
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    int8 = np.concatenate([model.forward(model.new_cache(1, len(p)), [p]).logits[0]
                           for p in prompts])
    assert np.mean(int8.argmax(1) == want.argmax(1)) >= 0.95
    # the INT8 path is not the float path (the comparison above is not vacuous)
    assert not np.allclose(int8, got, rtol=1e-5)


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_elastic_sd_is_lossless(name):
    path, prompts, _ = reference(name)
    model, _ = load_checkpoint(path)
    prompts = [p[:8] for p in prompts] * 2
    c = model.config
    sd = SDConfig(gamma=3, capacity=max(c.top_k, c.num_experts // 4))
    result = elastic_sd(model, prompts, 6, make_policy("resident"), sd)
    target = target_greedy(model, prompts, 6)
    for a, b in zip(result.tokens, target):
        assert np.array_equal(a, b)
    assert result.summary()["steps"] > 0


def test_mxfp4_experts_are_requantised_with_the_error_measured():
    model, _ = load_checkpoint(ROOT / "gpt_oss-tf5")
    info = model.checkpoint_info
    assert model.config.expert_format == "mxfp4" and info["expert_format"] == "mxfp4"
    # INT8 with FP16 group scales holds MXFP4 values to a fraction of a percent, not exactly
    assert 1e-4 < info["mxfp4_requant_rel_rms_error"] < 0.02


def test_mla_kv_cache_is_counted_as_its_latent():
    model, _ = load_checkpoint(ROOT / "deepseek_v3-tf5")
    c = model.config
    assert c.attention == "mla"
    # compressed latent (rank 32) plus the shared rotary key (8), FP16, per layer
    assert c.kv_bytes_per_token == 2 * (32 + 8)
    assert model.new_cache(1, 4).nbytes_per_token == c.num_layers * 2 * (32 + 8)


def test_zoo_entries_name_their_real_checkpoints():
    from sw_model.model.checkpoints import MODEL_TYPES
    from sw_model.model.zoo import ZOO
    for entry in ZOO.values():
        assert entry.checkpoint and "/" in entry.checkpoint
        assert entry.scheme is None or entry.scheme in MODEL_TYPES
    # the paper's four models all have a loader and a committed reference of their architecture
    for name in ("qwen3-30b-a3b", "glm-4.7-flash", "deepseek-v2-lite", "gpt-oss-20b"):
        assert f"{ZOO[name].scheme}-tf5" in CHECKPOINTS
