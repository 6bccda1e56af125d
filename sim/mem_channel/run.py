"""Build the HB interface or the LPDDR port with its DRAM-die models on Verilator and run a cocotb
module of :mod:`sim.mem_channel` against it: what the tests and ``build.py`` call."""

import json

from sim.dram_model import (STORAGE_PUBLIC, STORAGE_VERILOG, HbSystem, LpddrSystem,
                             wrapper_verilog)
from sim.runner import run_cocotb

__all__ = ["run_mem_bench", "run_mem_batch"]


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


def run_mem_batch(system, params, timing, words=None, seed=None, env=None):
    """The free-running long run (:mod:`sim.mem_channel.tb_batch`) on the ``system`` (``"hb"`` or
    ``"lpddr"``): ``words`` per channel (default: all), stimulus and responses in simulation
    memories."""
    from hw.flows.verilog import generate_verilog
    from sim.stream_memories import MEMORY_VERILOG, BatchBench
    system_class = {"hb": HbSystem, "lpddr": LpddrSystem}[system]
    dut = system_class(params, timing, verilog_storage=True)
    ports = len(dut.req)
    words = params.words if words is None else words
    span = words if system == "hb" else words // ports
    # beats per port: about 2.25 x span writes and 2 x span read words (see the bench)
    depth = 1 << max(10, (3 * span + 2 * span // params.max_length + 64).bit_length())
    bench = BatchBench(dut, [(f"req{k}", dut.req[k], depth) for k in range(ports)],
                       [(f"resp{k}", dut.resp[k], depth) for k in range(ports)])
    verilog_text = (generate_verilog(bench, f"{system}_batch") + STORAGE_VERILOG
                    + MEMORY_VERILOG)
    bench_env = {"ELMOE_MEM_SYSTEM": system, "ELMOE_MEM_PARAMS": json.dumps(params.to_dict()),
                 "ELMOE_MEM_TIMING": json.dumps(timing.to_dict()), "ELMOE_MEM_WORDS": str(words),
                 **(env or {})}
    if seed is not None:
        bench_env["ELMOE_SEED"] = str(seed)
    return run_cocotb(f"{system}_batch", verilog_text, "sim.mem_channel.tb_batch", env=bench_env,
                      public=STORAGE_PUBLIC, optimize=True)
