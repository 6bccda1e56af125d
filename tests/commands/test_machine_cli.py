"""Machines, decoding policies and results folders on the command line: every machine-using command
takes ``--machine`` and ``--set`` and refuses bad ones with one line and exit status 2 before any
work; ``machine show`` derives the paper's figures; machine and policy files round-trip; results
land under ``build/<command>/<run>/``; ``clean`` removes them; long runs say they are running."""

import io
import json
import shlex
import time
from pathlib import Path

import pytest

from hw.machines import MACHINES, load_machine
from hw.params import TopParams
from sim.commands import COMMANDS
from sim.commands.options import RESULTS_ROOT

#: Arguments that make each machine-using command otherwise valid.
MACHINE_COMMANDS = {"demo": [], "machine": ["show"], "check": [], "verilog": [],
                    "bench": ["mac"], "synth": [], "fpga": [], "perf": [], "sweep": [],
                    "schedule": [], "stream": ["validate", "x.txt"]}


def _figures(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def test_every_machine_command_is_listed():
    assert {h.NAME for h in COMMANDS if hasattr(h, "MACHINE")} == set(MACHINE_COMMANDS)


@pytest.mark.parametrize("name", sorted(MACHINE_COMMANDS))
def test_an_unknown_machine_stops_every_command_with_the_choices(run_build, name):
    code, stdout, stderr = run_build(name, *MACHINE_COMMANDS[name], "--machine", "nosuch")
    assert code == 2 and stdout == ""
    assert stderr.strip().splitlines() == [
        f"build.py {name}: unknown machine 'nosuch'; choose from tiny, demo, paper, or a "
        ".toml or .json machine file"]


@pytest.mark.parametrize("name", sorted(MACHINE_COMMANDS))
@pytest.mark.parametrize("item, message", [
    ("mac.nosuch=1", "unknown key 'mac.nosuch'; mac has tokens, group_size, out_channels"),
    ("nosuch=1", "unknown key 'nosuch'; keys: pes, weight_words"),
    ("mac.tokens=abc", "mac.tokens takes an integer, not 'abc'"),
    ("mac.tokens=0", "MacArrayParams.tokens must be a positive integer, not 0"),
    ("cache.policy=FIFO", "ExpertCacheParams.policy must be one of LRU, FREQUENCY"),
    ("pes", "expected key=value"),
])
def test_a_bad_override_stops_every_command_naming_it(run_build, name, item, message):
    machine = ["--machine", "tiny"] if name in ("verilog", "synth", "fpga") else []
    code, stdout, stderr = run_build(name, *MACHINE_COMMANDS[name], *machine, "--set", item)
    assert code == 2 and stdout == ""
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"build.py {name}: --set ") and message in line


def test_machine_show_paper_derives_the_papers_figures(run_build):
    code, stdout, stderr = run_build("machine", "show", "paper")
    assert code == 0, stderr
    f = _figures(stdout)["figures"]
    assert f["peak_tops"] == {"W8A8": 524.288, "W4A8": 1048.576}
    assert f["hb"]["gbps_per_channel"] == pytest.approx(51.2) and f["hb"]["channels"] == 32
    assert f["hb"]["gbps"] == pytest.approx(1638.4) and f["hb"]["gib"] == 8
    assert f["lpddr"]["gbps"] == pytest.approx(102.4) and f["lpddr"]["gib"] == 64
    for text in ("524 TOPS", "1049 TOPS", "51.2 GB/s", "102.4 GB/s",
                 "32 PEs x 8192 MACs/cycle x 2 ops x 1000 MHz"):
        assert text in stdout
    code, stdout, _ = run_build("machine", "show", "paper", "--set", "pes=16")
    f = _figures(stdout)["figures"]
    assert f["peak_tops"] == {"W8A8": 262.144, "W4A8": 524.288}
    assert f["hb"]["gbps"] == pytest.approx(819.2) and f["hb"]["gib"] == 4
    assert f["lpddr"]["clients"] == 16


@pytest.mark.parametrize("name", list(MACHINES))
@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_machine_files_round_trip_exactly(run_build, tmp_path, name, suffix):
    path = tmp_path / f"m{suffix}"
    code, _, stderr = run_build("machine", "show", name, "--write", str(path))
    assert code == 0, stderr
    assert load_machine(str(path)) == MACHINES[name]
    code, stdout, _ = run_build("machine", "show", str(path), "--set", "mac.tokens=8")
    assert code == 0
    assert TopParams.from_dict(_figures(stdout)["params"]).mac.tokens == 8


def test_a_partial_machine_file_takes_the_rest_from_its_base(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('base = "paper"\npes = 16\n[hb]\nchannels = 16\n[lpddr]\nclients = 16\n')
    m = load_machine(str(path))
    assert m == MACHINES["paper"].with_pes(16)


@pytest.mark.parametrize("text, message", [
    (None, "no such file"),
    ("pes = ", "not valid TOML"),
    ("nosuch = 1\n", "unknown field 'nosuch'"),
    ("[mac]\nnosuch = 1\n", "unknown field mac.nosuch"),
    ('base = "huge"\n', "unknown base 'huge'; choose from tiny, demo, paper"),
    ("pes = 0\n", "TopParams.pes must be a positive integer, not 0"),
    ("pes = 3\n", "hb.channels (2) must equal pes (3)"),
    ("mac = 4\n", "mac must be a table of mac fields"),
])
def test_a_bad_machine_file_is_named_and_nothing_is_written(run_build, tmp_path, text, message):
    path = tmp_path / "bad.toml"
    if text is not None:
        path.write_text(text)
    before = set((RESULTS_ROOT / "verilog").glob("*")) if (RESULTS_ROOT / "verilog").exists() \
        else set()
    code, stdout, stderr = run_build("verilog", "--machine", str(path))
    assert code == 2 and stdout == ""
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"build.py verilog: machine file {path}: ") and message in line
    after = set((RESULTS_ROOT / "verilog").glob("*")) if (RESULTS_ROOT / "verilog").exists() \
        else set()
    assert after == before


#: One bad request a line, "arguments | what it says" (a single line on stderr).
BAD_REQUESTS = dict(reversed(line.split(" | ", 1)) for line in """
bench mac --ops 0 | bench mac: --ops must be at least 1, not 0
bench hb --words 0 | bench hb: --words must be at least 1, not 0
bench fuzz --streams 0 | bench fuzz: --streams must be at least 1, not 0
bench fuzz --machine paper | bench fuzz: paper: the simulated DRAM dies would hold 72 GiB
perf --bench-json no/such.json | no/such.json
perf --pes 0 | perf: expected positive integers
perf --pes 65 | perf: --pes: at most 64 PEs
sd --set decoding.gamma=0 | decoding.gamma must be a positive integer, not 0
sd --set decoding.nosuch=1 | unknown decoding key 'nosuch'; keys: gamma
sd --set decoding.draft_policy=magic | decoding.draft_policy must be one of
sd --set pes=4 | build.py sd uses no machine: --set pes=4
verilog --set decoding.gamma=4 | build.py verilog has no decoding settings
verilog --set pes=4 | --set needs one machine: name it with --machine
sd --decoding no/such.toml | decoding policy file no/such.toml: no such file
stream validate no/such.txt | stream: stream file no/such.txt: no such file
perf --out '' | --out ''
ablate --set decoding.gamma=8 | ablate: --gamma (6) must reach the decoding policy's draft length (8)
""".strip().splitlines())


@pytest.mark.parametrize("message", list(BAD_REQUESTS))
def test_bad_requests_are_one_line(run_build, message):
    code, stdout, stderr = run_build(*shlex.split(BAD_REQUESTS[message]))
    assert code != 0
    assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_one_decoding_policy_with_one_set_of_defaults(run_build, tmp_path):
    from sw_model.decode.decoding import SDConfig
    from sw_model.decode.policy import DEFAULT_POLICY, load_policy, policy_toml
    from sw_model.perf.methods import Settings
    assert SDConfig().gamma == Settings().gamma == DEFAULT_POLICY.gamma == 4
    assert SDConfig().threshold == Settings().threshold == DEFAULT_POLICY.threshold
    assert Settings().resident_policy == DEFAULT_POLICY.resident_set
    path = tmp_path / "policy.toml"
    path.write_text(policy_toml(DEFAULT_POLICY))
    assert load_policy(path) == DEFAULT_POLICY
    path.write_text("gamma = 2\n")
    code, stdout, stderr = run_build("sd", "--decoding", str(path), "--batch", "4",
                                     "--new-tokens", "6")
    assert code == 0, stderr
    f = _figures(stdout)
    assert f["gamma"] == 2 and f["decoding"]["gamma"] == 2 and "gamma 2" in stderr + stdout
    # a command's own flag overrides the file for one run
    code, stdout, _ = run_build("sd", "--decoding", str(path), "--gamma", "3", "--batch", "4",
                                "--new-tokens", "6")
    assert _figures(stdout)["decoding"]["gamma"] == 3


def test_perf_and_sweep_keep_tables_json_plots_machine_and_policy(run_build):
    # one tree beside the chain (every measured one: test_perf_cli's slow test)
    code, stdout, stderr = run_build("perf", "--models", "qwen3-30b-a3b", "--batches", "1,16",
                                     "--set", "pes=16", "--pes", "16", "--out", "test-perf",
                                     "--set", "decoding.tree=static:2,1,1,1")
    assert code == 0, stderr
    folder = RESULTS_ROOT / "perf" / "test-perf"
    assert f"results: {folder}/" in stdout
    names = {p.name for p in folder.iterdir()}
    assert {"result.json", "machine.toml", "decoding.toml"} <= names
    assert any(n.endswith(".csv") for n in names) and "speedup_4gb_16pe.png" in names
    assert json.loads((folder / "result.json").read_text()) == _figures(stdout)
    assert load_machine(str(folder / "machine.toml")) == MACHINES["paper"].with_pes(16)
    code, stdout, stderr = run_build("sweep", "--models", "qwen3-30b-a3b", "--batches", "1,16",
                                     "--gammas", "2,4", "--thresholds", "4", "--policies",
                                     "frequency", "--out", "test-sweep")
    assert code == 0, stderr
    folder = RESULTS_ROOT / "sweep" / "test-sweep"
    names = {p.name for p in folder.iterdir()}
    assert {"result.json", "machine.toml", "decoding.toml", "speedup_vs_gamma.png"} <= names
    assert sum(n.endswith(".csv") for n in names) == 2
    assert not any(".partial" in p.name or ".old-" in p.name for p in folder.parent.iterdir())


@pytest.mark.slow   # two perf runs, 9 s (the 16-PE machine's figures: tests/sw_model/test_perf_model.py)
def test_perf_on_16_pes_gives_the_4gb_configuration(run_build):
    """``perf --set pes=16`` is the paper's 4 GB configuration: the same figures as the 32-PE
    machine's second configuration (16 PEs)."""
    args = ("--models", "deepseek-v2-lite", "--batches", "1,16", "--no-plots",
            "--set", "decoding.tree=dynamic:nodes=16,depth=8,k=2,width=2")
    code, stdout, _ = run_build("perf", *args, "--set", "pes=16", "--pes", "16")
    sixteen = _figures(stdout)
    code, stdout, _ = run_build("perf", *args)
    both = _figures(stdout)
    assert sixteen["pes"] == 16 and sixteen["hb_gb"] == 4
    assert both["by_config"]["4GB"] == sixteen["by_config"]["4GB"]
    # each configuration runs the better of the chain and the tree on its own headline set
    assert sixteen["by_config"]["4GB"]["draft"] == sixteen["draft"]


def test_clean_removes_results_and_can_keep_simulator_builds(run_build, tmp_path, monkeypatch):
    from sim.commands import clean
    monkeypatch.setattr(clean, "BUILD_ROOT", tmp_path)
    for name in ("sim/top-x/obj", "perf/paper/result.json", "verilog/tiny/top.v"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    code, stdout, _ = run_build("clean", "--keep-sim")
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]
    assert _figures(stdout)["kept"] == [str(tmp_path / "sim")]
    code, stdout, _ = run_build("clean")
    assert code == 0 and list(tmp_path.iterdir()) == []


def test_a_long_run_says_it_is_running():
    from hw.flows.heartbeat import heartbeat
    out = io.StringIO()
    with heartbeat("a long tool", every=0.05, stream=out):
        time.sleep(0.2)
    lines = out.getvalue().splitlines()
    assert "a long tool: running" in lines[0] and "a long tool: still running" in lines[1]
    assert "a long tool: done in" in lines[-1]
    out = io.StringIO()
    with heartbeat("a short tool", every=5, stream=out):
        pass
    assert out.getvalue() == ""


def test_runs_with_the_same_results_folder_at_once_do_not_collide(tmp_path):
    """Runs that name the same results folder (two terminals, or test workers) each write into a
    folder of their own and replace the results folder whole: none fails, the folder holds one
    run's complete results, and nothing is left beside it."""
    import argparse
    import threading
    from sim.commands.options import save_results, work_dir_of
    from sim.commands.output import Result, Table
    out = tmp_path / "results" / "same"
    errors = []

    def run(number):
        try:
            for i in range(20):
                args = argparse.Namespace(out_dir=out, work_dir=work_dir_of(out),
                                          run_name="same", params=None, decoding_policy=None)
                table = Table("numbers", ["run", "i"], [[number, i]])
                save_results(Result([table], {"run": number, "i": i}), args)
        except Exception as exc:        # reported below, with the run that raised it
            errors.append((number, exc))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["same"]
    figures = json.loads((out / "result.json").read_text())
    assert figures["i"] == 19 and (out / "01-numbers.csv").read_text().splitlines()[1] == \
        f"{figures['run']},19"
