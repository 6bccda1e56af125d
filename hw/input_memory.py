"""The shared input memory: host-written INT8 activations, read by every PE's LOAD_ACT.

``lib.memory`` array ``imem`` (the host writes it; in simulation through the back door) with one
synchronous read port per PE: ``addr[p]`` and ``en[p]`` (in), ``data[p]`` (out, one cycle later,
held while ``en`` is low).
"""

from amaranth import *
from amaranth.lib import memory
from amaranth.lib.wiring import In, Out

from hw.component_args import ParamsComponent
from hw.params import TopParams, unsigned_width

__all__ = ["InputMemory"]


class InputMemory(ParamsComponent):
    """The input memory of ``params`` (a :class:`hw.params.TopParams`, :data:`hw.params.TOP_DEFAULT`
    when omitted); see the module docstring."""

    PARAMS = TopParams

    def members(self, p):
        return {
            "addr": In(unsigned_width(p.input_words - 1)).array(p.pes),
            "en": In(1).array(p.pes),
            "data": Out(p.mac.act_beat_bits).array(p.pes),
        }

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.imem = imem = memory.Memory(shape=p.mac.act_beat_bits, depth=p.input_words,
                                                 init=[])
        for k in range(p.pes):
            port = imem.read_port()
            m.d.comb += [port.addr.eq(self.addr[k]), port.en.eq(self.en[k]),
                         self.data[k].eq(port.data)]
        return m
