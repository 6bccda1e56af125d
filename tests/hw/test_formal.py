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
#: tests/commands/test_formal_cli.py); the MAC array's lane products and wide sums take minutes,
#: the PE's bounded proof half a minute.
_FAST = {("expert_cache", "contract"), ("command_processor", "illegal-stops"),
         ("mac_array", "lanes"), ("mac_array", "sums"),
         ("mem_channel", "die-commands"), ("mem_channel", "answers"),
         ("lpddr_port", "contract")}


@pytest.mark.parametrize("proof", [_param(p, (p.block, p.name) not in _FAST) for p in PROOFS])
def test_the_proof_holds_and_every_cover_is_reached(proof, tmp_path):
    result = run_proof(proof, tmp_path)
    assert result.result == ("proved" if proof.method == "k-induction" else "passed"), \
        f"{result.result}: {result.failed} (see {result.workdir})"
    assert result.covers_reached == result.covers_total > 0, result.unreached


#: The quick broken variants run in the default suite, at least one per block (a broken variant
#: stops at its counterexample and runs no covers); the others are slow.
_BROKEN_FAST = {("expert_cache", "contract"), ("mem_channel", "die-commands"),
                ("mac_array", "lanes"), ("mac_array", "sums"), ("mem_channel", "answers"),
                ("lpddr_port", "contract"), ("pe", "streams")}


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


def test_an_unreached_cover_is_not_counted_as_reached():
    from hw.flows.formal import _REACHED, _UNREACHED
    log = ("engine_0: ##   0:00:00  Reached cover statement at top: property:3 in step 4.\n"
           "engine_0: ##   0:00:00  Unreached cover statement at top: property:14 (check_233)\n"
           "summary:   reached cover statement top._witness_.check_222 at property:12 step 4\n")
    assert _REACHED.findall(log) == ["property:3", "property:12"]
    assert _UNREACHED.findall(log) == ["property:14"]


def test_memory_words_registers_behave_as_the_memory_they_replace():
    # the registers hw.formal.harness.memory_words puts in place of a memory (so a harness can
    # name its words) against the memory itself, cycle by cycle, on random writes and reads
    # through a synchronous read port (plain and transparent), an asynchronous one and a write
    # port of two granules
    import random
    from amaranth import Module, Signal
    from amaranth.hdl import Fragment
    from amaranth.lib import memory
    from amaranth.sim import Simulator
    from hw.formal.harness import memory_words

    def design():
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=8, depth=4, init=[1, 2, 3, 4])
        w = mem.write_port(granularity=4)
        plain, through = mem.read_port(), mem.read_port(transparent_for=[w])
        comb = mem.read_port(domain="comb")
        return m, (w, plain, through, comb)

    runs = []
    for replace in (False, True):
        m, (w, plain, through, comb) = design()
        fragment = Fragment.get(m, None)
        if replace:
            (words,) = memory_words(fragment).values()
            assert len(words) == 4
        seen = []

        async def bench(ctx, w=w, plain=plain, through=through, comb=comb, seen=seen):
            rng = random.Random(7)
            for _ in range(200):
                ctx.set(w.addr, rng.randrange(4))
                ctx.set(w.data, rng.randrange(256))
                ctx.set(w.en, rng.randrange(4))
                for port in (plain, through):
                    ctx.set(port.addr, rng.randrange(4))
                    ctx.set(port.en, rng.randrange(2))
                ctx.set(comb.addr, rng.randrange(4))
                await ctx.tick()
                seen.append((ctx.get(plain.data), ctx.get(through.data), ctx.get(comb.data)))

        sim = Simulator(fragment)
        sim.add_clock(1e-6)
        sim.add_testbench(bench)
        sim.run()
        runs.append(seen)
    assert runs[0] == runs[1]
    assert len({t for t in runs[0]}) > 20, "the stimulus reaches many values"


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
