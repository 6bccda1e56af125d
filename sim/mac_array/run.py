"""Build the MAC array on Verilator and run a cocotb module of :mod:`sim.mac_array` against it:
what the tests and ``build.py`` call."""

import json

from hw.blocks import BLOCKS
from hw.flows.verilog import generate_verilog
from sim.mac_array.harness import PARAMS_ENV
from hw.params import MacMode
from sim.runner import PORTS_ONLY, run_cocotb

#: The free-running bench reaches its ports only (the memories go through files).
BATCH_PUBLIC = PORTS_ONLY

__all__ = ["run_mac_bench", "run_mac_batch"]


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

def run_mac_batch(params, dots, seed=None, env=None):
    """The free-running long run (:mod:`sim.mac_array.tb_batch`): ``dots`` random group dot
    products per mode and pressure, stimulus and results in simulation memories."""
    from hw.mac_array import MacArray
    from sim.stream_memories import MEMORY_VERILOG, BatchBench
    ops = 1 << max(6, (-(-dots // min(params.tokens * params.channels(m) for m in MacMode))
                       ).bit_length())
    beats = ops * params.beats_per_group
    dut = MacArray(params)
    bench = BatchBench(dut, [("op", dut.op, ops), ("act", dut.act, beats),
                             ("weights", dut.weights, beats)], [("results", dut.results, ops)])
    verilog_text = generate_verilog(bench, "mac_batch") + MEMORY_VERILOG
    bench_env = {PARAMS_ENV: json.dumps(params.to_dict()), "ELMOE_MAC_DOTS": str(dots),
                 "ELMOE_BATCH_OPS": str(ops), **(env or {})}
    if seed is not None:
        bench_env["ELMOE_SEED"] = str(seed)
    return run_cocotb("mac_batch", verilog_text, "sim.mac_array.tb_batch", env=bench_env,
                      public=BATCH_PUBLIC, optimize=True)
