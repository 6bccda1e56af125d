"""``python build.py ablate`` and ``train``: bad requests are named before any work, training
without PyTorch says how to get it, and (slow) a small ablation and a training smoke run."""

import json
import sys

import pytest

from sw_model.model.checkpoints import load_checkpoint
from sw_model.train.training import VARIANTS


@pytest.mark.parametrize("args, message", [
    (["ablate", "--batch", "0"], "--batch must be a positive integer, not 0"),
    (["ablate", "--k-max", "40"], "--k-max must be in 1..32, not 40"),
    (["ablate", "--models", "/nonexistent"], "cannot load the standard model /nonexistent/standard"),
    (["train", "--steps", "0"], "--steps must be a positive integer, not 0"),
])
def test_bad_ablate_and_train_requests_are_named(run_build, args, message):
    code, _, stderr = run_build(*args)
    assert code != 0 and message in stderr, stderr


def test_train_without_pytorch_says_how_to_get_it(run_build, monkeypatch):
    """PyTorch is an optional extra: without it (hidden here whether or not it is installed) a
    valid train request stops with the install command."""
    monkeypatch.setitem(sys.modules, "torch", None)
    code, _, stderr = run_build("train", "--steps", "1")
    assert code != 0
    assert "training needs PyTorch: pip install -e '.[train]'" in stderr, stderr


@pytest.mark.slow
def test_ablate_reports_every_table(run_build, tmp_path):
    code, stdout, stderr = run_build("ablate", "--batch", "6", "--new-tokens", "8", "--windows",
                                     "4", "--k-max", "5", "--out", str(tmp_path))
    assert code == 0, stdout + stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    assert set(figures["acceptance_by_bit_policy"]) == {"truncation", "augmented", "rounding"}
    assert set(figures["acceptance_length_by_selection"]) == {"frequency", "random", "lru"}
    assert set(figures["loss_by_k"]) == {"standard", "elastic"}
    assert all(len(figures["loss_by_k"][v]["code"]) == 5 for v in VARIANTS)
    for table in ("draft bit policy", "resident-set size and selection", "draft policy",
                  "held-out loss"):
        assert table in stdout
    assert all((tmp_path / p.split("/")[-1]).is_file() for p in figures["plots"])


@pytest.mark.slow
def test_training_smoke_run_writes_a_loadable_checkpoint(run_build, tmp_path):
    pytest.importorskip("torch")
    code, stdout, stderr = run_build("train", "--steps", "3", "--models-dir", str(tmp_path))
    assert code == 0, stdout + stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    assert [m["variant"] for m in figures["models"]] == list(VARIANTS)
    for v in VARIANTS:
        model, scheme = load_checkpoint(tmp_path / v)
        assert scheme == "qwen3_moe" and model.config.vocab_size == 256
