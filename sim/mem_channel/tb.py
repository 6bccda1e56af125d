"""cocotb benches of the HB interface (or the LPDDR port) with its DRAM-die models, on Verilator.

Environment: see :mod:`sim.mem_channel.harness`; ``ELMOE_MEM_WORDS`` words per channel for
``integrity`` (default: the whole channel); ``ELMOE_TRACE`` / ``ELMOE_TRACE_OUT`` for ``trace``.
"""

import json
import logging
import os
import random

import cocotb

from hw.params import MemOp
from sim.mem_channel.harness import system_from_env, start, run_ports, Backdoor
from sim.cocotb_streams import seed_from_env
from sim import funcov
from sim.mem_channel.traffic import (PortDriver, integrity_traffic, error_requests, expected_count,
                                     requests_from_json)
from sw_model.golden.mem_channel import GoldenMemory, Request

log = logging.getLogger("cocotb.tb_hb")


async def _run(dut, params, requests_per_port, seeds, idle, stall, golden):
    drivers = [PortDriver(params, reqs, seed=s, idle=idle, stall=stall)
               for reqs, s in zip(requests_per_port, seeds)]
    cycles = 40 * sum(len(d.beats) + expected_count(params, d.requests) for d in drivers) + 2000
    await run_ports(dut, drivers, [expected_count(params, d.requests) for d in drivers], cycles)
    for driver, memory in zip(drivers, golden):
        driver.check(memory)
        for request in driver.requests:
            funcov.sample("memory", request.op.name.lower(), funcov.memory_error(params, request),
                          "pressure" if idle or stall else "free")
    funcov.flush()
    return drivers


@cocotb.test()
async def integrity(dut):
    """Seeded random words over every channel (``ELMOE_MEM_WORDS`` each), written in random-length
    bursts in random order, then read back in random-length bursts in random order mixed with
    rewrites; all ports at once, with random idle cycles and back-pressure. Every response is
    checked against the golden model, then the whole array through the back door."""
    name, params, timing, ports = system_from_env()
    seed = seed_from_env()
    words = int(os.environ.get("ELMOE_MEM_WORDS", params.words))
    rng = random.Random(seed)
    traffic = integrity_traffic(params, name, ports, words, rng)
    span = words if name == "hb" else words // ports     # each port's words (LPDDR: a slice)
    golden = [GoldenMemory(params) for _ in range(ports)]
    await start(dut, ports)
    drivers = await _run(dut, params, traffic, [seed + p for p in range(ports)], 0.3, 0.4, golden)
    Backdoor(dut, params.channels).check_against(name, golden, words)
    log.info("%s: %d words x %d ports written and read back byte-exactly in %d cycles "
             "(%d bytes per port)", name, span, ports, drivers[0].cycle,
             span * params.bytes_per_word)


@cocotb.test()
async def errors(dut):
    """Every malformed request gets one ERROR beat with its tag, writes nothing (the array is
    compared through the back door), and the next request is served normally; on every port in
    turn, without and with random idle cycles and back-pressure."""
    name, params, timing, ports = system_from_env()
    seed = seed_from_env()
    rng = random.Random(seed + 5)
    await start(dut, ports)
    backdoor = Backdoor(dut, params.channels)
    image = {i: rng.getrandbits(params.data_width) for i in range(64)}
    image.update({params.words - 64 + i: rng.getrandbits(params.data_width) for i in range(64)})
    for channel in range(params.channels):
        for address, word in image.items():
            backdoor.write(channel, address, [word])
    images = [dict(image) for _ in range(params.channels)]
    for port in range(ports):
        # an HB port has a channel of its own; the LPDDR port's clients share its one channel
        channel = port if name == "hb" else 0
        for idle, stall in ((0.0, 0.0), (0.3, 0.4)):
            golden = GoldenMemory(params, images[channel])
            requests = []
            for i, (case, bad) in enumerate(error_requests(params, rng)):
                near = min(bad.address, params.words - 4)
                word = rng.getrandbits(params.data_width)
                requests += [bad, Request(MemOp.WRITE, near, 1, 100 + i, (word,)),
                             Request(MemOp.READ, near, 2, 200 + i)]
            traffic = [requests if k == port else [] for k in range(ports)]
            await _run(dut, params, traffic, [seed + k for k in range(ports)], idle, stall,
                       [golden if k == port else GoldenMemory(params) for k in range(ports)])
            for address in images[channel]:
                (stored,) = backdoor.read(channel, address, 1)
                assert stored == golden.words.get(address, 0), f"word {address} changed wrongly"
            images[channel] = dict(golden.words)
            log.info("port %d: %d error cases, each followed by a served write and read (idle "
                     "%.1f, stall %.1f)", port, len(requests) // 3, idle, stall)


@cocotb.test()
async def write_buffer_full(dut):
    """Back-to-back longest writes, each to another row of bank 0 of every port (a precharge and
    an activate per die burst), with no idle cycles: the write buffer fills, a write header must
    wait for room, and every word still lands; then all are read back."""
    name, params, timing, ports = system_from_env()
    seed = seed_from_env()
    rng = random.Random(seed + 7)
    stride = timing.row_words * timing.banks            # the next row of the same bank
    per_port = []
    for port in range(ports):
        base = 0 if name == "hb" else port * (params.words // ports)
        rows = [base + i * stride for i in range(16)
                if base + i * stride + params.max_length <= min(params.words, base + (
                    params.words if name == "hb" else params.words // ports))]
        writes = [Request(MemOp.WRITE, a, params.max_length, i % (1 << params.tag_width),
                          tuple(rng.getrandbits(params.data_width)
                                for _ in range(params.max_length)))
                  for i, a in enumerate(rows)]
        reads = [Request(MemOp.READ, a, params.max_length, i % (1 << params.tag_width))
                 for i, a in enumerate(rows)]
        per_port.append(writes + reads)
    await start(dut, ports)
    drivers = await _run(dut, params, per_port, [seed + k for k in range(ports)], 0.0, 0.0,
                         [GoldenMemory(params) for _ in range(ports)])
    log.info("%d back-to-back longest writes per port, row after row of one bank, read back",
             len(per_port[0]) // 2)


@cocotb.test()
async def trace(dut):
    """Replay the access trace in ``ELMOE_TRACE`` and write the cycle of every response and every
    accepted request beat to ``ELMOE_TRACE_OUT`` (compared with Amaranth's simulator by pytest)."""
    name, params, timing, ports = system_from_env()
    with open(os.environ["ELMOE_TRACE"]) as f:
        spec = json.load(f)
    traffic = [requests_from_json(items) for items in spec["requests"]]
    await start(dut, ports)
    drivers = await _run(dut, params, traffic, spec["seeds"], spec["idle"], spec["stall"],
                         [GoldenMemory(params) for _ in traffic])
    with open(os.environ["ELMOE_TRACE_OUT"], "w") as f:
        json.dump({"responses": [[c for c, _ in d.responses] for d in drivers],
                   "accepted": [d.accepted_cycles for d in drivers]}, f)
