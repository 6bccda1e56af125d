"""A synthesisable stand-in for a DRAM die on an FPGA: block RAM behind a memory channel's die link.

The DRAM-die models of ``sim/dram_model.py`` are for simulation (bank timing, megabytes of storage);
on an FPGA the self-test design needs a small memory that synthesises to block RAM. :class:`BramDie`
serves the die link of :func:`hw.mem_channel.die_signature` from an ``amaranth.lib.memory.Memory``
of ``port.words`` words, preloadable with ``init``: a column command of ``length`` words is served
one word per cycle (read data one cycle after its address, ``rdata.ready`` is high by the channel's
contract), the next command is taken the cycle after the last word. No DRAM timing: correctness of
the logic die does not depend on it, only its speed.
"""

from amaranth import *
from amaranth.lib import memory

from hw.component_args import CheckedComponent, expect_params
from hw.mem_channel import die_signature, die_cmd_layout
from hw.params import HB_DEFAULT, MemOp, MemPortParams

__all__ = ["BramDie"]


class BramDie(CheckedComponent):
    """Block-RAM die for ``port`` (a :class:`hw.params.MemPortParams`; a channel of
    :data:`hw.params.HB_DEFAULT` when omitted), initial contents ``init`` (at most ``port.words``
    words; the rest are zero). ``storage`` is the memory."""

    @classmethod
    def check_arguments(cls, port=None, init=()):
        """``(port, init as a list)``."""
        port = expect_params(port, MemPortParams, "port", default=HB_DEFAULT)
        if len(init) > port.words:
            raise ValueError(f"init holds {len(init)} words, more than the die's {port.words}")
        return port, list(init)

    def __init__(self, port=None, init=()):
        port, init = self.check_arguments(port, init)
        self.port = port
        self.storage = memory.Memory(shape=port.data_width, depth=port.words, init=init)
        super().__init__(die_signature(port))

    def elaborate(self, platform):
        p = self.port
        m = Module()
        m.submodules.storage = self.storage
        rd = self.storage.read_port()
        wr = self.storage.write_port()
        cmd = Signal(die_cmd_layout(p))
        left = Signal(range(p.die_burst + 1))     # words of the current command still to move
        is_write = cmd.op == MemOp.WRITE
        m.d.comb += self.cmd.ready.eq(left == 0)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [cmd.eq(self.cmd.payload), left.eq(self.cmd.payload.length)]

        step = Signal()
        m.d.comb += [
            self.wdata.ready.eq((left != 0) & is_write),
            step.eq((left != 0) & (~is_write | self.wdata.valid)),
            wr.addr.eq(cmd.address), wr.data.eq(self.wdata.payload),
            wr.en.eq(step & is_write),
            rd.addr.eq(cmd.address), rd.en.eq(step & ~is_write),
            self.rdata.payload.eq(rd.data),
        ]
        m.d.sync += self.rdata.valid.eq(step & ~is_write)
        with m.If(step):
            m.d.sync += [cmd.address.eq(cmd.address + 1), left.eq(left - 1)]
        return m
