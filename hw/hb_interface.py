"""The hybrid-bonding (HB) interface: the logic-die side of the HB DRAM, one channel per PE.

Each channel is a :class:`hw.mem_channel.MemoryChannel` (request checking, bursts, flow control,
several requests in flight, in-order responses); see that module for the stream contract. Ports,
indexed by channel ``c``: ``req[c]`` (in), ``resp[c]`` (out), and ``die[c]``, the link to that
channel's DRAM bank (in simulation a :class:`sim.dram_model.DramDie`).
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from .mem_channel import MemoryChannel, request_layout, response_layout, die_signature
from .component_args import expect_params
from .params import HbInterfaceParams

__all__ = ["HbInterface"]


class HbInterface(wiring.Component):
    """``params.channels`` independent HB channels.

    Parameters
    ----------
    params : HbInterfaceParams
    """

    def __init__(self, params=None):
        self.params = expect_params(self, params, HbInterfaceParams)
        n = params.channels
        super().__init__({
            "req": In(stream.Signature(request_layout(params))).array(n),
            "resp": Out(stream.Signature(response_layout(params))).array(n),
            "die": Out(die_signature(params).flip()).array(n),
        })

    def elaborate(self, platform):
        m = Module()
        for c in range(self.params.channels):
            m.submodules[f"channel{c}"] = channel = MemoryChannel(self.params)
            connect(m, flipped(self.req[c]), channel.req)
            connect(m, channel.resp, flipped(self.resp[c]))
            connect(m, channel.die, flipped(self.die[c]))
        return m
