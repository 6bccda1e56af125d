"""The accelerator top with the host's side of its memories in hardware: :class:`HostTop`.

:class:`hw.top.Top` has no port for its command, input and output memories: the simulation runner
reaches them through the back door. Hardware outside a simulator cannot, and a synthesis tool sees
the output memories, and so the MAC arrays, the PEs' datapaths and the weight memories feeding
them, as logic whose results nobody reads, and removes it. :class:`HostTop` adds what a host
interface would give: the command and input memories' initial contents, and one read port on every
PE's output memory (``omem_addr[p]``, ``omem_en[p]`` in; ``omem_data[p]`` out, one cycle later).
Its other ports are the top's, with the same names: the host's control port ``host``
(:class:`hw.command_processor.HostControlSignature`) and the die links ``hb_die[p]`` and
``lpddr_die``.

The top builds its memories inside its own ``elaborate``, so :class:`HostTop` elaborates the top,
its input memory and its PEs itself, once, and sets the memories up before they are built; it
reaches them by the names the top documents for the host (``processor.cmem``, ``imem.imem``,
``pe<p>.omem``).
"""

from amaranth import *
from amaranth.lib.wiring import In, Out, connect, flipped

from hw.component_args import CheckedComponent
from hw.params import unsigned_width
from hw.top import Top

__all__ = ["HostTop", "image_list"]


def _elaborate_once(elaboratable, platform):
    """Elaborate ``elaboratable`` now and make its later elaboration (by its parent) return the
    same module, so that memories created inside can be set up before they are built."""
    module = elaboratable.elaborate(platform)
    elaboratable.elaborate = lambda platform: module
    return module


def image_list(image, words, what="memory"):
    """A sparse ``{address: word}`` image as a list for a memory's ``init`` (trailing zeros
    dropped); ValueError naming ``what`` if a word lies beyond ``words``."""
    if not image:
        return []
    if max(image) >= words:
        raise ValueError(f"{what} image has a word at {max(image)}, beyond its {words} words")
    out = [0] * (max(image) + 1)
    for address, word in image.items():
        out[address] = word
    return out


class HostTop(CheckedComponent):
    """:class:`hw.top.Top` for ``params`` (:data:`hw.params.TOP_DEFAULT` when omitted) with
    preloaded ``commands`` (128-bit words) and ``inputs`` (``{address: activation word}``) and a
    read port per output memory; see the module docstring."""

    @classmethod
    def check_arguments(cls, params=None, commands=(), inputs=None):
        """``(params, command list, input memory list)``."""
        p = Top.check_arguments(params)
        if len(commands) > p.command_words:
            raise ValueError(f"{len(commands)} commands do not fit in the "
                             f"{p.command_words} words of the command memory")
        return (p, [int(w) for w in commands],
                image_list(inputs or {}, p.input_words, "input memory"))

    def __init__(self, params=None, commands=(), inputs=None):
        self.params, self.commands, self.inputs = self.check_arguments(params, commands, inputs)
        p = self.params
        self.top = Top(p)
        members = dict(self.top.signature.members)
        members.update({
            "omem_addr": In(unsigned_width(p.output_words - 1)).array(p.pes),
            "omem_en": In(1).array(p.pes),
            "omem_data": Out(p.result_bits).array(p.pes),
        })
        super().__init__(members)

    def elaborate(self, platform):
        p = self.params
        m = Module()
        top_module = _elaborate_once(self.top, platform)
        top_module.submodules.processor.cmem.init = self.commands
        _elaborate_once(top_module.submodules.imem, platform).submodules.imem.init = self.inputs
        m.submodules.top = self.top
        for k in range(p.pes):
            omem = _elaborate_once(top_module.submodules[f"pe{k}"], platform).submodules.omem
            port = omem.read_port()
            m.d.comb += [port.addr.eq(self.omem_addr[k]), port.en.eq(self.omem_en[k]),
                         self.omem_data[k].eq(port.data)]
            connect(m, self.top.hb_die[k], flipped(self.hb_die[k]))
        connect(m, flipped(self.host), self.top.host)
        connect(m, self.top.lpddr_die, flipped(self.lpddr_die))
        return m


def synthesis_component(name, params):
    """The component that stands for block ``name`` of :data:`hw.blocks.BLOCKS` in synthesis and
    place and route: the block itself, except the top, which is a :class:`HostTop` (see the
    module docstring: alone, the top's datapath would be removed as unobservable)."""
    from hw.blocks import BLOCKS
    return HostTop(params) if name == "top" else BLOCKS[name].build(params)
