"""Simulation-only DRAM-die models, and the wrappers that put them behind the logic-die ports.

:class:`DramDie` is the one timing model of a DRAM channel (banks, open rows, activate, column
access, precharge, per-bank refresh) for both memories: :class:`hw.params.HbBankTiming` gives an HB
bank, :class:`hw.params.Lpddr5Timing` the LPDDR5 channel group. It is written once in Amaranth, so the
same model runs in Amaranth's simulator and, converted with the design, in Verilator.

How it works. Column-access commands (``cmd``, at most ``die_burst`` words within one row) wait in a
queue of ``queue_depth`` entries and are served strictly in order, one word per cycle, from the open
row of their bank. A row scheduler looks at the whole queue and, one row command per cycle, opens
(ACT) or closes (PRE) the row that the oldest command for each bank needs, so activates overlap the
transfers of other banks (open-page policy). Every bank has its own timers: a column access needs
``t_rcd`` after ACT, ACT needs ``t_rp`` after PRE, PRE needs ``t_ras`` after ACT and ``t_wr`` after
the last write; activates are ``t_rrd`` apart; reads and writes are ``t_rtw`` apart when the
direction turns; read data leave ``t_cl`` cycles after their column access. Per-bank refresh: see
:class:`hw.params.DramTiming`.

Back door: the die's storage is an ``amaranth.lib.memory.Memory`` (``DramDie.storage``) in
Amaranth's simulator, so tests preload and inspect it with ``ctx.set(die.storage.data[i], v)`` /
``ctx.get(...)``. For Verilator (``verilog_storage=True``, what :func:`wrapper_verilog` builds) the
same two ports go to :data:`STORAGE_VERILOG`, a plain array module, because Amaranth spends tens of
seconds emitting the zero init of a megabyte memory bit by bit; cocotb reaches its array as
``dut.die<c>.storage.words[i]``. Only the array differs: every timing decision is the Amaranth code
below in both simulators (and the tests compare the two cycle for cycle).
"""

from amaranth import *
from amaranth.lib import memory
from amaranth.lib.wiring import connect, flipped

from hw.component_args import CheckedComponent, expect_params
from hw.hb_interface import HbInterface
from hw.lpddr_port import LpddrPort
from hw.mem_channel import (die_cmd_layout, die_signature, user_members)
from hw.params import (HB_DEFAULT, DramTiming, HbBankTiming, Lpddr5Timing, HbInterfaceParams,
                       LpddrPortParams, MemOp, MemPortParams, unsigned_width)

__all__ = ["DramDie", "HbSystem", "LpddrSystem", "STORAGE_VERILOG", "STORAGE_PUBLIC",
           "wrapper_verilog"]


class DramDie(CheckedComponent):
    """One DRAM channel behind a :class:`hw.mem_channel.MemoryChannel` (see module docstring):
    a channel of ``port`` (a :class:`hw.params.MemPortParams`, a channel of
    :data:`hw.params.HB_DEFAULT` when omitted) with ``timing`` (a :class:`hw.params.DramTiming`;
    when omitted, :class:`hw.params.Lpddr5Timing` for an LPDDR port, else
    :class:`hw.params.HbBankTiming`)."""

    @classmethod
    def check_arguments(cls, port=None, timing=None, verilog_storage=False):
        """``(port, timing)``."""
        port = expect_params(port, MemPortParams, "port", default=HB_DEFAULT)
        default = Lpddr5Timing() if isinstance(port, LpddrPortParams) else HbBankTiming()
        timing = expect_params(timing, DramTiming, "timing", default=default)
        timing.check_port(port)
        return port, timing

    def __init__(self, port=None, timing=None, verilog_storage=False):
        port, timing = self.check_arguments(port, timing)
        self.port, self.timing = port, timing
        self.verilog_storage = verilog_storage
        self.storage = None if verilog_storage else memory.Memory(
            shape=port.data_width, depth=port.words, init=[])
        super().__init__(die_signature(port))

    # -- address map: column (low), bank, row --------------------------------------------------
    def _bank_of(self, address):
        t = self.timing
        lo = t.row_words.bit_length() - 1
        return address[lo:lo + t.banks.bit_length() - 1] if t.banks > 1 else C(0, 1)

    def _row_of(self, address):
        t = self.timing
        lo = t.row_words.bit_length() - 1 + t.banks.bit_length() - 1
        return address[lo:] if lo < len(address) else C(0, 1)

    def elaborate(self, platform):
        p, t = self.port, self.timing
        m = Module()
        entry_shape = die_cmd_layout(p)
        row_width = len(self._row_of(Signal(unsigned_width(p.words - 1))))
        B, Q = t.banks, t.queue_depth
        # Every timer holds "cycles to wait after this one": a timing of N cycles set at the
        # command's cycle c reaches 0 at c + N, when the next command may go.

        # -- the command queue: entry 0 is the oldest (the one served by column accesses)
        count = Signal(range(Q + 1))
        queue = [Signal(entry_shape, name=f"queue{i}") for i in range(Q)]
        valid = [Signal(name=f"queue{i}_valid") for i in range(Q)]
        m.d.comb += [valid[i].eq(count > i) for i in range(Q)]

        # -- bank state
        is_open = [Signal(name=f"bank{b}_open") for b in range(B)]
        open_row = [Signal(row_width, name=f"bank{b}_row") for b in range(B)]
        busy = [Signal(range(max(t.t_rcd, t.t_rp, t.t_rfc_pb) + 1), name=f"bank{b}_busy")
                for b in range(B)]
        ras = [Signal(range(max(t.t_ras, t.t_wr) + 1), name=f"bank{b}_ras") for b in range(B)]
        for b in range(B):
            with m.If(busy[b] != 0):
                m.d.sync += busy[b].eq(busy[b] - 1)
            with m.If(ras[b] != 0):
                m.d.sync += ras[b].eq(ras[b] - 1)

        # the row each bank must open next: that of its oldest queued command
        want = [Signal(name=f"bank{b}_wanted") for b in range(B)]
        want_row = [Signal(row_width, name=f"bank{b}_want_row") for b in range(B)]
        for i in reversed(range(Q)):
            for b in range(B):
                with m.If(valid[i] & (self._bank_of(queue[i].address) == b)):
                    m.d.comb += [want[b].eq(1), want_row[b].eq(self._row_of(queue[i].address))]

        head = queue[0]
        head_bank = Signal(range(B) if B > 1 else 1)
        m.d.comb += head_bank.eq(self._bank_of(head.address))
        last_bank = Signal.like(head_bank)        # bank of the latest column access
        rrd = Signal(range(t.t_rrd + 1))
        with m.If(rrd != 0):
            m.d.sync += rrd.eq(rrd - 1)

        # -- refresh: who owes one, and which bank to take
        ref_valid, ref_forced, ref_bank, ref_done = self._refresh(m, want, last_bank)
        idle = [Signal(name=f"bank{b}_idle") for b in range(B)]
        can_pre = [Signal(name=f"bank{b}_can_pre") for b in range(B)]
        m.d.comb += [idle[b].eq(busy[b] == 0) for b in range(B)]
        m.d.comb += [can_pre[b].eq(is_open[b] & idle[b] & (ras[b] == 0)) for b in range(B)]

        # -- row commands for the queue: per bank, then the oldest entry's bank wins
        need = [Signal(name=f"bank{b}_needs_row_cmd") for b in range(B)]
        for b in range(B):
            blocked = ref_valid & ref_forced & (ref_bank == b)
            m.d.comb += need[b].eq(want[b] & (
                (can_pre[b] & (open_row[b] != want_row[b])) |
                (~is_open[b] & idle[b] & (rrd == 0) & ~blocked)))
        need_array = Array(need)
        row_cmd_valid = Signal()
        row_cmd_bank = Signal.like(head_bank)
        for i in reversed(range(Q)):
            bank_i = self._bank_of(queue[i].address)
            with m.If(valid[i] & need_array[bank_i]):
                m.d.comb += [row_cmd_valid.eq(1), row_cmd_bank.eq(bank_i)]

        ref_pre = Array(can_pre)[ref_bank]
        ref_ref = ~Array(is_open)[ref_bank] & Array(idle)[ref_bank]
        do_ref = Signal()        # the refresh engine takes the row command slot this cycle
        m.d.comb += do_ref.eq(ref_valid & (ref_pre | ref_ref) & (ref_forced | ~row_cmd_valid))
        pre_bank = Signal(B)     # one-hot: precharge issued this cycle
        for b in range(B):
            with m.If(do_ref & (ref_bank == b)):
                with m.If(ref_pre):
                    m.d.comb += pre_bank[b].eq(1)
                    m.d.sync += [is_open[b].eq(0), busy[b].eq(t.t_rp - 1)]
                with m.Else():
                    m.d.comb += ref_done.eq(1)
                    m.d.sync += busy[b].eq(t.t_rfc_pb - 1)
            with m.Elif(~do_ref & row_cmd_valid & (row_cmd_bank == b)):
                with m.If(is_open[b]):
                    m.d.comb += pre_bank[b].eq(1)
                    m.d.sync += [is_open[b].eq(0), busy[b].eq(t.t_rp - 1)]
                with m.Else():
                    m.d.sync += [is_open[b].eq(1), open_row[b].eq(want_row[b]),
                                 busy[b].eq(t.t_rcd - 1), ras[b].eq(t.t_ras - 1),
                                 rrd.eq(t.t_rrd - 1)]

        # -- column accesses: the oldest command, one word per cycle, from its open row
        last_op = Signal(MemOp)
        rtw = Signal(range(t.t_rtw + 1))
        with m.If(rtw != 0):
            m.d.sync += rtw.eq(rtw - 1)
        col = Signal()
        m.d.comb += col.eq(
            valid[0] & Array(is_open)[head_bank] & Array(idle)[head_bank] &
            (Array(open_row)[head_bank] == self._row_of(head.address)) &
            ~pre_bank.bit_select(head_bank, 1) &
            ((head.op == last_op) | (rtw == 0)) &
            ((head.op == MemOp.READ) | self.wdata.valid))
        col_read, col_write = Signal(), Signal()
        m.d.comb += [col_read.eq(col & (head.op == MemOp.READ)),
                     col_write.eq(col & (head.op == MemOp.WRITE))]
        with m.If(col):
            m.d.sync += [last_op.eq(head.op), rtw.eq(t.t_rtw - 1), last_bank.eq(head_bank)]
        for b in range(B):
            with m.If(col_write & (head_bank == b) & (ras[b] < t.t_wr - 1)):
                m.d.sync += ras[b].eq(t.t_wr - 1)

        read_data = self._storage(m, head.address, col_read, col_write)
        m.d.comb += self.wdata.ready.eq(col_write)
        self._read_latency(m, read_data, col_read)

        # -- queue bookkeeping: pop the head when its last word goes, push at the first free slot
        pop = Signal()
        push = Signal()
        m.d.comb += [pop.eq(col & (head.length == 1)), self.cmd.ready.eq(count != Q),
                     push.eq(self.cmd.valid & self.cmd.ready)]
        with m.If(col & ~pop):
            m.d.sync += [head.address.eq(head.address + 1), head.length.eq(head.length - 1)]
        for i in range(Q):
            with m.If(pop):
                m.d.sync += queue[i].eq(queue[i + 1] if i + 1 < Q else 0)
            with m.If(push & (count - pop == i)):
                m.d.sync += queue[i].eq(self.cmd.payload)
        m.d.sync += count.eq(count + push - pop)
        return m

    def _refresh(self, m, want, last_bank):
        """Per-bank refresh bookkeeping. Returns ``(valid, forced, bank, done)``: a refresh is owed
        and ``bank`` may take it (``forced`` once ``refresh_postpone`` are owed, when traffic must
        wait); the caller drives ``done`` when it issues the refresh."""
        t = self.timing
        B = t.banks
        interval = Signal(range(max(t.t_refi_pb, 2)), init=t.t_refi_pb - 1)
        owed = Signal(range(t.refresh_postpone + 2))
        round_done = Signal(B)      # banks refreshed in this round
        done = Signal()
        forced = Signal()
        tick = Signal()
        m.d.comb += [tick.eq(interval == 0), forced.eq(owed >= t.refresh_postpone)]
        m.d.sync += interval.eq(Mux(tick, t.t_refi_pb - 1, interval - 1))
        with m.If(tick & ~done & (owed <= t.refresh_postpone)):
            m.d.sync += owed.eq(owed + 1)
        with m.Elif(~tick & done):
            m.d.sync += owed.eq(owed - 1)

        # candidates: banks not refreshed this round and not needed by the queue (unless forced);
        # prefer the bank the traffic left most recently (in a sweep, the one needed last)
        candidates = Signal(B)
        m.d.comb += candidates.eq(Cat(~round_done[b] & (forced | ~want[b]) for b in range(B)))
        rotated = Signal(B)
        m.d.comb += rotated.eq(Cat(candidates, candidates) >> last_bank)
        pick = Signal(range(B) if B > 1 else 1)
        any_candidate = Signal()
        for j in range(B):      # highest j wins: bank last_bank - 1 first, last_bank itself last
            with m.If(rotated[j]):
                m.d.comb += [pick.eq(j), any_candidate.eq(1)]
        bank = Signal(range(B) if B > 1 else 1)
        m.d.comb += bank.eq(last_bank + pick)
        with m.If(done):
            marked = round_done | (1 << bank)
            m.d.sync += round_done.eq(Mux(marked == (1 << B) - 1, 0, marked))
        valid = Signal()
        m.d.comb += valid.eq((owed != 0) & any_candidate)
        return valid, forced, bank, done

    def _storage(self, m, address, read, write):
        """The array: a synchronous read port (data one cycle after ``read``, held otherwise) and
        a write port taking ``wdata``. Returns the read data."""
        p = self.port
        if not self.verilog_storage:
            m.submodules.storage = self.storage
            write_port = self.storage.write_port()
            read_port = self.storage.read_port()
            m.d.comb += [
                write_port.addr.eq(address), write_port.data.eq(self.wdata.payload),
                write_port.en.eq(write), read_port.addr.eq(address), read_port.en.eq(read),
            ]
            return read_port.data
        read_data = Signal(p.data_width)
        m.submodules.storage = Instance(
            "elmoe_dram_storage",
            p_WIDTH=p.data_width, p_DEPTH=p.words, p_ADDRESS_WIDTH=len(address),
            i_clk=ClockSignal(), i_address=address, i_read=read, i_write=write,
            i_write_data=self.wdata.payload, o_read_data=read_data)
        return read_data

    def _read_latency(self, m, read_data, col_read):
        """Read words leave ``t_cl`` cycles after their column access: one cycle in the storage's
        read port, the rest in a ring buffer written and read at the same slot."""
        p, t = self.port, self.timing
        stages = t.t_cl - 1
        read_valid = Signal()
        m.d.sync += read_valid.eq(col_read)
        m.submodules.read_delay = delay = memory.Memory(shape=p.data_width + 1, depth=stages,
                                                        init=[])
        slot = Signal(range(max(stages, 2)))
        m.d.sync += slot.eq(Mux(slot == stages - 1, 0, slot + 1))
        delay_in = delay.write_port()
        delay_out = delay.read_port(domain="comb")
        m.d.comb += [
            delay_in.addr.eq(slot), delay_in.en.eq(1),
            delay_in.data.eq(Cat(read_data, read_valid)),
            delay_out.addr.eq(slot),
            self.rdata.payload.eq(delay_out.data[:p.data_width]),
            self.rdata.valid.eq(delay_out.data[p.data_width]),
        ]


class HbSystem(CheckedComponent):
    """The HB interface with one :class:`DramDie` per channel: what the tests and the bench drive.
    Ports ``req[c]`` and ``resp[c]`` as on :class:`hw.hb_interface.HbInterface`; ``dies[c]`` is
    channel ``c``'s die (its ``storage`` is the back door). ``dies`` replaces the DRAM-die models
    with other memories on the same die port (one per channel), e.g. :class:`hw.bram_die.BramDie`.
    ``params`` and ``timing`` default to :data:`hw.params.HB_DEFAULT` and :class:`HbBankTiming`.
    """

    @classmethod
    def check_arguments(cls, params=None, timing=None, verilog_storage=False, dies=None):
        """``(params, timing)``."""
        params = expect_params(params, HbInterfaceParams)
        timing = expect_params(timing, DramTiming, "timing", default=HbBankTiming())
        if dies is None:
            DramDie.check_arguments(params, timing)
        elif len(dies) != params.channels:
            raise ValueError(f"HbSystem needs one die per channel ({params.channels}), "
                             f"not {len(dies)}")
        return params, timing

    def __init__(self, params=None, timing=None, verilog_storage=False, dies=None):
        self.params, self.timing = self.check_arguments(params, timing, verilog_storage, dies)
        self.interface = HbInterface(self.params)
        if dies is None:
            dies = [DramDie(self.params, self.timing, verilog_storage)
                    for _ in range(self.params.channels)]
        self.dies = list(dies)
        super().__init__(user_members(self.params, self.params.channels))

    def elaborate(self, platform):
        m = Module()
        m.submodules.interface = self.interface
        for c, die in enumerate(self.dies):
            m.submodules[f"die{c}"] = die
            connect(m, flipped(self.req[c]), self.interface.req[c])
            connect(m, self.interface.resp[c], flipped(self.resp[c]))
            connect(m, self.interface.die[c], die)
        return m


class LpddrSystem(CheckedComponent):
    """The LPDDR port with its :class:`DramDie` (``dies[0]``); ports as on
    :class:`hw.lpddr_port.LpddrPort` minus the die link. ``params`` and ``timing`` default to
    :data:`hw.params.LPDDR_DEFAULT` and :class:`Lpddr5Timing`."""

    @classmethod
    def check_arguments(cls, params=None, timing=None, verilog_storage=False):
        """``(params, timing)``."""
        params = expect_params(params, LpddrPortParams)
        return DramDie.check_arguments(params, timing)

    def __init__(self, params=None, timing=None, verilog_storage=False):
        self.params, self.timing = self.check_arguments(params, timing)
        self.port = LpddrPort(self.params)
        self.dies = [DramDie(self.params, self.timing, verilog_storage)]
        super().__init__(user_members(self.params, self.params.clients))

    def elaborate(self, platform):
        m = Module()
        m.submodules.port = self.port
        m.submodules.die0 = self.dies[0]
        for k in range(self.params.clients):
            connect(m, flipped(self.req[k]), self.port.req[k])
            connect(m, self.port.resp[k], flipped(self.resp[k]))
        connect(m, self.port.die, self.dies[0])
        return m


#: The die's array for Verilator: the ports of ``lib.memory``'s synchronous read port (with enable)
#: and write port, nothing else.
STORAGE_VERILOG = """
module elmoe_dram_storage #(parameter WIDTH = 8, DEPTH = 2, ADDRESS_WIDTH = 1) (
  input clk,
  input [ADDRESS_WIDTH-1:0] address,
  input read,
  input write,
  input [WIDTH-1:0] write_data,
  output reg [WIDTH-1:0] read_data
);
  reg [WIDTH-1:0] words [0:DEPTH-1];
  always @(posedge clk) begin
    if (write) words[address] <= write_data;
    if (read) read_data <= words[address];
  end
endmodule
"""


#: The die arrays a bench's back door reaches (:func:`sim.runner.build`'s ``public``).
STORAGE_PUBLIC = (("elmoe_dram_storage", "words"),)


def wrapper_verilog(system_class, params, timing, top):
    """Verilog of ``system_class`` (:class:`HbSystem` or :class:`LpddrSystem`) for Verilator: the
    dies' arrays are :data:`STORAGE_VERILOG` (see the module docstring)."""
    from hw.flows.verilog import generate_verilog
    system = system_class(params, timing, verilog_storage=True)
    return generate_verilog(system, top) + STORAGE_VERILOG
