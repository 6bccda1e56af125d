"""The LPDDR weight stream port: one external-memory channel shared by every PE.

``clients`` request/response stream pairs (``req[k]``, ``resp[k]``, same shape as an HB channel's,
see :mod:`hw.mem_channel`) share one :class:`hw.mem_channel.MemoryChannel` and its die link ``die``.
A round-robin arbiter passes whole requests (a write keeps the grant for all its data beats); the
client's index rides above its tag inside the channel and routes every response beat back. Each
client sees its own responses in its request order.
"""

from amaranth import *
from amaranth.lib.wiring import Out, connect, flipped

from hw.mem_channel import MemoryChannel, die_signature, user_members
from hw.component_args import ParamsComponent
from hw.params import LpddrPortParams, MemOp

__all__ = ["LpddrPort"]


class LpddrPort(ParamsComponent):
    """The shared LPDDR port for ``params`` (:data:`hw.params.LPDDR_DEFAULT` when omitted); see
    the module docstring."""

    PARAMS = LpddrPortParams

    def members(self, params):
        return {**user_members(params, params.clients), "die": Out(die_signature(params).flip())}

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.channel = channel = MemoryChannel(p, tag_width=p.channel_tag_width)
        connect(m, channel.die, flipped(self.die))
        self._arbiter(m, channel.req)
        self._router(m, channel.resp)
        return m

    def _arbiter(self, m, out):
        p = self.params
        n = p.clients
        grant = Signal(range(max(n, 2)))
        locked = Signal()                       # inside a multi-beat write
        beats_left = Signal(p.length_width)
        valids = Cat(self.req[k].valid for k in range(n))
        m.d.comb += out.valid.eq(valids.bit_select(grant, 1))
        for k in range(n):
            with m.If(grant == k):
                m.d.comb += [
                    out.payload.op.eq(self.req[k].payload.op),
                    out.payload.address.eq(self.req[k].payload.address),
                    out.payload.length.eq(self.req[k].payload.length),
                    out.payload.data.eq(self.req[k].payload.data),
                    out.payload.tag.eq(Cat(self.req[k].payload.tag, C(k, p.client_width))),
                    self.req[k].ready.eq(out.ready),
                ]
        fire = Signal()
        m.d.comb += fire.eq(out.valid & out.ready)
        header = out.payload
        request_ends = Signal()
        with m.If(locked):
            m.d.comb += request_ends.eq(fire & (beats_left == 1))
            with m.If(fire):
                m.d.sync += beats_left.eq(beats_left - 1)
                with m.If(beats_left == 1):
                    m.d.sync += locked.eq(0)
        with m.Elif(fire & (header.op == MemOp.WRITE) & (header.length > 1)):
            m.d.sync += [locked.eq(1), beats_left.eq(header.length - 1)]
        with m.Else():
            m.d.comb += request_ends.eq(fire)
        # next grant: the first requesting client after the current one, round robin
        with m.If(request_ends | (~out.valid & ~locked)):
            for step in reversed(range(1, n + 1)):
                candidate = Signal(range(max(n, 2)), name=f"arb_candidate_{step}")
                m.d.comb += candidate.eq(Mux(grant + step >= n, grant + step - n, grant + step))
                with m.If(valids.bit_select(candidate, 1)):
                    m.d.sync += grant.eq(candidate)

    def _router(self, m, inp):
        p = self.params
        client = inp.payload.tag[p.tag_width:]
        for k in range(p.clients):
            m.d.comb += [
                self.resp[k].valid.eq(inp.valid & (client == k)),
                self.resp[k].payload.tag.eq(inp.payload.tag[:p.tag_width]),
                self.resp[k].payload.status.eq(inp.payload.status),
                self.resp[k].payload.last.eq(inp.payload.last),
                self.resp[k].payload.data.eq(inp.payload.data),
            ]
            with m.If(client == k):
                m.d.comb += inp.ready.eq(self.resp[k].ready)
