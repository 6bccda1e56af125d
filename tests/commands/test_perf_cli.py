"""``build.py perf`` and ``build.py sweep``: the tables, the JSON line, the help text, bad
arguments, and the sweep on a local Ray instance giving the same answers as in-process."""

import json

import pytest

from sw_model.perf.methods import Settings
from sw_model.perf.sweep import sweep


def test_perf_prints_tables_and_the_headline_json(run_build):
    code, stdout, stderr = run_build("perf", "--models", "qwen3-30b-a3b,gpt-oss-20b",
                                     "--batches", "1,16", "--pes", "32", "--no-plots")
    assert code == 0, stderr
    lines = stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    for key in ("avg_speedup_vs_xpu", "max_speedup_vs_xpu", "avg_energy_vs_xpu",
                "avg_speedup_vs_best_prior", "fraction_of_bandwidth_bound", "crossover"):
        assert key in figures
    assert figures["points"] == 4 and figures["avg_speedup_vs_xpu"] > 1
    text = stdout
    for heading in ("speed-up of ELMoE-3D over each baseline", "energy efficiency over each",
                    "Crossover", "GPU anchor", "Where the bytes go", "Sensitivity",
                    "Cached decoding vs Elastic-SD at batch 1", "Best prior under other",
                    "Assumptions:"):
        assert heading in text
    assert "perf [" in stderr                           # progress


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
