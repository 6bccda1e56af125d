"""The command processor in Amaranth's simulator with the real expert-cache controller and the
testbench playing the PEs (random back-pressure and busy time, or none): the error code and
progress of every validator case, the PE commands it dispatches (addresses resolved through the
slot table) and its slot table equal the ISA's golden executor."""

import random

import pytest
from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import connect, flipped
from amaranth.sim import Simulator

from hw.command_processor import CommandProcessor
from hw.expert_cache import ExpertCache
from hw.isa import Command, ErrorCode, Opcode, as_words, check_command, StreamError
from hw.params import CacheOp
from hw.params import TOP_DEFAULT
from hw.pe import PeOp, pe_command_layout
from sim.top.fuzz import random_stream
from sw_model.golden.top import check_dynamic, execute
from sw_model.golden.expert_cache import ExpertCacheModel
from sim.top.cases import error_cases

P = TOP_DEFAULT


class Harness(wiring.Component):
    def __init__(self, params):
        self.cp = CommandProcessor(params)
        self.cache = ExpertCache(params.cache)
        sig = self.cp.signature.members
        super().__init__({name: sig[name] for name in ("host", "pe_cmd", "pe_idle")})

    def elaborate(self, platform):
        m = Module()
        m.submodules.cp, m.submodules.cache = self.cp, self.cache
        connect(m, self.cp.cache_req, self.cache.req)
        connect(m, self.cache.resp, self.cp.cache_resp)
        connect(m, flipped(self.host), self.cp.host)
        m.d.comb += self.cp.pe_idle.eq(self.pe_idle)
        for k in range(len(self.pe_cmd)):
            connect(m, self.cp.pe_cmd[k], flipped(self.pe_cmd[k]))
        return m


def expected_dispatch(stream, params, cache):
    """``(pe, PeOp, fields)`` of every PE command the golden machine runs from ``cache`` (an
    ExpertCacheModel, changed), addresses resolved."""
    out = []
    pe_ops = {Opcode.LOAD_HB: PeOp.LOAD, Opcode.LOAD_LPDDR: PeOp.LOAD, Opcode.LOAD_SLOT: PeOp.LOAD,
              Opcode.WRITE_SLOT: PeOp.WRITE_HB, Opcode.LOAD_ACT: PeOp.LOAD_ACT,
              Opcode.MAC: PeOp.MAC, Opcode.COMBINE: PeOp.COMBINE, Opcode.MAC_DQ: PeOp.MAC_DQ}
    from hw.isa import decode_word
    for index, word in enumerate(as_words(stream)):
        try:
            c = decode_word(word, index)
            check_command(c, index, params)
            if c.op is Opcode.END:
                break
            slot = check_dynamic(c, index, cache)
        except StreamError:
            break
        if c.op not in pe_ops:
            continue
        f = {"count": c.count}
        if c.op is Opcode.LOAD_HB:
            f.update(ext=c.hb, wmem=c.wmem, lpddr=0)
        elif c.op is Opcode.LOAD_LPDDR:
            f.update(ext=c.lpddr, wmem=c.wmem, lpddr=1)
        elif c.op in (Opcode.LOAD_SLOT, Opcode.WRITE_SLOT):
            f.update(ext=slot * params.slot_words + c.offset, wmem=c.wmem)
        elif c.op is Opcode.LOAD_ACT:
            f.update(amem=c.amem, imem=c.imem)
        elif c.op is Opcode.MAC:
            f.update(mode=c.mode, reuse=c.reuse, wmem=c.wmem, amem=c.amem, omem=c.omem)
        elif c.op is Opcode.MAC_DQ:
            f.update(mode=c.mode, reuse=c.reuse, wmem=c.wmem, amem=c.amem, omem=c.omem,
                     split=c.split, first=c.first, last=c.last, acc=c.acc, scales=c.scales,
                     tscale=c.tscale)
        else:
            f.update(a=c.a, b=c.b, omem=c.dst)
        out.append((c.pe, pe_ops[c.op], f))
    return out


def run_processor(streams, seed, pressure):
    """Run each stream on the harness; returns ``[(error, progress, dispatched, slot table)]``."""
    dut = Harness(P)
    rng = random.Random(seed)
    results = []

    async def testbench(ctx):
        for stream in streams:
            words = as_words(stream)
            for i, w in enumerate(words):
                ctx.set(dut.cp.cmem.data[i], w)
            ctx.set(dut.host.length, len(words))
            ctx.set(dut.pe_idle, (1 << P.pes) - 1)
            ctx.set(dut.host.start, 1)
            await ctx.tick()
            ctx.set(dut.host.start, 0)
            dispatched, busy = [], [0] * P.pes
            for _ in range(20000):
                ready = [not (pressure and rng.random() < 0.4) for _ in range(P.pes)]
                for k in range(P.pes):
                    ctx.set(dut.pe_cmd[k].ready, ready[k])
                ctx.set(dut.pe_idle, sum(1 << k for k in range(P.pes) if busy[k] == 0))
                _, _, status, *cmds = await ctx.tick().sample(
                    dut.host.status, *[x for k in range(P.pes)
                                  for x in (dut.pe_cmd[k].valid, dut.pe_cmd[k].payload)])
                busy = [max(0, b - 1) for b in busy]
                for k in range(P.pes):
                    if cmds[2 * k] and ready[k]:
                        dispatched.append((k, cmds[2 * k + 1]))
                        busy[k] = rng.randint(1, 6) if pressure else 0
                if status.done:
                    break
            else:
                raise AssertionError("the processor did not finish")
            cp = dut.cp
            table = {s: (ctx.get(cp.slot_layer[s]), ctx.get(cp.slot_expert[s]),
                         bool(ctx.get(cp.slot_pinned) >> s & 1))
                     for s in range(P.cache.slots) if ctx.get(cp.slot_valid) >> s & 1}
            results.append((ErrorCode(status.error), status.progress, dispatched, table))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results


#: Every field of a PE command but ``op``: an opcode's unlisted fields must be 0.
PE_FIELDS = [name for name, _ in pe_command_layout(P) if name != "op"]


def _fields(payload):
    return {name: int(getattr(payload, name)) for name in PE_FIELDS}


@pytest.mark.parametrize("pressure", [False, True], ids=["no pressure", "pressure"])
def test_processor_equals_the_isa(seed, pressure):
    rng = random.Random(seed)
    streams = [case[1] for case in error_cases(P)]
    streams += [random_stream(P, rng, None, length=12) for _ in range(6)]
    cache = ExpertCacheModel(P.cache)      # the processor keeps its cache from stream to stream
    for (error, progress, dispatched, table), stream in zip(
            run_processor(streams, seed, pressure), streams):
        gold = execute(stream, P, cache=cache)
        assert (error, progress) == (gold.error, gold.progress)
        assert table == gold.slot_table()
        expected = expected_dispatch(stream, P, cache)
        assert cache.snapshot() == gold.cache.snapshot()
        assert len(dispatched) == len(expected)
        for (pe, payload), (want_pe, op, fields) in zip(dispatched, expected):
            assert pe == want_pe and int(payload.op) == op
            assert _fields(payload) == {**dict.fromkeys(PE_FIELDS, 0), **fields}


def test_slot_table_follows_only_ok_responses_and_whole_keys(seed):
    """The slot table changes only on OK responses and matches a slot by valid bit, layer and
    expert together: UNPIN clears the pin; a refused PIN (ABSENT) pins nothing; a refused
    INVALIDATE (PINNED) keeps the slot; a key of another layer with the same expert, and an
    invalidated key, hold no slot."""
    I, Pn, U, V = CacheOp.INSTALL, CacheOp.PIN, CacheOp.UNPIN, CacheOp.INVALIDATE
    cache_op = lambda cop, layer, expert: Command(Opcode.CACHE, cop=cop, layer=layer,
                                                  expert=expert)
    end = Command(Opcode.END)
    load = lambda layer, expert: Command(Opcode.LOAD_SLOT, layer=layer, expert=expert, count=1)
    streams = [
        [cache_op(I, 0, 3), cache_op(Pn, 0, 3), cache_op(U, 0, 3), end],
        [cache_op(I, 0, 0), cache_op(Pn, 1, 5), end],               # ABSENT (slot 0 in use)
        [cache_op(Pn, 0, 3), cache_op(V, 0, 3), end],               # PINNED: CACHE_ERROR
        [cache_op(U, 0, 3), load(1, 3), end],                       # SLOT_NOT_INSTALLED
        [cache_op(I, 0, 4), cache_op(V, 0, 4), load(0, 4), end],    # SLOT_NOT_INSTALLED
        [load(0, 3), end],
    ]
    cache = ExpertCacheModel(P.cache)
    got = run_processor(streams, seed, False)
    codes = []
    for (error, progress, dispatched, table), stream in zip(got, streams):
        gold = execute(stream, P, cache=cache)
        cache = gold.cache                       # the processor keeps its cache too
        assert (error, progress) == (gold.error, gold.progress)
        assert table == gold.slot_table()
        codes.append(error)
    assert got[1][3][0] == (0, 0, False)     # the refused PIN answered slot 0: still unpinned
    assert codes == [ErrorCode.NONE, ErrorCode.CACHE_ERROR, ErrorCode.CACHE_ERROR,
                     ErrorCode.SLOT_NOT_INSTALLED, ErrorCode.SLOT_NOT_INSTALLED, ErrorCode.NONE]


def test_status_cycles_and_phase_cycles_in_every_state():
    """After reset every status field and counter is 0; a start while busy is ignored; busy falls
    as done rises; cycles counts the busy cycles and the phase counters split them by the
    BARRIER phase; everything holds after done until the next start, which clears it."""
    stream = [Command(Opcode.BARRIER, phase=2), Command(Opcode.CACHE, cop=CacheOp.RESET_COUNTS),
              Command(Opcode.BARRIER, phase=1), Command(Opcode.END)]
    dut = Harness(P)
    seen = {}

    async def testbench(ctx):
        status = dut.host.status
        ctx.set(dut.pe_idle, (1 << P.pes) - 1)
        await ctx.tick()
        seen["reset"] = [int(getattr(ctx.get(status), f)) for f in
                         ("busy", "done", "error", "progress", "phase")] + [
            ctx.get(dut.host.cycles), *[ctx.get(dut.host.phase_cycles[k]) for k in range(4)]]
        for i, w in enumerate(as_words(stream)):
            ctx.set(dut.cp.cmem.data[i], w)
        ctx.set(dut.host.length, len(stream))
        busy_cycles = 0
        for cycle in range(200):
            ctx.set(dut.host.start, cycle in (0, 3))      # the second start comes while busy
            await ctx.tick()
            st = ctx.get(status)
            busy_cycles += int(st.busy)
            if st.done:
                break
        ctx.set(dut.host.start, 0)
        seen["busy"] = busy_cycles
        for _ in range(5):
            await ctx.tick()
        st = ctx.get(status)
        seen["done"] = [int(getattr(st, f)) for f in ("busy", "done", "error", "progress",
                                                      "phase")]
        seen["cycles"] = ctx.get(dut.host.cycles)
        seen["phases"] = [ctx.get(dut.host.phase_cycles[k]) for k in range(4)]
        ctx.set(dut.host.start, 1)
        await ctx.tick()
        ctx.set(dut.host.start, 0)
        await ctx.tick()
        st = ctx.get(status)
        seen["restart"] = [int(st.busy), int(st.done), int(st.phase), ctx.get(dut.host.cycles)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen["reset"] == [0] * 10
    assert seen["done"] == [0, 1, int(ErrorCode.NONE), 3, 1]
    assert seen["cycles"] == seen["busy"] > 0
    phases = seen["phases"]
    assert sum(phases) == seen["cycles"] and phases[0] > 0 and phases[2] > 0 and phases[1] > 0
    assert phases[3] == 0
    assert seen["restart"] == [1, 0, 0, 1]
