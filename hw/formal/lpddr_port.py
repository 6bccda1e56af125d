"""Formal harness of the LPDDR port (:mod:`hw.lpddr_port`): its client arbiter and response router
around one memory channel, at a small configuration with 2 clients.

Every client's request stream obeys the stream rules (assumed: any beats, any back-pressure on its
responses), and so does the die's read-data stream (the die sends only read words it owes). The
port promises:

* each client's ``resp`` stream, the die's ``cmd`` and ``wdata`` streams, and the arbiter's own
  output (the channel's request stream) obey the stream rules;
* no request beat is lost or duplicated: a beat the channel takes is exactly one client's beat
  taken in the same cycle (the arbiter has no latency), with that client's payload and the
  client's index above its tag, and no client's beat is taken otherwise;
* a write's beats are not interleaved with another client's: from its header on, the channel's
  next ``length - 1`` beats are the same client's;
* no client starves: while a client offers a beat that is not taken, at most one request of the
  other client starts (round robin over 2 clients);
* the router delivers every response beat to the client its tag names, with the client's tag
  (the index stripped) and the beat's status, ``last`` and data, and to no other client; the
  channel's beat is taken exactly when that client takes it;
* every client's responses come back to that client in its request order with its tags (a read:
  ``length`` OK beats, ``last`` on the final one; a write: one OK beat; a malformed request: one
  ERROR beat), checked end to end with a queue of expected answers per client;
* and the channel inside keeps its own contract (:mod:`hw.formal.mem_channel`): its die commands,
  read buffer and answers in the order the arbiter passed the requests.

The proof is a k-induction. Its invariants: the channel's (see :mod:`hw.formal.mem_channel`); the
arbiter's state (``grant``, ``locked``, ``beats_left``, read by name) is the harness's record of the
write being passed; and each client's queue of expected answers is, in order, the entries of the
channel's queue that carry the client's index.
"""

from amaranth import *
from amaranth.hdl import Fragment
from amaranth.lib import data

from hw.formal.harness import internal_signals
from hw.formal.mem_channel import MemChannelContract, serve_die
from hw.lpddr_port import LpddrPort
from hw.params import LpddrPortParams, MemOp, MemStatus

__all__ = ["SMALL", "PortContract"]

#: 2 clients with 1-bit tags on a channel of 16 words of 8 bits (5-bit address: requests may
#: point past the device), requests of up to 4 words cut into die bursts of 2, 2 requests
#: outstanding, 2-word buffers.
SMALL = LpddrPortParams(data_width=8, words=16, address_width=5, max_length=4, die_burst=2,
                        outstanding=2, read_buffer=2, write_buffer=2, tag_width=1, clients=2)

_READ, _WRITE, _ERROR = 0, 1, 2


class PortContract(MemChannelContract):
    """The port's contract, with the channel's inside it (:class:`MemChannelContract`'s die
    commands, read buffer and answers, and their invariants, on the port's channel). Broken: the
    harness expects the arbiter to hand the channel a client's tag without the client's index
    above it (so a response could not be routed back), which the port (rightly) does not do."""

    SMALL = SMALL

    def __init__(self, params=None, broken=False):
        super().__init__(params, broken=broken, answers=True, inductive=True)
        if self.params.clients != 2:
            raise ValueError(f"the port's harness states its round-robin invariant for 2 "
                             f"clients, not {self.params.clients}")

    def build(self, m, platform):
        p = self.params
        n = p.clients
        dut = LpddrPort(p)
        fragment = Fragment.get(dut, platform)
        m.submodules["dut"] = fragment
        internal = internal_signals(fragment)
        channel = next(sub.origins[0] for sub, name, _ in fragment.subfragments
                       if name == "channel")
        for k in range(n):
            self.stream_in(m, dut.req[k], f"req[{k}]")
            self.stream_out(m, dut.resp[k], f"resp[{k}]")
        self.stream_out(m, dut.die.cmd, "die.cmd")
        self.stream_out(m, dut.die.wdata, "die.wdata")
        owed = serve_die(self, m, dut.die, p)
        channel_fragment = next(sub for sub, name, _ in fragment.subfragments
                                if name == "channel")
        self.channel_contract(m, channel, channel_fragment, owed, broken=False)
        # the arbiter's output: the channel's request stream (ready is the channel's)
        out = channel.req
        self.stream_rules(m, "assert", "channel.req", out.valid, out.ready,
                          Value.cast(out.payload))

        fires = [dut.req[k].valid & dut.req[k].ready for k in range(n)]
        out_fire = out.valid & out.ready
        self._arbiter(m, dut, internal, out, fires, out_fire)
        self._router(m, dut, channel.resp)
        self._order(m, dut, fires)

    def _arbiter(self, m, dut, internal, out, fires, out_fire):
        p = self.params
        n = p.clients
        client = out.payload.tag[p.tag_width:]
        # -- every beat the channel takes is exactly one client's, taken in the same cycle
        self.check(m, "assert", out_fire == Cat(fires).any(),
                   "a beat reaches the channel exactly when a client's beat is taken")
        self.check(m, "assert", sum(fires) <= 1, "at most one client's beat is taken at a time")
        for k in range(n):
            mine = dut.req[k].payload
            with m.If(fires[k]):
                index = 0 if self.broken else k
                self.check(m, "assert",
                           (out.payload.op == mine.op) & (out.payload.address == mine.address) &
                           (out.payload.length == mine.length) &
                           (out.payload.data == mine.data) &
                           (out.payload.tag == Cat(mine.tag, C(index, p.client_width))),
                           "the channel gets the client's beat with the client's index "
                           "above its tag")
        # (the channel takes a header at most every other cycle: its pending-answer FIFO is not
        # ready in the cycle after a write)
        self.check(m, "cover", fires[n - 1] & self.past(m, self.past(m, fires[0])),
                   "a client's beat taken two cycles after the other's")

        # -- a write's data beats follow its header from the same client
        hdr = out.payload
        due = Signal(p.length_width)
        owner = Signal(p.client_width)
        with m.If(out_fire):
            with m.If(due != 0):
                m.d.sync += due.eq(due - 1)
            with m.Elif((hdr.op == MemOp.WRITE) & (hdr.length > 1)):
                m.d.sync += [due.eq(hdr.length - 1), owner.eq(client)]
        with m.If(out_fire & (due != 0)):
            self.check(m, "assert", client == owner,
                       "a write's data beats come from the client of its header")
        self.check(m, "cover", out_fire & (due == 1) & Cat(dut.req[k].valid for k in range(n)
                                                             ).all(),
                   "a write's last data beat while the other client waits")
        self.arbiter_record = (due, owner)
        self.check(m, "assert", due == self.data_due,
                   "invariant: the arbiter's record of write data due is the channel's")
        locked, beats_left, grant = internal["locked"], internal["beats_left"], internal["grant"]
        self.check(m, "assert", (locked == (due != 0)) & (beats_left == due) &
                   (~locked | (grant == owner)) & (grant < n),
                   "invariant: the arbiter's lock is the harness's record of the write")

        # -- no starvation: while a client waits, at most one request of another starts
        for k in range(n):
            waiting = dut.req[k].valid & ~dut.req[k].ready
            others = Signal(2, name=f"others_started_{k}")
            starts = out_fire & (due == 0) & (client != k)
            with m.If(waiting):
                m.d.sync += others.eq(Mux(others == 3, 3, others + starts))
            with m.Else():
                m.d.sync += others.eq(0)
            self.check(m, "assert", others <= n - 1,
                       f"while client {k} waits, at most {n - 1} other request starts")
            self.check(m, "assert", (others == 0) | (grant == k) |
                       (locked & (grant != k) & (others == 1)),
                       f"invariant: a client {k} that waited through another's request holds "
                       "the grant, or that request is a write still running")
            self.check(m, "cover", fires[k] & (others == n - 1),
                       f"client {k} is served after waiting through another's request")

    def _router(self, m, dut, inp):
        p = self.params
        n = p.clients
        client = inp.payload.tag[p.tag_width:]
        for k in range(n):
            resp = dut.resp[k]
            self.check(m, "assert", resp.valid == (inp.valid & (client == k)),
                       "a response beat reaches exactly the client its tag names")
            with m.If(inp.valid & (client == k)):
                self.check(m, "assert",
                           (resp.payload.tag == inp.payload.tag[:p.tag_width]) &
                           (resp.payload.status == inp.payload.status) &
                           (resp.payload.last == inp.payload.last) &
                           (resp.payload.data == inp.payload.data) & (inp.ready == resp.ready),
                           "the client gets the beat with its own tag, taken when it takes it")
            self.check(m, "cover", resp.valid & ~resp.ready & self.past(m, inp.valid),
                       f"client {k} stalls a response beat")

    def _order(self, m, dut, fires):
        """Each client's answers in its request order with its tags."""
        p = self.params
        entry = data.StructLayout({"kind": 2, "tag": p.tag_width, "length": p.length_width})
        depth = p.outstanding + 2
        records = []
        for k in range(p.clients):
            req, resp = dut.req[k], dut.resp[k]
            hdr = req.payload
            due = Signal(p.length_width, name=f"data_due_{k}")
            is_header = fires[k] & (due == 0)
            with m.If(is_header):
                with m.If((hdr.op == MemOp.WRITE) & (hdr.length > 1)):
                    m.d.sync += due.eq(hdr.length - 1)
            with m.Elif(fires[k]):
                m.d.sync += due.eq(due - 1)
            bad = (hdr.length == 0) | (hdr.length > p.max_length) | (hdr.address >= p.words) | \
                (hdr.address + hdr.length > p.words)
            new = Signal(entry, name=f"expect_new_{k}")
            m.d.comb += [new.tag.eq(hdr.tag), new.length.eq(hdr.length),
                         new.kind.eq(Mux(bad, _ERROR,
                                         Mux(hdr.op == MemOp.WRITE, _WRITE, _READ)))]
            queue = Signal(data.ArrayLayout(entry, depth), name=f"expect_{k}")
            head = Signal(range(depth), name=f"expect_head_{k}")
            count = Signal(range(depth + 1), name=f"expect_count_{k}")
            sent = Signal(p.length_width, name=f"sent_{k}")
            pop = Signal(name=f"pop_{k}")
            with m.If(is_header):
                m.d.sync += queue[(head + count) % depth].eq(new)
            m.d.sync += count.eq(count + is_header - pop)
            with m.If(pop):
                m.d.sync += head.eq(Mux(head == depth - 1, 0, head + 1))
            self.check(m, "assert", count + is_header <= depth,
                       "at most outstanding + 2 requests of a client unanswered")
            expect = queue[head]
            out = resp.payload
            with m.If(resp.valid):
                self.check(m, "assert", count != 0, "no answer without a request of the client")
                with m.If(count != 0):
                    status = Mux(expect.kind == _ERROR, MemStatus.ERROR, MemStatus.OK)
                    last = Mux(expect.kind == _READ, sent == expect.length - 1, 1)
                    self.check(m, "assert", (out.tag == expect.tag) & (out.status == status) &
                               (out.last == last),
                               "every client's answers come back to it in its request order "
                               "with its tags")
            with m.If(resp.valid & resp.ready):
                with m.If(out.last):
                    m.d.comb += pop.eq(1)
                    m.d.sync += sent.eq(0)
                with m.Else():
                    m.d.sync += sent.eq(sent + 1)
            self.check(m, "cover", resp.valid & resp.ready & out.last & (count == 2),
                       f"client {k} has an answer taken with another of its requests waiting")
            records.append((queue, head, count, sent, due))
        self._order_invariants(m, records)
        answered = [dut.resp[k].valid & dut.resp[k].ready & dut.resp[k].payload.last
                    for k in range(p.clients)]
        self.check(m, "cover", answered[0] & self.past(m, answered[1]),
                   "client 0 is answered right after an answer to client 1")

    def _order_invariants(self, m, records):
        """What makes the clients' order inductive: each client's queue of expected answers is,
        in order, the entries of the channel's (the harness's record of the channel, filled in
        the same cycles) that carry the client's index; the beats sent of a client's first answer
        are the channel's when its answer is the channel's first; a client's write data due are
        the arbiter's when it holds the write."""
        p = self.params
        chan_queue, chan_head, chan_count, chan_sent = self.answer_record
        depth = len(chan_queue)
        due, owner = self.arbiter_record
        entries = [chan_queue[(chan_head + i) % depth] for i in range(depth)]
        clients = [e.tag[p.tag_width:] for e in entries]
        for k, (queue, head, count, sent, client_due) in enumerate(records):
            mine = [(i < chan_count) & (clients[i] == k) for i in range(depth)]
            self.check(m, "assert", count == sum(mine),
                       "invariant: a client's answers expected are the channel's with its index")
            for i in range(depth):
                rank = sum(mine[:i]) if i else C(0, 1)
                expected = queue[(head + rank) % depth]
                entry = entries[i]
                with m.If(mine[i]):
                    self.check(m, "assert", (expected.kind == entry.kind) &
                               (expected.tag == entry.tag[:p.tag_width]) &
                               ((entry.kind != _READ) | (expected.length == entry.length)),
                               "invariant: a client's answers expected are the channel's with "
                               "its index, in order")
            first_mine = (chan_count != 0) & (clients[0] == k)
            self.check(m, "assert", sent == Mux(first_mine, chan_sent, 0),
                       "invariant: a client's beats sent are the channel's when its answer is "
                       "first")
            self.check(m, "assert", client_due == Mux((due != 0) & (owner == k), due, 0),
                       "invariant: a client's write data due are the arbiter's when it holds "
                       "the write")
