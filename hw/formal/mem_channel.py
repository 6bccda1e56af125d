"""Formal harness of one memory channel (:mod:`hw.mem_channel`) at a small configuration.

:class:`MemChannelContract`: the user request stream and the die's read-data stream obey the
stream rules (assumed; the die sends only read words it owes), and the channel promises:

* ``resp``, ``die.cmd`` and ``die.wdata`` obey the stream rules;
* every accepted request is answered in request order with its tag: a read with ``length`` OK
  beats, ``last`` on the final one; a write with one OK beat; a malformed request (``length`` 0 or
  above ``max_length``, ``address`` beyond the device or ``address + length`` past its end) with
  exactly one ERROR beat carrying the tag of its first beat (the header), also when it is a write
  of several beats;
* a malformed request issues no die command: every die command belongs to the well-formed request
  being issued, covers its next words in order (op and address) and never more words than it has;
* the read buffer takes every word the die sends (``die.rdata.ready`` is always high, so a word it
  could not take would be lost and its read never answered).

The harness keeps its own queue of the answers it expects, filled as headers are taken, and checks
each response beat against the queue's head. The properties are proved by k-induction; the
invariants (the channel's registers read by name) state that the intake state is the harness's
record of the request being taken; that read credits, words in the read buffer and words the die
owes add up to the buffer's size; and, for the answers, that the harness's queue is, in order,
the pending-answer FIFO's output register, the word in its memory and the write the intake is
still taking, and that the response sequencer has sent the beats the harness counted. The FIFO's
memory is replaced by registers of the same behaviour (:func:`hw.formal.harness.memory_words`)
so that its word can be named.
"""

from amaranth import *
from amaranth.lib import data

from amaranth.hdl import Fragment

from hw.formal.harness import FormalHarness, internal_signals, memory_words
from hw.mem_channel import MemoryChannel, _pending_layout, request_layout
from hw.params import MemOp, MemPortParams, MemStatus

__all__ = ["SMALL", "MemChannelContract", "serve_die"]

#: 16 words of 8 bits, a 5-bit address (so requests may point past the device), requests of up to
#: 4 words cut into die bursts of 2, 2 requests outstanding, buffers of 2 words.
SMALL = MemPortParams(channels=1, data_width=8, words=16, address_width=5, max_length=4,
                      die_burst=2, outstanding=2, read_buffer=2, write_buffer=2, tag_width=2)

_READ, _WRITE, _ERROR = 0, 1, 2


def serve_die(harness, m, die, params):
    """Drive the die side of a channel (``die``, the channel's flipped die link) in ``harness``:
    the die takes commands and write words whenever the solver likes, and sends read words, under
    the stream rules, only while it owes some. Returns the count of read words it owes."""
    owed = Signal(range(4 * params.read_buffer + 1))
    rdata_valid = harness.free(1, "die_rdata_valid")
    harness.stream_in(m, die.rdata, "die.rdata", valid=rdata_valid & (owed != 0))
    read_cmd = die.cmd.valid & die.cmd.ready & (die.cmd.payload.op == MemOp.READ)
    rdata_fire = die.rdata.valid & die.rdata.ready
    m.d.sync += owed.eq(owed + Mux(read_cmd, die.cmd.payload.length, 0) - rdata_fire)
    return owed


class MemChannelContract(FormalHarness):
    """The channel's contract. ``answers`` (default): check the answers; without, only the stream
    rules, the die commands and the read buffer. ``inductive``: add the invariants that make the
    proof a k-induction (see the module docstring).

    Broken: with ``answers``, the harness expects a read's ``last`` on its second-to-last beat
    (with ``inductive``), or takes a request that runs past the device's end for a well-formed
    one and expects an OK answer where the channel (rightly) answers ERROR (without); without
    ``answers``, it takes a request of ``max_length`` words for a malformed one, so it expects no
    die command where the channel (rightly) sends one."""

    SMALL = SMALL

    def __init__(self, params=None, broken=False, answers=True, inductive=False):
        super().__init__(params, broken)
        self.answers = bool(answers)
        self.inductive = bool(inductive)

    def build(self, m, platform):
        p = self.params
        dut = MemoryChannel(p)
        fragment = Fragment.get(dut, platform)
        m.submodules["dut"] = fragment
        self.stream_in(m, dut.req, "req")
        self.stream_out(m, dut.resp, "resp")
        self.stream_out(m, dut.die.cmd, "die.cmd")
        self.stream_out(m, dut.die.wdata, "die.wdata")
        owed = serve_die(self, m, dut.die, p)
        self.channel_contract(m, dut, fragment, owed, self.broken)

    def channel_contract(self, m, dut, fragment, owed, broken):
        """Every property but the stream rules on the channel ``dut`` (elaborated as
        ``fragment``, its die served by :func:`serve_die`, which returned ``owed``), whoever
        drives its request stream (a harness that holds a channel inside its block calls this
        too); ``broken`` selects the broken variant of the class docstring."""
        p = self.params
        internal = internal_signals(fragment)
        fifos = {name: sub.origins[0] for sub, name, _ in fragment.subfragments}
        rbuf_fragment = next(sub for sub, name, _ in fragment.subfragments if name == "rbuf")
        req, resp, die = dut.req, dut.resp, dut.die
        cmd_fire = die.cmd.valid & die.cmd.ready
        # rdata.ready is always high (the credits reserve room): no word the die sends is lost
        with m.If(die.rdata.valid):
            self.check(m, "assert", fifos["rbuf"].w_rdy,
                       "the read buffer takes every word the die sends")

        # -- headers: a request beat taken while no write data are due
        hdr = req.payload
        req_fire = req.valid & req.ready
        data_due = Signal(p.length_width)
        is_header = req_fire & (data_due == 0)
        bad = Signal()
        past_end = hdr.address + hdr.length > p.words
        too_long = hdr.length > p.max_length
        if broken and self.answers and not self.inductive:
            past_end = C(0)                  # expects OK where the channel answers ERROR
        elif broken and not self.answers:
            too_long = hdr.length >= p.max_length    # expects no die command where one comes
        m.d.comb += bad.eq((hdr.length == 0) | too_long | (hdr.address >= p.words) | past_end)
        with m.If(is_header):
            with m.If((hdr.op == MemOp.WRITE) & (hdr.length > 1)):
                m.d.sync += data_due.eq(hdr.length - 1)
        with m.Elif(req_fire):
            m.d.sync += data_due.eq(data_due - 1)

        self.data_due = data_due
        resp_fire = resp.valid & resp.ready
        out = resp.payload
        if self.answers:
            early = broken and self.inductive       # expects a read's last one beat early
            expect, count, record = self._answers(m, hdr, is_header, bad, resp, resp_fire, early)
            #: the harness's record of the answers (queue, head, count, beats sent), and of the
            #: write data due, for a harness that states invariants relating its own to them
            self.answer_record = record

        # -- die commands: only for the well-formed request being issued, its words in order
        issue_op = Signal(MemOp)
        issue_addr = Signal(p.address_width + 1)
        issue_left = Signal(p.length_width)
        with m.If(is_header & ~bad):
            m.d.sync += [issue_op.eq(hdr.op), issue_addr.eq(hdr.address),
                         issue_left.eq(hdr.length)]
        with m.If(cmd_fire):
            m.d.sync += [issue_addr.eq(issue_addr + die.cmd.payload.length),
                         issue_left.eq(issue_left - die.cmd.payload.length)]
        with m.If(die.cmd.valid):
            self.check(m, "assert", (die.cmd.payload.length != 0) &
                       (die.cmd.payload.length <= issue_left) &
                       (die.cmd.payload.op == issue_op) &
                       (die.cmd.payload.address == issue_addr),
                       "a die command belongs to the well-formed request being issued")

        # -- covers
        bad_write = is_header & bad & (hdr.op == MemOp.WRITE) & (hdr.length > 1)
        saw_bad_write = Signal()
        with m.If(bad_write):
            m.d.sync += saw_bad_write.eq(1)
        self.check(m, "cover", saw_bad_write & resp_fire & (out.status == MemStatus.ERROR),
                   "a malformed write of several beats is answered with ERROR")
        self.check(m, "cover", cmd_fire & (issue_left > die.cmd.payload.length),
                   "a request is cut into several die commands")
        if self.answers:
            self.check(m, "cover", resp_fire & out.last & (expect.kind == _READ) &
                       (expect.length == 3), "a read of 3 words is answered")
            self.check(m, "cover", resp_fire & (expect.kind == _WRITE) & (expect.length == 3),
                       "a write of 3 words is answered")
            self.check(m, "cover", count == p.outstanding, f"{p.outstanding} requests in flight")
        else:
            self.check(m, "cover", saw_bad_write & cmd_fire & (die.cmd.payload.op == MemOp.WRITE),
                       "a well-formed write reaches the die after a malformed one")
        if self.inductive and self.answers:
            self._answer_invariants(m, fragment, internal, fifos, record)
        if self.inductive:
            self._invariants(m, internal, fifos, rbuf_fragment, data_due, issue_op, issue_addr,
                             issue_left, owed)

    def _answers(self, m, hdr, is_header, bad, resp, resp_fire, early=False):
        """The answers expected, in request order: returns the queue's head, its count and the
        harness's record (queue, head, count, beats sent). ``early``: the broken variant's
        expectation of a read's ``last`` one beat before its final beat."""
        p = self.params
        out = resp.payload
        depth = p.outstanding + 2
        entry = data.StructLayout({"kind": 2, "tag": len(hdr.tag), "length": p.length_width})
        queue = Signal(data.ArrayLayout(entry, depth))
        head = Signal(range(depth))
        count = Signal(range(depth + 1))
        push, pop = Signal(), Signal()
        new = Signal(entry)
        m.d.comb += [push.eq(is_header), new.tag.eq(hdr.tag), new.length.eq(hdr.length),
                     new.kind.eq(Mux(bad, _ERROR, Mux(hdr.op == MemOp.WRITE, _WRITE, _READ)))]
        tail = Signal(range(depth))
        m.d.comb += tail.eq((head + count) % depth)
        with m.If(push):
            m.d.sync += queue[tail].eq(new)
        m.d.sync += count.eq(count + push - pop)
        with m.If(pop):
            m.d.sync += head.eq(Mux(head == depth - 1, 0, head + 1))
        self.check(m, "assert", count + push <= depth,
                   "at most outstanding + 2 requests unanswered")

        expect = queue[head]
        sent = Signal(p.length_width)          # beats of the head's answer already given
        name = "answered in request order with their tags"
        with m.If(resp.valid):
            self.check(m, "assert", count != 0, "no answer without a request")
            with m.If(count != 0):
                with m.Switch(expect.kind):
                    with m.Case(_ERROR):
                        self.check(m, "assert", (out.status == MemStatus.ERROR) & out.last &
                                   (out.tag == expect.tag), "a malformed request gets exactly "
                                   "one ERROR beat, with the tag of its first beat")
                    with m.Case(_WRITE):
                        self.check(m, "assert", (out.status == MemStatus.OK) & out.last &
                                   (out.tag == expect.tag), name)
                    with m.Case(_READ):
                        self.check(m, "assert", (out.status == MemStatus.OK) &
                                   (out.tag == expect.tag) &
                                   (out.last == (sent == expect.length - (2 if early else 1))),
                                   name)
        with m.If(resp_fire):
            with m.If(out.last):
                m.d.comb += pop.eq(1)
                m.d.sync += sent.eq(0)
            with m.Else():
                m.d.sync += sent.eq(sent + 1)

        return expect, count, (queue, head, count, sent)

    def _answer_invariants(self, m, fragment, internal, fifos, record):
        """What makes the answers inductive: the harness's queue of expected answers is, in
        order, the pending-answer FIFO's output register, the word in its memory, and the write
        (or malformed write) the intake is still taking, which joins the FIFO when its last beat
        is taken; the response sequencer's count of beats sent is the harness's."""
        p = self.params
        queue, head, count, sent = record
        depth = len(queue)
        pending = fifos["pending"]
        pending_fragment = next(sub for sub, name, _ in fragment.subfragments
                                if name == "pending")
        if pending.depth != 2:
            raise ValueError(f"the answer invariants expect a pending FIFO of 2 entries (an "
                             f"output register and one memory word), not {pending.depth}")
        (word,) = memory_words(pending_fragment)[("storage",)]
        inner = internal_signals(pending_fragment)["inner_level"]
        state = internal["fsm_state"]
        code = {state.decoder(v).rsplit("/", 1)[0]: v for v in range(1 << len(state))}
        writing, dropping = state == code["issue write"], state == code["drop write data"]
        layout = _pending_layout(p, len(internal["cur_tag"]))

        def at(offset):
            return queue[(head + offset) % depth]

        def same(expected, held):
            held = data.View(layout, held)
            return (expected.kind == held.reply) & (expected.tag == held.tag) & \
                ((expected.kind != _READ) | (expected.length == held.length))

        self.check(m, "assert", count == pending.r_rdy + inner + (writing | dropping),
                   "invariant: answers expected = pending FIFO entries + the write being taken")
        with m.If(pending.r_rdy):
            self.check(m, "assert", same(at(0), pending.r_data),
                       "invariant: the pending FIFO's output is the first answer expected")
        with m.If(inner != 0):
            self.check(m, "assert", same(at(pending.r_rdy), word),
                       "invariant: the pending FIFO's memory word is the next answer expected")
        for offset in range(depth):
            with m.If(offset < count):
                self.check(m, "assert", (at(offset).kind != 3) &
                           ((at(offset).kind != _READ) |
                            ((at(offset).length != 0) & (at(offset).length <= p.max_length))),
                           "invariant: an expected answer is of a kind, a read of a valid length")
        with m.If(writing | dropping):
            # the room the header found is kept for it: nothing else joins the FIFO meanwhile
            self.check(m, "assert", inner == 0,
                       "invariant: the pending FIFO has room for the write being taken")
        intake = at(pending.r_rdy + inner)
        with m.If(writing):
            self.check(m, "assert", (intake.kind == _WRITE) &
                       (intake.tag == internal["cur_tag"]) &
                       (intake.length == internal["cur_length"]),
                       "invariant: the write being taken is the last answer expected")
        with m.If(dropping):
            self.check(m, "assert", (intake.kind == _ERROR) & (intake.tag == internal["cur_tag"]),
                       "invariant: the malformed write being dropped is the last answer expected")
        self.check(m, "assert", internal["sent"] == sent,
                   "invariant: the response sequencer has sent the beats the harness counted")
        self.check(m, "assert", (count != 0) | (sent == 0),
                   "invariant: no beat is counted without an answer expected")
        with m.If((count != 0) & (at(0).kind == _READ)):
            self.check(m, "assert", sent < at(0).length,
                       "invariant: a read has sent fewer beats than its length")
        with m.If((count != 0) & (at(0).kind != _READ)):
            self.check(m, "assert", sent == 0,
                       "invariant: a one-beat answer has sent no beat")

    def _invariants(self, m, internal, fifos, rbuf_fragment, data_due, issue_op, issue_addr,
                    issue_left, owed):
        """What makes the die-command property inductive: the channel's intake state (read by
        name) is the harness's record of the request being taken, and the read credits account
        for every word the die owes or the read buffer holds."""
        p = self.params
        state = internal["fsm_state"]
        code = {state.decoder(v).rsplit("/", 1)[0]: v for v in range(1 << len(state))}
        cur_op, cur_addr = internal["cur_op"], internal["cur_addr"]
        cur_left, data_left = internal["cur_left"], internal["data_left"]
        in_range = (cur_left <= p.max_length) & (cur_addr + cur_left <= p.words)
        issuing = (issue_op == cur_op) & (issue_left == cur_left) & \
            ((cur_left == 0) | (issue_addr == cur_addr)) & in_range
        at = lambda name: state == code[name]
        ok = (at("take header") & (data_due == 0)) | \
            (at("drop write data") & (data_due == data_left) & (data_left != 0)) | \
            (at("issue read") & (data_due == 0) & (cur_op == MemOp.READ) & (cur_left != 0) &
             issuing) | \
            (at("issue write") & (data_due == data_left) & (cur_op == MemOp.WRITE) & issuing)
        self.check(m, "assert", ok, "invariant: the intake state is the request being taken")
        rbuf = fifos["rbuf"]
        inner = internal_signals(rbuf_fragment)["inner_level"]
        self.check(m, "assert", (inner <= rbuf.depth - 1) & (rbuf.r_rdy | (inner <= 1)),
                   "invariant: the read buffer's inner level (at most 1 while its output "
                   "register is empty)")
        self.check(m, "assert", internal["credits"] + rbuf.level + owed == p.read_buffer,
                   "invariant: read credits + words buffered + words the die owes = buffer")
