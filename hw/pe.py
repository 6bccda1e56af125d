"""One processing element: weight, activation and output memories around a MAC array, with its HB
channel and its LPDDR client.

The command processor (:mod:`hw.command_processor`) has checked every command and resolved every
address before it reaches a PE, so a PE never sees an illegal command. Streams (``lib.stream``):

* ``cmd`` (in): one :func:`pe_command_layout` beat per command (queued ``queue_depth`` deep).
* ``hb_req``/``hb_resp``, ``lpddr_req``/``lpddr_resp``: request and response streams of its HB
  channel and of its LPDDR client (:mod:`hw.mem_channel`'s layouts).
* ``imem_addr``/``imem_en``/``imem_data``: a synchronous read port of the shared input memory.
* ``idle`` (out): no command queued or running, every loaded word and every result written.

Commands start one at a time, in order; LOAD, MAC and MAC_DQ hand over to the next command before
their memory writes are done (below). Per command kind (:class:`PeOp`):

* ``LOAD``: ``count`` WMEM words at ``wmem`` from HB (``lpddr = 0``) or LPDDR at ``ext``: each is
  ``hb_ratio`` (``lpddr_ratio``) memory words, the lowest bits first, so ``count * ratio`` memory
  words are read (``ext`` and the request lengths count memory words), in requests of at most
  ``max_length`` words issued back to back. Each word is written into its slice of the WMEM word
  as it arrives (a write port with one enable per slice), so a load takes one cycle per memory
  word, whatever the ratio. The PE takes the next command once the load's last request is taken.
* ``WRITE_HB``: ``count`` WMEM words from ``wmem`` to HB at ``ext``, each as ``hb_ratio`` HB words,
  the lowest bits first.
* ``LOAD_ACT``: ``count`` IMEM words from ``imem`` into AMEM at ``amem``.
* ``MAC``: ``count`` operations: weight beats from WMEM at ``wmem``, activation beats from AMEM at
  ``amem`` (the first group only when ``reuse``: the array keeps its activations), results into
  OMEM at ``omem``; one weight beat per cycle.
* ``COMBINE``: OMEM[``omem`` + i] = OMEM[``a`` + i] + OMEM[``b`` + i] (element-wise, wrapping), one
  word after the other, so overlapping ranges behave as in the ISA.
* ``MAC_DQ``: as ``MAC``, or with ``split`` an MSB and an LSB operation per group (the LSB beats
  ``weight_words // 2`` further up); the results go through the dequantising unit (below) instead
  of OMEM: FP16 scale slot ``scales + i`` from WMEM, accumulator ``acc`` started at +0.0 with
  ``first``, and with ``last`` the accumulator times the token scales of AMEM[``tscale``] written to
  OMEM[``omem`` ...] as ``dq_words`` words.

LOADs overlap with what follows, so back-to-back loads stream without the memory's first-word
latency between them: a LOAD is recorded in a FIFO of loads in flight (its port, ``wmem`` and
``count``; :attr:`ProcessingElement.load_depth` deep, the running LOAD included) when it is taken,
and leaves it with its last word; the words of the oldest are written as they come (responses
come in request order, and the loads in flight share one port). While loads are in flight:

* a LOAD from the same port starts at once, unless the FIFO is full: then it waits for the oldest
  load's last word;
* a LOAD from the other port waits until every load in flight is done (the words of two ports
  would arrive interleaved, and a PE holding back its LPDDR words stalls the port shared by all);
* MAC, MAC_DQ (they read WMEM) and WRITE_HB (it reads WMEM and takes its answer on ``hb_resp``)
  wait until every load in flight is done;
* LOAD_ACT and COMBINE (AMEM, IMEM and OMEM only) start at once.

MAC and MAC_DQ overlap with what follows: the PE takes the next command as soon as the last beat
has been read, while the array and the dequantising unit finish behind it (their results are written
in order). A command that reads or writes OMEM through another path (MAC, COMBINE) waits until that
pipeline is empty; loads may run at once (the beats in flight were already read). So the memories
always end as in-order execution leaves them, and ``idle`` (what BARRIER and END wait for) means
every command's writes are done.

The dequantising unit (:mod:`hw.fp32`; the arithmetic of :mod:`sw_model.golden.dequant`) keeps up
with the array: it latches a result's sums (in ``split`` mode the held MSB sums plus the LSB sums,
as integers), then takes ``dq_rows`` token rows a cycle (``TopParams.dq_rows``: enough rows that a
result is done before the next can come, one result per ``beats_per_group`` cycles): one stage
multiplies each sum by its group's scale, the next adds the products to those rows of the
command's accumulator (``accumulators`` of them) and, after the last operation of a ``last``
command, a third multiplies the new rows by their token scales into the output register; then a
writer stores ``dq_words`` words. ``dq_rows x 2*out_channels`` lanes, each with its own logic.

The memories are ``lib.memory`` arrays named ``wmem``, ``amem`` and ``omem`` (the simulation
runner's back door).
"""

import enum
import math

from amaranth import *
from amaranth.lib import data, fifo, memory, stream
from amaranth.lib.wiring import In, Out

from hw.component_args import CheckedComponent, expect_params
from hw.fp32 import f32_add, f32_mul, int_f16_mul
from hw.mac_array import MacArray
from hw.mem_channel import request_layout, response_layout
from hw.params import MacMode, MemOp, TopParams, unsigned_width

__all__ = ["PeOp", "ProcessingElement", "pe_command_layout"]


class PeOp(enum.IntEnum):
    """What a PE command does (3-bit field)."""
    LOAD = 0
    WRITE_HB = 1
    LOAD_ACT = 2
    MAC = 3
    COMBINE = 4
    MAC_DQ = 5


def _addr(words):
    return unsigned(unsigned_width(words - 1))


def pe_command_layout(params):
    p = params
    return data.StructLayout({
        "op": unsigned(3),
        "lpddr": unsigned(1),
        "ext": unsigned(max(p.hb.address_width, p.lpddr.address_width)),
        "wmem": _addr(p.weight_words),
        "amem": _addr(p.act_words),
        "imem": _addr(p.input_words),
        "omem": _addr(p.output_words),
        "a": _addr(p.output_words),
        "b": _addr(p.output_words),
        "count": unsigned(16),
        "mode": MacMode,
        "reuse": unsigned(1),
        "split": unsigned(1),
        "first": unsigned(1),
        "last": unsigned(1),
        "acc": unsigned(2),
        "scales": unsigned(16),
        "tscale": _addr(p.act_words),
    })


def _load_layout(p):
    """What the PE keeps of a LOAD whose words are still arriving."""
    return data.StructLayout({
        "lpddr": unsigned(1),               # the port its words come from
        "wmem": _addr(p.weight_words),
        "count": unsigned(16),
    })


class _Desc(enum.IntEnum):
    """What happens to one MAC result (the PE's record of an operation in flight)."""
    PLAIN = 0       # MAC: written to OMEM at ``addr``
    SCALE = 1       # MAC_DQ: scaled and accumulated
    HOLD = 2        # MAC_DQ split, MSB operation: kept for the LSB operation of the same group
    ADD = 3         # MAC_DQ split, LSB operation: added to the held sums, then as SCALE


def _desc_layout(p):
    return data.StructLayout({
        "kind": unsigned(2),
        "first": unsigned(1),               # the first operation of a ``first`` command
        "last": unsigned(1),                # the last operation of a ``last`` command
        "bank": unsigned(2),                # the accumulator
        "addr": _addr(p.output_words),
        "scales": data.ArrayLayout(unsigned(16), p.mac.result_channels),
        "ts": data.ArrayLayout(unsigned(32), p.mac.tokens),
    })


class ProcessingElement(CheckedComponent):
    """One PE; see the module docstring.

    Parameters
    ----------
    params : TopParams, optional
        :data:`hw.params.TOP_DEFAULT` when omitted.
    queue_depth : int
        Commands the PE accepts ahead of the one it runs.
    """

    @classmethod
    def check_arguments(cls, params=None, queue_depth=4):
        return expect_params(params, TopParams)

    def __init__(self, params=None, queue_depth=4):
        self.params = p = self.check_arguments(params, queue_depth)
        self.queue_depth = queue_depth
        super().__init__({
            "cmd": In(stream.Signature(pe_command_layout(p))),
            "hb_req": Out(stream.Signature(request_layout(p.hb))),
            "hb_resp": In(stream.Signature(response_layout(p.hb))),
            "lpddr_req": Out(stream.Signature(request_layout(p.lpddr))),
            "lpddr_resp": In(stream.Signature(response_layout(p.lpddr))),
            "imem_addr": Out(_addr(p.input_words)),
            "imem_en": Out(1),
            "imem_data": In(p.mac.act_beat_bits),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(
            width=pe_command_layout(p).size, depth=self.queue_depth)
        m.submodules.mac = self.mac = MacArray(p.mac)
        m.submodules.wmem = wmem = memory.Memory(shape=p.mac.weight_beat_bits,
                                                 depth=p.weight_words, init=[])
        m.submodules.amem = amem = memory.Memory(shape=p.mac.act_beat_bits, depth=p.act_words,
                                                 init=[])
        m.submodules.omem = omem = memory.Memory(shape=p.result_bits, depth=p.output_words,
                                                 init=[])
        self.w_rd, self.w_wr = wmem.read_port(), wmem.write_port(granularity=self._wmem_granularity)
        self.a_rd, self.a_wr = amem.read_port(), amem.write_port()
        # the dequantising unit's scale words and token scales
        self.s_rd, self.t_rd = wmem.read_port(), amem.read_port()
        self.o_rd_a, self.o_rd_b, self.o_wr = omem.read_port(), omem.read_port(), omem.write_port()

        m.d.comb += [queue.w_stream.payload.eq(self.cmd.payload),
                     queue.w_stream.valid.eq(self.cmd.valid),
                     self.cmd.ready.eq(queue.w_stream.ready)]
        head = Signal(pe_command_layout(p))
        m.d.comb += head.eq(queue.r_stream.payload)
        cur = Signal(pe_command_layout(p))       # the running command
        i = Signal(16)                           # words (operations) of it done
        j = Signal(16)                           # requests issued / beats of an operation
        self.cur, self.i, self.j = cur, i, j
        # MAC results in flight: the commands that must wait for them (module docstring)
        self.results_busy = Signal()
        self.hold_take = Signal()
        self.s_valid = Signal()                  # a beat read last cycle goes to the array now
        self._results(m)
        # LOADs whose words are still arriving (the running one first): the commands that must
        # wait for them (module docstring)
        m.submodules.loads = loads = fifo.SyncFIFO(width=_load_layout(p).size,
                                                   depth=self.load_depth)
        self.loads = loads
        self.load_push = push = Signal(_load_layout(p))
        self.loads_busy = Signal()
        m.d.comb += [loads.w_data.eq(push), self.loads_busy.eq(loads.r_rdy)]
        load_port = Signal()                     # the port of the loads in flight
        # (a ``last`` MAC_DQ needs the output register free: with at most two output words the
        # writer is done before the next ``last`` operation's rows reach it, else it waits too)
        waits = (head.op == PeOp.MAC) | (head.op == PeOp.COMBINE)
        if p.dq_words > 2:
            waits |= (head.op == PeOp.MAC_DQ) & head.last
        load_waits = ((head.op == PeOp.MAC) | (head.op == PeOp.MAC_DQ)
                      | (head.op == PeOp.WRITE_HB)
                      | ((head.op == PeOp.LOAD) & ((head.lpddr != load_port) | ~loads.w_rdy)))
        m.d.comb += self.hold_take.eq((self.results_busy & waits)
                                      | (self.loads_busy & load_waits))

        with m.FSM(name="pe_fsm") as fsm:
            with m.State("Take command"):
                m.d.comb += queue.r_stream.ready.eq(~self.hold_take)
                with m.If(queue.r_stream.valid & ~self.hold_take):
                    m.d.sync += [cur.eq(head), i.eq(0), j.eq(0)]
                    with m.Switch(head.op):
                        with m.Case(PeOp.LOAD):
                            m.d.comb += [loads.w_en.eq(1), push.lpddr.eq(head.lpddr),
                                         push.wmem.eq(head.wmem), push.count.eq(head.count)]
                            m.d.sync += load_port.eq(head.lpddr)
                            m.next = "Load"
                        with m.Case(PeOp.WRITE_HB):
                            m.next = "Write fetch"
                        with m.Case(PeOp.LOAD_ACT):
                            m.next = "Act fetch"
                        with m.Case(PeOp.MAC, PeOp.MAC_DQ):
                            m.next = "Mac stream"
                        with m.Default():
                            m.next = "Combine fetch"
            self._load(m)
            self._write_hb(m)
            self._load_act(m)
            self._mac(m)
            self._combine(m)
        self._load_words(m)
        # the queue's level, not its output: a command just written may not be visible there yet
        m.d.comb += self.idle.eq(fsm.ongoing("Take command") & (queue.level == 0)
                                 & ~self.results_busy & ~self.loads_busy)
        return m

    @property
    def load_depth(self):
        """LOADs in flight at most (the running one included): a LOAD has at least one request,
        and a channel keeps at most ``outstanding`` requests in flight, so more would only wait
        on the channel."""
        return max(self.params.hb.outstanding, self.params.lpddr.outstanding)

    # -- the result path: OMEM writes of MAC, the dequantising unit of MAC_DQ -----------------------
    def _results(self, m):
        p = self.params
        T, R = p.mac.tokens, p.mac.result_channels
        mac = self.mac
        # one record per operation, written when its last beat enters the array
        m.submodules.inflight = inflight = fifo.SyncFIFO(width=_desc_layout(p).size, depth=8)
        self.desc_in = Signal(_desc_layout(p))
        self.desc_push = Signal()
        m.d.comb += [inflight.w_data.eq(self.desc_in), inflight.w_en.eq(self.desc_push)]
        desc = Signal(_desc_layout(p))
        m.d.comb += [desc.eq(inflight.r_data), mac.results.ready.eq(1),
                     inflight.r_en.eq(mac.results.valid)]
        sums = mac.results.payload.sums
        res = Signal.like(sums)
        m.d.comb += res.eq(sums)
        kind = desc.kind

        # stage R: plain results to OMEM; held MSB sums; the sums to scale latched
        held = Signal.like(sums)
        with m.If(mac.results.valid & (kind == _Desc.PLAIN)):
            m.d.comb += [self.o_wr.addr.eq(desc.addr), self.o_wr.data.eq(sums),
                         self.o_wr.en.eq(1)]
        with m.If(mac.results.valid & (kind == _Desc.HOLD)):
            m.d.sync += held.eq(sums)
        scaled = mac.results.valid & ((kind == _Desc.SCALE) | (kind == _Desc.ADD))
        wide = data.ArrayLayout(data.ArrayLayout(signed(p.mac.result_width + 1), R), T)
        pend = Signal(wide)
        pdesc = Signal(_desc_layout(p))
        with m.If(scaled):
            m.d.sync += pdesc.eq(desc)
            for t in range(T):
                for s in range(R):
                    m.d.sync += pend[t][s].eq(Mux(kind == _Desc.ADD, held[t][s], 0) + res[t][s])

        # stage P: ``dq_rows`` token rows a cycle, each sum times its group's scale
        DR = p.dq_rows
        steps = T // DR
        p_busy = Signal()
        p_step = Signal(range(steps))
        with m.If(scaled):
            m.d.sync += [p_busy.eq(1), p_step.eq(0)]
        with m.Elif(p_busy):
            m.d.sync += p_step.eq(p_step + 1)
            with m.If(p_step == steps - 1):
                m.d.sync += p_busy.eq(0)
        rows = Array(pend[k * DR:(k + 1) * DR] for k in range(steps))
        ts_rows = Array(pdesc.ts[k * DR:(k + 1) * DR] for k in range(steps))
        p_rows = Signal(data.ArrayLayout(data.ArrayLayout(signed(p.mac.result_width + 1), R), DR))
        m.d.comb += p_rows.eq(rows[p_step])
        row_lanes = data.ArrayLayout(data.ArrayLayout(unsigned(32), R), DR)
        products = Signal(row_lanes)
        a_valid, a_first, a_last, a_final = Signal(), Signal(), Signal(), Signal()
        a_bank = Signal(2)
        a_step = Signal(range(steps))
        a_addr = Signal.like(desc.addr)
        a_ts = Signal(data.ArrayLayout(unsigned(32), DR))
        m.d.sync += [a_valid.eq(p_busy), a_first.eq(pdesc.first), a_last.eq(pdesc.last),
                     a_final.eq(p_busy & pdesc.last & (p_step == steps - 1)),
                     a_bank.eq(pdesc.bank), a_step.eq(p_step), a_addr.eq(pdesc.addr),
                     a_ts.eq(ts_rows[p_step])]
        for t in range(DR):
            for s in range(R):
                product = int_f16_mul(m, p_rows[t][s], pdesc.scales[s], name=f"dq_mul_{t}_{s}")
                with m.If(p_busy):
                    m.d.sync += products[t][s].eq(product)

        # stage A: those rows of accumulator ``a_bank`` += the products (a one-cycle loop: the
        # next group's products for the same rows may follow in the next cycle); stage O: after
        # the last operation of a ``last`` command, the new rows times their token scales into
        # the output register
        lanes = data.ArrayLayout(data.ArrayLayout(unsigned(32), R), T)
        banks = [Signal(lanes, name=f"dq_acc{b}") for b in range(p.accumulators)]
        acc = Signal(lanes)
        with m.Switch(a_bank):
            for b in range(p.accumulators):
                with m.Case(b):
                    m.d.comb += acc.eq(banks[b])
        acc_rows = Array(acc[k * DR:(k + 1) * DR] for k in range(steps))
        old = Signal(row_lanes)
        m.d.comb += old.eq(acc_rows[a_step])
        total = Signal(row_lanes)
        for t in range(DR):
            for s in range(R):
                m.d.comb += total[t][s].eq(f32_add(m, Mux(a_first, 0, old[t][s]),
                                                   products[t][s], name=f"dq_add_{t}_{s}"))
        with m.If(a_valid):
            with m.Switch(a_bank):
                for b in range(p.accumulators):
                    with m.Case(b):
                        bank_rows = Array(banks[b][k * DR:(k + 1) * DR] for k in range(steps))
                        m.d.sync += bank_rows[a_step].eq(total)
        D, width = p.dq_words, p.result_bits
        o_valid, o_final = Signal(), Signal()
        o_step = Signal.like(a_step)
        o_addr = Signal.like(a_addr)
        o_total = Signal(row_lanes)
        o_ts = Signal.like(a_ts)
        m.d.sync += [o_valid.eq(a_valid & a_last), o_final.eq(a_final), o_step.eq(a_step),
                     o_addr.eq(a_addr)]
        with m.If(a_valid & a_last):
            m.d.sync += [o_total.eq(total), o_ts.eq(a_ts)]
        out = Signal(data.ArrayLayout(data.ArrayLayout(unsigned(32), R), T))
        out_rows = Array(out[k * DR:(k + 1) * DR] for k in range(steps))
        scaled_rows = Signal(row_lanes)
        for t in range(DR):
            for s in range(R):
                m.d.comb += scaled_rows[t][s].eq(
                    f32_mul(m, o_total[t][s], o_ts[t], name=f"dq_out_{t}_{s}"))
        with m.If(o_valid):
            m.d.sync += out_rows[o_step].eq(scaled_rows)

        # the writer: ``dq_words`` words of the output register, after its last rows
        flat = out.as_value()
        left = Signal(range(D + 1))
        w_addr = Signal.like(desc.addr)
        done = Signal(range(D))
        with m.If(left != 0):
            words = Array(Cat(flat, C(0, D * width - len(flat)))[k * width:(k + 1) * width]
                          for k in range(D))
            m.d.comb += [self.o_wr.addr.eq(w_addr + done), self.o_wr.data.eq(words[done]),
                         self.o_wr.en.eq(1)]
            m.d.sync += [left.eq(left - 1), done.eq(done + 1)]
        with m.If(o_final):
            m.d.sync += [left.eq(D), done.eq(0), w_addr.eq(o_addr)]
        m.d.comb += self.results_busy.eq(inflight.r_level.any() | self.s_valid | p_busy
                                         | a_valid | o_valid | (left != 0))

    @property
    def _wmem_granularity(self):
        """Bits per write enable of WMEM: the widest slice that HB and LPDDR words are both whole
        numbers of (a weight word when both ratios are 1)."""
        return math.gcd(self.params.hb.data_width, self.params.lpddr.data_width)

    def _chunk(self, m, left):
        """The length of the next memory request: ``min(left, max_length)``."""
        limit = min(self.params.hb.max_length, self.params.lpddr.max_length)
        chunk = Signal(range(limit + 1))
        m.d.comb += chunk.eq(Mux(left > limit, limit, left))
        return chunk

    def _memory_words(self, m, ratio):
        """The memory words of the running LOAD or WRITE_HB: ``count * ratio`` (``ratio``
        a Python int or a signal)."""
        p = self.params
        most = max(p.hb_ratio, p.lpddr_ratio)
        total = Signal(range(((1 << 16) - 1) * most + 1))
        m.d.comb += total.eq(self.cur.count * ratio)
        return total

    # -- LOAD: HB or LPDDR into WMEM -----------------------------------------------------------------
    def _load(self, m):
        """The running LOAD's requests go out back to back (``requested`` memory words; the
        channel's queue of outstanding requests is the only limit); once the last one is taken
        the PE takes the next command, while :meth:`_load_words` writes the words as they come."""
        cur = self.cur
        ratio = Signal(range(max(self.params.hb_ratio, self.params.lpddr_ratio) + 1))
        m.d.comb += ratio.eq(Mux(cur.lpddr, self.params.lpddr_ratio, self.params.hb_ratio))
        total = self._memory_words(m, ratio)
        requested = Signal.like(total)           # memory words requested so far
        left = Signal.like(total)
        m.d.comb += left.eq(total - requested)
        chunk = self._chunk(m, left)
        with m.State("Load"):
            for req, which in ((self.hb_req, 0), (self.lpddr_req, 1)):
                m.d.comb += [req.valid.eq((cur.lpddr == which) & (left != 0)),
                             req.payload.op.eq(MemOp.READ),
                             req.payload.address.eq(cur.ext + requested),
                             req.payload.length.eq(chunk)]
            taken = Mux(cur.lpddr, self.lpddr_req.ready, self.hb_req.ready) & (left != 0)
            with m.If(taken):
                m.d.sync += requested.eq(requested + chunk)
                with m.If(chunk == left):
                    m.d.sync += requested.eq(0)
                    m.next = "Take command"

    def _load_words(self, m):
        """The words of the LOADs in flight, oldest first (responses come in request order on
        each port, and the loads in flight share one port): memory word ``part`` of WMEM word
        ``got`` of the oldest load goes straight into its slice (``ratio`` of them, the lowest
        bits first) through the write port's per-slice enables, so a load takes one cycle per
        memory word whatever the ratio, and no word is held back to be assembled. The load
        leaves the FIFO with its last word. The port's ``ready`` is driven only while a load is
        in flight (a WRITE_HB, which takes its answer itself, waits for none)."""
        p = self.params
        hr, lr = p.hb_ratio, p.lpddr_ratio
        loads = self.loads
        oldest = Signal(_load_layout(p))
        m.d.comb += oldest.eq(loads.r_data)
        ratio = Signal(range(max(hr, lr) + 1))
        m.d.comb += ratio.eq(Mux(oldest.lpddr, lr, hr))
        got = Signal(16)                         # WMEM words of the oldest load written
        part = Signal(range(max(hr, lr)))        # memory word of WMEM word ``got`` next to arrive
        with m.If(loads.r_rdy):
            m.d.comb += [self.hb_resp.ready.eq(~oldest.lpddr),
                         self.lpddr_resp.ready.eq(oldest.lpddr)]
        valid = loads.r_rdy & Mux(oldest.lpddr, self.lpddr_resp.valid, self.hb_resp.valid)
        # each memory word is offered to every slice; the enables pick its own
        g = self._wmem_granularity
        hb_word, lp_word = self.hb_resp.payload.data, self.lpddr_resp.payload.data
        hb_en = Cat((part == s).replicate(p.hb.data_width // g) for s in range(hr))
        lp_en = Cat((part == s).replicate(p.lpddr.data_width // g) for s in range(lr))
        m.d.comb += [self.w_wr.addr.eq(oldest.wmem + got),
                     self.w_wr.data.eq(Mux(oldest.lpddr, lp_word.replicate(lr),
                                           hb_word.replicate(hr))),
                     self.w_wr.en.eq(Mux(valid, Mux(oldest.lpddr, lp_en, hb_en), 0))]
        with m.If(valid):
            m.d.sync += part.eq(part + 1)
            with m.If(part == ratio - 1):
                m.d.sync += [part.eq(0), got.eq(got + 1)]
                with m.If(got + 1 == oldest.count):
                    m.d.sync += got.eq(0)
                    m.d.comb += loads.r_en.eq(1)

    # -- WRITE_HB: WMEM words to HB -----------------------------------------------------------------
    def _write_hb(self, m):
        """Each WMEM word read once and sent as ``hb_ratio`` HB words (``part``), the lowest bits
        first, in requests of at most ``max_length`` HB words (``base``: HB words of the requests
        acknowledged); a request may end inside a WMEM word, the next one goes on from there."""
        p = self.params
        cur, i = self.cur, self.i
        r = p.hb_ratio
        total = self._memory_words(m, r)
        base = Signal.like(total)
        left = Signal.like(total)
        m.d.comb += left.eq(total - base)
        chunk = self._chunk(m, left)
        sent = Signal.like(chunk)            # data beats of the current request sent
        length = Signal.like(chunk)
        part = Signal(range(r))              # HB word of WMEM word i sent next
        with m.State("Write fetch"):
            m.d.comb += [self.w_rd.addr.eq(cur.wmem + i), self.w_rd.en.eq(1)]
            m.next = "Write send"
        with m.State("Write send"):
            m.d.comb += [self.w_rd.en.eq(0), self.hb_req.valid.eq(1),
                         self.hb_req.payload.op.eq(MemOp.WRITE),
                         self.hb_req.payload.address.eq(cur.ext + base),
                         self.hb_req.payload.length.eq(Mux(sent == 0, chunk, length)),
                         self.hb_req.payload.data.eq(
                             self.w_rd.data.word_select(part, p.hb.data_width))]
            with m.If(self.hb_req.ready):
                m.d.sync += [part.eq(part + 1), sent.eq(sent + 1)]
                with m.If(sent == 0):
                    m.d.sync += length.eq(chunk)
                last = Mux(sent == 0, chunk, length) == sent + 1
                with m.If(part == r - 1):
                    m.d.sync += [part.eq(0), i.eq(i + 1)]
                    m.next = "Write fetch"
                with m.If(last):
                    m.next = "Write ack"
        with m.State("Write ack"):
            m.d.comb += self.hb_resp.ready.eq(1)
            with m.If(self.hb_resp.valid):
                m.d.sync += [sent.eq(0), base.eq(base + length)]
                m.next = "Write fetch"
                with m.If(base + length == total):
                    m.d.sync += base.eq(0)
                    m.next = "Take command"

    # -- LOAD_ACT: IMEM words into AMEM -------------------------------------------------------------
    def _load_act(self, m):
        cur, i = self.cur, self.i
        with m.State("Act fetch"):
            m.d.comb += [self.imem_addr.eq(cur.imem + i), self.imem_en.eq(1)]
            m.next = "Act store"
        with m.State("Act store"):
            m.d.comb += [self.a_wr.addr.eq(cur.amem + i), self.a_wr.data.eq(self.imem_data),
                         self.a_wr.en.eq(1)]
            m.d.sync += i.eq(i + 1)
            m.next = "Act fetch"
            with m.If(i + 1 == cur.count):
                m.next = "Take command"

    # -- MAC and MAC_DQ: operations on the array ---------------------------------------------------
    def _mac(self, m):
        """One beat per cycle: the memories are read for beat ``j`` of operation (group ``i``, half
        ``h``: the LSB operation of a split group) while the beat read the cycle before goes to the
        array. The array never stalls a beat: its results are always taken, so its pipeline
        always advances. The record of an operation (what its result is for) is pushed with its
        last beat; the scale word and the token scales are read beside the beats (second read
        ports of WMEM and AMEM)."""
        p = self.params
        cur, i, j = self.cur, self.i, self.j
        B, W, k = p.mac.beats_per_group, p.weight_words, p.scale_slots
        mac = self.mac
        h = Signal()
        s_valid = self.s_valid
        s_mode = Signal(MacMode)
        s_load, s_last_beat = Signal(), Signal()
        s_slot = Signal(range(k))
        s_desc = Signal(_desc_layout(p))
        s_tag = Signal(p.mac.tag_width)
        reading = Signal()
        dq = cur.op == PeOp.MAC_DQ
        split = dq & cur.split
        m.d.comb += reading.eq(i != cur.count)
        load_act = ~h & (~cur.reuse | (i == 0))
        last_op = (i + 1 == cur.count) & (~split | h)
        group = cur.scales + i

        # the beat read last cycle, to the array; its operation's record with its last beat
        m.d.comb += [
            mac.op.valid.eq(s_valid), mac.op.payload.mode.eq(s_mode),
            mac.op.payload.load_act.eq(s_load), mac.op.payload.tag.eq(s_tag),
            mac.weights.valid.eq(s_valid), mac.weights.payload.eq(self.w_rd.data),
            mac.act.valid.eq(s_valid & s_load), mac.act.payload.eq(self.a_rd.data),
            self.desc_in.eq(s_desc),
            self.desc_push.eq(s_valid & s_last_beat),
        ]
        scale_words = self.s_rd.data
        ts_word = self.t_rd.data
        slots = Array(scale_words[n * 16 * p.mac.result_channels:
                                  (n + 1) * 16 * p.mac.result_channels] for n in range(k))
        m.d.comb += [self.desc_in.scales.eq(slots[s_slot]),
                     self.desc_in.ts.eq(ts_word[:32 * p.mac.tokens])]
        m.d.sync += s_valid.eq(0)
        with m.State("Mac stream"):
            m.d.comb += [
                self.w_rd.addr.eq(cur.wmem + Mux(h, W // 2, 0) + i * B + j),
                self.w_rd.en.eq(reading),
                self.a_rd.addr.eq(cur.amem + Mux(cur.reuse, 0, i * B) + j),
                self.a_rd.en.eq(reading & load_act),
                self.s_rd.addr.eq(group >> (k.bit_length() - 1)),
                self.t_rd.addr.eq(cur.tscale),
            ]
            m.d.sync += [
                s_valid.eq(reading),
                s_mode.eq(Mux(split, Mux(h, MacMode.LSB, MacMode.MSB), cur.mode)),
                s_load.eq(load_act), s_last_beat.eq(j == B - 1), s_tag.eq(i),
                s_slot.eq(group & (k - 1)),
                s_desc.kind.eq(Mux(dq, Mux(split, Mux(h, _Desc.ADD, _Desc.HOLD), _Desc.SCALE),
                                   _Desc.PLAIN)),
                s_desc.first.eq(dq & cur.first & (i == 0)),
                s_desc.last.eq(dq & cur.last & last_op),
                s_desc.bank.eq(cur.acc),
                s_desc.addr.eq(Mux(dq, cur.omem, cur.omem + i)),
            ]
            with m.If(j == B - 1):
                m.d.sync += j.eq(0)
                with m.If(split & ~h):
                    m.d.sync += h.eq(1)
                with m.Else():
                    m.d.sync += [h.eq(0), i.eq(i + 1)]
            with m.Else():
                m.d.sync += j.eq(j + 1)
            # the next command is taken while this one's last beat goes to the array
            with m.If(last_op & (j == B - 1)):
                m.next = "Take command"

    # -- COMBINE: element-wise sums of OMEM words ---------------------------------------------------
    def _combine(self, m):
        p = self.params
        cur, i = self.cur, self.i
        sums = data.ArrayLayout(data.ArrayLayout(signed(p.mac.result_width),
                                                 p.mac.result_channels), p.mac.tokens)
        a, b, total = Signal(sums), Signal(sums), Signal(sums)
        m.d.comb += [a.eq(self.o_rd_a.data), b.eq(self.o_rd_b.data)]
        for t in range(p.mac.tokens):
            for s in range(p.mac.result_channels):
                m.d.comb += total[t][s].eq(a[t][s] + b[t][s])
        with m.State("Combine fetch"):
            m.d.comb += [self.o_rd_a.addr.eq(cur.a + i), self.o_rd_b.addr.eq(cur.b + i)]
            m.next = "Combine store"
        with m.State("Combine store"):
            m.d.comb += [self.o_rd_a.en.eq(0), self.o_rd_b.en.eq(0),
                         self.o_wr.addr.eq(cur.omem + i), self.o_wr.data.eq(total),
                         self.o_wr.en.eq(1)]
            m.d.sync += i.eq(i + 1)
            m.next = "Combine fetch"
            with m.If(i + 1 == cur.count):
                m.next = "Take command"
