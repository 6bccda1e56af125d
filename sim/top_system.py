"""The accelerator with DRAM-die models on its memory links: what the simulation runner builds.

:class:`TopSystem` wraps :class:`hw.top.Top` with one :class:`sim.dram_model.DramDie` per HB channel
(``hb_die<p>``) and one for the LPDDR port (``lpddr_die``), the same models the HB and LPDDR benches
use. Its ports are the top's status ports (``start``, ``length``, ``status``, ``cycles``,
``phase_cycles``). :func:`top_system_verilog` gives its Verilog for Verilator (dies' arrays as
:data:`sim.dram_model.STORAGE_VERILOG`).
"""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out, connect

from hw.command_processor import status_layout
from hw.isa import PHASES
from hw.params import TopParams, unsigned_width
from hw.top import Top
from sim.dram_model import DramDie, STORAGE_PUBLIC, STORAGE_VERILOG

__all__ = ["TopSystem", "top_system_verilog", "TOP_NAME", "TOP_PUBLIC"]

#: Verilog name of the simulated system.
TOP_NAME = "top_system"
#: What ``sim.tb_top`` reaches inside the system besides its ports (:func:`sim.runner.build`'s
#: ``public``): the memories it preloads and reads back, the dies' queue levels, the slot table.
TOP_PUBLIC = STORAGE_PUBLIC + (
    (f"{TOP_NAME}.*die*", "count"), (f"{TOP_NAME}.top.imem", "imem"),
    (f"{TOP_NAME}.top.processor", "cmem"), (f"{TOP_NAME}.top.processor", "slot_*"),
    *((f"{TOP_NAME}.top.pe*", memory) for memory in ("wmem", "amem", "omem")))


class TopSystem(wiring.Component):
    def __init__(self, params, verilog_storage=True):
        self.params = params
        self.top = Top(params)
        self.hb_dies = [DramDie(params.hb, params.hb_timing, verilog_storage)
                        for _ in range(params.pes)]
        self.lpddr_die = DramDie(params.lpddr, params.lpddr_timing, verilog_storage)
        super().__init__({
            "start": In(1),
            "length": In(unsigned_width(params.command_words)),
            "status": Out(status_layout(params)),
            "cycles": Out(32),
            "phase_cycles": Out(data.ArrayLayout(32, PHASES)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self.top
        m.d.comb += [top.start.eq(self.start), top.length.eq(self.length),
                     self.status.eq(top.status), self.cycles.eq(top.cycles),
                     self.phase_cycles.eq(top.phase_cycles)]
        for k, die in enumerate(self.hb_dies):
            m.submodules[f"hb_die{k}"] = die
            connect(m, top.hb_die[k], die)
        m.submodules.lpddr_die = self.lpddr_die
        connect(m, top.lpddr_die, self.lpddr_die)
        return m


def top_system_verilog(params):
    """Verilog of :class:`TopSystem` for ``params``, named :data:`TOP_NAME`."""
    from sim.runner import generate_verilog
    if not isinstance(params, TopParams):
        raise TypeError(f"params must be a TopParams, not {params!r}")
    return generate_verilog(TopSystem(params), TOP_NAME) + STORAGE_VERILOG
