"""The assembled accelerator on Verilator against the golden executor: a split-verification stream
bit for bit, and seeded random legal and illegal streams (differential fuzzing; the 2,000-stream
run is ``python build.py bench fuzz`` and the slow test below)."""

import numpy as np
import pytest

from hw.isa import ErrorCode, Opcode, Command
from hw.machines import apply_sets
from hw.params import CacheOp, MacMode, TOP_DEFAULT
from sim.commands.demo import DEMO_PES
from sim.top.e2e import e2e_machine
from sim.top.fuzz import TARGETS, fuzz
from sim.top.run import Job, run_streams
from sw_model.golden.mac_array import reference_group_sums
from sw_model.golden.top import Images, execute
from sw_model.model.checkpoints import default_model
from sim.top.cases import opcode_cases, split_verification_job

pytestmark = pytest.mark.verilator

# The demo's machine (python build.py builds it for the built-in model; the end-to-end tests use it
# too), so the default suite pays one Verilator build of the top.
_CONFIG = default_model()[0].config
P = e2e_machine(_CONFIG, DEMO_PES, max(_CONFIG.top_k, _CONFIG.num_experts // 4))

#: ``tiny`` with the paper's ratios of memory words to a weight word (its 256-bit beat is 16 HB
#: words of 16 bits and 8 LPDDR words of 32 bits), through machine overrides (as ``--set`` gives).
#: Requests of 12 words end inside weight words; a slot holds 4 weight words.
RATIO = apply_sets(TOP_DEFAULT, ["hb.data_width=16", "lpddr.data_width=32", "hb.max_length=12",
                                 "slot_words=64"])
#: Ratios that are not powers of two: a 384-bit beat of 3 HB words and 4 LPDDR words (slow test).
RATIO_3 = apply_sets(TOP_DEFAULT, ["mac.out_channels=6", "hb.data_width=128",
                                   "lpddr.data_width=96"])


def test_split_verification_stream_bit_exact(rng):
    stream, images, q, x = split_verification_job(rng, P)
    jobs = [Job(stream, images), Job(stream[:-1], images),
            Job(stream[:4] + [Command(Opcode.LOAD_HB, pe=1, count=1, hb=0)] + stream[4:], images)]
    results = run_streams(P, jobs)
    for job, rtl in zip(jobs, results):
        gold = execute(job.stream, P, job.images)
        assert rtl.done
        assert (rtl.error, rtl.progress) == (gold.error, gold.progress)
        assert rtl.images == gold.images, rtl.images.differences(gold.images)
        assert rtl.slot_table == gold.slot_table()
        assert rtl.cycles == sum(rtl.phase_cycles) > 0
    full = reference_group_sums(x, q, MacMode.FULL, P.mac.group_size)[:, 0, :]
    rtl = results[0]
    from sw_model.golden.top import unpack_result
    np.testing.assert_array_equal(unpack_result(P.mac, rtl.images.omem[1][2]), full)
    assert rtl.phase_cycles[2] > 0                  # after BARRIER phase=2
    assert [r.error for r in results] == [ErrorCode.NONE, ErrorCode.NO_END,
                                          ErrorCode.BAD_ADDRESS]


def _every_slot_stream():
    """Every slot installed, pinned, unpinned and invalidated (each branch of the processor's
    slot table), a COUNT of the last vector chunk, and a load of a whole weight memory per PE
    from HB, over an image of distinct words."""
    c = P.cache
    keys = [(0, e) for e in range(c.experts)][:c.slots]
    stream = [Command(Opcode.CACHE, cop=CacheOp.INSTALL, layer=l, expert=e) for l, e in keys]
    for cop in (CacheOp.PIN, CacheOp.UNPIN, CacheOp.INVALIDATE):
        stream += [Command(Opcode.CACHE, cop=cop, layer=l, expert=e) for l, e in keys]
    stream += [Command(Opcode.CACHE, cop=CacheOp.COUNT, layer=1, chunk=3, vector=0)]
    stream += [Command(Opcode.LOAD_HB, pe=pe, count=P.weight_words, hb=P.slot_region_words)
               for pe in range(P.pes)]
    stream += [Command(Opcode.END)]
    assert len(stream) <= P.command_words
    images = Images.empty(P)
    for pe in range(P.pes):
        images.hb[pe].update({P.slot_region_words + i: 1000 * pe + i + 1
                              for i in range(P.weight_words)})
    return stream, images


def test_every_opcode_with_every_error_and_every_slot():
    """Each opcode run legally, with a reserved bit set, beyond its memory, LOAD_SLOT/WRITE_SLOT
    of an absent key, a refused cache request, an unknown opcode, no END; and a stream through
    every slot of the slot table: the RTL stops where, and with the code, the golden executor
    says, with the same memories and slot table."""
    cases = [(name, code, stream, None) for name, code, stream in opcode_cases(P)]
    cases.append(("every slot", ErrorCode.NONE, *_every_slot_stream()))
    results = run_streams(P, [Job(stream, images) for _, _, stream, images in cases])
    for (name, code, stream, images), rtl in zip(cases, results):
        gold = execute(stream, P, images)
        assert gold.error == code, (name, code, gold.error)
        assert rtl.done and (rtl.error, rtl.progress) == (gold.error, gold.progress), name
        assert rtl.images == gold.images, (name, rtl.images.differences(gold.images))
        assert rtl.slot_table == gold.slot_table(), name


def _ratio_images(params, rng):
    """Random HB words above the slot region and LPDDR words, with all-ones and zero words among
    them (the edges of a slice)."""
    def word(bits):
        return [0, (1 << bits) - 1, int.from_bytes(rng.bytes(bits // 8), "little")][
            int(rng.integers(3))]
    images = Images.empty(params)
    for pe in range(params.pes):
        images.hb[pe] = {a: word(params.hb.data_width)
                         for a in range(params.slot_region_words, params.hb.words)}
    images.lpddr = {a: word(params.lpddr.data_width) for a in range(1024)}
    return images


def test_ratio_loads_and_slot_writes_bit_exact(rng):
    """On a machine whose weight word is 16 HB and 8 LPDDR words: LOAD_HB, LOAD_LPDDR at odd
    addresses, WRITE_SLOT to an offset inside a weight word, LOAD_SLOT back, and MACs on the
    assembled weights give the golden executor's memories bit for bit."""
    p = RATIO
    assert (p.hb_ratio, p.lpddr_ratio) == (16, 8)
    images = _ratio_images(p, rng)
    for pe in range(p.pes):
        images.amem[pe] = {a: int.from_bytes(rng.bytes(p.mac.act_beat_bits // 8), "little")
                           for a in range(8)}
    install = Command(Opcode.CACHE, cop=CacheOp.INSTALL, layer=1, expert=2)
    streams = [
        [Command(Opcode.LOAD_HB, pe=0, count=p.weight_words, hb=p.slot_region_words + 3),
         Command(Opcode.LOAD_LPDDR, pe=1, wmem=5, count=37, lpddr=13),
         install,
         Command(Opcode.WRITE_SLOT, pe=0, wmem=9, count=3, layer=1, expert=2, offset=7),
         Command(Opcode.LOAD_SLOT, pe=1, wmem=50, count=4, layer=1, expert=2, offset=0),
         Command(Opcode.MAC, pe=1, mode=MacMode.FULL, wmem=48, amem=0, omem=0, count=3),
         Command(Opcode.MAC, pe=0, mode=MacMode.DRAFT, wmem=0, amem=4, omem=2, count=1),
         Command(Opcode.END)],
        [Command(Opcode.LOAD_LPDDR, pe=0, count=1, lpddr=p.lpddr.words - p.lpddr_ratio),
         Command(Opcode.LOAD_HB, pe=1, wmem=p.weight_words - 1, count=1,
                 hb=p.hb.words - p.hb_ratio),
         install, Command(Opcode.WRITE_SLOT, pe=1, wmem=p.weight_words - 1, count=1, layer=1,
                          expert=2, offset=p.slot_words - p.hb_ratio),
         Command(Opcode.END)],
    ]
    jobs = [Job(stream, images) for stream in streams]
    for job, rtl in zip(jobs, run_streams(p, jobs)):
        gold = execute(job.stream, p, job.images)
        assert gold.error is ErrorCode.NONE
        assert rtl.done and (rtl.error, rtl.progress) == (gold.error, gold.progress)
        assert rtl.images == gold.images, rtl.images.differences(gold.images)
    assert len(gold.images.wmem[1]) > 0 and gold.images.hb[1] != images.hb[1]


def test_a_ratio_load_streams_one_memory_word_per_cycle(rng):
    """Loads of 16 and 64 weight words from the same address: the longer one takes exactly one
    cycle more per extra memory word (48 x 16 HB words, 48 x 8 LPDDR words), the die's peak.

    The bound comes from the DRAM model: a sequential read is served one word per cycle once it
    streams (rows open ahead in the next bank, refreshes go to banks nothing waits for), and both
    loads start alike, so the difference is the extra words' transfer alone. A bubble per weight
    word (a PE that stops to write an assembled word) would add 48 cycles."""
    p = RATIO
    images = _ratio_images(p, rng)
    jobs, spans = [], []
    for op, ratio, where in ((Opcode.LOAD_HB, p.hb_ratio, {"hb": p.slot_region_words}),
                             (Opcode.LOAD_LPDDR, p.lpddr_ratio, {"lpddr": 0})):
        for count in (16, 64):
            jobs.append(Job([Command(op, pe=1, count=count, **where), Command(Opcode.END)],
                            images))
        spans.append((op, 48 * ratio))
    results = run_streams(p, jobs)
    for job, rtl in zip(jobs, results):
        gold = execute(job.stream, p, job.images)
        assert rtl.done and rtl.images == gold.images, rtl.images.differences(gold.images)
    for (op, words), (short, long) in zip(spans, (results[0:2], results[2:4])):
        assert long.cycles - short.cycles == words, (op.name, short.cycles, long.cycles)


def test_back_to_back_loads_pay_the_first_word_latency_once(rng):
    """The same memory words read by one LOAD, by two and by four back to back take the same
    cycles, from either port: a LOAD hands over to the next one once its requests are out, so the
    next one's words follow its words with no gap, and only the first word's latency is paid (a PE
    that waited for each load's last word would pay it per load: three times more for four).

    Exact, because the die sees the same sequential words in every case and serves one per cycle
    once it streams (test above); the latency paid once is at least the die's read latency."""
    p = RATIO
    images = _ratio_images(p, rng)
    total = 32                                       # weight words, in 1, 2 or 4 loads
    cases = []
    for op, key, ratio, base, timing in (
            (Opcode.LOAD_HB, "hb", p.hb_ratio, p.slot_region_words, p.hb_timing),
            (Opcode.LOAD_LPDDR, "lpddr", p.lpddr_ratio, 0, p.lpddr_timing)):
        for loads in (1, 2, 4):
            n = total // loads
            stream = [Command(op, pe=1, wmem=k * n, count=n, **{key: base + k * n * ratio})
                      for k in range(loads)] + [Command(Opcode.END)]
            cases.append((op, loads, total * ratio, timing, Job(stream, images)))
    results = run_streams(p, [job for *_, job in cases])
    cycles = {}
    for (op, loads, words, timing, job), rtl in zip(cases, results):
        gold = execute(job.stream, p, job.images)
        assert rtl.done and rtl.images == gold.images, rtl.images.differences(gold.images)
        cycles.setdefault(op, []).append(rtl.cycles)
        assert rtl.cycles - words > timing.t_cl, (op.name, loads, rtl.cycles)
    for op, (one, two, four) in cycles.items():
        assert one == two == four, (op.name, one, two, four)


def test_commands_after_loads_in_flight_see_the_memories_in_order(rng):
    """Commands that follow LOADs whose words are still arriving: a LOAD over the same words (the
    later one wins), a LOAD from the other port, LOAD_ACT and COMBINE (they start at once), MACs
    on the loaded words, a MAC whose words a LOAD then overwrites, more LOADs in a row than the PE
    keeps in flight (the next waits for a free entry), a WRITE_SLOT of just-loaded words and a
    BARRIER: the memories end as the golden executor's, bit for bit, on both PEs."""
    p = RATIO
    images = _ratio_images(p, rng)
    for pe in range(p.pes):
        images.amem[pe] = {a: int.from_bytes(rng.bytes(p.mac.act_beat_bits // 8), "little")
                           for a in range(p.act_words)}
        images.omem[pe] = {a: int.from_bytes(rng.bytes(p.result_bits // 8), "little")
                           for a in range(4)}
    images.imem = {a: int.from_bytes(rng.bytes(p.mac.act_beat_bits // 8), "little")
                   for a in range(p.input_words)}
    hb, r = p.slot_region_words, p.hb_ratio
    many = 10                                       # more LOADs in a row than load_depth (8)
    stream = [
        Command(Opcode.CACHE, cop=CacheOp.INSTALL, layer=1, expert=2),
        Command(Opcode.LOAD_HB, pe=0, wmem=0, count=12, hb=hb + 5),
        Command(Opcode.LOAD_HB, pe=0, wmem=4, count=8, hb=hb + 700),        # over words 4..11
        Command(Opcode.LOAD_ACT, pe=0, amem=8, count=4, imem=3),
        Command(Opcode.COMBINE, pe=0, a=0, b=1, dst=2, count=2),
        Command(Opcode.MAC, pe=0, mode=MacMode.FULL, wmem=0, amem=0, omem=4, count=3),
        Command(Opcode.LOAD_LPDDR, pe=0, wmem=2, count=6, lpddr=40),          # over MAC's words
        Command(Opcode.LOAD_HB, pe=0, wmem=6, count=2, hb=hb + 300),          # other port
        Command(Opcode.MAC, pe=0, mode=MacMode.DRAFT, wmem=0, amem=8, omem=6, count=3),
        Command(Opcode.LOAD_HB, pe=0, wmem=16, count=1, hb=hb + 900),
        Command(Opcode.MAC, pe=0, mode=MacMode.LSB, wmem=16, amem=12, omem=7, count=1),
        Command(Opcode.LOAD_LPDDR, pe=1, wmem=20, count=4, lpddr=400),
        *[Command(Opcode.LOAD_HB, pe=1, wmem=24 + k, count=1, hb=hb + 32 * k + 1)
          for k in range(many)],
        Command(Opcode.WRITE_SLOT, pe=1, wmem=24, count=4, layer=1, expert=2, offset=0),
        Command(Opcode.LOAD_SLOT, pe=1, wmem=40, count=4, layer=1, expert=2, offset=0),
        Command(Opcode.MAC, pe=1, mode=MacMode.FULL, wmem=20, amem=0, omem=0, count=6),
        Command(Opcode.LOAD_LPDDR, pe=1, wmem=60, count=4, lpddr=1000),
        Command(Opcode.BARRIER, phase=1),
        Command(Opcode.MAC, pe=1, mode=MacMode.FULL, wmem=40, amem=4, omem=1, count=6),
        Command(Opcode.END),
    ]
    job = Job(stream, images)
    rtl, = run_streams(p, [job])
    gold = execute(stream, p, images)
    assert gold.error is ErrorCode.NONE
    assert rtl.done and (rtl.error, rtl.progress) == (gold.error, gold.progress)
    assert rtl.images == gold.images, rtl.images.differences(gold.images)
    assert rtl.cycles == sum(rtl.phase_cycles) and rtl.phase_cycles[1] > 0


@pytest.mark.parametrize("machine", [P, RATIO], ids=["demo", "ratio 16-8"])
def test_fuzz_default_suite(seed, machine):
    """A round of every target (legal, and each error the fuzzer aims at) on the demo's machine
    and on one whose weight word is 16 HB and 8 LPDDR words: 12 streams each; the 2,000-stream
    run is the slow test below."""
    streams = len(TARGETS)
    figures = fuzz(machine, streams, seed)
    assert figures["mismatches"] == 0, figures["first_mismatches"]
    assert set(figures["by_target"]) == {"legal"} | {c.name for c in ErrorCode
                                                      if c is not ErrorCode.NONE}
    assert figures["commands_executed"] > 25 * streams // 3     # streams run, not stop at once


@pytest.mark.slow
@pytest.mark.parametrize("pes", [1, 2, 4])
def test_fuzz_2000_streams(seed, pes):
    figures = fuzz(P.with_pes(pes), 2000 if pes == 2 else 300, seed)
    assert figures["mismatches"] == 0, figures["first_mismatches"]


@pytest.mark.slow
@pytest.mark.parametrize("machine", [RATIO, RATIO_3], ids=["ratio 16-8", "ratio 3-4"])
def test_fuzz_ratio_machines(seed, machine):
    figures = fuzz(machine, 300, seed)
    assert figures["mismatches"] == 0, figures["first_mismatches"]
