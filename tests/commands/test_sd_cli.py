"""``python build.py sd`` on the built-in default and on a checkpoint directory."""

import json

import numpy as np

from sw_model.model.moe import random_weights
from tests.support.hf_checkpoints import SCHEMES, as_float32, hf_config, hf_tensors, write


def test_sd_on_the_builtin_default(run_build):
    code, stdout, stderr = run_build("sd")
    assert code == 0, stdout + stderr
    lines = stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    for key in ("model", "mode", "acceptance_rate", "mean_accepted_length", "hb_bytes_per_token",
                "lpddr_bytes_per_token", "experts_touched_per_layer", "cached"):
        assert key in figures, key
    assert figures["mode"] == "elastic_sd" and figures["selected_mode"] == "elastic_sd"
    assert "built-in" in figures["model"]
    assert figures["cache"] == "controller"
    requests = figures["cache_requests"]
    assert requests["cached"] > 0 and requests["elastic_sd"] > 0
    assert 0 < figures["acceptance_rate"] < 1
    assert 1 < figures["mean_accepted_length"] <= figures["gamma"] + 1
    assert figures["lossless_sequences"] == figures["batch"] == 16
    # the PE's binary32 dequantisation against float64: rounding error of binary32, never zero
    error = figures["dequant_error_vs_float64"]
    assert error["calls"] > 100 and error["values"] > error["calls"]
    assert 0 < error["median_relative"] <= 2 ** -24 < error["max_relative"] < 1e-3
    assert 0 < error["max_error_of_peak"] < 2 ** -20
    assert figures["hb_bytes_per_token"] > figures["hb_expert_bytes_per_token"] > 0
    assert 0 < figures["lpddr_bytes_per_token"] < figures["cached"]["lpddr_bytes_per_token"]
    touched = figures["experts_touched_per_layer"]
    assert len(touched["draft"]) == len(touched["target"]) == 4
    assert max(touched["draft"]) <= figures["capacity"]
    text = stdout
    assert "acceptance" in text and "LPDDR B/token" in text and "experts/layer draft" in text
    assert "expert cache: expert-cache controller golden model" in text
    assert "LRU, select 8 per layer" in text and "FREQUENCY, select 8 per layer" in text


def test_sd_on_a_checkpoint(run_build, tmp_path):
    config, extra = SCHEMES["olmoe"]
    weights = as_float32(random_weights(config, seed=2))
    write(tmp_path, "olmoe", hf_tensors("olmoe", config, weights), hf_config(config, extra))
    code, stdout, stderr = run_build("sd", "--checkpoint", str(tmp_path), "--batch", "6", "--gamma", "2",
                                     "--new-tokens", "6", "--policy", "specmoe", "--draft-bits",
                                     "truncation", "--cache", "lru")
    assert code == 0, stdout + stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    assert figures["model"] == f"{tmp_path} (olmoe)"
    assert figures["policy"] == "specmoe" and figures["gamma"] == 2
    assert figures["cache"] == "lru" and figures["cache_requests"] is None
    assert "expert cache: plain LRU, " in stdout
    assert figures["lossless_sequences"] == 6
    assert np.isfinite(figures["acceptance_rate"])


def test_sd_bad_requests_are_named(run_build, tmp_path):
    code, _, stderr = run_build("sd", "--checkpoint", str(tmp_path / "nowhere"))
    assert code != 0
    assert f"cannot load checkpoint {tmp_path / 'nowhere'}" in stderr
    assert "does not exist" in stderr
    code, _, stderr = run_build("sd", "--gamma", "0")
    assert code != 0 and "--gamma must be a positive integer, not 0" in stderr
    code, _, stderr = run_build("sd", "--capacity", "2")
    assert code != 0 and "capacity (2 experts per layer)" in stderr
    code, _, stderr = run_build("sd", "--capacity", "33")
    assert code != 0 and "exceeds the 32 experts of a layer" in stderr
    code, _, stderr = run_build("sd", "--cache", "fifo")
    assert code != 0 and "invalid choice: 'fifo'" in stderr
