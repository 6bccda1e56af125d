"""Every hardware block that exists, with its parameter presets: what ``build.py verilog`` writes
and what the simulation runner can build."""

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
    presets: dict        # preset name -> params

    def build(self, params):
        return self.component(params)


BLOCKS = {
    "mac_array": Block("mac_array", MacArray, MAC_PRESETS),
    "expert_cache": Block("expert_cache", ExpertCache, CACHE_PRESETS),
    "hb_interface": Block("hb_interface", HbInterface, HB_PRESETS),
    "lpddr_port": Block("lpddr_port", LpddrPort, LPDDR_PRESETS),
    "top": Block("top", Top, {"default": TOP_DEFAULT}),     # the paper machine is ISA-only
}
