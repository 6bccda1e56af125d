"""``build.py formal``: the proofs' table and JSON line, and one-line errors for bad arguments."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.toolchain


def test_formal_of_one_block_prints_the_table_and_the_json_line(run_build):
    code, stdout, stderr = run_build("formal", "mac_array", "--proof", "streams")
    assert code == 0, stdout + stderr
    assert "mac_array  streams" in stdout and "k-induction" in stdout and "proved" in stdout
    assert "time per block: mac_array" in stdout
    figures = json.loads(stdout.strip().splitlines()[-1])
    (proof,) = figures["proofs"]
    assert proof["result"] == "proved" and proof["depth"] == 7
    assert proof["covers_reached"] == proof["covers_total"] > 0
    workdir = Path(proof["workdir"])
    assert (workdir / "config.sby").exists() and (workdir / "config_prove" / "PASS").exists()
    assert list((workdir / "config_cover").rglob("*.vcd")), "cover traces are written"


@pytest.mark.parametrize("args, message", [
    (["formal", "alu"], "formal: unknown block 'alu'; blocks with proofs: mac_array, expert_cache, "
     "mem_channel, command_processor, lpddr_port, pe"),
    (["formal", "mac_array", "--proof", "nothing"],
     "formal: no proof named 'nothing' for mac_array"),
    (["formal", "--timeout", "0"], "formal: --timeout must be a positive number, not 0.0"),
])
def test_bad_arguments_stop_with_one_line_naming_them(run_build, args, message):
    code, stdout, stderr = run_build(*args)
    assert code == 1
    assert stderr.strip() == message
