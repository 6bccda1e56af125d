"""Build the expert-cache controller on Verilator and run a cocotb module of
:mod:`sim.expert_cache` against it: what the tests and ``build.py`` call."""

import json

from hw.blocks import BLOCKS
from hw.flows.verilog import generate_verilog
from sim.runner import PORTS_ONLY, run_cocotb

__all__ = ["run_cache_bench"]


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