"""The memory channel's golden model: reads return what was written (absent words read 0), a
malformed request is answered by one ERROR beat with its tag and changes nothing, responses carry
their request's tag and mark the last beat."""

import pytest

from hw.params import HB_DEFAULT, LPDDR_DEFAULT, MemOp, MemStatus
from sw_model.golden.mem_channel import GoldenMemory, Request, Response


@pytest.mark.parametrize("params", [HB_DEFAULT, LPDDR_DEFAULT], ids=["hb", "lpddr"])
def test_writes_then_reads(params):
    memory = GoldenMemory(params, {5: 0x55})
    assert memory.apply(Request(MemOp.WRITE, 8, 2, 3, (0xA, 0xB))) == [
        Response(3, MemStatus.OK, True, 0)]
    assert memory.apply(Request(MemOp.READ, 7, 3, 9)) == [
        Response(9, MemStatus.OK, False, 0), Response(9, MemStatus.OK, False, 0xA),
        Response(9, MemStatus.OK, True, 0xB)]
    assert memory.apply(Request(MemOp.READ, 5, 1, 1)) == [Response(1, MemStatus.OK, True, 0x55)]


@pytest.mark.parametrize("params", [HB_DEFAULT, LPDDR_DEFAULT], ids=["hb", "lpddr"])
def test_malformed_requests_answer_one_error_beat_and_change_nothing(params):
    last = params.words - 1
    memory = GoldenMemory(params, {last: 7})
    before = dict(memory.words)
    bad = [Request(MemOp.READ, 0, 0, 1),                                  # empty
           Request(MemOp.READ, 0, params.max_length + 1, 2),               # too long
           Request(MemOp.READ, params.words, 1, 3),                        # past the end
           Request(MemOp.WRITE, last, 2, 4, (1, 2)),                       # runs off the end
           Request(MemOp.WRITE, params.words + 5, 1, 5, (9,))]
    for request in bad:
        assert not memory.valid(request)
        assert memory.apply(request) == [Response(request.tag, MemStatus.ERROR, True, 0)]
    assert memory.words == before
    assert memory.apply(Request(MemOp.READ, last, 1, 6)) == [Response(6, MemStatus.OK, True, 7)]


def test_the_longest_request_that_fits_is_valid():
    p = HB_DEFAULT
    assert GoldenMemory(p).valid(Request(MemOp.READ, p.words - p.max_length, p.max_length, 0))
    assert not GoldenMemory(p).valid(Request(MemOp.READ, p.words - p.max_length + 1,
                                             p.max_length, 0))
