"""Streams played from and recorded into simulation memories, so a long run costs no Python per
clock cycle: the bench writes the stimulus to files, the simulator loads them (``$readmemh``),
runs free, and dumps what came out (``$writememh``) for one batch check.

* :class:`StreamPlayer` offers the beats of its memory on a ``lib.stream`` source, in order,
  ``count`` of them; before offering each beat it idles with probability about ``idle / 256``
  per cycle, decided by its own LFSR (a beat once offered is held until taken, as the stream
  rules require).
* :class:`StreamRecorder` takes beats from a stream into its memory in arrival order; it
  withholds ``ready`` with probability about ``stall / 256`` per cycle, from its own LFSR.
  ``received`` counts the beats.
* :class:`BatchBench` puts a player on each input stream of a design and a recorder on each
  output stream.

The memories are small Verilog modules (:data:`MEMORY_VERILOG`; ``load`` reads the file
``play_<name>.hex``, ``dump`` writes ``rec_<name>.hex``, both in the simulator's working
directory), so these components are for Verilator only. The LFSR seeds are elaboration-time
parameters; ``start``, ``count``, ``idle`` and ``stall`` are ports, so one build serves every run.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamPlayer", "StreamRecorder", "Lfsr", "BatchBench", "MEMORY_VERILOG"]

#: The players' and recorders' memories: an asynchronous read port loaded from a hex file, and a
#: write port dumped to one.
MEMORY_VERILOG = """
module elmoe_play_memory #(parameter WIDTH = 8, DEPTH = 2, ADDRESS_WIDTH = 1, FILE = "play.hex") (
  input clk,
  input load,
  input [ADDRESS_WIDTH-1:0] address,
  output [WIDTH-1:0] data
);
  reg [WIDTH-1:0] words [0:DEPTH-1];
  always @(posedge clk) if (load) $readmemh(FILE, words);
  assign data = words[address];
endmodule

module elmoe_record_memory #(parameter WIDTH = 8, DEPTH = 2, ADDRESS_WIDTH = 1,
                             FILE = "rec.hex") (
  input clk,
  input write,
  input [ADDRESS_WIDTH-1:0] address,
  input [WIDTH-1:0] write_data,
  input dump
);
  reg [WIDTH-1:0] words [0:DEPTH-1];
  always @(posedge clk) begin
    if (write) words[address] <= write_data;
    if (dump) $writememh(FILE, words);
  end
endmodule
"""


class Lfsr(wiring.Component):
    """A 32-bit Galois LFSR (taps 32, 22, 2, 1), one step per cycle; ``draw`` is 8 of its bits."""

    draw: Out(8)

    def __init__(self, seed):
        self.seed = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        state = Signal(32, init=self.seed)
        step = Mux(state[0], (state >> 1) ^ 0x80200003, state >> 1)
        m.d.sync += state.eq(step)
        m.d.comb += self.draw.eq(state[8:16])
        return m


class StreamPlayer(wiring.Component):
    """Beats of ``width`` bits from a memory of ``depth`` words (loaded from ``file`` on
    ``load``) played on ``out`` while ``start`` is high: ``count`` of them; ``sent`` counts the
    beats taken."""

    def __init__(self, width, depth, file, seed=1):
        self.width, self.depth, self.file, self.seed = width, depth, file, seed
        super().__init__({"out": Out(stream.Signature(width)), "start": In(1), "load": In(1),
                          "count": In(range(depth + 1)), "idle": In(8),
                          "sent": Out(range(depth + 1))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.lfsr = lfsr = Lfsr(self.seed)
        address = Signal(range(self.depth))
        m.d.comb += address.eq(self.sent)
        m.submodules.mem = Instance(
            "elmoe_play_memory", p_WIDTH=self.width, p_DEPTH=self.depth,
            p_ADDRESS_WIDTH=len(address), p_FILE=self.file, i_clk=ClockSignal(),
            i_load=self.load, i_address=address, o_data=self.out.payload)
        offering = Signal()
        have = Signal()
        m.d.comb += [have.eq(self.start & (self.sent < self.count)),
                     self.out.valid.eq(have & (offering | (lfsr.draw >= self.idle)))]
        with m.If(self.out.valid & self.out.ready):
            m.d.sync += [self.sent.eq(self.sent + 1), offering.eq(0)]
        with m.Elif(self.out.valid):
            m.d.sync += offering.eq(1)
        return m


class StreamRecorder(wiring.Component):
    """Records up to ``depth`` beats of ``width`` bits taken from ``inp`` while ``start`` is high
    (dumped to ``file`` on ``dump``); ``received`` counts them, beats beyond ``depth`` too."""

    def __init__(self, width, depth, file, seed=2):
        self.width, self.depth, self.file, self.seed = width, depth, file, seed
        super().__init__({"inp": In(stream.Signature(width)), "start": In(1), "stall": In(8),
                          "dump": In(1), "received": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.lfsr = lfsr = Lfsr(self.seed)
        m.d.comb += self.inp.ready.eq(self.start & (lfsr.draw >= self.stall))
        fire = self.inp.valid & self.inp.ready
        address = Signal(range(self.depth))
        m.d.comb += address.eq(self.received)
        m.submodules.mem = Instance(
            "elmoe_record_memory", p_WIDTH=self.width, p_DEPTH=self.depth,
            p_ADDRESS_WIDTH=len(address), p_FILE=self.file, i_clk=ClockSignal(),
            i_write=fire & (self.received < self.depth), i_address=address,
            i_write_data=self.inp.payload, i_dump=self.dump)
        with m.If(fire):
            m.d.sync += self.received.eq(self.received + 1)
        return m


class BatchBench(wiring.Component):
    """A design under test with a :class:`StreamPlayer` on each of its input streams and a
    :class:`StreamRecorder` on each of its output streams, for free-running benches.

    ``sources`` and ``sinks`` are ``[(name, stream port of dut, depth)]``; player ``name``
    reads ``play_<name>.hex``, recorder ``name`` writes ``rec_<name>.hex``. Ports: ``start``,
    ``load``, ``dump``, ``idle`` and ``stall`` (shared by every player / recorder),
    ``restart`` (players and recorders start over; the design keeps its state),
    ``count_<name>`` per source, ``received_<name>`` and ``last_<name>`` (the cycle of its latest
    beat) per sink, and ``cycle`` (cycles since reset). Each player and recorder has its own LFSR seed derived from ``seed``.
    """

    def __init__(self, dut, sources, sinks, seed=1):
        self.dut, self.sources, self.sinks = dut, list(sources), list(sinks)
        self.players = {name: StreamPlayer(len(port.payload.as_value()), depth,
                                           f"play_{name}.hex", seed=seed * 101 + 2 * i + 1)
                        for i, (name, port, depth) in enumerate(self.sources)}
        self.recorders = {name: StreamRecorder(len(port.payload.as_value()), depth,
                                               f"rec_{name}.hex", seed=seed * 103 + 2 * i + 2)
                          for i, (name, port, depth) in enumerate(self.sinks)}
        members = {"start": In(1), "load": In(1), "dump": In(1), "restart": In(1),
                   "idle": In(8), "stall": In(8), "cycle": Out(32)}
        for name, _, depth in self.sources:
            members[f"count_{name}"] = In(range(depth + 1))
        for name, _, _ in self.sinks:
            members[f"received_{name}"] = Out(32)
            members[f"last_{name}"] = Out(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        m.d.sync += self.cycle.eq(self.cycle + 1)
        for name, port, _ in self.sources:
            player = self.players[name]
            m.submodules[f"play_{name}"] = ResetInserter(self.restart)(player)
            m.d.comb += [player.start.eq(self.start), player.idle.eq(self.idle),
                         player.load.eq(self.load),
                         player.count.eq(getattr(self, f"count_{name}")),
                         port.valid.eq(player.out.valid), port.payload.eq(player.out.payload),
                         player.out.ready.eq(port.ready)]
        for name, port, _ in self.sinks:
            recorder = self.recorders[name]
            m.submodules[f"rec_{name}"] = ResetInserter(self.restart)(recorder)
            m.d.comb += [recorder.start.eq(self.start), recorder.stall.eq(self.stall),
                         recorder.dump.eq(self.dump),
                         recorder.inp.valid.eq(port.valid), recorder.inp.payload.eq(port.payload),
                         port.ready.eq(recorder.inp.ready),
                         getattr(self, f"received_{name}").eq(recorder.received)]
            with m.If(port.valid & port.ready):
                m.d.sync += getattr(self, f"last_{name}").eq(self.cycle)
        return m
