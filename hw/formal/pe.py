"""Formal harness of one processing element (:mod:`hw.pe`) at a small machine.

:class:`PeStreams`: the PE's input streams obey the stream rules (assumed): ``cmd`` carries any
command words (also ones the command processor would never send) whenever the solver likes, and
its HB channel and LPDDR client answer with any beats at any time (``hb_resp``, ``lpddr_resp``);
the input memory's read data are free. The PE promises, for every command sequence:

* its request streams ``hb_req`` and ``lpddr_req`` obey the stream rules: a request beat offered
  and not taken is offered again, with the same payload, until it is taken.

The harness reads nothing of the PE but its ports (no register is named), so it states the
contract of the streams whatever the PE does inside: it applies unchanged to any PE whose ports
these are.
"""

import dataclasses

from amaranth import *

from hw.formal.expert_cache import SMALL as CACHE_SMALL
from hw.formal.mac_array import SMALL as MAC_SMALL
from hw.formal.harness import FormalHarness
from hw.params import (HbBankTiming, HbInterfaceParams, Lpddr5Timing, LpddrPortParams, MemOp,
                       TopParams)
from hw.pe import ProcessingElement

__all__ = ["SMALL", "PeStreams"]

_MEMORY = dict(data_width=32, words=16, address_width=5, max_length=2, die_burst=2,
               outstanding=2, read_buffer=2, write_buffer=2, tag_width=1)
_DIE = dict(banks=1, row_words=4)

#: One PE with a small MAC array (1 token, a group of 4, 1 channel, 4 lanes, the fewest a PE
#: takes: 32-bit weight beats, one memory word each), memories of 4 weight, 2 activation, 2 output
#: and 2 input beats, memory channels of 16 words with requests of up to 2 words.
SMALL = TopParams(pes=1, mac=dataclasses.replace(MAC_SMALL, lanes=4), cache=CACHE_SMALL,
                  hb=HbInterfaceParams(channels=1, **_MEMORY), hb_timing=HbBankTiming(**_DIE),
                  lpddr=LpddrPortParams(clients=1, **_MEMORY), lpddr_timing=Lpddr5Timing(**_DIE),
                  weight_words=4, act_words=2, output_words=2, input_words=2, slot_words=2,
                  command_words=4)


class PeStreams(FormalHarness):
    """The PE's stream rules; broken: the harness checks ``hb_req`` with its address advanced by
    one in every other cycle, as if the PE moved a waiting request on."""

    SMALL = SMALL

    def build(self, m, platform):
        dut = ProcessingElement(self.params)
        self.instantiate(m, "dut", dut, platform)
        self.stream_in(m, dut.cmd, "cmd")
        for req, resp, name in ((dut.hb_req, dut.hb_resp, "hb"),
                                (dut.lpddr_req, dut.lpddr_resp, "lpddr")):
            self._channel(m, req, resp, name)
        m.d.comb += dut.imem_data.eq(self.free(len(dut.imem_data), "imem_data"))
        payload = dut.hb_req.payload.as_value()
        if self.broken:
            flip = Signal()
            m.d.sync += flip.eq(~flip)
            payload = Cat(dut.hb_req.payload.op,
                          dut.hb_req.payload.address + flip,
                          dut.hb_req.payload.length, dut.hb_req.payload.tag,
                          dut.hb_req.payload.data)
        self.stream_out(m, dut.hb_req, "hb_req", payload=payload)
        self.stream_out(m, dut.lpddr_req, "lpddr_req")
        for name in ("hb_req", "lpddr_req"):
            req = getattr(dut, name)
            self.check(m, "cover", req.valid & req.ready & (req.payload.length == 2) &
                       self.past(m, req.valid & req.ready),
                       f"{name}: requests of 2 words back to back")
        wrote, answered = Signal(), Signal()
        write = dut.hb_req.valid & (dut.hb_req.payload.op == MemOp.WRITE)
        with m.If(write & dut.hb_req.ready):
            m.d.sync += wrote.eq(1)
        with m.If(wrote & dut.hb_resp.valid & dut.hb_resp.ready):
            m.d.sync += answered.eq(1)
        self.check(m, "cover", write & answered, "hb_req: a write request after a write's answer")

    def _channel(self, m, req, resp, name):
        """A memory channel behind ``req``/``resp``: it takes request beats whenever the solver
        likes and answers only what it owes: up to ``length`` beats for a read, one beat for a
        write (a channel may answer fewer: an ERROR beat, or nothing yet)."""
        length_width = len(req.payload.length)
        owed = Signal(16, name=f"{name}_owed")
        due = Signal(length_width, name=f"{name}_data_due")
        fire = req.valid & req.ready
        header = fire & (due == 0)
        hdr = req.payload
        with m.If(header & (hdr.op == MemOp.WRITE) & (hdr.length > 1)):
            m.d.sync += due.eq(hdr.length - 1)
        with m.Elif(fire & (due != 0)):
            m.d.sync += due.eq(due - 1)
        adds = Mux(header, Mux(hdr.op == MemOp.WRITE, 1, hdr.length), 0)
        resp_fire = resp.valid & resp.ready
        m.d.sync += owed.eq(owed + adds - resp_fire)
        self.stream_in(m, resp, f"{name}_resp",
                       valid=self.free(1, f"{name}_resp_valid") & (owed != 0))
