"""``lib.stream`` drivers for cocotb, bound to a DUT by port-name prefix.

Amaranth flattens a stream port ``p`` into ``p__valid``, ``p__ready`` and ``p__payload``. A handshake
happens at a rising edge when ``valid`` and ``ready`` are both high just before it; the drivers
decide that in the ``ReadOnly`` phase of the cycle, after everything has settled, so a ``ready`` that
depends combinationally on ``valid`` is handled correctly.

Payloads are plain ints here; pack and unpack them with the hardware's layouts
(``layout.const(...).as_bits()`` / ``layout.from_bits(...)``).
"""

import logging
import os
import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, ReadOnly

__all__ = ["StreamSource", "StreamSink", "reset", "clock_and_reset", "seed_from_env",
           "CLOCK_PERIOD_NS", "SEED_ENV"]

#: The environment variable that carries a bench's seed.
SEED_ENV = "ELMOE_SEED"


#: The benches' clock: cycle counts are what they measure, so the period only sets the time axis.
CLOCK_PERIOD_NS = 10


def seed_from_env(default=1):
    """The bench's seed: ``ELMOE_SEED`` if set, else ``default``; always logged."""
    seed = int(os.environ.get(SEED_ENV, default))
    logging.getLogger("cocotb").info("%s=%d (set it in the environment to replay)", SEED_ENV, seed)
    return seed


async def clock_and_reset(dut):
    """Start the clock on ``clk`` and hold ``rst`` for two cycles; returns out of reset."""
    cocotb.start_soon(Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start())
    await reset(dut)


async def reset(dut, cycles=2):
    """Hold the synchronous reset ``rst`` for ``cycles`` rising edges."""
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


class _Port:
    def __init__(self, dut, prefix, rng=None):
        try:
            self.valid = getattr(dut, f"{prefix}__valid")
            self.ready = getattr(dut, f"{prefix}__ready")
            self.payload = getattr(dut, f"{prefix}__payload")
        except AttributeError:
            raise ValueError(f"the DUT has no stream port named {prefix!r}") from None
        self.prefix = prefix
        self.clock = dut.clk
        self.rng = rng or random.Random(0)
        self.cycle = 0                # cycles seen since the driver started
        self.handshake_cycles = []    # the cycle of every handshake, for throughput measurements

    def _start(self):
        cocotb.start_soon(self._run())

    @property
    def last_cycle(self):
        """The cycle of the latest handshake."""
        return self.handshake_cycles[-1]

    def first_cycle_after(self, cycle):
        """The cycle of the first handshake at or after ``cycle``."""
        return next(c for c in self.handshake_cycles if c >= cycle)


class StreamSource(_Port):
    """Drives a stream into the DUT; with probability ``idle`` it waits a cycle before offering
    the next beat (a beat once offered is held until accepted)."""

    def __init__(self, dut, prefix, rng=None, idle=0.0):
        super().__init__(dut, prefix, rng)
        self.idle = idle
        self.queue = deque()
        self._current = None
        self.valid.value = 0
        self._start()

    def send(self, payloads):
        self.queue.extend(int(p) for p in payloads)

    @property
    def empty(self):
        """Every queued beat has been accepted."""
        return not self.queue and self._current is None

    async def _run(self):
        while True:
            await RisingEdge(self.clock)
            if self._current is None and self.queue and not (
                    self.idle and self.rng.random() < self.idle):
                self._current = self.queue.popleft()
                self.payload.value = self._current
            self.valid.value = int(self._current is not None)
            await ReadOnly()
            if self._current is not None and int(self.ready.value):
                self._current = None
                self.handshake_cycles.append(self.cycle)
            self.cycle += 1


class StreamSink(_Port):
    """Takes beats out of the DUT; with probability ``stall`` it withholds ``ready`` for a cycle."""

    def __init__(self, dut, prefix, rng=None, stall=0.0):
        super().__init__(dut, prefix, rng)
        self.stall = stall
        self.received = deque()
        self.ready.value = 0
        self._start()

    async def _run(self):
        while True:
            await RisingEdge(self.clock)
            ready = not (self.stall and self.rng.random() < self.stall)
            self.ready.value = int(ready)
            await ReadOnly()
            if ready and int(self.valid.value):
                self.received.append(self.payload.value.to_unsigned())
                self.handshake_cycles.append(self.cycle)
            self.cycle += 1

    async def recv(self, count, timeout_cycles):
        """Wait until ``count`` beats have arrived (in total) or fail after ``timeout_cycles``."""
        start = self.cycle
        while len(self.received) < count:
            if self.cycle - start > timeout_cycles:
                raise AssertionError(
                    f"{self.prefix}: {len(self.received)} of {count} beats after "
                    f"{timeout_cycles} cycles")
            await RisingEdge(self.clock)
        return [self.received.popleft() for _ in range(count)]

