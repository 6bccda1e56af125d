"""The hybrid-bonding (HB) interface: the logic-die side of the HB DRAM, one channel per PE.

Each channel is a :class:`hw.mem_channel.MemoryChannel` (request checking, bursts, flow control,
several requests in flight, in-order responses); see that module for the stream contract. Ports,
indexed by channel ``c``: ``req[c]`` (in), ``resp[c]`` (out), and ``die[c]``, the link to that
channel's DRAM bank (in simulation a :class:`sim.dram_model.DramDie`).
"""

from amaranth import *
from amaranth.lib.wiring import Out, connect, flipped

from hw.hierarchy import instance_of
from hw.mem_channel import MemoryChannel, channel_signature, die_signature, user_members
from hw.component_args import ParamsComponent
from hw.params import HbInterfaceParams

__all__ = ["HbInterface"]


class HbInterface(ParamsComponent):
    """``params.channels`` independent HB channels (``params``: :data:`hw.params.HB_DEFAULT` when
    omitted). ``channel_module``: None elaborates every channel here; else ``(name, signature)``
    of a :class:`hw.mem_channel.MemoryChannel` of ``params`` written once as the Verilog module
    ``name``, and every channel is an instance of it (:mod:`hw.hierarchy`)."""

    PARAMS = HbInterfaceParams

    @classmethod
    def check_arguments(cls, params=None, channel_module=None):
        p = super().check_arguments(params)
        if channel_module is not None and not (
                isinstance(channel_module, tuple) and len(channel_module) == 2
                and isinstance(channel_module[0], str)
                and channel_module[1] == channel_signature(p)):
            raise ValueError(f"channel_module must be (module name, the signature of a "
                             f"MemoryChannel of params), not {channel_module!r}")
        return p

    def __init__(self, params=None, channel_module=None):
        self.channel_module = channel_module
        super().__init__(params)

    def members(self, params):
        return {**user_members(params, params.channels),
                "die": Out(die_signature(params).flip()).array(params.channels)}

    def elaborate(self, platform):
        m = Module()
        for c in range(self.params.channels):
            if self.channel_module is None:
                m.submodules[f"channel{c}"] = channel = MemoryChannel(self.params)
            else:
                channel, m.submodules[f"channel{c}"] = instance_of(*self.channel_module,
                                                                   f"channel{c}")
            connect(m, flipped(self.req[c]), channel.req)
            connect(m, channel.resp, flipped(self.resp[c]))
            connect(m, channel.die, flipped(self.die[c]))
        return m
