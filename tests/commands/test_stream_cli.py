"""``build.py stream``: the streams ``schedule`` writes validate, a hand-edited one names the line and
field of each error, disassembly round-trips, and ``run --rtl`` matches the golden executor."""

import json
from pathlib import Path

import pytest

from hw.isa import assemble, decode, encode


def _figures(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory):
    """A step of the built-in model scheduled on the demo machine: its folder."""
    import build
    out = tmp_path_factory.mktemp("schedule") / "streams"
    assert build.main(["schedule", "--batch", "4", "--steps", "1", "--out", str(out)]) == 0
    return out


def test_schedule_streams_validate(run_build, scheduled):
    machine = str(scheduled / "machine.toml")
    for name in ("step0.bin", "step0.txt", "prologue.txt"):
        code, stdout, stderr = run_build("stream", "validate", str(scheduled / name),
                                         "--machine", machine)
        assert code == 0, stdout + stderr
        f = _figures(stdout)
        assert f["valid"] and f["errors"] == [] and f["commands"] > 1
    code, stdout, _ = run_build("stream", "disasm", str(scheduled / "step0.bin"),
                                "--machine", machine)
    text = "\n".join(stdout.strip().splitlines()[:_figures(stdout)["commands"]]) + "\n"
    assert encode(assemble(text)) == (scheduled / "step0.bin").read_bytes()


def test_a_hand_edited_stream_names_line_command_and_field(run_build, scheduled, tmp_path):
    lines = (scheduled / "step0.txt").read_text().splitlines()
    macs = [i for i, line in enumerate(lines) if line.startswith("MAC_DQ ")]
    a, b = macs[3], macs[7]
    lines[a] = lines[a].replace(" count=", " count=99999 old=")      # does not fit, unknown field
    lines[b] = " ".join(t if not t.startswith("wmem=") else "wmem=5000" for t in lines[b].split())
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(lines) + "\n")
    code, stdout, stderr = run_build("stream", "validate", str(bad), "--machine",
                                     str(scheduled / "machine.toml"))
    assert code == 1
    errors = _figures(stdout)["errors"]
    assert [(e["line"], e["command"]) for e in errors] == [(a + 1, a), (b + 1, b)]
    assert errors[1]["field"] == "wmem" and "BAD_ADDRESS" in errors[1]["message"]
    assert f"line {a + 1}:" in errors[0]["message"]
    for e in errors:
        assert f"\n{e['line']}  " in stdout                   # the table names each line


def test_a_stream_without_end_and_a_bad_binary(run_build, tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("BARRIER phase=1\n")
    code, stdout, _ = run_build("stream", "validate", str(path))
    assert code == 1 and "NO_END" in _figures(stdout)["errors"][0]["message"]
    path = tmp_path / "s.bin"
    path.write_bytes(b"\x01" * 7)
    code, _, stderr = run_build("stream", "validate", str(path))
    assert code == 1 and f"stream file {path}: a binary stream is a multiple of 16" in stderr


def test_run_on_the_golden_executor(run_build, tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("# two loads and a MAC\nLOAD_HB pe=1 wmem=0 count=2 hb=1000\n"
                    "LOAD_ACT pe=1 amem=0 count=4 imem=0\n"
                    "MAC pe=1 mode=FULL wmem=0 amem=0 omem=3 count=1\nEND\n")
    code, stdout, stderr = run_build("stream", "run", str(path), "--machine", "tiny")
    assert code == 0, stderr
    assert _figures(stdout)["golden"] == {"error": "NONE", "progress": 3}


def test_a_stream_longer_than_the_command_memory_is_refused_by_run_rtl(run_build, scheduled):
    machine = str(scheduled / "machine.toml")
    code, stdout, _ = run_build("stream", "validate", str(scheduled / "step0.bin"), "--machine",
                                machine, "--set", "command_words=64")
    assert code == 0 and "longer than the command memory, 64 commands" in stdout
    code, _, stderr = run_build("stream", "run", str(scheduled / "step0.bin"), "--rtl",
                                "--machine", machine, "--set", "command_words=64")
    assert code == 1 and "stream run --rtl: job 0: " in stderr
    assert "do not fit in the command memory (64)" in stderr


@pytest.mark.verilator
@pytest.mark.xdist_group("demo_top")
def test_run_rtl_on_the_demo_machine_matches(run_build, tmp_path):
    """The demo's Verilated top (the same build as the demo's: the demo machine fitted to the
    built-in model, with the FREQUENCY cache of Elastic-SD) runs a whole scheduled step: an
    Elastic-SD step of one sequence (threshold 1), draft and verification, which fits the command
    memory."""
    import build
    out = tmp_path / "elastic_sd"
    assert build.main(["schedule", "--batch", "1", "--steps", "1", "--machine", "demo",
                       "--set", "decoding.threshold=1", "--out", str(out)]) == 0
    assert json.loads((out / "result.json").read_text())["mode"] == "elastic_sd"
    code, stdout, stderr = run_build("stream", "run", str(out / "step0.bin"), "--rtl",
                                     "--machine", str(out / "machine.toml"))
    assert code == 0, stdout + stderr
    f = _figures(stdout)
    assert f["match"] is True and f["rtl"]["done"] and f["golden"]["error"] == "NONE"
    assert f["rtl"]["progress"] == f["golden"]["progress"] > 1000
    assert "MATCH" in stdout
