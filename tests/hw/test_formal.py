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
#: tests/commands/test_formal_cli.py); the bounded memory-channel proofs and the MAC array's
#: lane products take minutes.
_FAST = {("expert_cache", "contract"), ("command_processor", "illegal-stops"),
         ("mac_array", "lanes"), ("mac_array", "sums"),
         ("mem_channel", "die-commands-unbounded")}


@pytest.mark.parametrize("proof", [_param(p, (p.block, p.name) not in _FAST) for p in PROOFS])
def test_the_proof_holds_and_every_cover_is_reached(proof, tmp_path):
    result = run_proof(proof, tmp_path)
    assert result.result == ("proved" if proof.method == "k-induction" else "passed"), \
        f"{result.result}: {result.failed} (see {result.workdir})"
    assert result.covers_reached == result.covers_total > 0, result.unreached


#: The quick broken variants run in the default suite, at least one per block (a broken variant
#: stops at its counterexample and runs no covers); the others are slow.
_BROKEN_FAST = {("expert_cache", "contract"), ("mem_channel", "die-commands"),
                ("mac_array", "lanes"), ("mac_array", "sums"),
                ("mem_channel", "die-commands-unbounded")}


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


def test_the_harness_reference_is_the_golden_models_for_every_byte_and_mode():
    # the proofs' reference (contract_fields, effective_weight) against the golden model's
    # (SliceLevelMac.lane_fields, effective_weights): every weight byte in every mode
    import numpy as np
    from amaranth import Module, Signal, signed
    from amaranth.lib import data
    from amaranth.sim import Simulator
    from hw.formal.mac_array import SMALL, contract_fields, effective_weight
    from hw.mac_array import SlicePair
    from hw.params import MacMode
    from sw_model.golden.mac_array import SliceLevelMac, effective_weights

    m = Module()
    mode, byte = Signal(MacMode), Signal(8)
    pair = data.View(SlicePair, byte)
    upper, lower, weight = Signal(signed(8)), Signal(signed(8)), Signal(signed(16))
    fields = contract_fields(mode, pair)
    m.d.comb += [upper.eq(fields[0]), lower.eq(fields[1]),
                 weight.eq(effective_weight(mode, byte))]
    seen = {}

    async def bench(ctx):
        for mode_ in MacMode:
            for b in range(256):
                ctx.set(mode, mode_)
                ctx.set(byte, b)
                seen[mode_, b] = (ctx.get(upper), ctx.get(lower), ctx.get(weight))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    golden = SliceLevelMac(SMALL)
    codes = np.arange(256)
    for mode_ in MacMode:
        up, low = golden.lane_fields(mode_, codes)
        w = effective_weights(np.where(codes >= 128, codes - 256, codes), mode_)
        got = np.array([seen[mode_, b] for b in range(256)])
        assert (got[:, 0] == up).all() and (got[:, 1] == low).all(), mode_.name
        assert (got[:, 2] == w).all(), mode_.name
