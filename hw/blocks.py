"""Every hardware block that exists, with its parameter presets: what ``build.py verilog`` writes
and what the simulation runner can build. Every block builds for every machine
:class:`hw.params.TopParams` accepts (the PEs assemble weight words of any whole ratio of memory
words); the top's Verilog is hierarchical (:func:`hw.flows.verilog.top_verilog`)."""

from dataclasses import dataclass

from hw.expert_cache import ExpertCache
from hw.hb_interface import HbInterface
from hw.lpddr_port import LpddrPort
from hw.mac_array import MacArray
from hw.params import CACHE_PRESETS, HB_PRESETS, LPDDR_PRESETS, MAC_PRESETS, TOP_DEFAULT
from hw.top import Top

__all__ = ["Block", "BLOCKS"]


@dataclass(frozen=True)
class Block:
    name: str            # Verilog module name
    component: type      # component class taking one params argument (None: its default)
    presets: dict        # preset name -> params (the block on its own: synthesis ladders, FPGA)
    field: str           # the block's field of a machine (hw.params.TopParams), "" for the top

    def build(self, params):
        return self.component(params)

    def of_machine(self, machine):
        """This block's parameters in ``machine`` (a :class:`hw.params.TopParams`)."""
        return getattr(machine, self.field) if self.field else machine

    def buildable(self, machine):
        """None if this block of ``machine`` can be built, else the reason it cannot (every block
        of every machine :class:`hw.params.TopParams` accepts can be built today)."""
        return None


BLOCKS = {
    "mac_array": Block("mac_array", MacArray, MAC_PRESETS, "mac"),
    "expert_cache": Block("expert_cache", ExpertCache, CACHE_PRESETS, "cache"),
    "hb_interface": Block("hb_interface", HbInterface, HB_PRESETS, "hb"),
    "lpddr_port": Block("lpddr_port", LpddrPort, LPDDR_PRESETS, "lpddr"),
    "top": Block("top", Top, {"default": TOP_DEFAULT}, ""),
}
