"""Build the MAC array on Verilator and run a cocotb module of :mod:`sim.mac_array` against it:
what the tests and ``build.py`` call."""

import json

from hw.blocks import BLOCKS
from hw.flows.verilog import generate_verilog
from sim.mac_array.harness import PARAMS_ENV
from sim.runner import PORTS_ONLY, run_cocotb

__all__ = ["run_mac_bench"]


def run_mac_bench(params, module="sim.mac_array.tb", testcase=None, env=None, golden=None,
                  seed=None, waves=None):
    """Build the MAC array for ``params`` and run a cocotb module against it.

    ``golden`` are the params the bench's golden model uses (default: the same); passing different
    ones is how the tests show that the bench detects a wrong model. ``waves`` (default: the
    ``ELMOE_WAVES`` environment variable) records an FST waveform under ``build/waves``.
    """
    block = BLOCKS["mac_array"]
    verilog_text = generate_verilog(block.build(params), block.name)
    bench_env = {PARAMS_ENV: json.dumps((golden or params).to_dict()), **(env or {})}
    if seed is not None:
        bench_env["ELMOE_SEED"] = str(seed)
    return run_cocotb(block.name, verilog_text, module, testcase=testcase, env=bench_env,
                      waves=waves, public=PORTS_ONLY, optimize=False)