"""cocotb bench: the Verilated MAC array against the slice-level golden model, bit for bit.

Environment: ``ELMOE_MAC_PARAMS`` (JSON params, set by the runner), ``ELMOE_SEED`` (default 1),
``ELMOE_MAC_DOTS`` (random group dot products per mode under back-pressure, default 10000).
"""

import logging
import os

import cocotb
import numpy as np

from hw.params import MacMode
from sim.mac_array.harness import MacHarness, params_from_env
from sim.cocotb_streams import seed_from_env
from sim.mac_array.jobs import random_jobs, edge_jobs, job_for

log = logging.getLogger("cocotb.tb_mac_array")

PRESSURE = [("no pressure", 0.0, 0.0), ("idle 30% / back-pressure 40%", 0.3, 0.4)]


def _jobs_for(params, rng, mode, dots):
    per_job = params.tokens * params.channels(mode)
    return random_jobs(params, rng, -(-dots // per_job), modes=(mode,))


@cocotb.test()
async def edge_cases(dut):
    """Extremes (-128, 127, 0, all ones, alternating signs) in every mode, with and without
    back-pressure and idle cycles."""
    params, seed = params_from_env(), seed_from_env()
    harness = await MacHarness.start(dut, params, seed)
    rng = np.random.default_rng(seed)
    jobs = edge_jobs(params, rng)
    for name, idle, stall in PRESSURE:
        harness.set_pressure(idle, stall)
        checked, _ = await harness.run(jobs)
        log.info("edge cases, %s: %d jobs, %d group dot products bit-exact",
                 name, len(jobs), checked)


@cocotb.test()
async def random_each_mode(dut):
    """Seeded random codes over the whole INT8 range, per mode: ``ELMOE_MAC_DOTS`` group dot
    products each under back-pressure, and a fifth of that without."""
    params, seed = params_from_env(), seed_from_env()
    dots = int(os.environ.get("ELMOE_MAC_DOTS", 10000))
    harness = await MacHarness.start(dut, params, seed)
    rng = np.random.default_rng(seed + 1)
    total = 0
    for mode in MacMode:
        for name, idle, stall in PRESSURE:
            n = dots if stall else max(1, dots // 5)
            harness.set_pressure(idle, stall)
            checked, _ = await harness.run(_jobs_for(params, rng, mode, n))
            total += checked
            log.info("%s, %s: %d random group dot products bit-exact", mode.name, name, checked)
    log.info("total: %d random group dot products bit-exact", total)


@cocotb.test()
async def mixed_modes(dut):
    """Modes interleaved op by op, activations reused across ops, under back-pressure: state from
    one mode must never leak into the next."""
    params, seed = params_from_env(), seed_from_env()
    harness = await MacHarness.start(dut, params, seed)
    rng = np.random.default_rng(seed + 2)
    for name, idle, stall in PRESSURE:
        harness.set_pressure(idle, stall)
        checked, _ = await harness.run(random_jobs(params, rng, 300, reuse=0.5))
        log.info("mixed modes, %s: %d group dot products bit-exact", name, checked)


@cocotb.test()
async def split_verification(dut):
    """FULL == MSB partial + LSB partial, exactly, in the hardware's own outputs: the same weights
    run once at full precision and once as the two partials of split verification."""
    params, seed = params_from_env(), seed_from_env()
    harness = await MacHarness.start(dut, params, seed)
    harness.set_pressure(0.3, 0.4)
    rng = np.random.default_rng(seed + 3)
    n, compared = params.out_channels, 0
    for _ in range(40):
        x = rng.integers(-128, 128, size=(params.tokens, params.group_size))
        q = rng.integers(-128, 128, size=(params.group_size, 2 * n))
        jobs = [job_for(params, MacMode.FULL, 0, x, q[:, :n]),
                job_for(params, MacMode.FULL, 1, x, q[:, n:]),
                job_for(params, MacMode.MSB, 2, x, q),
                job_for(params, MacMode.LSB, 3, x, q)]
        _, (full_a, full_b, msb, lsb) = await harness.run(jobs)
        full = np.concatenate([full_a[2][:, :n], full_b[2][:, :n]], axis=1)
        assert np.array_equal(full, msb[2] + lsb[2]), "FULL != MSB + LSB in the RTL"
        compared += full.size
    log.info("split verification: %d group sums, FULL == MSB + LSB exactly", compared)
