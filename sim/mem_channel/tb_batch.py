"""cocotb bench: a long free-running run of the HB interface (or the LPDDR port) with its
DRAM-die models (:mod:`sim.stream_memories`), every response compared with the golden model in
one batch, then the whole array through the back door.

Environment: see :mod:`sim.mem_channel.harness`; ``ELMOE_MEM_WORDS`` words per channel (default:
the whole channel), ``ELMOE_SUMMARY``.
"""

import json
import logging
import os
import random

import cocotb

from hw.mem_channel import request_layout, response_layout
from sim import funcov
from sim.cocotb_batch import BatchDriver
from sim.cocotb_streams import clock_and_reset, seed_from_env
from sim.mem_channel.harness import Backdoor, system_from_env
from sim.mem_channel.traffic import MemCodec, integrity_traffic
from sw_model.golden.mem_channel import GoldenMemory

log = logging.getLogger("cocotb.tb_mem_batch")

#: Idle and stall thresholds out of 256: about 30% idle on every request stream, 40% stall on
#: every response stream.
IDLE, STALL = 77, 102


@cocotb.test()
async def long_integrity(dut):
    """As :func:`sim.mem_channel.tb.integrity`, free-running: seeded random words over every
    channel written in random-length bursts (later beats with random header fields), read back
    mixed with rewrites, all ports at once under idle cycles and back-pressure."""
    name, params, timing, ports = system_from_env()
    seed = seed_from_env()
    words = int(os.environ.get("ELMOE_MEM_WORDS", params.words))
    rng = random.Random(seed)
    span = words if name == "hb" else words // ports     # each port's words (LPDDR: a slice)
    codec = MemCodec(params)
    golden = [GoldenMemory(params) for _ in range(ports)]
    beats, expected = {}, {}
    for port, requests in enumerate(integrity_traffic(params, name, ports, words, rng)):
        scramble = random.Random(f"header {seed + port}")
        beats[f"req{port}"] = [b for r in requests for b in codec.encode(r, scramble)]
        expected[f"resp{port}"] = [resp for r in requests for resp in golden[port].apply(r)]
        for r in requests:
            funcov.sample("memory", r.op.name.lower(), "none", "pressure")
    await clock_and_reset(dut)
    widths = {**{f"req{k}": request_layout(params).size for k in range(ports)},
              **{f"resp{k}": response_layout(params).size for k in range(ports)}}
    driver = BatchDriver(dut, [f"req{k}" for k in range(ports)],
                         [f"resp{k}" for k in range(ports)], widths)
    most = max(len(b) for b in beats.values()) + max(len(e) for e in expected.values())
    out = await driver.run(beats, {n: len(e) for n, e in expected.items()}, IDLE, STALL,
                           max_cycles=60 * most + 2000)
    for sink, want in expected.items():
        got = [codec.decode(w) for w in out[sink]]
        for i, (g, e) in enumerate(zip(got, want)):
            assert g == e, f"{sink} response {i}: got {g}, expected {e}"
    funcov.flush()
    Backdoor(dut.dut, params.channels).check_against(name, golden, words)
    log.info("%s: %d words x %d ports byte-exact in %d cycles", name, span, ports, driver.cycles)
    path = os.environ.get("ELMOE_SUMMARY")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": "long_integrity", "system": name, "words": span * ports,
                                "beats": sum(map(len, expected.values())),
                                "cycles": driver.cycles}) + "\n")
