"""The assembled accelerator: command processor, PEs, expert-cache controller, HB interface, LPDDR
port and input memory, connected; nothing else lives here.

Ports: ``start``, ``length``, ``status``, ``cycles``, ``phase_cycles`` as on
:class:`hw.command_processor.CommandProcessor`; ``hb_die[p]`` the die link of PE ``p``'s HB
channel and ``lpddr_die`` that of the LPDDR port (in simulation :class:`sim.dram_model.DramDie`
models sit there). Memories for the host: ``processor.cmem`` (commands), ``imem.imem`` (inputs),
``pe<p>.wmem/amem/omem``.

The RTL moves one memory word per weight word: it needs ``hb_ratio == lpddr_ratio == 1`` (the ISA
and the golden executor handle any ratio).
"""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from .command_processor import CommandProcessor, status_layout
from .component_args import expect_params
from .expert_cache import ExpertCache
from .hb_interface import HbInterface
from .input_memory import InputMemory
from .isa import PHASES
from .lpddr_port import LpddrPort
from .mem_channel import die_signature
from .params import TopParams, unsigned_width
from .pe import ProcessingElement

__all__ = ["Top"]


class Top(wiring.Component):
    """The accelerator for ``params`` (a :class:`hw.params.TopParams`); see the module docstring."""

    def __init__(self, params=None):
        self.params = expect_params(self, params, TopParams)
        p = self.params
        if p.hb_ratio != 1 or p.lpddr_ratio != 1:
            self._MustUse__silence = True
            raise ValueError(f"the RTL needs a weight beat ({p.mac.weight_beat_bits} bits) equal "
                             f"to an HB word ({p.hb.data_width}) and an LPDDR word "
                             f"({p.lpddr.data_width})")
        super().__init__({
            "start": In(1),
            "length": In(unsigned_width(p.command_words)),
            "status": Out(status_layout(p)),
            "cycles": Out(32),
            "phase_cycles": Out(data.ArrayLayout(32, PHASES)),
            "hb_die": Out(die_signature(p.hb).flip()).array(p.pes),
            "lpddr_die": Out(die_signature(p.lpddr).flip()),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.processor = cp = CommandProcessor(p)
        m.submodules.cache = cache = ExpertCache(p.cache)
        m.submodules.hb = hb = HbInterface(p.hb)
        m.submodules.lpddr = lpddr = LpddrPort(p.lpddr)
        m.submodules.imem = imem = InputMemory(p)
        m.d.comb += [cp.start.eq(self.start), cp.length.eq(self.length),
                     self.status.eq(cp.status), self.cycles.eq(cp.cycles),
                     self.phase_cycles.eq(cp.phase_cycles)]
        connect(m, cp.cache_req, cache.req)
        connect(m, cache.resp, cp.cache_resp)
        connect(m, lpddr.die, flipped(self.lpddr_die))
        for k in range(p.pes):
            m.submodules[f"pe{k}"] = pe = ProcessingElement(p)
            connect(m, cp.pe_cmd[k], pe.cmd)
            m.d.comb += cp.pe_idle[k].eq(pe.idle)
            connect(m, pe.hb_req, hb.req[k])
            connect(m, hb.resp[k], pe.hb_resp)
            connect(m, hb.die[k], flipped(self.hb_die[k]))
            connect(m, pe.lpddr_req, lpddr.req[k])
            connect(m, lpddr.resp[k], pe.lpddr_resp)
            m.d.comb += [imem.addr[k].eq(pe.imem_addr), imem.en[k].eq(pe.imem_en),
                         pe.imem_data.eq(imem.data[k])]
        return m
