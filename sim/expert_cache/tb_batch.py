"""cocotb bench: a long free-running run of the Verilated expert-cache controller
(:mod:`sim.stream_memories`), every response beat compared with the golden model in one batch.

Environment: ``ELMOE_CACHE_PARAMS``, ``ELMOE_SEED``, ``ELMOE_CACHE_OPS`` (requests, default
100000; the first three fifths with random idle cycles on ``req`` and back-pressure on ``resp``,
the rest without), ``ELMOE_BATCH_BEATS`` (the recorder's depth), ``ELMOE_SUMMARY``.
"""

import json
import logging
import os

import cocotb

from hw.expert_cache import request_layout, response_layout
from hw.params import CacheOp, CacheStatus, ExpertCacheParams
from sim import funcov
from sim.cocotb_batch import BatchDriver
from sim.cocotb_streams import clock_and_reset, seed_from_env
from sim.expert_cache.ops import FastCodec, compare_responses, expected_per_request, mixed_requests

log = logging.getLogger("cocotb.tb_cache_batch")

#: (name, idle and stall thresholds out of 256): about 30% / 30%, and none.
PRESSURE = [("pressure", 77, 77), ("free", 0, 0)]
_OPS = set(int(op) for op in CacheOp)


@cocotb.test()
async def long_mixed(dut):
    """``ELMOE_CACHE_OPS`` mixed requests (the patterns of :func:`mixed_requests`), played from a
    memory, every response beat equal to the golden model's."""
    params = ExpertCacheParams.from_dict(json.loads(os.environ["ELMOE_CACHE_PARAMS"]))
    seed = seed_from_env()
    count = int(os.environ.get("ELMOE_CACHE_OPS", 100000))
    codec = FastCodec(params)
    requests = mixed_requests(params, count, seed)
    per_request = expected_per_request(params, requests)
    await clock_and_reset(dut)
    widths = {"req": request_layout(params).size, "resp": response_layout(params).size}
    driver = BatchDriver(dut, ["req"], ["resp"], widths)
    split = 3 * len(requests) // 5
    compared = 0
    # the second part continues from the first's state: it is played after the first in the
    # same run of the golden model, so the controller must not be reset in between
    parts = [(PRESSURE[0], slice(0, split)), (PRESSURE[1], slice(split, None))]
    for (name, idle, stall), part in parts:
        expected = [beat for beats in per_request[part] for beat in beats]
        out = await driver.run({"req": [codec.encode(r) for r in requests[part]]},
                               {"resp": len(expected)}, idle, stall, reset=part.start == 0,
                               max_cycles=40 * len(expected) + 1000)
        compared += compare_responses([codec.decode(w) for w in out["resp"]], expected)
        for beat in expected:
            op = CacheOp(beat.op).name if beat.op in _OPS else "unknown"
            funcov.sample("cache", op, CacheStatus(beat.status).name, params.policy.name)
        log.info("%s: %d requests, %d response beats equal to the golden model", name,
                 len(requests[part]), len(expected))
    funcov.flush()
    path = os.environ.get("ELMOE_SUMMARY")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": "long_mixed", "requests": len(requests),
                                "beats": compared, "cycles": driver.cycles}) + "\n")
