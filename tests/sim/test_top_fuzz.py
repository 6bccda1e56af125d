"""The fuzzer's stream generator and comparison, without the RTL: drawn streams end as drawn, and
the comparison notices every kind of difference (so a clean fuzz run means something)."""

import copy
import random

import pytest

from hw.isa import ErrorCode, StreamError
from hw.params import TOP_DEFAULT
from sim.top.fuzz import TARGETS, compare, random_images, random_stream
from sim.top.run import Job, RtlResult
from sw_model.golden.top import execute, validate

P = TOP_DEFAULT


@pytest.mark.parametrize("target", sorted(set(TARGETS), key=lambda t: -1 if t is None else t),
                         ids=lambda t: "legal" if t is None else t.name)
def test_streams_end_as_drawn(seed, target):
    rng = random.Random(seed)
    for _ in range(20):
        stream = random_stream(P, rng, target)
        if target is None:
            validate(stream, P)
        else:
            with pytest.raises(StreamError) as info:
                validate(stream, P)
            assert info.value.code is target
        result = execute(stream, P, random_images(P, rng))
        assert result.error is (ErrorCode.NONE if target is None else target)


def _as_rtl(gold):
    return RtlResult(True, gold.error, gold.progress, 100, [100, 0, 0, 0],
                     copy.deepcopy(gold.images), gold.slot_table())


def test_compare_notices_differences(seed):
    rng = random.Random(seed)
    while True:
        stream = random_stream(P, rng, None, length=20)
        job = Job(stream, random_images(P, rng))
        gold = execute(job.stream, P, job.images)
        if gold.slot_table():
            break
    assert compare(P, job, _as_rtl(gold))[0] == []
    bad = _as_rtl(gold)
    bad.images.omem[1][3] = bad.images.omem[1].get(3, 0) ^ 1
    assert any("omem[1]: 1 word(s) differ, first at 3" in s for s in compare(P, job, bad)[0])
    bad = _as_rtl(gold)
    bad.images.hb[0][P.slot_region_words + 100] = 5
    assert any(s.startswith("hb[0]") for s in compare(P, job, bad)[0])
    bad = _as_rtl(gold)
    bad.error = ErrorCode.BAD_FIELD
    assert any("error code" in s for s in compare(P, job, bad)[0])
    bad = _as_rtl(gold)
    bad.progress += 1
    assert any("progress" in s for s in compare(P, job, bad)[0])
    bad = _as_rtl(gold)
    bad.slot_table = {}
    assert any("slot table" in s for s in compare(P, job, bad)[0])
    bad = _as_rtl(gold)
    bad.done = False
    assert any("did not finish" in s for s in compare(P, job, bad)[0])


def test_runner_rejects_bad_jobs_before_building():
    from hw.isa import Command, Opcode
    from sim.top.run import run_streams
    from sw_model.golden.top import Images
    with pytest.raises(TypeError, match="params must be a TopParams"):
        run_streams("top", [])
    with pytest.raises(TypeError, match="job 0 must be a Job"):
        run_streams(P, [[Command(Opcode.END)]])
    with pytest.raises(ValueError, match=r"job 1: 257 commands do not fit in the command memory"):
        run_streams(P, [Job([Command(Opcode.END)]), Job([Command(Opcode.BARRIER)] * 257)])
    images = Images.empty(P)
    images.omem[1][P.output_words] = 1
    with pytest.raises(ValueError, match=r"job 0: images.omem\[1\]: address 32 outside"):
        run_streams(P, [Job([Command(Opcode.END)], images)])
    assert run_streams(P, []) == []
    from hw.params import TOP_PAPER
    with pytest.raises(ValueError, match=r"the simulated DRAM dies would hold 72 GiB \(pes x "
                                         r"hb.words = 32 x 8388608 HB words"):
        run_streams(TOP_PAPER, [Job([Command(Opcode.END)])])
