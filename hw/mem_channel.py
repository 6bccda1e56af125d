"""One logic-die memory channel: request/response streams on the user side, a die link on the other.

User side (``lib.stream``, ``valid``/``ready``):

* ``req`` (in): ``op`` (:class:`MemOp`), ``address`` and ``length`` in words, ``tag``, ``data``.
  A read is one beat (its ``data`` is ignored). A write is ``max(length, 1)`` beats, each carrying
  one word of ``data`` (beat ``i`` for word ``address + i``); ``op``, ``address``, ``length`` and
  ``tag`` are taken from its first beat only, whatever its later beats carry.
* ``resp`` (out): ``tag``, ``status`` (:class:`MemStatus`), ``last``, ``data``. Every beat carries
  the ``tag`` of its request's first beat. A valid read answers ``length`` beats, ``status`` OK,
  ``data`` the words at ``address``, ``address + 1``, ... (a word never written reads as whatever
  the die holds; the simulation dies start at 0), ``last`` 1 on the final beat and 0 before. A
  valid write answers one beat, ``status`` OK, ``last`` 1, ``data`` 0, once all its data are handed
  to the die (later requests are served after it, so they see it). A malformed request
  (``length`` 0 or above ``max_length``, ``address`` beyond the device, or ``address + length``
  past its end) answers one beat, ``status`` ERROR, ``last`` 1, ``data`` 0, and touches nothing;
  a malformed write's data beats are all consumed and dropped first. Responses come in request
  order; up to ``outstanding`` requests are in flight.

Die side (simulation models in ``sim/dram_model.py`` sit here; the logic has no DRAM timing, the die
does): ``die_cmd`` carries column-access commands of at most ``die_burst`` words that never cross a
``die_burst`` boundary, ``die_wdata`` their write words in order, ``die_rdata`` the read words in
order. ``die_rdata.ready`` is always high: a read command is only issued when the read buffer has room
reserved for all its words, so a slow consumer never stalls the die.
"""

import enum

from amaranth import *
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.component_args import CheckedComponent, expect_params
from hw.params import HB_DEFAULT, MemPortParams, MemOp, MemStatus, unsigned_width

__all__ = ["MemoryChannel", "request_layout", "response_layout", "die_cmd_layout",
           "die_signature", "channel_signature", "user_members"]


def request_layout(params, tag_width=None):
    return data.StructLayout({
        "op": MemOp,
        "address": unsigned(params.address_width),
        "length": unsigned(params.length_width),
        "tag": unsigned(params.tag_width if tag_width is None else tag_width),
        "data": unsigned(params.data_width),
    })


def response_layout(params, tag_width=None):
    return data.StructLayout({
        "tag": unsigned(params.tag_width if tag_width is None else tag_width),
        "status": MemStatus,
        "last": unsigned(1),
        "data": unsigned(params.data_width),
    })


def die_cmd_layout(params):
    return data.StructLayout({
        "op": MemOp,
        "address": unsigned(unsigned_width(params.words - 1)),
        "length": unsigned(unsigned_width(params.die_burst)),
    })


def die_signature(params):
    """The die link as seen from the die (the channel holds its flipped side)."""
    return wiring.Signature({
        "cmd": In(stream.Signature(die_cmd_layout(params))),
        "wdata": In(stream.Signature(params.data_width)),
        "rdata": Out(stream.Signature(params.data_width)),
    })


def channel_signature(params, tag_width=None):
    """The signature of a :class:`MemoryChannel` of ``params`` (``tag_width`` as it takes it)."""
    tag_width = params.tag_width if tag_width is None else tag_width
    return wiring.Signature({
        "req": In(stream.Signature(request_layout(params, tag_width))),
        "resp": Out(stream.Signature(response_layout(params, tag_width))),
        "die": Out(die_signature(params).flip()),
    })


def user_members(params, users):
    """The user side of ``users`` request/response stream pairs on channels of ``params``:
    ``req[k]`` (in) and ``resp[k]`` (out), as the HB interface (one pair per channel) and the LPDDR
    port (one per client) present them."""
    return {"req": In(stream.Signature(request_layout(params))).array(users),
            "resp": Out(stream.Signature(response_layout(params))).array(users)}


class _Reply(enum.IntEnum):
    """What the response sequencer owes for one accepted request."""
    READ = 0
    WRITE = 1
    ERROR = 2


def _pending_layout(params, tag_width):
    return data.StructLayout({
        "reply": _Reply,
        "tag": unsigned(tag_width),
        "length": unsigned(params.length_width),
    })


class MemoryChannel(CheckedComponent):
    """One channel: request checking, cutting into die bursts, write and read buffers, in-order
    responses; up to ``outstanding`` requests in flight. See the module docstring.

    Parameters
    ----------
    params : MemPortParams, optional
        A channel of :data:`hw.params.HB_DEFAULT` when omitted.
    tag_width : int, optional
        Overrides ``params.tag_width`` (the LPDDR port widens it by the client index).
    """

    @classmethod
    def check_arguments(cls, params=None, tag_width=None):
        return expect_params(params, MemPortParams, default=HB_DEFAULT)

    def __init__(self, params=None, tag_width=None):
        self.params = params = self.check_arguments(params, tag_width)
        self.tag_width = params.tag_width if tag_width is None else tag_width
        super().__init__(channel_signature(params, self.tag_width))

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.wbuf = wbuf = fifo.SyncFIFOBuffered(width=p.data_width,
                                                         depth=p.write_buffer)
        # One entry more than the credits allow: a SyncFIFOBuffered is not ready for a write in
        # the cycle after its first write into an empty FIFO (the word is still moving to its
        # output register), and at depth 2 that cycle came with one free entry, so a die answering
        # a 2-word read back to back lost its second word. One spare entry keeps w_rdy high
        # whenever the credits leave room (the inner memory then holds read_buffer words).
        m.submodules.rbuf = rbuf = fifo.SyncFIFOBuffered(width=p.data_width,
                                                         depth=p.read_buffer + 1)
        pending_shape = _pending_layout(p, self.tag_width)
        m.submodules.pending = pending = fifo.SyncFIFOBuffered(
            width=pending_shape.size, depth=p.outstanding)
        m.d.comb += [
            self.die.wdata.valid.eq(wbuf.r_rdy),
            self.die.wdata.payload.eq(wbuf.r_data),
            wbuf.r_en.eq(self.die.wdata.ready),
            rbuf.w_data.eq(self.die.rdata.payload),
            rbuf.w_en.eq(self.die.rdata.valid),
            self.die.rdata.ready.eq(1),
        ]
        # read words reserved in rbuf: taken when a read command goes to the die, given back as
        # each read word leaves on resp
        credits = Signal(range(p.read_buffer + 1), init=p.read_buffer)
        reserve = Signal(range(p.die_burst + 1))
        release = Signal()
        m.d.sync += credits.eq(credits - reserve + release)

        self._intake(m, wbuf, pending, pending_shape, credits, reserve)
        self._responses(m, rbuf, pending, pending_shape, release)
        return m

    def _intake(self, m, wbuf, pending, pending_shape, credits, reserve):
        """Check each request, cut it into die commands, move write data into the write buffer,
        and queue what its response will be."""
        p = self.params
        req, cmd = self.req, self.die.cmd
        hdr = req.payload
        end = Signal(max(p.address_width, p.length_width) + 1)
        bad = Signal()
        m.d.comb += [
            end.eq(hdr.address + hdr.length),
            bad.eq((hdr.length == 0) | (hdr.length > p.max_length) | (hdr.address >= p.words) |
                   (end > p.words)),
        ]
        push = Signal(pending_shape)
        m.d.comb += [pending.w_data.eq(push), push.tag.eq(hdr.tag), push.length.eq(hdr.length)]

        cur_op = Signal(MemOp)
        cur_addr = Signal(unsigned_width(p.words - 1))
        cur_left = Signal(p.length_width)        # words not yet sent as die commands
        cur_tag = Signal(self.tag_width)
        cur_length = Signal(p.length_width)
        data_left = Signal(p.length_width)       # write (or dropped) data beats still to take

        offset = Signal(range(p.die_burst))
        chunk = Signal(range(p.die_burst + 1))
        m.d.comb += [
            offset.eq(cur_addr[:max(1, (p.die_burst - 1).bit_length())] if p.die_burst > 1
                      else 0),
            chunk.eq(Mux(cur_left < p.die_burst - offset, cur_left, p.die_burst - offset)),
            cmd.payload.op.eq(cur_op),
            cmd.payload.address.eq(cur_addr),
            cmd.payload.length.eq(chunk),
            wbuf.w_data.eq(hdr.data),
        ]
        cmd_fire = Signal()
        m.d.comb += cmd_fire.eq(cmd.valid & cmd.ready)
        with m.If(cmd_fire):
            m.d.sync += [cur_addr.eq(cur_addr + chunk), cur_left.eq(cur_left - chunk)]

        def latch():
            m.d.sync += [cur_op.eq(hdr.op), cur_addr.eq(hdr.address), cur_left.eq(hdr.length),
                         cur_tag.eq(hdr.tag), cur_length.eq(hdr.length)]

        with m.FSM():
            with m.State("take header"):
                with m.If(req.valid & pending.w_rdy):
                    with m.If(bad):
                        m.d.comb += [req.ready.eq(1), push.reply.eq(_Reply.ERROR)]
                        with m.If((hdr.op == MemOp.WRITE) & (hdr.length > 1)):
                            # the ERROR beat waits for the last data beat but answers the first
                            m.d.sync += [data_left.eq(hdr.length - 1), cur_tag.eq(hdr.tag)]
                            m.next = "drop write data"
                        with m.Else():
                            m.d.comb += pending.w_en.eq(1)
                    with m.Elif(hdr.op == MemOp.READ):
                        # queued now, so its words can leave while later bursts wait for room
                        # in the read buffer (which may be smaller than one request)
                        m.d.comb += [req.ready.eq(1), pending.w_en.eq(1),
                                     push.reply.eq(_Reply.READ)]
                        latch()
                        m.next = "issue read"
                    with m.Elif(wbuf.w_rdy):
                        m.d.comb += [req.ready.eq(1), wbuf.w_en.eq(1)]
                        latch()
                        m.d.sync += data_left.eq(hdr.length - 1)
                        m.next = "issue write"
            with m.State("drop write data"):
                m.d.comb += req.ready.eq(1)
                with m.If(req.valid):
                    m.d.sync += data_left.eq(data_left - 1)
                    with m.If(data_left == 1):
                        m.d.comb += [pending.w_en.eq(1), push.reply.eq(_Reply.ERROR),
                                     push.tag.eq(cur_tag)]
                        m.next = "take header"
            with m.State("issue read"):
                m.d.comb += cmd.valid.eq(credits >= chunk)
                with m.If(cmd_fire):
                    m.d.comb += reserve.eq(chunk)
                    with m.If(cur_left == chunk):
                        m.next = "take header"
            with m.State("issue write"):
                data_fire = Signal()
                m.d.comb += [
                    cmd.valid.eq(cur_left != 0),
                    req.ready.eq((data_left != 0) & wbuf.w_rdy),
                    data_fire.eq(req.valid & req.ready),
                    wbuf.w_en.eq(data_fire),
                    push.tag.eq(cur_tag), push.length.eq(cur_length), push.reply.eq(_Reply.WRITE),
                ]
                with m.If(data_fire):
                    m.d.sync += data_left.eq(data_left - 1)
                cmds_done = (cur_left == 0) | (cmd_fire & (cur_left == chunk))
                data_done = (data_left == 0) | (data_fire & (data_left == 1))
                with m.If(cmds_done & data_done):
                    m.d.comb += pending.w_en.eq(1)
                    m.next = "take header"

    def _responses(self, m, rbuf, pending, pending_shape, release):
        """Answer the queued requests in order: read words from the read buffer, or one beat."""
        resp = self.resp
        head = Signal(pending_shape)
        sent = Signal(self.params.length_width)
        m.d.comb += [head.eq(pending.r_data), resp.payload.tag.eq(head.tag),
                     resp.payload.data.eq(rbuf.r_data)]
        fire = Signal()
        m.d.comb += fire.eq(resp.valid & resp.ready)
        with m.If(pending.r_rdy):
            with m.Switch(head.reply):
                with m.Case(_Reply.READ):
                    last = Signal()
                    m.d.comb += [
                        last.eq(sent == head.length - 1),
                        resp.valid.eq(rbuf.r_rdy),
                        resp.payload.status.eq(MemStatus.OK),
                        resp.payload.last.eq(last),
                        rbuf.r_en.eq(fire),
                        release.eq(fire),
                        pending.r_en.eq(fire & last),
                    ]
                    with m.If(fire):
                        m.d.sync += sent.eq(Mux(last, 0, sent + 1))
                with m.Case(_Reply.WRITE, _Reply.ERROR):
                    m.d.comb += [
                        resp.valid.eq(1),
                        resp.payload.status.eq(Mux(head.reply == _Reply.ERROR, MemStatus.ERROR,
                                                   MemStatus.OK)),
                        resp.payload.last.eq(1),
                        resp.payload.data.eq(0),
                        pending.r_en.eq(fire),
                    ]
