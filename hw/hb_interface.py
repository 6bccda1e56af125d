"""The hybrid-bonding (HB) interface: the logic-die side of the HB DRAM, one channel per PE.

Each channel is a :class:`hw.mem_channel.MemoryChannel` (request checking, bursts, flow control,
several requests in flight, in-order responses); see that module for the stream contract. Ports,
indexed by channel ``c``: ``req[c]`` (in), ``resp[c]`` (out), and ``die[c]``, the link to that
channel's DRAM bank (in simulation a :class:`sim.dram_model.DramDie`).
"""

from amaranth import *
from amaranth.lib.wiring import Out, connect, flipped

from hw.mem_channel import MemoryChannel, die_signature, user_members
from hw.component_args import ParamsComponent
from hw.params import HbInterfaceParams

__all__ = ["HbInterface"]


class HbInterface(ParamsComponent):
    """``params.channels`` independent HB channels (``params``: :data:`hw.params.HB_DEFAULT` when
    omitted)."""

    PARAMS = HbInterfaceParams

    def members(self, params):
        return {**user_members(params, params.channels),
                "die": Out(die_signature(params).flip()).array(params.channels)}

    def elaborate(self, platform):
        m = Module()
        for c in range(self.params.channels):
            m.submodules[f"channel{c}"] = channel = MemoryChannel(self.params)
            connect(m, flipped(self.req[c]), channel.req)
            connect(m, channel.resp, flipped(self.resp[c]))
            connect(m, channel.die, flipped(self.die[c]))
        return m
