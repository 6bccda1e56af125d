"""Golden model of a memory channel (the HB interface's channels and the LPDDR port): what every
request must be answered with, naively.

A :class:`Request` is what a user puts on a channel's ``req`` stream (:mod:`hw.mem_channel` says
how it is packed into beats); :class:`GoldenMemory` is the contract: a dict of words (an absent
word reads as 0), requests applied strictly in order, a malformed request (length 0 or above
``max_length``, or a range outside the channel) answered by one ERROR beat with its tag (the tag
of a write's first beat), ``last`` 1, ``data`` 0, and no change to the memory; a write by one OK
beat, ``last`` 1, ``data`` 0; a read of ``length`` words by ``length`` OK beats of data, ``last``
on the final one. A :class:`Request` holds one header: a write's later beats cannot disagree with
it here, and the channel ignores whatever they carry.
"""

from dataclasses import dataclass

from hw.params import MemOp, MemStatus

__all__ = ["Request", "Response", "GoldenMemory"]


@dataclass(frozen=True)
class Request:
    op: MemOp
    address: int
    length: int
    tag: int
    data: tuple = ()        # write words (len == max(length, 1)); empty for reads


@dataclass(frozen=True)
class Response:
    tag: int
    status: MemStatus
    last: bool
    data: int


class GoldenMemory:
    """The contract of a channel, naively: a dict of words (absent = 0), requests in order."""

    def __init__(self, params, image=None):
        self.params = params
        self.words = dict(image or {})

    def valid(self, request):
        p = self.params
        return (1 <= request.length <= p.max_length and request.address < p.words
                and request.address + request.length <= p.words)

    def apply(self, request):
        """Responses the request must get, updating the memory."""
        if not self.valid(request):
            return [Response(request.tag, MemStatus.ERROR, True, 0)]
        if request.op == MemOp.WRITE:
            for i, word in enumerate(request.data):
                self.words[request.address + i] = word
            return [Response(request.tag, MemStatus.OK, True, 0)]
        n = request.length
        return [Response(request.tag, MemStatus.OK, i == n - 1,
                         self.words.get(request.address + i, 0)) for i in range(n)]
