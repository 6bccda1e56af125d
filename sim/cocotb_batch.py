"""cocotb side of :class:`sim.stream_memories.BatchBench`: write the stimulus files, let the
simulator load them and run free until every recorder holds its beats, read the dumps back.

Python touches the design only around a run and once every ``poll`` cycles (the
``received_<name>`` counters), so a run costs what Verilator costs. It waits with one ``Timer``
per poll: cocotb's ``ClockCycles`` would wake Python at every edge.
"""

import os
from pathlib import Path

from cocotb.triggers import ReadOnly, RisingEdge, Timer

from sim.cocotb_streams import CLOCK_PERIOD_NS
from sim.cocotb_streams import reset as reset_design

__all__ = ["BatchDriver", "hex_lines"]


def hex_lines(words, width):
    """The ``$readmemh`` text of ``words`` (ints of ``width`` bits)."""
    return "".join(format(w, "x") + "\n" for w in words)


def _read_dump(path, count):
    words = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("//", "@")):
                continue
            words.append(int(line, 16))
            if len(words) == count:
                break
    return words


class BatchDriver:
    """Drives a Verilated :class:`sim.stream_memories.BatchBench` ``dut`` (its clock already
    running); ``widths`` maps each source and sink name to its payload width in bits."""

    def __init__(self, dut, sources, sinks, widths, directory=None):
        self.dut, self.sources, self.sinks = dut, list(sources), list(sinks)
        self.widths = widths
        self.directory = Path(directory or os.getcwd())
        self.cycles = 0            # simulated cycles of every run so far

    async def run(self, beats, expected, idle=0, stall=0, max_cycles=1_000_000, poll=4096,
                  quiet=32, reset=True):
        """Reset the bench (unless ``reset`` is False: the design keeps its state; the players
        and recorders restart either way), load ``beats`` (``{source: [int, ...] or $readmemh text}``), play them with idle and
        stall thresholds (out of 256), wait until recorder ``name`` holds ``expected[name]``
        beats, check that no more come for ``quiet`` cycles, and return ``{sink: [payload]}``."""
        dut = self.dut
        dut.start.value = 0
        for name in self.sources:
            words = beats.get(name, [])
            text = words if isinstance(words, str) else hex_lines(words, self.widths[name])
            (self.directory / f"play_{name}.hex").write_text(text or "0\n")
            getattr(dut, f"count_{name}").value = text.count("\n")
        dut.idle.value, dut.stall.value = idle, stall
        if reset:
            await reset_design(dut)
        else:
            dut.restart.value = 1
            await RisingEdge(dut.clk)
            dut.restart.value = 0
        dut.load.value = 1
        await RisingEdge(dut.clk)
        dut.load.value = 0
        await ReadOnly()
        first = int(dut.cycle.value)
        await RisingEdge(dut.clk)
        dut.start.value = 1
        waited = 0
        counters = [(n, getattr(dut, f"received_{n}")) for n in self.sinks]
        while not all(int(c.value) >= expected[n] for n, c in counters):
            if waited >= max_cycles:
                got = {n: int(c.value) for n, c in counters}
                raise AssertionError(f"after {waited} cycles received {got}, expected {expected}")
            step = min(poll, max(1, max_cycles - waited))
            await Timer(step * CLOCK_PERIOD_NS, "ns")
            await ReadOnly()
            waited += step
        await Timer(quiet * CLOCK_PERIOD_NS, "ns")
        await ReadOnly()
        for n, c in counters:
            assert int(c.value) == expected[n], f"{n}: {int(c.value)} beats, expected {expected[n]}"
        # the run's length: to the last beat recorded (polling overshoots it)
        self.cycles += max(int(getattr(dut, f"last_{n}").value) for n in self.sinks) - first + 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        dut.dump.value = 1
        await RisingEdge(dut.clk)
        dut.dump.value = 0
        await RisingEdge(dut.clk)
        return {n: _read_dump(self.directory / f"rec_{n}.hex", expected[n]) for n in self.sinks}
