"""The accelerator with DRAM-die models on its memory links: what the simulation runner builds.

:class:`TopSystem` wraps :class:`hw.top.Top` with one :class:`sim.dram_model.DramDie` per HB channel
(``hb_die<p>``) and one for the LPDDR port (``lpddr_die``), the same models the HB and LPDDR benches
use. Its one port is the top's host control port ``host``
(:class:`hw.command_processor.HostControlSignature`; in Verilog ``host__start``,
``host__length``, ``host__status``, ``host__cycles``, ``host__phase_cycles``).
:func:`top_system_verilog` gives its Verilog for Verilator (dies' arrays as
:data:`sim.dram_model.STORAGE_VERILOG`), hierarchical as the written top is: the PEs and the HB
channels are instances of one module each.
"""

from amaranth import *
from amaranth.lib.wiring import Out, connect, flipped

from hw.command_processor import HostControlSignature
from hw.component_args import CheckedComponent
from hw.top import Top
from sim.dram_model import DramDie, STORAGE_PUBLIC, STORAGE_VERILOG

__all__ = ["TopSystem", "top_system_verilog", "TOP_NAME", "TOP_PUBLIC"]

#: Verilog name of the simulated system.
TOP_NAME = "top_system"
#: What ``sim.top.tb`` reaches inside the system besides its ports (:func:`sim.runner.build`'s
#: ``public``): the memories it preloads and reads back, the dies' queue levels, the slot table.
TOP_PUBLIC = STORAGE_PUBLIC + (
    (f"{TOP_NAME}.*die*", "count"), (f"{TOP_NAME}.top.imem", "imem"),
    (f"{TOP_NAME}.top.processor", "cmem"), (f"{TOP_NAME}.top.processor", "slot_*"),
    *((Top.MODULES["pe"], memory) for memory in ("wmem", "amem", "omem")))


class TopSystem(CheckedComponent):
    """:class:`hw.top.Top` for ``params`` (a :class:`hw.params.TopParams`,
    :data:`hw.params.TOP_DEFAULT` when omitted) with DRAM dies; see the module docstring."""

    @classmethod
    def check_arguments(cls, params=None, verilog_storage=True, instances=None):
        return Top.check_arguments(params, instances)

    def __init__(self, params=None, verilog_storage=True, instances=None):
        self.params = params = self.check_arguments(params, verilog_storage, instances)
        self.top = Top(params, instances)
        self.hb_dies = [DramDie(params.hb, params.hb_timing, verilog_storage)
                        for _ in range(params.pes)]
        self.lpddr_die = DramDie(params.lpddr, params.lpddr_timing, verilog_storage)
        super().__init__({"host": Out(HostControlSignature(params))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self.top
        connect(m, flipped(self.host), top.host)
        for k, die in enumerate(self.hb_dies):
            m.submodules[f"hb_die{k}"] = die
            connect(m, top.hb_die[k], die)
        m.submodules.lpddr_die = self.lpddr_die
        connect(m, top.lpddr_die, self.lpddr_die)
        return m


def top_system_verilog(params):
    """Verilog of :class:`TopSystem` for ``params``, named :data:`TOP_NAME`: hierarchical, as
    ``build.py verilog`` writes the top (one PE module and one HB channel module, instantiated per
    PE: :func:`hw.flows.verilog.top_parts_verilog`). Memories whose initial contents are all zero
    are written without them (:func:`hw.flows.memory_init.zero_init_left_out`), as the DRAM dies'
    storage always is: Verilator starts every array at zero, and Yosys would take minutes to
    write a large zero memory (a paper PE's top: tens of megabits)."""
    from hw.flows import memory_init
    from hw.flows.verilog import generate_verilog, top_parts_verilog
    with memory_init.zero_init_left_out():
        instances, parts = top_parts_verilog(params)
        return (generate_verilog(TopSystem(params, instances=instances), TOP_NAME) + parts
                + STORAGE_VERILOG)
