"""The HB interface and the LPDDR port with their DRAM-die models in Amaranth's simulator: the
request contract against the golden model (with and without random idle cycles and back-pressure),
every error case, the die model's timing, and the parameter checks."""

import dataclasses
import random

import pytest

from hw.hb_interface import HbInterface
from hw.lpddr_port import LpddrPort
from hw.mem_channel import request_layout
from hw.params import (HbInterfaceParams, LpddrPortParams, HbBankTiming, Lpddr5Timing, MemOp,
                       MemStatus, ns_to_cycles)
from sim.amaranth_streams import stream_recv, stream_send
from sim.dram_model import DramDie, HbSystem, LpddrSystem
from sim.mem_channel.traffic import (PortDriver, covering, error_requests, expected_count,
                                     random_bursts, run_in_amaranth, sequential)
from sw_model.golden.mem_channel import GoldenMemory, Request

HB_SMALL = HbInterfaceParams(channels=2, words=4096, address_width=13, max_length=16,
                             read_buffer=64, write_buffer=32, outstanding=4, tag_width=6)
LPDDR_SMALL = LpddrPortParams(words=4096, address_width=13, clients=3, tag_width=5)
PRESSURE = [(0.0, 0.0), (0.3, 0.4)]


def _run(system, traffic, seed, idle, stall, image=None, serial=False):
    params = system.params
    drivers = [PortDriver(params, reqs, seed=seed + i, idle=idle, stall=stall, serial=serial)
               for i, reqs in enumerate(traffic)]
    counts = [expected_count(params, reqs) for reqs in traffic]

    async def backdoor(ctx, when):
        if when == "before":
            for address, word in (image or {}).items():
                for die in system.dies:
                    ctx.set(die.storage.data[address], word)
            return None
        return [{a: ctx.get(die.storage.data[a]) for a in range(params.words)}
                for die in system.dies]

    arrays = run_in_amaranth(system, drivers, counts,
                             max_cycles=60 * sum(counts) + 40 * sum(len(d.beats) for d in drivers)
                             + 2000, backdoor=backdoor)
    return drivers, arrays


@pytest.mark.parametrize("pressure", [
    pytest.param(PRESSURE[0], id="free", marks=pytest.mark.slow),  # on Verilator: tests/sim
    pytest.param(PRESSURE[1], id="pressure")])
def test_hb_random_traffic(pressure, seed):
    rng = random.Random(seed)
    p = HB_SMALL
    traffic = []
    for _ in range(p.channels):
        reqs = covering(p, MemOp.WRITE, 512, rng) + random_bursts(p, MemOp.READ, 10, 4, rng, 512)
        reqs += random_bursts(p, MemOp.WRITE, 10, 8, rng, 4096) + covering(p, MemOp.READ, 512, rng)
        reqs += [Request(MemOp.READ, p.words - 1, 1, 3), Request(MemOp.WRITE, 7, 1, 4, (5,))]
        traffic.append(reqs)
    system = HbSystem(p)
    drivers, arrays = _run(system, traffic, seed, *pressure)
    for driver, array in zip(drivers, arrays):
        golden = GoldenMemory(p)
        assert driver.check(golden) > 500
        assert array == {a: golden.words.get(a, 0) for a in range(p.words)}


@pytest.mark.parametrize("pressure", [
    pytest.param(PRESSURE[0], id="free", marks=pytest.mark.slow),  # on Verilator: tests/sim
    pytest.param(PRESSURE[1], id="pressure")])
def test_lpddr_clients_share_the_port(pressure, seed):
    """Three clients on disjoint slices of the one channel, all at once: each gets exactly its own
    responses, in its order, with its tags."""
    rng = random.Random(seed)
    p = LPDDR_SMALL
    traffic = []
    for k in range(p.clients):
        first = 1024 * k
        reqs = covering(p, MemOp.WRITE, 256, rng, first=first)
        reqs += covering(p, MemOp.READ, 256, rng, first=first)
        reqs += [Request(MemOp.READ, p.words, 1, 9)]
        traffic.append(reqs)
    system = LpddrSystem(p)
    drivers, (array,) = _run(system, traffic, seed, *pressure)
    merged = {}
    for driver in drivers:
        golden = GoldenMemory(p)
        assert driver.check(golden) > 200
        merged.update(golden.words)
    assert array == {a: merged.get(a, 0) for a in range(p.words)}


@pytest.mark.parametrize("system_class, params", [(HbSystem, HB_SMALL),
                                                  (LpddrSystem, LPDDR_SMALL)], ids=["hb", "lpddr"])
@pytest.mark.parametrize("pressure", PRESSURE, ids=["free", "pressure"])
def test_every_error_case_then_a_normal_request(system_class, params, pressure, seed):
    """Each malformed request answers one ERROR beat with its tag and writes nothing; the write and
    read right after it are served normally."""
    rng = random.Random(seed)
    image = {a: rng.getrandbits(params.data_width) for a in range(params.words)}
    cases = error_requests(params, rng)
    assert len(cases) == 8
    requests = []
    for i, (_, bad) in enumerate(cases):
        near = min(bad.address, params.words - 4)
        requests += [bad, Request(MemOp.WRITE, near, 1, 10 + i, (rng.getrandbits(8),)),
                     Request(MemOp.READ, near, 2, 20 + i)]
    system = system_class(params)
    drivers, arrays = _run(system, [requests], seed, *pressure, image=image)
    golden = GoldenMemory(params, image)
    drivers[0].check(golden)
    responses = [r for _, r in drivers[0].responses]
    errors = [r for r in responses if r.status == MemStatus.ERROR]
    assert [r.tag for r in errors] == [bad.tag for _, bad in cases]
    assert arrays[0] == {a: golden.words[a] for a in range(params.words)}, \
        "an error request wrote"


def _beats(params, op, address, length, tags, words):
    """A request's beats with a different tag (and, after the first, other header fields) on
    each beat, packed with the hardware's layout."""
    layout = request_layout(params)
    beats = []
    for i, (tag, word) in enumerate(zip(tags, words)):
        later = dict(op=MemOp(1 - op), address=(address * 7 + i) % params.words,
                     length=(length + i) % (params.max_length + 1))
        header = dict(op=op, address=address, length=length) if i == 0 else later
        beats.append(layout.const({**header, "tag": tag, "data": word}))
    return beats


def _send_and_receive(system, beats, responses, idle, stall, seed):
    from amaranth.sim import Simulator
    sim = Simulator(system)
    sim.add_clock(1e-9)
    got = []

    async def source(ctx):
        await stream_send(ctx, system.req[0], beats, random.Random(seed), idle)

    async def sink(ctx):
        got.extend(await stream_recv(ctx, system.resp[0], responses, random.Random(seed + 1),
                                     stall))

    async def watchdog(ctx):
        for _ in range(5000):
            await ctx.tick()
        raise AssertionError(f"{len(got)} of {responses} responses after 5000 cycles")

    sim.add_process(source)
    sim.add_testbench(sink)
    sim.add_testbench(watchdog, background=True)
    sim.run()
    return [(int(r.tag), MemStatus(int(r.status)), int(r.last), int(r.data)) for r in got]


@pytest.mark.parametrize("system_class, params", [
    (HbSystem, HB_SMALL), (LpddrSystem, dataclasses.replace(LPDDR_SMALL, tag_width=6))],
    ids=["hb", "lpddr"])
@pytest.mark.parametrize("pressure", PRESSURE, ids=["free", "pressure"])
def test_multi_beat_write_answers_with_its_first_beat(system_class, params, pressure, seed):
    """A write's fields come from its first beat, whatever the later beats carry: a malformed
    two-beat write (beat 0 ``tag=0x11``, beat 1 ``tag=0x22`` and another op, address and length)
    answers ``ERROR tag=0x11``; a valid three-beat write with different later headers writes all
    its words where its first beat says and answers ``OK`` with the first tag; the read back sees
    them; ``last`` is 1 and ``data`` 0 on the ERROR and the write acknowledgement."""
    p = params
    bad = _beats(p, MemOp.WRITE, p.words, 2, [0x11, 0x22], [5, 6])
    good = _beats(p, MemOp.WRITE, 40, 3, [0x13, 0x24, 0x35], [7, 8, 9])
    read = _beats(p, MemOp.READ, 40, 3, [0x16], [0])
    got = _send_and_receive(system_class(p), bad + good + read, 5, *pressure, seed)
    assert got == [(0x11, MemStatus.ERROR, 1, 0), (0x13, MemStatus.OK, 1, 0),
                   (0x16, MemStatus.OK, 0, 7), (0x16, MemStatus.OK, 0, 8),
                   (0x16, MemStatus.OK, 1, 9)]


def test_lpddr_grants_round_robin_request_by_request(seed):
    """Three clients always offering one-word writes (and one four-word write each): the port
    takes whole requests from the clients in turn, 0, 1, 2, 0, ..., a longer write keeping the
    grant only for its own beats."""
    p = LPDDR_SMALL
    rng = random.Random(seed)
    traffic = []
    for k in range(p.clients):
        reqs = [Request(MemOp.WRITE, 1024 * k + i, 1, i, (rng.getrandbits(8),)) for i in range(8)]
        reqs.insert(3, Request(MemOp.WRITE, 1024 * k + 100, 4, 9,
                               tuple(rng.getrandbits(8) for _ in range(4))))
        traffic.append(reqs)
    drivers, _ = _run(LpddrSystem(p), traffic, seed, 0.0, 0.0)
    firsts = sorted((d.request_cycle(i), k) for k, d in enumerate(drivers)
                    for i in range(len(d.requests)))
    assert [k for _, k in firsts] == [i % p.clients for i in range(len(firsts))]
    for driver in drivers:
        driver.check(GoldenMemory(p))


def test_die_timing_shows_in_latency():
    """Single reads on an idle channel: a closed bank costs exactly t_rcd more than an open-row
    hit, a row conflict exactly t_rp more than a closed bank; the hit itself is at least t_cl."""
    p = HbInterfaceParams(channels=1, words=4096, address_width=13)
    t = HbBankTiming(t_refi_pb=100000)          # no refresh in this short run
    row = t.row_words * t.banks                 # next row of bank 0
    reads = [Request(MemOp.READ, 0, 1, 0),      # bank 0 closed: ACT
             Request(MemOp.READ, 1, 1, 1),      # same row: hit
             Request(MemOp.READ, row, 1, 2)]    # bank 0, other row: PRE + ACT
    system = HbSystem(p, t)
    (driver,), _ = _run(system, [reads], 0, 0.0, 0.0, serial=True)
    closed, hit, conflict = (driver.responses[i][0] - driver.request_cycle(i) for i in range(3))
    assert hit >= t.t_cl
    assert closed - hit == t.t_rcd
    assert conflict - closed == t.t_rp


def test_defaults_come_from_the_data_sheet_figures():
    hb, lp = HbBankTiming(), Lpddr5Timing()
    assert hb.t_rcd == ns_to_cycles(14) == 23 and lp.t_rcd == ns_to_cycles(18) == 29
    assert HbInterfaceParams().peak_gbps == 51.2 and LpddrPortParams().peak_gbps == 102.4
    assert (hb.pj_per_bit, lp.pj_per_bit) == (0.43, 3.88)


#: Parameters each record refuses: (record, the bad values; the first one names the error).
BAD_PARAMETERS = [
    (HbInterfaceParams, dict(words=1 << 17, address_width=16)),
    *[(HbInterfaceParams, {name: value}) for name, value in
      [("data_width", 12), ("die_burst", 6), ("read_buffer", 4), ("outstanding", 1),
       ("channels", 0)]],
    (LpddrPortParams, dict(channels=2)), (LpddrPortParams, dict(clients=0)),
    *[(HbBankTiming, {name: value}) for name, value in
      [("banks", 12), ("t_cl", 1), ("t_rcd", 0), ("t_rp", 2.5)]],
    (Lpddr5Timing, dict(pj_per_bit=0)),
]


@pytest.mark.parametrize("kind, values", BAD_PARAMETERS)
def test_bad_parameters_are_named(kind, values):
    with pytest.raises((ValueError, TypeError), match=next(iter(values))):
        kind(**values)


def test_die_must_fit_the_port():
    with pytest.raises(ValueError, match="row_words"):
        DramDie(HbInterfaceParams(die_burst=128, read_buffer=128), HbBankTiming())
    with pytest.raises(TypeError, match="params"):
        HbInterface(LpddrPortParams())
    with pytest.raises(TypeError, match="params"):
        LpddrPort(HbInterfaceParams())


def test_refresh_costs_bandwidth_unless_hidden():
    """Per-bank refresh is modelled: with refreshes far more frequent than the data sheet's, a
    sequential read takes longer than with no refresh at all; with the default interval the die
    hides it in banks the stream is not using (no slower than without refresh, within the few
    cycles a refreshed bank's closed row can cost)."""
    p = HbInterfaceParams(channels=1, words=4096, address_width=13)
    rng = random.Random(0)
    reads = sequential(p, MemOp.READ, 0, 2048, p.max_length, rng)

    def cycles(timing):
        (driver,), _ = _run(HbSystem(p, timing), [reads], 0, 0.0, 0.0)
        return driver.responses[-1][0] - driver.accepted_cycles[0] + 1

    none = cycles(HbBankTiming(t_refi_pb=100000))
    default = cycles(HbBankTiming())
    heavy = cycles(HbBankTiming(t_refi_pb=40, t_rfc_pb=160))
    assert heavy > none + 100
    assert none <= default <= none + 40


#: One bank, one-word die bursts, buffers smaller than a request, refresh due all the time.
ONE_BANK = (HbInterfaceParams(channels=1, words=256, address_width=9, max_length=5, die_burst=1,
                              read_buffer=4, write_buffer=1, outstanding=2, tag_width=2),
            HbBankTiming(banks=1, row_words=8, t_rcd=1, t_rp=1, t_ras=1, t_cl=2, t_wr=1, t_rrd=1,
                         t_rtw=1, t_refi_pb=7, t_rfc_pb=3, refresh_postpone=1, queue_depth=2))
EXTREMES = {
    "one-bank": ONE_BANK,
    # two banks, refresh longer than its interval, a three-entry queue
    "two-banks": (dataclasses.replace(ONE_BANK[0], address_width=10, max_length=7, die_burst=4,
                                      write_buffer=2, outstanding=3, tag_width=3),
                  dataclasses.replace(ONE_BANK[1], banks=2, row_words=16, t_rcd=3, t_rp=5,
                                      t_ras=9, t_cl=3, t_wr=4, t_rrd=2, t_rtw=3, t_refi_pb=20,
                                      t_rfc_pb=30, refresh_postpone=2, queue_depth=3)),
}


@pytest.mark.parametrize("pressure", PRESSURE, ids=["free", "pressure"])
@pytest.mark.parametrize("config", EXTREMES)
def test_extreme_configurations(config, pressure, seed):
    p, t = EXTREMES[config]
    rng = random.Random(seed)
    reqs = covering(p, MemOp.WRITE, p.words, rng) + random_bursts(p, MemOp.READ, 20, 2, rng)
    reqs += [r for _, r in error_requests(p, rng)] + random_bursts(p, MemOp.WRITE, 20, 1, rng)
    reqs += covering(p, MemOp.READ, p.words, rng)
    (driver,), (array,) = _run(HbSystem(p, t), [reqs], seed, *pressure)
    golden = GoldenMemory(p)
    assert driver.check(golden) > p.words
    assert array == {a: golden.words.get(a, 0) for a in range(p.words)}


def test_a_read_buffer_of_two_words_takes_a_die_burst_back_to_back():
    # the die may answer a 2-word read command in two consecutive cycles (die.rdata.ready is
    # always high); a read buffer of 2 words must keep both (it once lost the second)
    from amaranth.sim import Simulator
    from hw.mem_channel import MemoryChannel
    from hw.params import MemPortParams
    p = MemPortParams(channels=1, data_width=8, words=16, address_width=5, max_length=4,
                      die_burst=2, outstanding=2, read_buffer=2, write_buffer=2, tag_width=2)
    dut = MemoryChannel(p)
    beats = []

    async def bench(ctx):
        ctx.set(dut.resp.ready, 1)
        ctx.set(dut.die.cmd.ready, 1)
        ctx.set(dut.req.payload.op, MemOp.READ)
        ctx.set(dut.req.payload.length, 2)
        ctx.set(dut.req.payload.tag, 1)
        ctx.set(dut.req.valid, 1)
        while not ctx.get(dut.req.ready):
            await ctx.tick()
        await ctx.tick()
        ctx.set(dut.req.valid, 0)
        words = [0x41, 0x42]
        for _ in range(20):
            sending = bool(words) and not ctx.get(dut.die.cmd.valid)
            ctx.set(dut.die.rdata.valid, sending)
            if sending:
                ctx.set(dut.die.rdata.payload, words.pop(0))
            if ctx.get(dut.resp.valid):
                beats.append((ctx.get(dut.resp.payload.data), ctx.get(dut.resp.payload.last)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert beats == [(0x41, 0), (0x42, 1)]
