"""The HB interface (and the LPDDR port) with the DRAM-die models on Verilator (marker
``verilator``): 1 MiB per channel byte-exact under back-pressure, every error case, and the same
cycle of every response as in Amaranth's simulator for the same access trace."""

import json
import random

import pytest

from hw.params import HB_DEFAULT, LPDDR_DEFAULT, HbBankTiming, Lpddr5Timing, MemOp
from sim.mem_channel.run import run_mem_batch, run_mem_bench
from sim.amaranth_streams import PRESSURE
from sim.dram_model import HbSystem, LpddrSystem
from sim.mem_channel.traffic import (PortDriver, covering, error_requests, expected_count,
                                     random_bursts, requests_to_json, run_in_amaranth, sequential)
from sw_model.golden.mem_channel import GoldenMemory, Request

pytestmark = pytest.mark.verilator


def test_integrity(seed):
    """The first 2048 words (64 KiB) of both channels written with seeded random data and read
    back (plus rewrites mixed in), both channels at once, idle 30% / back-pressure 40% on every
    stream."""
    env = {"ELMOE_MEM_WORDS": "2048"}
    tests, _ = run_mem_bench("hb", HB_DEFAULT, HbBankTiming(), testcase="integrity", seed=seed,
                             env=env)
    assert tests == 1


@pytest.mark.parametrize("system, params, timing", [
    ("hb", HB_DEFAULT, HbBankTiming()), ("lpddr", LPDDR_DEFAULT, Lpddr5Timing())],
    ids=["hb", "lpddr"])
def test_errors_then_normal_requests(system, params, timing, seed):
    """Every error case on every port in turn, each followed by a served write and read; on the
    HB interface then back-to-back longest writes row after row of one bank, so write headers
    wait for room in the write buffer, every word landing and reading back."""
    cases = ["errors", "write_buffer_full"] if system == "hb" else ["errors"]
    tests, _ = run_mem_bench(system, params, timing, testcase=cases, seed=seed)
    assert tests == len(cases)


def _trace(p, rng, first):
    """A short mixed trace in ``[first, first + 4096)`` plus one out-of-range read."""
    reqs = sequential(p, MemOp.WRITE, first, 128, p.max_length, rng)
    reqs += [Request(r.op, r.address + first, r.length, r.tag, r.data)
             for r in random_bursts(p, MemOp.READ, 10, 8, rng, 4096)]
    reqs += covering(p, MemOp.WRITE, 64, rng, first=first + 2048)
    reqs += [error_requests(p, rng)[2][1]]
    reqs += sequential(p, MemOp.READ, first, 128, 16, rng)
    reqs += [Request(MemOp.READ, first + 2048, min(40, p.max_length), 1)]
    return reqs


@pytest.mark.parametrize("system, pressure", [
    ("hb", "pressure"), ("lpddr", "free"),
    pytest.param("hb", "free", marks=pytest.mark.slow),
    pytest.param("lpddr", "pressure", marks=pytest.mark.slow)])
def test_same_trace_same_cycles_in_both_simulators(system, pressure, seed, tmp_path):
    """One access trace per port (sequential and random bursts, reads, writes, an error; on the
    LPDDR port each client in its own region), the same seeded idle and stall decisions: the
    cycle of every accepted request beat and of every response beat is the same in Amaranth's
    simulator and in Verilator."""
    system_class, p, timing = {
        "hb": (HbSystem, HB_DEFAULT, HbBankTiming()),
        "lpddr": (LpddrSystem, LPDDR_DEFAULT, Lpddr5Timing())}[system]
    ports = p.channels if system == "hb" else p.clients
    rng = random.Random(seed)
    traffic = [_trace(p, rng, 0 if system == "hb" else 4096 * k) for k in range(ports)]
    seeds = [seed + c for c in range(ports)]
    idle, stall = PRESSURE[pressure]

    drivers = [PortDriver(p, reqs, seed=s, idle=idle, stall=stall)
               for reqs, s in zip(traffic, seeds)]
    counts = [expected_count(p, reqs) for reqs in traffic]
    run_in_amaranth(system_class(p, timing), drivers, counts, 20000)
    for driver in drivers:
        driver.check(GoldenMemory(p))
    amaranth = {"responses": [[c for c, _ in d.responses] for d in drivers],
                "accepted": [d.accepted_cycles for d in drivers]}

    trace = tmp_path / "trace.json"
    out = tmp_path / "cycles.json"
    trace.write_text(json.dumps({"requests": [requests_to_json(r) for r in traffic],
                                 "seeds": seeds, "idle": idle, "stall": stall}))
    run_mem_bench(system, p, timing, testcase="trace", seed=seed,
                  env={"ELMOE_TRACE": str(trace), "ELMOE_TRACE_OUT": str(out)})
    verilator = json.loads(out.read_text())
    assert sum(map(len, amaranth["responses"])) == sum(counts) > 100
    assert verilator["accepted"] == amaranth["accepted"]
    assert verilator["responses"] == amaranth["responses"]


@pytest.mark.slow
@pytest.mark.parametrize("system, params, timing", [
    ("hb", HB_DEFAULT, HbBankTiming()), ("lpddr", LPDDR_DEFAULT, Lpddr5Timing())],
    ids=["hb", "lpddr"])
def test_long_run_free_running(system, params, timing, seed, tmp_path):
    """The long run: every word of every channel (1 MiB each) written with seeded random data in
    random-length bursts (later beats with random header fields) and read back, mixed with
    rewrites, all ports at once under idle cycles and back-pressure, played from simulation
    memories; every response compared with the golden model, then the whole array."""
    assert HB_DEFAULT.capacity_bytes == 1 << 20 and HB_DEFAULT.channels == 2
    summary = tmp_path / "summary.jsonl"
    tests, _ = run_mem_batch(system, params, timing, seed=seed,
                             env={"ELMOE_SUMMARY": str(summary)})
    assert tests == 1
    figures = json.loads(summary.read_text().splitlines()[-1])
    assert figures["words"] == params.words * (params.channels if system == "hb" else 1)
