"""``build.py schedule``: command streams of decode steps, valid and round-tripping."""

import json
from pathlib import Path

import pytest


@pytest.fixture
def schedule(run_build):
    def run(*args):
        code, stdout, stderr = run_build("schedule", *args)
        assert code == 0, stdout + stderr
        figures = json.loads(stdout.strip().splitlines()[-1])
        assert figures["valid"] is True and figures["round_trip"] is True
        files = [Path(f) for f in figures["files"]]
        assert len(files) == 2 * (1 + figures["steps"])
        from hw.isa import assemble, decode, encode
        for binary in files[::2]:
            text = binary.with_suffix(".txt")
            assert encode(assemble(text.read_text())) == binary.read_bytes()
            assert decode(binary.read_bytes())[-1].op.name == "END"
        return figures, stdout
    return run


def test_schedule_default_model_both_modes(schedule):
    for batch, mode in ((4, "elastic_sd"), (2, "cached")):
        figures, out = schedule("--batch", str(batch), "--steps", "1", "--seed", "3")
        assert figures["mode"] == mode and figures["machine"] == "demo"
        assert figures["commands"] == figures["per_step"][0]["commands"] > 100
        phases = {"elastic_sd": {"draft", "verify"}, "cached": {"cached"}}[mode]
        assert set(figures["bytes"]) == phases
        assert "LPDDR read B" in out and "HB write B" in out


@pytest.mark.parametrize("model", ["olmoe-1b-7b"])
def test_schedule_zoo_model_on_the_paper_machine(schedule, model):
    """One sequence (the slow test below takes every zoo model at batches 2 and 4)."""
    figures, _ = schedule("--model", model, "--batch", "1", "--steps", "1")
    assert figures["machine"] == "paper" and figures["pes"] == 32 and figures["mode"] == "cached"
    assert figures["plan"]["fits"] == {"HB": True, "LPDDR": True}
    assert figures["bytes"]["cached"]["LPDDR"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["qwen3-30b-a3b", "glm-4.7-flash", "deepseek-v2-lite",
                                   "gpt-oss-20b", "mixtral-8x7b", "olmoe-1b-7b",
                                   "qwen1.5-moe-a2.7b", "phi-3.5-moe"])
@pytest.mark.parametrize("batch", [2, 4])
def test_schedule_every_zoo_model(schedule, model, batch):
    figures, _ = schedule("--model", model, "--batch", str(batch), "--steps", "1")
    assert figures["mode"] == ("cached" if batch < 4 else "elastic_sd")
    assert figures["commands"] > 0 and figures["plan"]["fits"] == {"HB": True, "LPDDR": True}


@pytest.mark.parametrize("args, key", [
    (["--set", "cache.policy=FREQUENCY"], "cache.policy"),
    (["--set", "cache.slots=16"], "cache.slots"),
    (["--set", "hb.words=2097152"], "hb.words"),                     # demo machine: HB fitted
    (["--model", "olmoe-1b-7b", "--set", "cache.ways=4"], "cache.ways")])
def test_an_override_schedule_would_replace_is_refused(run_build, args, key):
    """The expert cache (and on the demo machine the HB and LPDDR sizes) is fitted to the model;
    an override of it is refused with its key, before any work, instead of silently dropped."""
    code, stdout, stderr = run_build("schedule", "--batch", "2", "--steps", "1", *args)
    assert code == 1 and stdout == ""
    assert f"schedule fits {key} to the model itself" in stderr


def test_other_overrides_reach_the_scheduled_machine(schedule):
    """Without --machine the built-in model is scheduled on the demo machine, with the overrides
    checked against it (not against the paper machine)."""
    figures, _ = schedule("--batch", "2", "--steps", "1", "--set", "pes=1",
                          "--set", "hb_timing.t_cl=30")
    assert figures["machine"] == "demo" and figures["pes"] == 1
    machine = (Path(figures["out_dir"]) / "machine.toml").read_text()
    assert "t_cl = 30" in machine and "pes = 1" in machine


def test_an_abbreviated_option_is_not_taken_for_a_longer_one(run_build):
    """``--mode`` is no option of schedule: it is refused (exit 2), not read as ``--model``."""
    code, stdout, stderr = run_build("schedule", "--mode", "elastic_sd")
    assert code == 2 and stdout == ""
    assert "unrecognized arguments: --mode elastic_sd" in stderr
