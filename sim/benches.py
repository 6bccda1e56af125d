"""Run the cocotb benches of a block on Verilator: what pytest and ``build.py`` call."""

import json
import os

from hw.blocks import BLOCKS
from sim.mac_harness import PARAMS_ENV
from sim.runner import PORTS_ONLY, generate_verilog, run_cocotb

__all__ = ["run_mac_bench", "run_cache_bench", "run_mem_bench"]


def run_mac_bench(params, module="sim.tb_mac_array", testcase=None, env=None, golden=None,
                  seed=None, waves=None):
    """Build the MAC array for ``params`` and run a cocotb module against it.

    ``golden`` are the params the bench's golden model uses (default: the same); passing different
    ones is how the tests show that the bench detects a wrong model. ``waves`` (default: the
    ``ELMOE_WAVES`` environment variable) records an FST waveform under ``build/waves``.
    """
    if waves is None:
        waves = os.environ.get("ELMOE_WAVES", "0") not in ("", "0")
    block = BLOCKS["mac_array"]
    verilog_text = generate_verilog(block.build(params), block.name)
    bench_env = {PARAMS_ENV: json.dumps((golden or params).to_dict()), **(env or {})}
    if seed is not None:
        bench_env["ELMOE_SEED"] = str(seed)
    return run_cocotb(block.name, verilog_text, module, testcase=testcase, env=bench_env,
                      waves=waves, public=PORTS_ONLY)


def run_cache_bench(params, module="sim.tb_expert_cache", testcase=None, env=None, golden=None,
                    seed=None, waves=None):
    """Build the expert-cache controller for ``params`` and run a cocotb module against it;
    ``golden`` as in :func:`run_mac_bench` (the params the bench's golden model uses)."""
    if waves is None:
        waves = os.environ.get("ELMOE_WAVES", "0") not in ("", "0")
    block = BLOCKS["expert_cache"]
    verilog_text = generate_verilog(block.build(params), block.name)
    bench_env = {"ELMOE_CACHE_PARAMS": json.dumps((golden or params).to_dict()), **(env or {})}
    if seed is not None:
        bench_env["ELMOE_SEED"] = str(seed)
    return run_cocotb(block.name, verilog_text, module, testcase=testcase, env=bench_env,
                      waves=waves, public=PORTS_ONLY)


def run_mem_bench(system, params, timing, module="sim.tb_hb", testcase=None, env=None,
                  seed=None, waves=None):
    """Build the ``system`` (``"hb"``: HB interface + one die per channel, ``"lpddr"``: LPDDR
    port + its die) for ``params`` / ``timing`` and run a cocotb module against it."""
    from sim.dram_model import STORAGE_PUBLIC, HbSystem, LpddrSystem, wrapper_verilog
    if waves is None:
        waves = os.environ.get("ELMOE_WAVES", "0") not in ("", "0")
    system_class = {"hb": HbSystem, "lpddr": LpddrSystem}[system]
    top = f"{system}_system"
    verilog_text = wrapper_verilog(system_class, params, timing, top)
    bench_env = {"ELMOE_MEM_SYSTEM": system, "ELMOE_MEM_PARAMS": json.dumps(params.to_dict()),
                 "ELMOE_MEM_TIMING": json.dumps(timing.to_dict()), **(env or {})}
    if seed is not None:
        bench_env["ELMOE_SEED"] = str(seed)
    return run_cocotb(top, verilog_text, module, testcase=testcase, env=bench_env, waves=waves,
                      public=STORAGE_PUBLIC)
