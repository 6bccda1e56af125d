"""The assembled accelerator: command processor, PEs, expert-cache controller, HB interface, LPDDR
port and input memory, connected; nothing else lives here.

Ports: ``host``, the host's control port
(:class:`hw.command_processor.HostControlSignature`: ``start``, ``length``, ``status``,
``cycles``, ``phase_cycles``), the command processor's; ``hb_die[p]`` the die link of PE ``p``'s HB
channel and ``lpddr_die`` that of the LPDDR port (in simulation :class:`sim.dram_model.DramDie`
models sit there). Memories for the host: ``processor.cmem`` (commands), ``imem.imem`` (inputs),
``pe<p>.wmem/amem/omem``.

Every output field has the value its owner's contract states: ``host`` is the command
processor's (:mod:`hw.command_processor` lists each status field and counter in every case), the
die links are the memory channels' (:mod:`hw.mem_channel`).

A weight word may be several memory words (``hb_ratio``, ``lpddr_ratio``, any whole numbers): each
PE assembles them into WMEM words as they arrive and splits WMEM words for HB
(:mod:`hw.pe`).
"""

from amaranth import *
from amaranth.lib.wiring import Out, connect, flipped

from hw.command_processor import CommandProcessor, HostControlSignature
from hw.component_args import ParamsComponent
from hw.expert_cache import ExpertCache
from hw.hb_interface import HbInterface
from hw.input_memory import InputMemory
from hw.lpddr_port import LpddrPort
from hw.mem_channel import die_signature
from hw.params import TopParams
from hw.pe import ProcessingElement

__all__ = ["Top"]


class Top(ParamsComponent):
    """The accelerator for ``params`` (a :class:`hw.params.TopParams`, :data:`hw.params.TOP_DEFAULT`
    when omitted); see the module docstring."""

    PARAMS = TopParams

    def members(self, p):
        return {
            "host": Out(HostControlSignature(p)),
            "hb_die": Out(die_signature(p.hb).flip()).array(p.pes),
            "lpddr_die": Out(die_signature(p.lpddr).flip()),
        }

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.processor = cp = CommandProcessor(p)
        m.submodules.cache = cache = ExpertCache(p.cache)
        m.submodules.hb = hb = HbInterface(p.hb)
        m.submodules.lpddr = lpddr = LpddrPort(p.lpddr)
        m.submodules.imem = imem = InputMemory(p)
        connect(m, flipped(self.host), cp.host)
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
