"""cocotb harness for the MAC array: drivers on every stream, job submission, result checking.

The parameters reach the bench through the environment (``ELMOE_MAC_PARAMS``, JSON of
:class:`hw.params.MacArrayParams`), since the simulator process is started by the runner.
"""

import itertools
import json
import logging
import os
import random

from cocotb.triggers import ClockCycles

from hw.params import MacArrayParams
from sim import funcov
from sim.cocotb_streams import StreamSource, StreamSink, clock_and_reset
from hw.params import MacMode
from sim.mac_array.batch import MacCodec
from sim.mac_array.jobs import check_results

__all__ = ["PARAMS_ENV", "SUMMARY_ENV", "params_from_env", "MacHarness", "read_summary"]

PARAMS_ENV = "ELMOE_MAC_PARAMS"
SUMMARY_ENV = "ELMOE_SUMMARY"

logger = logging.getLogger(__name__)
_serials = itertools.count()


def params_from_env():
    return MacArrayParams.from_dict(json.loads(os.environ[PARAMS_ENV]))


class MacHarness:
    """Starts the clock, resets, and binds a source to each input stream and a sink to results."""

    def __init__(self, dut, params, seed):
        self.dut, self.params = dut, params
        self.rng = random.Random(seed)
        self.checked = 0      # group dot products compared with the golden model so far
        self.serial = next(_serials)
        self.codec = MacCodec(params)
        self.op = StreamSource(dut, "op", self.rng)
        self.act = StreamSource(dut, "act", self.rng)
        self.weights = StreamSource(dut, "weights", self.rng)
        self.results = StreamSink(dut, "results", self.rng)

    @classmethod
    async def start(cls, dut, params, seed):
        harness = cls(dut, params, seed)
        await clock_and_reset(dut)
        return harness

    def set_pressure(self, idle=0.0, stall=0.0):
        """Random idle cycles on every input stream and random back-pressure on results."""
        for source in (self.op, self.act, self.weights):
            source.idle = idle
        self.results.stall = stall

    async def run(self, jobs):
        """Send ``jobs``, wait for their results, check them bit for bit against the golden
        model, and check every stream is drained with nothing extra produced. Returns the number
        of group dot products checked and the decoded results ``(tag, mode, sums)``."""
        for job in jobs:
            op, acts, weights = self.codec.job_beats(job)
            self.op.send([op])
            self.act.send(acts)
            self.weights.send(weights)
        beats = len(jobs) * self.params.beats_per_group
        raw = await self.results.recv(len(jobs), timeout_cycles=20 * beats + 100)
        tags, modes, sums = self.codec.results([int(r) for r in raw])
        results = [(tag, MacMode(mode), s) for tag, mode, s in zip(tags, modes, sums)]
        checked = check_results(self.params, jobs, results)
        self.checked += checked
        pressure = "pressure" if self.op.idle or self.results.stall else "free"
        for job in jobs:
            funcov.sample("mac", job.mode.name, "load" if job.load_act else "reuse", pressure,
                          funcov.mac_values(job.x, job.q))
        funcov.flush()
        await ClockCycles(self.dut.clk, 2 * self.params.beats_per_group + 8)
        for source in (self.op, self.act, self.weights):
            assert source.empty, f"{source.prefix}: {len(source.queue)} beats never accepted"
        assert not self.results.received, \
            f"{len(self.results.received)} results beyond the {len(jobs)} expected"
        self._record()
        return checked, results

    def _record(self):
        """Append this harness's running total to ``ELMOE_SUMMARY`` (JSON lines), if set, so a
        caller outside the simulator can report how much was checked."""
        path = os.environ.get(SUMMARY_ENV)
        if path:
            with open(path, "a") as f:
                f.write(json.dumps({"harness": self.serial, "dot_products": self.checked}) + "\n")


def read_summary(path):
    """Group dot products checked, over every harness that wrote to the summary at ``path``."""
    totals = {}
    with open(path) as f:
        for line in f:
            entry = json.loads(line)
            totals[entry["harness"]] = entry["dot_products"]
    return sum(totals.values())
