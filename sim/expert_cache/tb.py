"""cocotb bench: the Verilated expert-cache controller against the golden model, beat for beat.

Environment: ``ELMOE_CACHE_PARAMS`` (JSON params, set by :func:`run_cache_bench`), ``ELMOE_SEED``
(default 1), ``ELMOE_CACHE_OPS`` (requests of the mixed-trace test, default 100000; the first
three fifths run with random idle cycles on ``req`` and back-pressure on ``resp``, the rest
without), ``ELMOE_SUMMARY`` (JSON lines of what was compared), ``ELMOE_BENCH_OUT`` (where the
``throughput`` test writes its figures).
"""

import json
import logging
import os
import random

import cocotb
from cocotb.triggers import ClockCycles

from hw.params import CacheOp, CacheStatus, ExpertCacheParams
from sim.expert_cache.ops import (FastCodec, mixed_requests, expected_responses,
                                  expected_per_request, compare_responses, lookup_sweep)
from sim.cocotb_streams import StreamSource, StreamSink, clock_and_reset
from sim.cocotb_streams import seed_from_env
from sim import funcov
from sw_model.golden.expert_cache import Request

log = logging.getLogger("cocotb.tb_expert_cache")
_OPS = set(int(op) for op in CacheOp)

PARAMS_ENV = "ELMOE_CACHE_PARAMS"
PRESSURE = [("idle 30% / back-pressure 30%", 0.3, 0.3), ("no pressure", 0.0, 0.0)]


def params_from_env():
    return ExpertCacheParams.from_dict(json.loads(os.environ[PARAMS_ENV]))


class CacheHarness:
    """Clock, reset, a source on ``req`` and a sink on ``resp``; compares with the golden model."""

    def __init__(self, dut, params, seed):
        self.dut, self.params = dut, params
        self.codec = FastCodec(params)
        self.rng = random.Random(seed)
        self.req = StreamSource(dut, "req", self.rng)
        self.resp = StreamSink(dut, "resp", self.rng)
        self.compared = 0

    @classmethod
    async def start(cls, dut, params, seed):
        harness = cls(dut, params, seed)
        await clock_and_reset(dut)
        return harness

    async def run(self, requests, expected, idle=0.0, stall=0.0):
        """Send ``requests``, collect as many beats as ``expected`` has, compare every field, and
        check nothing more comes out."""
        self.req.idle, self.resp.stall = idle, stall
        self.req.send(self.codec.encode(r) for r in requests)
        raw = await self.resp.recv(len(expected), timeout_cycles=40 * len(expected) + 200)
        compared = compare_responses([self.codec.decode(r) for r in raw], expected)
        policy = self.params.policy.name
        for beat in expected:
            op = CacheOp(beat.op).name if beat.op in _OPS else "unknown"
            funcov.sample("cache", op, CacheStatus(beat.status).name, policy)
        funcov.flush()
        await ClockCycles(self.dut.clk, 8)
        assert self.req.empty, f"req: {len(self.req.queue)} requests never accepted"
        assert not self.resp.received, f"{len(self.resp.received)} beats beyond the expected"
        self.compared += compared
        return compared


def _summary(**entry):
    path = os.environ.get("ELMOE_SUMMARY")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


@cocotb.test()
async def mixed_traces(dut):
    """``ELMOE_CACHE_OPS`` requests of every kind (decoder patterns from generated routing traces,
    pins, selects, bad requests, random raw requests), every response compared with the golden
    model; part under random idle cycles and back-pressure, part without."""
    params, seed = params_from_env(), seed_from_env()
    count = int(os.environ.get("ELMOE_CACHE_OPS", 100000))
    requests = mixed_requests(params, count, seed)
    per_request = expected_per_request(params, requests)
    harness = await CacheHarness.start(dut, params, seed)
    split = 3 * len(requests) // 5
    for (name, idle, stall), part in zip(PRESSURE, (slice(0, split), slice(split, None))):
        expected = [beat for beats in per_request[part] for beat in beats]
        await harness.run(requests[part], expected, idle, stall)
        log.info("%s: %d requests, %d response beats equal to the golden model",
                 name, len(requests[part]), len(expected))
    statuses = {s.name: sum(1 for beats in per_request for b in beats if b.status is s)
                for s in CacheStatus}
    log.info("statuses compared: %s", statuses)
    _summary(test="mixed_traces", requests=len(requests), beats=harness.compared,
             statuses=statuses)


@cocotb.test()
async def pinned_entries_are_never_evicted(dut):
    """Pin every way of a set, then try to displace them: INSTALL into the set, SELECT with the
    set's other keys the most frequent, INVALIDATE, INVALIDATE_ALL; then LOOKUP every key."""
    params, seed = params_from_env(), seed_from_env()
    p = params
    harness = await CacheHarness.start(dut, params, seed)
    in_set = [(l, e) for l in range(p.layers) for e in range(p.experts) if p.set_of(l, e) == 0]
    keep, others = in_set[:p.ways], in_set[p.ways:]
    requests = [Request(CacheOp.INSTALL, 1, *k) for k in keep]
    requests += [Request(CacheOp.PIN, 2, *k) for k in keep]
    requests += [Request(CacheOp.INSTALL, 3, *k) for k in others]
    for _ in range(p.counter_max):
        for l, e in others:
            requests.append(Request(CacheOp.COUNT, 4, l, 0, 1 << e))
    requests += [Request(CacheOp.SELECT, 5), Request(CacheOp.INVALIDATE_ALL, 6)]
    requests += [Request(CacheOp.INVALIDATE, 7, *k) for k in keep]
    requests += lookup_sweep(p, tag=8)
    expected = expected_responses(p, requests)
    await harness.run(requests, expected, 0.2, 0.2)
    hits = {(b.layer, b.expert) for b in expected if b.tag == 8 and b.status is CacheStatus.HIT}
    assert set(keep) <= hits, f"pinned keys {set(keep) - hits} were evicted"
    assert not any(b.victim_valid and (b.victim_layer, b.victim_expert) in keep
                   for b in expected), "a pinned key was named as a victim"
    if others:
        assert any(b.status is CacheStatus.PINNED for b in expected if b.tag == 3)
    log.info("%d pinned keys survived %d displacement attempts", len(keep), len(requests))


@cocotb.test()
async def throughput(dut):
    """Back-to-back LOOKUPs (hits and misses) with both streams always ready: lookups accepted
    per cycle and cycles from a request's handshake to its response's. Writes the figures to
    ``ELMOE_BENCH_OUT`` when set."""
    params, seed = params_from_env(), seed_from_env()
    p = params
    lookups = int(os.environ.get("ELMOE_BENCH_LOOKUPS", 2000))
    harness = await CacheHarness.start(dut, params, seed)
    rng = random.Random(seed)
    warm = [Request(CacheOp.INSTALL, 0, rng.randrange(p.layers), rng.randrange(p.experts))
            for _ in range(4 * p.slots)]
    await harness.run(warm, expected_responses(p, warm))
    requests = [Request(CacheOp.LOOKUP, i % (1 << p.tag_width), rng.randrange(p.layers),
                        rng.randrange(p.experts)) for i in range(lookups)]
    expected = expected_responses(p, warm + requests)[len(warm):]
    first_req = len(harness.req.handshake_cycles)
    first_resp = len(harness.resp.handshake_cycles)
    await harness.run(requests, expected)
    req_cycles = harness.req.handshake_cycles[first_req:]
    resp_cycles = harness.resp.handshake_cycles[first_resp:]
    assert len(req_cycles) == len(resp_cycles) == lookups
    latencies = [b - a for a, b in zip(req_cycles, resp_cycles)]
    figures = {
        "lookups": lookups,
        "hits": sum(1 for b in expected if b.status is CacheStatus.HIT),
        "cycles": req_cycles[-1] - req_cycles[0] + 1,
        "lookups_per_cycle": lookups / (req_cycles[-1] - req_cycles[0] + 1),
        "responses_per_cycle": lookups / (resp_cycles[-1] - resp_cycles[0] + 1),
        "lookup_latency_cycles": max(latencies),
        "lookup_latency_min_cycles": min(latencies),
    }
    log.info("throughput: %s", figures)
    assert figures["lookup_latency_cycles"] <= 2
    out = os.environ.get("ELMOE_BENCH_OUT")
    if out:
        with open(out, "w") as f:
            json.dump(figures, f, indent=1)
