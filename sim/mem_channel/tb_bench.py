"""cocotb benchmark: sustained bandwidth and latency of the HB interface or the LPDDR port with its
DRAM-die model, on Verilator.

Every figure comes from the modelled DRAM timing (activates, precharges, refresh, turnaround); all
streams are always valid / ready, and every response is still checked against the golden model.
Efficiency = words moved / cycles from the first request accepted to the last response, per port
(one word per cycle is the peak). A write stream ends with a one-word read of its last word, whose
response the in-order die can only give after every write is in the array, so posted writes are not
counted before they land. Random accesses are ``RANDOM_LENGTH``-word bursts at aligned addresses
anywhere in the channel. Environment: see :mod:`sim.mem_channel.harness`; ``ELMOE_BENCH_WORDS``
(words per stream, default 16384), ``ELMOE_BENCH_PROBES`` (latency probes, default 200),
``ELMOE_BENCH_OUT``.
"""

import json
import logging
import os
import random
import statistics

import cocotb

from hw.params import MemOp
from sim.mem_channel.harness import system_from_env, start, run_ports, Backdoor
from sim.cocotb_streams import seed_from_env
from sim.mem_channel.traffic import PortDriver, sequential, random_bursts, expected_count
from sw_model.golden.mem_channel import GoldenMemory, Request

log = logging.getLogger("cocotb.bench_hb")

RANDOM_LENGTH = 8      # words per random access (one die burst at the default parameters)


async def _stream(dut, params, traffic, image, words):
    """Run one request list per port at full rate; returns per-port efficiencies."""
    drivers = [PortDriver(params, reqs) for reqs in traffic]
    counts = [expected_count(params, reqs) for reqs in traffic]
    await run_ports(dut, drivers, counts,
                    4 * max(len(d.beats) + n for d, n in zip(drivers, counts)) + 5000)
    efficiencies = []
    for driver, words_moved in zip(drivers, words):
        driver.check(GoldenMemory(params, image))
        span = driver.responses[-1][0] - driver.accepted_cycles[0] + 1
        efficiencies.append(words_moved / span)
    return efficiencies, drivers


def _with_flush(params, requests):
    """A write stream followed by a one-word read of its last word."""
    last = requests[-1]
    return requests + [Request(MemOp.READ, last.address + last.length - 1, 1, 0)]


@cocotb.test()
async def bandwidth(dut):
    name, params, timing, ports = system_from_env()
    seed = seed_from_env()
    words = int(os.environ.get("ELMOE_BENCH_WORDS", 16384))
    probes = int(os.environ.get("ELMOE_BENCH_PROBES", 200))
    rng = random.Random(seed)
    await start(dut, ports)
    backdoor = Backdoor(dut, params.channels)
    if words > params.words:
        raise ValueError(f"ELMOE_BENCH_WORDS ({words}) exceeds the channel ({params.words} words)")
    size = params.words          # random accesses range over the whole channel
    image = {i: rng.getrandbits(params.data_width) for i in range(size)}
    for channel in range(params.channels):
        backdoor.write(channel, 0, [image[i] for i in range(size)])
    # the LPDDR port is measured from one client (the others idle), the HB interface on every
    # channel at once
    active = ports if name == "hb" else 1
    figures = {}

    def record(key, efficiencies):
        figures[key] = {"efficiency": min(efficiencies), "per_port": efficiencies}
        log.info("%s %s: efficiency %s", name, key, ", ".join(f"{e:.4f}" for e in efficiencies))

    L = params.max_length
    eff, _ = await _stream(dut, params, [sequential(params, MemOp.READ, 0, words, L, rng)] *
                           active, image, [words] * active)
    record("seq_read", eff)
    eff, _ = await _stream(dut, params, [_with_flush(params, sequential(
        params, MemOp.WRITE, 0, words, L, rng)) for _ in range(active)], image, [words] * active)
    record("seq_write", eff)
    # the writes changed the arrays; read the new contents back into the golden image
    image = dict(zip(range(size), backdoor.read(0, 0, size)))
    for channel in range(1, params.channels):
        backdoor.write(channel, 0, [image[i] for i in range(size)])
    count = words // RANDOM_LENGTH
    eff, _ = await _stream(dut, params, [random_bursts(params, MemOp.READ, count, RANDOM_LENGTH,
                                                       rng, size)] * active,
                           image, [words] * active)
    record("random_read", eff)
    eff, _ = await _stream(dut, params, [_with_flush(params, random_bursts(
        params, MemOp.WRITE, count, RANDOM_LENGTH, rng, size)) for _ in range(active)],
        image, [words] * active)
    record("random_write", eff)
    image = dict(zip(range(size), backdoor.read(0, 0, size)))
    if name == "lpddr" and ports > 1:
        # one sequential sweep dealt out request by request to every client at once (PEs drawing
        # slices of one expert): what sharing the port through the arbiter costs
        sweep = sequential(params, MemOp.READ, 0, words, L, rng)
        _, drivers = await _stream(dut, params, [sweep[k::ports] for k in range(ports)],
                                   image, [0] * ports)
        span = (max(d.responses[-1][0] for d in drivers)
                - min(d.accepted_cycles[0] for d in drivers) + 1)
        record("shared_seq_read", [words / span])

    # latency: single-word reads at random addresses, one at a time on an otherwise idle port
    latencies = []
    for _ in range(probes):
        address = rng.randrange(size)
        driver = PortDriver(params, [Request(MemOp.READ, address, 1, 1)])
        await run_ports(dut, [driver], [1], 2000)
        driver.check(GoldenMemory(params, image))
        latencies.append(driver.responses[0][0] - driver.accepted_cycles[0])
    figures["latency_cycles"] = {"min": min(latencies), "median": statistics.median(latencies),
                                 "max": max(latencies), "probes": probes}
    figures["words_per_stream"] = words
    with open(os.environ["ELMOE_BENCH_OUT"], "w") as f:
        json.dump(figures, f, indent=1)
