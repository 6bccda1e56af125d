"""Build the expert-cache controller on Verilator and run a cocotb module of
:mod:`sim.expert_cache` against it: what the tests and ``build.py`` call."""

import json

from hw.blocks import BLOCKS
from hw.flows.verilog import generate_verilog
from sim.runner import PORTS_ONLY, run_cocotb

__all__ = ["run_cache_bench", "run_cache_batch"]


def run_cache_bench(params, module="sim.expert_cache.tb", testcase=None, env=None, golden=None,
                    seed=None, waves=None):
    """Build the expert-cache controller for ``params`` and run a cocotb module against it;
    ``golden`` as in :func:`run_mac_bench` (the params the bench's golden model uses)."""
    block = BLOCKS["expert_cache"]
    verilog_text = generate_verilog(block.build(params), block.name)
    bench_env = {"ELMOE_CACHE_PARAMS": json.dumps((golden or params).to_dict()), **(env or {})}
    if seed is not None:
        bench_env["ELMOE_SEED"] = str(seed)
    return run_cocotb(block.name, verilog_text, module, testcase=testcase, env=bench_env,
                      waves=waves, public=PORTS_ONLY, optimize=False)

def run_cache_batch(params, requests, seed=None, env=None):
    """The free-running long run (:mod:`sim.expert_cache.tb_batch`) of ``requests`` mixed
    requests, stimulus and responses in simulation memories."""
    from hw.expert_cache import ExpertCache
    from sim.stream_memories import MEMORY_VERILOG, BatchBench
    depth = 1 << max(10, (2 * requests + 2 * params.keys).bit_length())
    dut = ExpertCache(params)
    bench = BatchBench(dut, [("req", dut.req, depth)], [("resp", dut.resp, depth)])
    verilog_text = generate_verilog(bench, "cache_batch") + MEMORY_VERILOG
    bench_env = {"ELMOE_CACHE_PARAMS": json.dumps(params.to_dict()),
                 "ELMOE_CACHE_OPS": str(requests), **(env or {})}
    if seed is not None:
        bench_env["ELMOE_SEED"] = str(seed)
    return run_cocotb("cache_batch", verilog_text, "sim.expert_cache.tb_batch", env=bench_env,
                      public=PORTS_ONLY, optimize=True)
