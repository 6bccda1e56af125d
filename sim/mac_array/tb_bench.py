"""cocotb benchmark: steady-state throughput of the Verilated MAC array, per mode.

Every stream is always valid / ready; each operation loads fresh activations (the heaviest case).
Results are still checked bit for bit. Environment: ``ELMOE_MAC_PARAMS``, ``ELMOE_BENCH_OPS``
(operations per mode, default 1000), ``ELMOE_BENCH_OUT`` (where the JSON figures go).
"""

import json
import logging
import os

import cocotb
import numpy as np

from hw.params import MacMode
from sim.mac_array.harness import MacHarness, params_from_env
from sim.cocotb_streams import seed_from_env
from sim.mac_array.jobs import random_jobs

log = logging.getLogger("cocotb.bench_mac_array")


@cocotb.test()
async def throughput(dut):
    params, seed = params_from_env(), seed_from_env()
    ops = int(os.environ.get("ELMOE_BENCH_OPS", 1000))
    harness = await MacHarness.start(dut, params, seed)
    rng = np.random.default_rng(seed)
    figures = {}
    for mode in MacMode:
        jobs = random_jobs(params, rng, ops, modes=(mode,), reuse=0.0)
        first_beat = len(harness.weights.handshake_cycles)
        first_result = harness.results.cycle
        await harness.run(jobs)
        cycles = harness.weights.handshake_cycles[first_beat:]
        beats = len(cycles)
        window = cycles[-1] - cycles[0] + 1
        # end to end: from the first beat accepted to the last result taken, pipeline fill included
        end_to_end = harness.results.last_cycle - cycles[0] + 1
        figures[mode.name] = {
            "ops": ops,
            "beats": beats,
            "cycles": window,
            "cycles_end_to_end": end_to_end,
            "beat_utilization": beats / window,
            "utilization": beats / end_to_end,
            "weights_per_cycle": beats * params.weights_per_beat(mode) / end_to_end,
            "results_per_cycle": ops / end_to_end,
            "group_dot_products_per_cycle": ops * params.tokens * params.channels(mode) / end_to_end,
            "latency_cycles": harness.results.first_cycle_after(first_result) - cycles[0],
        }
        log.info("%s: %d beats in %d cycles (%d end to end)", mode.name, beats, window, end_to_end)
    with open(os.environ["ELMOE_BENCH_OUT"], "w") as f:
        json.dump(figures, f, indent=1)
