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

Verilog: :func:`hw.flows.verilog.top_verilog` writes the top hierarchically, one PE module and one
HB channel module instantiated per PE (``instances`` below), however many PEs the machine has.
"""

from amaranth import *
from amaranth.lib.wiring import Out, Signature, connect, flipped

from hw.command_processor import CommandProcessor, HostControlSignature
from hw.component_args import ParamsComponent
from hw.expert_cache import ExpertCache
from hw.hb_interface import HbInterface
from hw.hierarchy import instance_of
from hw.input_memory import InputMemory
from hw.lpddr_port import LpddrPort
from hw.mem_channel import channel_signature, die_signature
from hw.params import TopParams
from hw.pe import ProcessingElement, pe_command_layout

__all__ = ["Top"]


class Top(ParamsComponent):
    """The accelerator for ``params`` (a :class:`hw.params.TopParams`, :data:`hw.params.TOP_DEFAULT`
    when omitted); see the module docstring.

    ``instances``: None elaborates everything here (simulation, one design); else a dict of the
    signatures of the parts written once as their own Verilog modules (:data:`MODULES`): ``"pe"``,
    a :class:`hw.pe.ProcessingElement` of ``params``, and ``"hb_channel"``, a
    :class:`hw.mem_channel.MemoryChannel` of ``params.hb``; each PE and each HB channel is then an
    ``Instance`` of its module (:func:`hw.flows.verilog.top_verilog`), so a machine of 32 PEs
    converts one PE and one channel, not 32 of each."""

    PARAMS = TopParams
    #: The Verilog module names of the parts :attr:`instances` stands for.
    MODULES = {"pe": "top_pe", "hb_channel": "top_hb_channel"}

    @classmethod
    def check_arguments(cls, params=None, instances=None):
        p = super().check_arguments(params)
        if instances is not None:
            if not isinstance(instances, dict) or set(instances) != set(cls.MODULES):
                raise ValueError(f"instances must be a dict with the keys "
                                 f"{', '.join(cls.MODULES)}, not {instances!r}")
            pe = instances["pe"]
            members = getattr(pe, "members", {})
            command = members["cmd"].signature.members["payload"].shape if "cmd" in members \
                else None
            if not isinstance(pe, Signature) or command != pe_command_layout(p):
                raise ValueError(f"instances['pe'] must be the signature of a ProcessingElement "
                                 f"of these params, not {pe!r}")
            if instances["hb_channel"] != channel_signature(p.hb):
                raise ValueError(f"instances['hb_channel'] must be the signature of a "
                                 f"MemoryChannel of params.hb, not {instances['hb_channel']!r}")
        return p

    def __init__(self, params=None, instances=None):
        self.instances = instances
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
        m.submodules.hb = hb = HbInterface(p.hb, None if self.instances is None else
                                           (self.MODULES["hb_channel"],
                                            self.instances["hb_channel"]))
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
        """PE ``k``: elaborated here, or an instance of its module (:data:`MODULES`)."""
        if self.instances is None:
            m.submodules[f"pe{k}"] = pe = ProcessingElement(self.params)
        else:
            pe, m.submodules[f"pe{k}"] = instance_of(self.MODULES["pe"], self.instances["pe"],
                                                     f"pe{k}")
        return pe
