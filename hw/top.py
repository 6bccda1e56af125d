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
from amaranth.lib.wiring import In, Out, Signature, connect, flipped

from hw.command_processor import CommandProcessor, HostControlSignature
from hw.component_args import ParamsComponent
from hw.expert_cache import ExpertCache
from hw.hb_interface import HbInterface
from hw.input_memory import InputMemory
from hw.lpddr_port import LpddrPort
from hw.mem_channel import die_signature
from hw.params import TopParams
from hw.pe import ProcessingElement, pe_command_layout

__all__ = ["Top"]


class Top(ParamsComponent):
    """The accelerator for ``params`` (a :class:`hw.params.TopParams`, :data:`hw.params.TOP_DEFAULT`
    when omitted); see the module docstring.

    ``pe_signature``: None elaborates every PE here (simulation, one design); else the signature
    of a :class:`hw.pe.ProcessingElement` for ``params`` whose Verilog is written once as module
    :data:`PE_MODULE`, and every PE is an ``Instance`` of that module (:func:`hw.flows.verilog.
    top_verilog`): a machine of 32 PEs converts one PE, not 32."""

    PARAMS = TopParams
    #: The Verilog module name of the PE that :attr:`pe_signature` stands for.
    PE_MODULE = "top_pe"

    @classmethod
    def check_arguments(cls, params=None, pe_signature=None):
        p = super().check_arguments(params)
        if pe_signature is not None:
            members = getattr(pe_signature, "members", {})
            command = members["cmd"].signature.members["payload"].shape if "cmd" in members \
                else None
            if not isinstance(pe_signature, Signature) or command != pe_command_layout(p):
                raise ValueError(f"pe_signature must be the signature of a ProcessingElement of "
                                 f"these params, not {pe_signature!r}")
        return p

    def __init__(self, params=None, pe_signature=None):
        self.pe_signature = pe_signature
        super().__init__(params)

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
            pe = self._pe(m, k)
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

    def _pe(self, m, k):
        """PE ``k``: elaborated here, or an instance of :data:`PE_MODULE` (its ports named as
        Amaranth names a component's: the member path joined by ``__``)."""
        if self.pe_signature is None:
            m.submodules[f"pe{k}"] = pe = ProcessingElement(self.params)
            return pe
        pe = self.pe_signature.create(path=(f"pe{k}",))
        ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
        for path, member, value in self.pe_signature.flatten(pe):
            ports[("i_" if member.flow == In else "o_") + "__".join(map(str, path))] = value
        m.submodules[f"pe{k}"] = Instance(self.PE_MODULE, **ports)
        return pe
