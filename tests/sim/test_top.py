"""The assembled accelerator on Verilator against the golden executor: a split-verification stream
bit for bit, and seeded random legal and illegal streams (differential fuzzing; the 2,000-stream
run is ``python build.py bench fuzz`` and the slow test below)."""

import numpy as np
import pytest

from hw.isa import ErrorCode, Opcode, Command
from hw.params import CacheOp, MacMode
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


def test_fuzz_default_suite(seed):
    """Two rounds of every target (legal, and each error the fuzzer aims at), 24 streams: every
    target twice; the 2,000-stream run is the slow test below."""
    streams = 2 * len(TARGETS)
    figures = fuzz(P, streams, seed)
    assert figures["mismatches"] == 0, figures["first_mismatches"]
    assert set(figures["by_target"]) == {"legal"} | {c.name for c in ErrorCode
                                                      if c is not ErrorCode.NONE}
    assert figures["commands_executed"] > 25 * streams // 3     # streams run, not stop at once


@pytest.mark.slow
@pytest.mark.parametrize("pes", [1, 2, 4])
def test_fuzz_2000_streams(seed, pes):
    figures = fuzz(P.with_pes(pes), 2000 if pes == 2 else 300, seed)
    assert figures["mismatches"] == 0, figures["first_mismatches"]
