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
    (["ablate", "--study", "trees", "--budgets", "0"],
     "--budgets: a budget must be 1..255 draft nodes, not 0"),
    (["ablate", "--study", "trees", "--shares", "0.5,2"],
     "--shares: a resident share must be in (0, 1], not 2"),
    (["ablate", "--study", "trees", "--budgets", "8,x"],
     "--budgets must be comma-separated numbers, not '8,x'"),
    (["ablate", "--budgets", "8"], "--budgets and --shares belong to --study trees"),
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


def test_ablate_tree_study_reports_chains_and_trees(run_build, tmp_path):
    """A small tree study (2 prompts, 3 tokens, budget 4, one share): every shape of the budget,
    the tables, and the figures the performance model's tables are made from."""
    code, stdout, stderr = run_build("ablate", "--study", "trees", "--batch", "2",
                                     "--new-tokens", "3", "--budgets", "4", "--shares", "0.25",
                                     "--out", str(tmp_path))
    assert code == 0, stdout + stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    specs = figures["shapes"]["4"]
    assert specs[0] == "chain:4" and any(s.startswith("static:") for s in specs) \
        and any(s.startswith("dynamic:") for s in specs)
    assert set(figures["runs"]) == set(specs)
    for spec in specs:
        run = figures["runs"][spec]["0.25"]
        assert run["capacity"] == 8 and run["nodes"] <= 4
        assert 1 <= run["mean_accepted_length"] <= run["depth"] + 1
        assert run["tokens_per_verified"] == pytest.approx(
            run["mean_accepted_length"] / run["verified_per_sequence"])
        assert 0 < run["target_union_per_sequence"] <= run["target_union"] <= 32
        assert 0 < run["draft_union"] <= 8                   # inside the resident set
    assert len(figures["runs"]["chain:4"]["0.25"]["window_union"]) == 5
    assert set(figures["best_static"]) == set(figures["best_dynamic"]) == {"4"}
    for table in ("Chains and trees at equal verify budgets", "Tokens kept per verification E",
                  "Tokens kept per verified token", "Experts touched per layer",
                  "Best shapes per budget"):
        assert table in stdout
    assert all((tmp_path / p.split("/")[-1]).is_file() for p in figures["plots"])


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
