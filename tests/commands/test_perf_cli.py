"""``build.py perf`` and ``build.py sweep``: the tables, the JSON line, the help text, bad
arguments, and the sweep on a local Ray instance giving the same answers as in-process."""

import json

import pytest

from sw_model.decode.tree import parse_tree
from sw_model.perf.measured import TREE_BUDGET_SHAPES
from sw_model.perf.methods import Settings
from sw_model.perf.sweep import sweep
from sw_model.perf.workload import measured_tree_specs
from sw_model.perf.zoo import PAPER_MODELS


HEADLINE = ("avg_speedup_vs_xpu", "avg_energy_vs_xpu", "avg_speedup_vs_best_prior")
TREE = "static:2,1,1,1"


def test_perf_prints_tables_and_the_headline_json(run_build):
    """The chain and the policy's tree side by side against the paper; the headline keys are the
    better one's, the other's under its own key."""
    code, stdout, stderr = run_build("perf", "--models", "qwen3-30b-a3b,gpt-oss-20b",
                                     "--batches", "1,16", "--pes", "32", "--no-plots",
                                     "--set", f"decoding.tree={TREE}")
    assert code == 0, stderr
    lines = stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    for key in HEADLINE + ("max_speedup_vs_xpu", "fraction_of_bandwidth_bound", "crossover",
                           "gap_steps"):
        assert key in figures
    assert figures["points"] == 4 and figures["avg_speedup_vs_xpu"] > 1
    assert figures["chain"]["shape"] == "chain (gamma 4)" and figures["tree"]["shape"] == TREE
    assert set(figures["trees"]) == {TREE} and all(k in figures["chain"] for k in HEADLINE)
    better = max(("chain", "tree"), key=lambda k: figures[k]["avg_speedup_vs_xpu"])
    assert figures["draft"] == figures[better]["shape"] == figures["settings"]["tree"] \
        or (better == "chain" and figures["settings"]["tree"] == "chain")
    text = stdout
    for heading in ("speed-up of ELMoE-3D over each baseline", "energy efficiency over each",
                    "Crossover", "GPU anchor", "Where the bytes go", "Sensitivity",
                    "Cached decoding vs Elastic-SD at batch 1", "Best prior under other",
                    "Draft shapes", "Chain and tree against the paper", "Gap to the paper",
                    "Assumptions:"):
        assert heading in text
    side = text[text.index("Chain and tree against the paper"):].splitlines()
    assert f"tree: {TREE}" in side[1] and "chain: chain (gamma 4)" in side[1]
    for key, paper in zip(HEADLINE, ("6.6", "4.4", "2.2")):
        row = next(line for line in side if line.startswith(key))
        assert f"{figures['chain'][key]:.2f}" in row and f"{figures['tree'][key]:.2f}" in row
        assert paper in row
    assert "perf [" in stderr                           # progress


def test_perf_draft_chain_puts_the_chain_in_the_headline_keys(run_build):
    code, stdout, stderr = run_build("perf", "--models", "gpt-oss-20b", "--batches", "4",
                                     "--pes", "32", "--no-plots", "--draft", "chain",
                                     "--set", f"decoding.tree={TREE}")
    assert code == 0, stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    assert figures["draft"] == "chain (gamma 4)" and figures["settings"]["tree"] == "chain"
    assert "chain (gamma 4) *" in stdout


@pytest.mark.slow
def test_perf_default_runs_the_best_measured_draft_shape(run_build):
    """Without a tree in the policy, every measured shape is scored and the headline keys are
    the best of them and the chain."""
    code, stdout, stderr = run_build("perf", "--models", ",".join(PAPER_MODELS),
                                     "--batches", "1,2,4,8,16", "--pes", "32", "--no-plots")
    assert code == 0, stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    assert set(figures["trees"]) == set(measured_tree_specs())
    best = max(figures["trees"].items(), key=lambda kv: kv[1]["avg_speedup_vs_xpu"])
    assert figures["tree"]["shape"] == best[0]
    winner = figures["tree"] if best[1]["avg_speedup_vs_xpu"] > \
        figures["chain"]["avg_speedup_vs_xpu"] else figures["chain"]
    assert figures["draft"] == winner["shape"]
    for key in HEADLINE:
        assert figures[key] == pytest.approx(winner[key], abs=1e-4)


def test_sweep_tries_tree_shapes_beside_the_chain(run_build, tmp_path):
    code, stdout, stderr = run_build("sweep", "--gammas", "4", "--thresholds", "4",
                                     "--policies", "frequency",
                                     "--trees", f"{TREE};dynamic:nodes=8,depth=4,k=2,width=2",
                                     "--models", "gpt-oss-20b", "--out", str(tmp_path))
    assert code == 0, stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    assert figures["configurations"] == 3
    assert set(figures["by_tree"]) == {TREE, "dynamic:nodes=8,depth=4,k=2,width=2"}
    assert figures["best_tree_config"]["tree"] in figures["by_tree"]
    assert figures["best_chain_config"]["tree"] is None
    assert f"tree {TREE}, threshold 4" in stdout and "gamma 4, threshold 4" in stdout


def test_sweep_budgets_pick_the_measured_shapes(run_build, tmp_path):
    code, stdout, stderr = run_build("sweep", "--gammas", "4", "--thresholds", "4",
                                     "--policies", "frequency", "--budgets", "8",
                                     "--models", "gpt-oss-20b", "--batches", "8",
                                     "--out", str(tmp_path))
    assert code == 0, stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    assert set(figures["trees"]) == {parse_tree(s).spec for s in TREE_BUDGET_SHAPES[8]
                                     if not s.startswith("chain:")}


def test_perf_help_states_the_assumptions(run_build):
    code, stdout, _ = run_build("perf", "--help")
    assert code == 0
    assert "Assumptions:" in stdout and "prior accelerators (chosen" in stdout
    assert "measured acceptance" in stdout and "LRU cache of whole INT8 experts" in stdout
    assert "measured routing locality" in stdout and "--locality assumed" in stdout
    for flag in ("--acceptance-mapping", "--cache-policy", "--hb-xpu-cache", "--pim-bandwidth",
                 "--locality", "--measure-locality"):
        assert flag in stdout


@pytest.mark.parametrize("args, message", [
    (["perf", "--models", "gpt-5"], "perf: unknown model 'gpt-5'"),
    (["perf", "--batches", "0,4"], "perf: expected positive integers"),
    (["perf", "--reuse", "2"], "perf: --reuse must be in [0, 1]"),
    (["perf", "--locality", "zipf=1,top_share=0.5"], "perf: a locality takes either a Zipf"),
    (["perf", "--locality", "reuse=x"], "perf: locality 'reuse=x': reuse must be a number"),
    (["sweep", "--locality", "top_share=0.1"], "sweep: locality top_share"),
    (["perf", "--acceptance-json", "no/such.json"], "perf: --acceptance-json no/such.json"),
    (["perf", "--pim-bandwidth", "4,2"], "perf: --pim-bandwidth takes three ratios"),
    (["perf", "--pim-bandwidth", "4,x,2"], "perf: expected comma-separated numbers"),
    (["perf", "--hb-xpu-cache", "fifo"], "invalid choice: 'fifo'"),
    (["sweep", "--policies", "lru"], "sweep: unknown resident policy 'lru'"),
    (["sweep", "--workers", "0", "--ray", "local"], "sweep: --workers must be at least 1"),
    (["perf", "--set", "decoding.tree=static:3,3,3"],
     "perf: decoding.tree static:3,3,3: no measured acceptance for this shape"),
    (["perf", "--set", "decoding.tree=static:2,1,1,1", "--set", "input_words=512",
      "--batches", "1,16"],
     "perf: decoding.tree static:2,1,1,1: a verification pass carries 9 tokens per sequence, "
     "144 at batch 16, more than one part of the machine holds for qwen3-30b-a3b (80 tokens"),
    (["sweep", "--set", "decoding.tree=static:2,1,1,1", "--set", "input_words=512"],
     "sweep: decoding.tree static:2,1,1,1: a verification pass carries 9 tokens per sequence"),
    (["sweep", "--trees", "static:9,9,9"], "sweep: --trees 'static:9,9,9': tree.widths 9,9,9 make"),
    (["sweep", "--trees", "static:3,3"], "sweep: decoding.tree static:3,3: no measured"),
    (["sweep", "--budgets", "12"], "sweep: --budgets: no shapes were measured at budget 12"),
    (["perf", "--set", "decoding.tree=static:0"], "decoding.tree.widths[1]"),
])
def test_bad_arguments_are_named(run_build, args, message):
    code, _, stderr = run_build(*args)
    assert code != 0
    assert message in stderr


@pytest.mark.slow
def test_sweep_on_local_ray_matches_the_in_process_sweep():
    from hw.params import TOP_PAPER
    configs = [{"gamma": g, "threshold": 4, "resident_policy": "frequency",
                "machine": TOP_PAPER} for g in (2, 4)]
    args = (configs, ["deepseek-v2-lite"], [1, 16], Settings())
    here = sweep(*args)
    seen = []
    on_ray = sweep(*args, ray_address="local", workers=1,
                   progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (2, 2)
    for a, b in zip(here, on_ray):
        assert a["config"] == b["config"]
        assert a["avg_speedup_vs_xpu"] == pytest.approx(b["avg_speedup_vs_xpu"], rel=1e-12)
        assert a["avg_energy_vs_xpu"] == pytest.approx(b["avg_energy_vs_xpu"], rel=1e-12)


def test_perf_takes_routing_from_a_recorded_trace(run_build, tmp_path):
    from sw_model.model.routing_traces import generate_routing_trace
    path = generate_routing_trace(4, 32, 4, 24, batch=4, seed=2).save(tmp_path / "r.npz")
    code, stdout, stderr = run_build("perf", "--models", "default", "--trace", str(path),
                                     "--batches", "1,4", "--pes", "32", "--no-plots")
    assert code == 0, stderr
    assert json.loads(stdout.strip().splitlines()[-1])["command"] == "perf"
    assert "\ndefault  4" in stdout
    code, _, stderr = run_build("perf", "--models", "qwen3-30b-a3b", "--trace", str(path),
                                "--batches", "1", "--pes", "32", "--no-plots")
    assert code != 0 and "the routing trace has 32 experts, top-4" in stderr
