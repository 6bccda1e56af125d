"""The formal proofs of the block contracts (hw.formal, run by hw.flows.formal with SymbiYosys):
every proof holds and reaches all its covers, and every harness's deliberately broken variant fails
with a counterexample waveform. The fast proofs run in the default suite, the rest are slow."""

import pytest

from hw.flows.formal import run_proof, sby_config
from hw.formal import PROOFS

pytestmark = pytest.mark.toolchain


def _param(proof, slow):
    marks = [pytest.mark.slow] if slow else []
    if proof.known_failure:
        marks.append(pytest.mark.xfail(reason=f"known bug: {proof.known_failure}", strict=True))
    return pytest.param(proof, id=f"{proof.block}-{proof.name}", marks=marks)


#: Proofs fast enough for the default suite (the MAC array's streams proof runs there through
#: tests/commands/test_formal_cli.py); the bounded memory-channel proofs take minutes.
_FAST = {("expert_cache", "contract"), ("command_processor", "illegal-stops")}


@pytest.mark.parametrize("proof", [_param(p, (p.block, p.name) not in _FAST) for p in PROOFS])
def test_the_proof_holds_and_every_cover_is_reached(proof, tmp_path):
    result = run_proof(proof, tmp_path)
    assert result.result == ("proved" if proof.method == "k-induction" else "passed"), \
        f"{result.result}: {result.failed} (see {result.workdir})"
    assert result.covers_reached == result.covers_total > 0, result.unreached


#: One broken variant per block runs in the default suite (a broken variant stops at its
#: counterexample and runs no covers, so it is quick); the others are slow.
_BROKEN_FAST = {("expert_cache", "contract"), ("mem_channel", "die-commands")}


@pytest.mark.parametrize("proof", [
    pytest.param(p, id=f"{p.block}-{p.name}",
                 marks=[] if (p.block, p.name) in _BROKEN_FAST else [pytest.mark.slow])
    for p in PROOFS])
def test_the_broken_variant_fails_with_a_counterexample(proof, tmp_path):
    result = run_proof(proof, tmp_path, broken=True)
    assert result.result == "FAILED", f"{result.result} (see {result.workdir})"
    assert result.failed, "the failing assertion is named"
    counterexamples = [t for t in result.traces if "config_prove" in t]
    assert counterexamples and all(t.endswith(".vcd") for t in counterexamples)


def test_sby_config_names_method_depth_and_the_boolector_engine():
    text = sby_config("k-induction", 5, 8)
    assert "prove: mode prove" in text and "prove: depth 5" in text
    assert "cover: mode cover" in text and "cover: depth 8" in text
    assert "smtbmc boolector" in text
    assert "prove: mode bmc" in sby_config("bmc", 14, 16)


def test_every_bounded_proof_says_why_its_depth_covers_the_latency():
    for proof in PROOFS:
        assert proof.method in ("k-induction", "bmc")
        assert proof.method == "k-induction" or proof.why, proof.name
        assert proof.breaks and proof.states, proof.name
