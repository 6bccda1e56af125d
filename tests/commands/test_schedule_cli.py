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
    figures, _ = schedule("--model", model, "--batch", "2", "--steps", "1")
    assert figures["machine"] == "paper" and figures["pes"] == 32
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
