"""End to end: golden model -> step records -> scheduler -> streams -> RTL and golden executor.

:func:`run_end_to_end` lets the golden MoE model decode (Elastic-SD, cached decoding, or both) with
a :class:`sw_model.step_record.StepRecorder` keeping every step's detail, schedules the first steps
(:mod:`sw_model.scheduler`), builds each step's memory images (:func:`sw_model.step_check.step_images`:
HB slots with the resident experts' MSB shards, LPDDR with the planes the stream reads, IMEM with
the recorded INT8 expert inputs), and runs every stream -- the CACHE prologue that brings a reset
controller to the step's state, then the step -- on the golden executor and, in one simulator run,
on the Verilated accelerator (:func:`sim.top_runner.run_streams`). Per step it reports whether the
RTL's final memories and slot table equal the executor's, bit for bit, whether the host's float
part on the RTL's output memory reproduces the golden model's expert and MoE block outputs, and the
cycles per phase.

The machine (:func:`machine_for_steps`) is the small simulated one (``TOP_DEFAULT``'s MAC array and
timings) with ``pes`` PEs, the expert cache of the records (FREQUENCY policy: cached decoding runs
on it too; with no COUNT its victims are exactly LRU's, since all counts stay zero) and memories
sized to the scheduled steps, so that nothing wraps and every result survives to be read back.
"""

import logging
import math
import time

import numpy as np

from hw.isa import validate
from hw.params import TOP_DEFAULT
from sw_model.cache_bridge import ControllerExpertCache
from sw_model.decoding import SDConfig, cached_decode, elastic_sd
from sw_model.draft_policies import make_policy
from sw_model.executor import execute
from sw_model.expert_cache import ExpertCacheModel, replay
from sw_model.scheduler import PHASES, schedule_step, stream_bytes
from sw_model.step_check import check_floats, prologue, step_images
from sw_model.step_record import StepRecorder
from sw_model.weight_layout import WeightLayout, machine_for

__all__ = ["record_steps", "machine_for_steps", "run_end_to_end"]

log = logging.getLogger(__name__)

#: Memory sizes the first scheduling pass may use (the ISA's limits); the machine is then shrunk.
_ROOMY = dict(act_words=1 << 10, input_words=1 << 16, output_words=1 << 16, command_words=1 << 20)


def record_steps(model, mode, batch, steps, capacity, gamma=3, seed=0):
    """Decode random prompts (seeded) on the golden ``model`` in ``mode`` ("elastic_sd" or
    "cached") with a detailed recorder; returns ``(records, decode result)``, records of the
    first ``steps`` steps. The cache is the controller's golden model with the FREQUENCY policy."""
    c = model.config
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, c.vocab_size, rng.integers(4, 13)) for _ in range(batch)]
    recorder = StepRecorder(detail=True)
    cache = ControllerExpertCache(c, capacity, "FREQUENCY")
    if mode == "elastic_sd":
        result = elastic_sd(model, prompts, steps * (gamma + 1) + 1, make_policy("resident"),
                            SDConfig(gamma=gamma, capacity=capacity), cache=cache,
                            rng=np.random.default_rng(seed), recorder=recorder)
    elif mode == "cached":
        result = cached_decode(model, prompts, steps + 1, cache=cache,
                               rng=np.random.default_rng(seed), recorder=recorder)
    else:
        raise ValueError(f"mode must be 'elastic_sd' or 'cached', not {mode!r}")
    return recorder.steps[:steps], result


def _pow2(n, least):
    return max(least, 1 << max(0, math.ceil(math.log2(max(1, n)))))


def machine_for_steps(config, records, pes, capacity):
    """The smallest machine (memories rounded up to powers of two) on which the scheduled
    ``records`` (with their prologues) run without any memory wrapping."""
    roomy = machine_for(config, "elastic_sd", TOP_DEFAULT, capacity, pes, grow=True, **_ROOMY)
    layout = WeightLayout(config, roomy)
    need = dict(output=1, input=1, commands=1, act=1)
    for record in records:
        sched = schedule_step(record, layout)
        if sched.wrapped:
            raise ValueError(f"step {record.index} does not fit even the largest memories the ISA "
                             f"addresses ({', '.join(sorted(sched.wrapped))} wrapped)")
        need["output"] = max(need["output"], max((r.omem for r in sched.results), default=0) + 1
                             + sched_scratch(roomy))
        need["input"] = max(need["input"], sched.imem_used)
        need["commands"] = max(need["commands"],
                               len(sched.commands) + len(prologue(record, layout)))
    sizes = dict(act_words=_ROOMY["act_words"], input_words=_pow2(need["input"], 64),
                 output_words=_pow2(need["output"], 32),
                 command_words=_pow2(need["commands"], 256))
    return machine_for(config, "elastic_sd", TOP_DEFAULT, capacity, pes, grow=True, **sizes)


def sched_scratch(params):
    """OMEM words the scheduler keeps for scratch partials at the top."""
    return max(1, (params.weight_words // 2) // params.mac.beats_per_group)


def run_end_to_end(model, cases, pes, capacity=None, gamma=3, seed=0, params=None,
                   progress=None):
    """Run ``cases`` (a list of ``(mode, batch, steps)``) end to end on ``pes`` PEs (module
    docstring); ``progress(message)`` is called at each stage. Returns ``(report, params)``:
    ``report`` a list of dicts per step (mode, step, match, floats, cycles, phase_cycles, ...)."""
    say = progress or (lambda message: None)
    c = model.config
    capacity = capacity if capacity is not None else max(c.top_k, c.num_experts // 4)
    runs = []
    for mode, batch, steps in cases:
        say(f"golden model: {mode} decoding of {batch} sequences")
        records, result = record_steps(model, mode, batch, steps, capacity, gamma, seed)
        runs += [(mode, record, result.steps[record.index]) for record in records]
    if params is None:
        params = machine_for_steps(c, [r for _, r, _ in runs], pes, capacity)
    layout = WeightLayout(c, params)
    jobs, golden, scheduled = [], [], []
    from sim.top_runner import Job, run_streams
    for mode, record, stats in runs:
        sched = schedule_step(record, layout)
        if sched.wrapped:
            raise ValueError(f"{mode} step {record.index}: {', '.join(sorted(sched.wrapped))} "
                             f"wrapped on {params.describe()}")
        cache = ExpertCacheModel(params.cache)
        replay(cache, record.prior_requests)
        validate(sched.commands, params, cache)
        stream = prologue(record, layout) + sched.commands
        say(f"{mode} step {record.index}: {len(sched.commands)} commands (and "
            f"{len(stream) - len(sched.commands)} of prologue); images, golden executor")
        images = step_images(model, record, sched)
        start = time.monotonic()
        gold = execute(stream, params, images)
        log.info("golden executor: %.1f s", time.monotonic() - start)
        if gold.error.name != "NONE":
            raise RuntimeError(f"{mode} step {record.index}: the golden executor stopped with "
                               f"{gold.message}")
        golden.append(gold)
        scheduled.append((mode, record, stats, sched))
        jobs.append(Job(stream, images, max_cycles=50 * len(stream) + 100_000))
    say(f"RTL on Verilator ({params.describe()}): {len(jobs)} stream(s)")
    results = run_streams(params, jobs, seed=seed)
    report = []
    for (mode, record, stats, sched), gold, rtl in zip(scheduled, golden, results):
        same = (rtl.done and rtl.error == gold.error and rtl.images == gold.images
                and rtl.slot_table == gold.slot_table())
        try:
            floats = check_floats(model, record, sched, rtl.images.omem)
            floats_ok, floats_note = True, floats
        except (AssertionError, ValueError) as exc:
            floats_ok, floats_note = False, str(exc)
        report.append({
            "mode": mode, "step": record.index, "pes": params.pes,
            "match": bool(same), "floats": floats_ok, "floats_checked": floats_note,
            "differences": [] if same else gold.images.differences(rtl.images),
            "commands": len(sched.commands), "cycles": rtl.cycles,
            "phase_cycles": {name: rtl.phase_cycles[i] for name, i in PHASES.items()},
            "bytes": stream_bytes(sched.commands, params),
            "accepted": list(record.accepted), "proposed": record.gamma * len(record.sequences),
            "jobs": len(sched.jobs)})
    return report, params
