"""Formal harness of the MAC array (:mod:`hw.mac_array`) at a small configuration.

* :class:`MacStreams`: the four streams obey the stream rules (inputs assumed, ``results``
  asserted), and operations are neither lost nor duplicated: the operations accepted on ``op``
  minus the results given equal the operations held in the pipeline (stage 1, stage 2, output
  register), at most 3, and after 3 cycles of ``results.ready`` without a new operation none is
  left (the latency bound).

The array's pipeline registers are read by name (stage 1, stage 2) to state the invariant that
makes the proof inductive: the operations in flight are those the pipeline holds.
"""

from amaranth import *

from hw.formal.harness import FormalHarness
from hw.mac_array import MacArray
from hw.params import MacArrayParams

__all__ = ["SMALL", "MacStreams"]

#: 1 token, 1 channel, 2 lanes, a group of 4 (2 beats per operation: accumulation is exercised).
SMALL = MacArrayParams(tokens=1, group_size=4, out_channels=1, lanes=2, tag_width=2)
#: Cycles from the operation's last beat being taken to its result being valid, all stages moving.
LATENCY = 3


class _MacHarness(FormalHarness):
    SMALL = SMALL

    def _dut(self, m, platform, name="dut", params=None):
        dut = MacArray(params or self.params)
        return dut, self.instantiate(m, name, dut, platform)


class MacStreams(_MacHarness):
    """Stream rules and beat counting; broken: the result payload changes while stalled."""

    def build(self, m, platform):
        p = self.params
        dut, internal = self._dut(m, platform)
        for name in ("op", "act", "weights"):
            self.stream_in(m, getattr(dut, name), name)
        payload = dut.results.payload.as_value()
        if self.broken:
            # a mutated output: one bit of the payload flips every other cycle
            flip = Signal()
            m.d.sync += flip.eq(~flip)
            payload = payload ^ flip
        self.stream_out(m, dut.results, "results", payload=payload)

        op_fire = dut.op.valid & dut.op.ready
        out_fire = dut.results.valid & dut.results.ready
        in_flight = Signal(range(8))
        m.d.sync += in_flight.eq(in_flight + op_fire - out_fire)
        held = (internal["s1_valid"] & internal["s1_last"]) + \
            (internal["s2_valid"] & internal["s2_last"]) + dut.results.valid
        self.check(m, "assert", in_flight == held,
                   "operations accepted - results given = operations in the pipeline")
        self.check(m, "assert", in_flight <= LATENCY, "at most 3 operations in flight")
        # the latency bound: LATENCY cycles of ready without a new operation drain the pipeline
        quiet = dut.results.ready & ~op_fire
        window = self.history(m, quiet, LATENCY, "quiet")
        settled = self.history(m, self.settled, LATENCY - 1, "settled")
        with m.If(self.settled & Cat(*settled).all() & Cat(*window).all()):
            self.check(m, "assert", in_flight == 0,
                       "3 cycles of results.ready without a new operation leave none in flight")
        self.check(m, "cover", in_flight == LATENCY, "3 operations in flight")
        self.check(m, "cover", out_fire & (in_flight == 1) & op_fire,
                   "a result leaves as the next operation is taken")
