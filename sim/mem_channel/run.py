"""Build the HB interface or the LPDDR port with its DRAM-die models on Verilator and run a cocotb
module of :mod:`sim.mem_channel` against it: what the tests and ``build.py`` call."""

import json

from sim.dram_model import STORAGE_PUBLIC, HbSystem, LpddrSystem, wrapper_verilog
from sim.runner import run_cocotb

__all__ = ["run_mem_bench"]


def run_mem_bench(system, params, timing, module="sim.mem_channel.tb", testcase=None, env=None,
                  seed=None, waves=None):
    """Build the ``system`` (``"hb"``: HB interface + one die per channel, ``"lpddr"``: LPDDR
    port + its die) for ``params`` / ``timing`` and run a cocotb module against it."""
    system_class = {"hb": HbSystem, "lpddr": LpddrSystem}[system]
    top = f"{system}_system"
    verilog_text = wrapper_verilog(system_class, params, timing, top)
    bench_env = {"ELMOE_MEM_SYSTEM": system, "ELMOE_MEM_PARAMS": json.dumps(params.to_dict()),
                 "ELMOE_MEM_TIMING": json.dumps(timing.to_dict()), **(env or {})}
    if seed is not None:
        bench_env["ELMOE_SEED"] = str(seed)
    return run_cocotb(top, verilog_text, module, testcase=testcase, env=bench_env, waves=waves,
                      public=STORAGE_PUBLIC, optimize=False)
