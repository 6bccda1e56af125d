"""End to end: golden model -> step records -> scheduler -> streams -> RTL and golden executor.

:func:`run_end_to_end` lets the golden MoE model decode (Elastic-SD, cached decoding, or both) with
a :class:`sw_model.decode.step_record.StepRecorder` keeping every step's detail, schedules the first
steps (:mod:`sw_model.compiler.scheduler`) in parts that fit the machine's memories, builds each
part's memory images (:func:`sw_model.compiler.step_check.step_images`: HB slots with the resident
experts' MSB shards, LPDDR with the plane words the part reads, IMEM with the recorded INT8 expert
inputs), and runs every part -- the CACHE prologue that brings a reset controller to the part's
starting state, then the part -- on the golden executor and, in one simulator run, on the Verilated
accelerator (:func:`sim.top.run.run_streams`); HB carries from part to part. Per step it reports
whether the RTL's final memories and slot table equal the executor's, bit for bit, in every part,
whether the host's float part on the RTL's output memories reproduces the golden model's expert and
MoE block outputs, and the cycles per phase (summed over the parts; "setup" is the prologues').

The machine (:func:`e2e_machine`) is a small simulated one (``TOP_DEFAULT``'s timings, the MAC
array :data:`E2E_MAC`, memories :data:`E2E_SIZES`) with ``pes`` PEs and the expert cache of the
records (FREQUENCY policy: cached decoding runs on it too; with no COUNT its victims are exactly
LRU's, since all counts stay zero).
"""

import dataclasses
import logging
import time

import numpy as np

from hw.machines import DEMO_MACHINE
from sw_model.decode.cache_bridge import ControllerExpertCache
from sw_model.decode.decoding import SDConfig, cached_decode, elastic_sd
from sw_model.decode.draft_policies import make_policy
from sw_model.golden.top import execute, validate
from sw_model.golden.expert_cache import ExpertCacheModel, replay
from sw_model.compiler.scheduler import PHASES, check_pass_fits, schedule_step, stream_bytes
from sw_model.compiler.step_check import check_floats, prologue, step_images
from sw_model.decode.step_record import StepRecorder
from sw_model.compiler.weight_layout import WeightLayout, machine_for

__all__ = ["record_steps", "e2e_machine", "golden_parts", "run_end_to_end", "E2E_BASE"]

log = logging.getLogger(__name__)

#: The base of the simulated machine: the built-in ``demo`` machine (:data:`hw.machines.DEMO_MACHINE`).
E2E_BASE = DEMO_MACHINE


def record_steps(model, mode, batch, steps, capacity, gamma=3, seed=0, tree="chain"):
    """Decode random prompts (seeded) on the golden ``model`` in ``mode`` ("elastic_sd" or
    "cached") with a detailed recorder; returns ``(records, decode result)``, records of the
    first ``steps`` steps. The cache is the controller's golden model with the FREQUENCY policy.
    Elastic-SD drafts a chain of ``gamma`` tokens, or the token tree ``tree``
    (:func:`sw_model.decode.tree.parse_tree`)."""
    c = model.config
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, c.vocab_size, rng.integers(4, 13)) for _ in range(batch)]
    recorder = StepRecorder(detail=True)
    cache = ControllerExpertCache(c, capacity, "FREQUENCY")
    if mode == "elastic_sd":
        sd = SDConfig(gamma=gamma, capacity=capacity, tree=tree)
        longest = sd.shape.depth if sd.shape is not None else gamma
        result = elastic_sd(model, prompts, steps * (longest + 1) + 1, make_policy("resident"),
                            sd, cache=cache, rng=np.random.default_rng(seed), recorder=recorder)
    elif mode == "cached":
        result = cached_decode(model, prompts, steps + 1, cache=cache,
                               rng=np.random.default_rng(seed), recorder=recorder)
    else:
        raise ValueError(f"mode must be 'elastic_sd' or 'cached', not {mode!r}")
    return recorder.steps[:steps], result


def e2e_machine(config, pes, capacity, base=E2E_BASE):
    """The simulated machine for ``config`` on ``pes`` PEs with ``capacity`` HB-resident experts
    per MoE layer: ``base`` (default the ``demo`` machine) with its cache, slots, HB and LPDDR
    fitted to the model (:func:`sw_model.compiler.weight_layout.machine_for` with ``grow``)."""
    return machine_for(config, "elastic_sd", base, capacity, pes, grow=True)


def golden_parts(model, record, layout):
    """Schedule ``record`` in parts and run each on the golden executor, HB carried from part to
    part. Returns ``(schedule, [(stream, images, executor result) per part])``; each stream is the
    CACHE prologue up to that part, then the part."""
    params = layout.params
    first = prologue(record, layout)
    step_cache = sum(len(v) for v in record.cache_requests.values()) * 4
    sched = schedule_step(record, layout, split=True,
                          part_commands=params.command_words - len(first) - step_cache - 2)
    cache = ExpertCacheModel(params.cache)
    replay(cache, record.prior_requests)
    validate(sched.commands, params, cache)
    parts, hb = [], None
    for k in range(len(sched.parts)):
        stream = prologue(record, layout, sched, k) + sched.part_commands(k)
        images = step_images(model, record, sched, part=k, hb=hb)
        gold = execute(stream, params, images)
        if gold.error.name != "NONE":
            raise RuntimeError(f"step {record.index} part {k}: the golden executor stopped with "
                               f"{gold.message}")
        hb = gold.images.hb
        parts.append((stream, images, gold))
    return sched, parts


def run_end_to_end(model, cases, pes, capacity=None, gamma=3, seed=0, params=None,
                   progress=None, base=E2E_BASE, tree="chain"):
    """Run ``cases`` (a list of ``(mode, batch, steps)``) end to end on ``pes`` PEs (module
    docstring); Elastic-SD drafts a chain of ``gamma`` or the token tree ``tree``, whose
    verification pass must fit one part of the machine whatever the routing (checked before
    decoding: :func:`sw_model.compiler.scheduler.check_pass_fits`). ``progress(message)`` is
    called at each stage. Returns ``(report, params)``: ``report`` a list of dicts per step (mode,
    step, match, floats, cycles, phase_cycles, ...)."""
    say = progress or (lambda message: None)
    c = model.config
    capacity = capacity if capacity is not None else max(c.top_k, c.num_experts // 4)
    if params is None:
        params = e2e_machine(c, pes, capacity, base)
    layout = WeightLayout(c, params)
    sd = SDConfig(gamma=gamma, capacity=capacity, tree=tree)
    for mode, batch, steps in cases:
        if mode == "elastic_sd":
            check_pass_fits(layout, batch, sd.verify_tokens,
                            "decoding.tree" if sd.shape is not None else "decoding.gamma")
    runs = []
    for mode, batch, steps in cases:
        say(f"golden model: {mode} decoding of {batch} sequences")
        records, result = record_steps(model, mode, batch, steps, capacity, gamma, seed, tree)
        runs += [(mode, record, result.steps[record.index]) for record in records]
    jobs, scheduled = [], []
    from sim.top.run import Job, run_streams
    for mode, record, stats in runs:
        say(f"{mode} step {record.index}: scheduling, memory images, golden executor")
        start = time.monotonic()
        sched, parts = golden_parts(model, record, layout)
        log.info("golden executor: %.1f s", time.monotonic() - start)
        say(f"{mode} step {record.index}: {len(sched.commands)} commands in {len(parts)} "
            f"part(s)")
        scheduled.append((mode, record, sched, parts))
        jobs += [Job(stream, images, max_cycles=50 * len(stream) + 100_000)
                 for stream, images, _ in parts]
    say(f"RTL on Verilator ({params.describe()}): {len(jobs)} stream(s)")
    results = iter(run_streams(params, jobs, seed=seed))
    report = []
    for mode, record, sched, parts in scheduled:
        rtl = [next(results) for _ in parts]
        differences = []
        for k, ((_, _, gold), r) in enumerate(zip(parts, rtl)):
            if not (r.done and r.error == gold.error):
                differences.append(f"part {k}: RTL done={r.done} error={r.error}, executor "
                                   f"error={gold.error.name}")
            differences += [f"part {k}: {d}" for d in gold.images.differences(r.images)]
            if r.slot_table != gold.slot_table():
                differences.append(f"part {k}: slot tables differ")
        try:
            floats = check_floats(model, record, sched, [r.images.omem for r in rtl])
            floats_ok, floats_note = True, floats
        except (AssertionError, ValueError) as exc:
            floats_ok, floats_note = False, str(exc)
        phase_cycles = {name: sum(r.phase_cycles[i] for r in rtl) for name, i in PHASES.items()}
        report.append({
            "mode": mode, "step": record.index, "pes": params.pes, "parts": len(parts),
            "match": not differences, "floats": floats_ok, "floats_checked": floats_note,
            "differences": differences[:5],
            "commands": len(sched.commands), "cycles": sum(r.cycles for r in rtl),
            "phase_cycles": phase_cycles, "bytes": stream_bytes(sched.commands, params),
            "accepted": list(record.accepted), "proposed": record.proposed,
            "tree": ({b: len(t[0]) - 1 for b, t in record.trees.items()}
                     if record.trees is not None else None),
            "target_rows": (len(record.target_routes[record.layers[0]])
                            if record.mode == "elastic_sd" else len(record.sequences)),
            "jobs": len(sched.jobs), "mac_dq": sched.counts().get("MAC_DQ", 0),
            "outputs": len(sched.results)})
    return report, params
