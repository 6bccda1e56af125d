"""cocotb bench that runs command streams on the Verilated accelerator (:mod:`sim.top.system`).

Environment (set by :func:`sim.top.run.run_streams`): ``ELMOE_TOP_PARAMS`` (TopParams JSON),
``ELMOE_TOP_JOBS`` (JSON file: a list of jobs ``{"words": [...], "images": {...}, "max_cycles":
N}``), ``ELMOE_TOP_OUT`` (JSON file the results go to). Per job: reset, preload the command
memory and every memory image through the back door (words a previous job left non-zero are
cleared), pulse ``start`` of the host control port (``host__start`` with ``host__length``), let
the simulator run in steps of ``STEP`` cycles until ``done``, let the DRAM dies drain their queues
(an acknowledged write may still wait there), then read the status and every memory back. Python
touches no signal while the machine runs.
"""

import json
import logging
import os

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge, Timer
from cocotb.types import Logic

from hw.command_processor import HostControlSignature
from hw.isa import PHASES
from hw.params import TopParams
from sim.cocotb_streams import CLOCK_PERIOD_NS, clock_and_reset, reset

log = logging.getLogger("cocotb.tb_top")

#: Cycles the simulator runs between two looks at ``done``.
STEP = 256


class Backdoor:
    """Every memory of the system as cocotb arrays, by the names of :class:`sw_model.golden.top.
    Images` (``hb`` and ``wmem``/``amem``/``omem`` per PE)."""

    def __init__(self, dut, params):
        top = dut.top
        self.cmem = top.processor.cmem
        self.arrays = {"lpddr": dut.lpddr_die.storage.words, "imem": top.imem.imem}
        for k in range(params.pes):
            pe = getattr(top, f"pe{k}")
            self.arrays[f"hb[{k}]"] = getattr(dut, f"hb_die{k}").storage.words
            for name in ("wmem", "amem", "omem"):
                self.arrays[f"{name}[{k}]"] = getattr(pe, name)
        self.dirty = {name: set() for name in self.arrays}

    def load(self, images):
        """Write ``images`` (``{name: {address: word}}``), clearing words left by earlier jobs."""
        for name, array in self.arrays.items():
            words = images.get(name, {})
            for addr in self.dirty[name] - set(words):
                array[addr].value = 0
            for addr, word in words.items():
                array[addr].value = word
            self.dirty[name] = set(words)

    def read(self, name, addresses):
        array = self.arrays[name]
        words = {}
        for addr in addresses:
            word = array[addr].value.to_unsigned()
            if word:
                words[addr] = word
        self.dirty[name] |= set(words)
        return words


def _unsigned(handle):
    """A signal's value as an int: a one-bit signal reads as a ``Logic``, a wider one as a
    ``LogicArray`` (a cache of one layer has one-bit layer fields)."""
    value = handle.value
    return int(value) if isinstance(value, Logic) else value.to_unsigned()


def _slot_table(dut, params):
    cp = dut.top.processor
    valid = _unsigned(cp.slot_valid)
    pinned = _unsigned(cp.slot_pinned)
    table = {}
    for s in range(params.cache.slots):
        if valid >> s & 1:
            table[s] = [_unsigned(getattr(cp, f"slot_layer_{s}")),
                        _unsigned(getattr(cp, f"slot_expert_{s}")), pinned >> s & 1]
    return table


@cocotb.test()
async def run_jobs(dut):
    """Run every job of ``ELMOE_TOP_JOBS`` and write the results to ``ELMOE_TOP_OUT``."""
    params = TopParams.from_dict(json.loads(os.environ["ELMOE_TOP_PARAMS"]))
    jobs = json.loads(open(os.environ["ELMOE_TOP_JOBS"]).read())
    p = params
    host = HostControlSignature(p).members
    status_shape, phases_shape = host["status"].shape, host["phase_cycles"].shape
    dut.host__start.value = 0
    dut.host__length.value = 0
    await clock_and_reset(dut)
    door = Backdoor(dut, p)
    dies = [getattr(dut, f"hb_die{k}") for k in range(p.pes)] + [dut.lpddr_die]
    sizes = {"lpddr": None, "imem": None}
    for k in range(p.pes):
        sizes.update({f"wmem[{k}]": p.weight_words, f"amem[{k}]": p.act_words,
                      f"omem[{k}]": p.output_words, f"hb[{k}]": None})
    results = []
    for number, job in enumerate(jobs):
        await reset(dut)
        images = {name: {int(a): w for a, w in words.items()}
                  for name, words in job["images"].items()}
        door.load(images)
        for i, word in enumerate(job["words"]):
            door.cmem[i].value = word
        dut.host__length.value = len(job["words"])
        dut.host__start.value = 1
        await RisingEdge(dut.clk)
        dut.host__start.value = 0
        waited = 0
        while True:
            # one timer, not ClockCycles (which wakes Python at every edge)
            await Timer(STEP * CLOCK_PERIOD_NS, "ns")
            waited += STEP
            await ReadOnly()
            status = status_shape.from_bits(dut.host__status.value.to_unsigned())
            if status.done or waited >= job["max_cycles"]:
                break
            await RisingEdge(dut.clk)
        phases = phases_shape.from_bits(dut.host__phase_cycles.value.to_unsigned())
        cycles = dut.host__cycles.value.to_unsigned()
        # A write is acknowledged once the die has it queued (later requests see it); the array
        # itself is written when the die gets to it, so let the dies drain before reading back.
        for _ in range(64):
            if not any(die.count.value.to_unsigned() for die in dies):
                break
            await RisingEdge(dut.clk)
            await Timer(16 * CLOCK_PERIOD_NS, "ns")
            await ReadOnly()
        else:
            raise AssertionError(f"stream {number}: the DRAM dies did not drain")
        final = {}
        for name, size in sizes.items():
            if size is not None:
                addresses = range(size)
            else:
                addresses = set(images.get(name, {}))
                if name.startswith("hb["):
                    addresses |= set(range(p.slot_region_words))
            final[name] = door.read(name, sorted(addresses))
        results.append({
            "done": int(status.done), "error": int(status.error),
            "progress": int(status.progress), "cycles": cycles,
            "phase_cycles": [int(phases[k]) for k in range(PHASES)],
            "images": final, "slots": _slot_table(dut, p),
        })
        await RisingEdge(dut.clk)
        if number % 100 == 99:
            log.info("%d of %d streams run", number + 1, len(jobs))
    with open(os.environ["ELMOE_TOP_OUT"], "w") as out:
        json.dump(results, out)
