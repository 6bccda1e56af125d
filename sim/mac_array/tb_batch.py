"""cocotb bench: long free-running runs of the Verilated MAC array (:mod:`sim.stream_memories`),
every result compared with the slice-level golden model in one batch per run.

Environment: ``ELMOE_MAC_PARAMS``, ``ELMOE_SEED``, ``ELMOE_MAC_DOTS`` (random group dot products
per mode and pressure, default 10000), ``ELMOE_BATCH_OPS`` (the depth of the result recorder:
operations per run), ``ELMOE_SUMMARY`` (JSON lines of what was compared).
"""

import json
import logging
import os

import cocotb
import numpy as np

from hw.mac_array import act_layout, op_layout, result_layout, weight_layout
from hw.params import MacMode
from sim import funcov
from sim.cocotb_batch import BatchDriver
from sim.cocotb_streams import clock_and_reset, seed_from_env
from sim.mac_array.harness import params_from_env
from sim.mac_array.batch import MacCodec, random_batch

log = logging.getLogger("cocotb.tb_mac_batch")

#: (name, idle and stall thresholds out of 256): none, and about 30% idle / 40% stall.
PRESSURE = [("free", 0, 0), ("pressure", 77, 102)]


@cocotb.test()
async def long_random(dut):
    """Per mode and pressure, ``ELMOE_MAC_DOTS`` random group dot products (activations reused
    by a third of the operations), played from memories and checked bit for bit."""
    params, seed = params_from_env(), seed_from_env()
    dots = int(os.environ.get("ELMOE_MAC_DOTS", 10000))
    depth = int(os.environ["ELMOE_BATCH_OPS"])
    codec = MacCodec(params)
    await clock_and_reset(dut)
    widths = {"op": op_layout(params).size, "act": act_layout(params).size,
              "weights": weight_layout(params).size, "results": result_layout(params).size}
    driver = BatchDriver(dut, ["op", "act", "weights"], ["results"], widths)
    rng = np.random.default_rng(seed)
    checked = 0
    for mode in MacMode:
        ops = min(depth, -(-dots // (params.tokens * params.channels(mode))))
        for name, idle, stall in PRESSURE:
            batch = random_batch(params, rng, ops, mode)
            tags = [i % (1 << params.tag_width) for i in range(ops)]
            beats = {"op": codec.op_beats(batch, tags), "act": codec.act_hex(batch),
                     "weights": codec.weight_hex(batch)}
            out = await driver.run(beats, {"results": ops}, idle, stall,
                                   max_cycles=40 * ops * params.beats_per_group + 1000)
            got_tags, got_modes, sums = codec.results(out["results"])
            assert got_tags == tags, "result tags out of order"
            assert set(got_modes) == {int(mode)}, f"result modes {set(got_modes)}"
            if not np.array_equal(sums, batch.expected):
                i, t, s = (int(v) for v in np.argwhere(sums != batch.expected)[0])
                raise AssertionError(f"{mode.name}, {name}: operation {i} token {t} slot {s} is "
                                     f"{sums[i, t, s]}, the golden model says "
                                     f"{batch.expected[i, t, s]}")
            checked += ops * params.tokens * params.channels(mode)
            for load, x, q in zip(batch.load_act, batch.x, batch.q):
                funcov.sample("mac", mode.name, "load" if load else "reuse", name,
                              funcov.mac_values(x, q))
            log.info("%s, %s: %d operations bit-exact", mode.name, name, ops)
    funcov.flush()
    path = os.environ.get("ELMOE_SUMMARY")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": "long_random", "dots": checked,
                                "cycles": driver.cycles}) + "\n")
    log.info("%d group dot products bit-exact in %d cycles", checked, driver.cycles)
