"""``--checkpoint PATH`` names a checkpoint in ``sd``, ``schedule`` and ``perf``: ``sd`` decodes every
reference checkpoint (tests/data/checkpoints) losslessly, and what it records (a routing trace) is
what ``perf --trace`` reads; ``schedule`` schedules the same checkpoint. Bad checkpoints get one
line naming the file and what is wrong, and exit status 1."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "data" / "checkpoints"
CHECKPOINTS = sorted(p.name for p in ROOT.iterdir() if (p / "config.json").is_file())


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_sd_on_every_reference_checkpoint(run_build, tmp_path, name):
    path, trace = ROOT / name, tmp_path / "routing.npz"
    code, stdout, stderr = run_build("sd", "--checkpoint", str(path), "--batch", "4",
                                     "--new-tokens", "5", "--prompt-len", "4", "8",
                                     "--save-routing", str(trace))
    assert code == 0, stdout + stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    assert figures["lossless_sequences"] == 4
    assert "loading [" in stderr
    code, stdout, stderr = run_build("perf", "--checkpoint", str(path), "--trace", str(trace),
                                     "--batches", "1,4", "--pes", "32", "--no-plots")
    assert code == 0, stderr
    assert f"\n{path}  4" in stdout


def test_schedule_takes_a_checkpoint(run_build):
    for name in ("deepseek_v2-tf5", "gpt_oss-tf5"):
        code, stdout, stderr = run_build("schedule", "--checkpoint", str(ROOT / name),
                                         "--steps", "1", "--batch", "4")
        assert code == 0, stderr
        figures = json.loads(stdout.strip().splitlines()[-1])
        assert figures["valid"] and figures["commands"] > 0


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_bad_checkpoints_print_one_line_and_exit_1(run_build, tmp_path):
    good = ROOT / "qwen3_moe-tf5"
    cases = {}
    d = _copy(good, tmp_path / "truncated")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[:len(data) // 3])
    cases[d] = "model.safetensors is truncated"
    d = _copy(good, tmp_path / "empty")
    (d / "model.safetensors").write_bytes(b"")
    cases[d] = "model.safetensors is empty"
    d = _copy(good, tmp_path / "garbage")
    (d / "model.safetensors").write_bytes(b"PK\x03\x04 not safetensors at all" * 50)
    cases[d] = "model.safetensors is not a safetensors file"
    d = _copy(good, tmp_path / "index")
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}}))
    cases[d] = "maps tensor 'model.norm.weight' to the missing shard"
    for field, value, message in (("num_hidden_layers", 1, "config.json declares 1 layers"),
                                  ("num_local_experts", 4, "config.json declares 4 experts"),
                                  ("head_dim", 8, "has shape"),
                                  ("model_type", "llama", "field 'model_type' is 'llama'")):
        d = _copy(good, tmp_path / field)
        cfg = json.loads((d / "config.json").read_text())
        cfg[field] = value
        (d / "config.json").write_text(json.dumps(cfg))
        cases[d] = message
    cases[good / "config.json"] = "is a file; a checkpoint is a directory"
    for path, message in cases.items():
        for command in ("sd", "schedule"):
            code, stdout, stderr = run_build(command, "--checkpoint", str(path))
            assert code == 1, (path, stderr)
            assert message in stderr and str(path) in stderr
            assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
