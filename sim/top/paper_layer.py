"""One MoE layer of a paper model's real shape on a top built from the paper's PE, on Verilator,
against the golden executor bit for bit, with the figures that say how well the PE is used.

:func:`run_paper_layer` (``python build.py bench paper-layer``, and a slow test):

* **machine**: the paper's PE (``TOP_PAPER``: 16x32x32 array, 32 KB weight memory, 16 KB of
  activations and 15.75 KB of results, a 256-bit HB channel, a client of the 512-bit LPDDR port)
  with ``pes`` PEs; the expert cache, its slots, HB and LPDDR sized to the one MoE layer
  (:func:`sw_model.compiler.weight_layout.machine_for` with ``grow``).
* **steps**: trace-driven step records of the model's routing statistics (no weights are needed to
  schedule): one cached-decoding step and the verification phase of one Elastic-SD step, each of
  ``batch`` sequences, scheduled as one stream each (the output memory wraps around: each output
  leaves it when the host reads it, and the final memories hold the last ones).
* **memories**: every expert the streams touch gets random INT8 codes and FP16 scales, packed by
  the weight layout into its HB slot (resident experts) and its LPDDR planes; IMEM holds random
  INT8 activations and binary32 token scales.
* **checks**: each stream's final memories (WMEM, AMEM, OMEM, HB, IMEM), error code, progress and
  slot table equal the golden executor's.
* **figures**: the Verilator build and the run time, simulated cycles per second; the MAC
  utilisation during MAC commands (the streams' MAC_DQ commands run back to back with their weights
  in WMEM: weight beats over cycles); each memory's share of its peak during loads (the streams'
  HB loads, then their LPDDR loads, each in a phase of its own: bytes over cycles times the peak
  bytes per cycle).
"""

import dataclasses
import time

import numpy as np

from hw.isa import Command, Opcode
from hw.params import TOP_PAPER
from sim.top.run import Job, run_streams
from sw_model.compiler.scheduler import PHASES, schedule_step
from sw_model.compiler.step_check import lpddr_read, place_lpddr, place_slot, prologue
from sw_model.compiler.trace_steps import trace_records
from sw_model.compiler.weight_layout import WeightLayout, machine_for
from sw_model.golden.quant import QuantWeights
from sw_model.golden.top import Images, execute

__all__ = ["paper_layer_machine", "paper_layer_streams", "run_paper_layer"]


def _one_layer(model):
    from sw_model.model.zoo import zoo_entry
    config = zoo_entry(model).config
    # one MoE layer; a small vocabulary (the dense weights are not simulated, only sized)
    return dataclasses.replace(config, num_layers=1, dense_layers=(), vocab_size=256)


def paper_layer_machine(config, pes, capacity):
    """The paper's PE, ``pes`` of them, with cache, slots and memories for ``config``'s layer."""
    base = TOP_PAPER.with_pes(pes)
    base = dataclasses.replace(base, command_words=1 << 16)
    return machine_for(config, "elastic_sd", base, capacity=capacity, pes=pes, grow=True)


def paper_layer_streams(config, params, batch, seed):
    """``[(name, record, schedule, commands)]``: the cached step, and the Elastic-SD step's
    verification phase (its draft phase dropped: the verify part is what streams from both
    tiers)."""
    layout = WeightLayout(config, params)
    capacity = params.cache.select_capacity
    out = []
    for mode in ("cached", "elastic_sd"):
        records, _ = trace_records(config, batch, 1, mode, capacity, seed=seed)
        record = records[0]
        sched = schedule_step(record, layout)
        commands = sched.commands
        if mode == "elastic_sd":
            barriers = [i for i, c in enumerate(commands)
                        if c.op is Opcode.BARRIER and c.phase == PHASES["verify"]]
            commands = commands[barriers[0]:]
        stream = prologue(record, layout) + commands
        out.append(("cached step" if mode == "cached" else "Elastic-SD verification",
                    record, sched, stream))
    return layout, out


def _random_quant(rng, shape):
    k, n = shape
    codes = rng.integers(-127, 128, (k, n), dtype=np.int8)
    scales = rng.uniform(2.0 ** -12, 2.0 ** -6, (k // 32, n)).astype(np.float16)
    return QuantWeights(codes=codes, scales=scales, group=32)


def _images(layout, record, stream, rng):
    """Random weights of every expert the stream reads, where the layout puts them; random
    activations and token scales in IMEM."""
    p = layout.params
    images = Images.empty(p)
    planes = {}

    def expert(layer, e):
        if (layer, e) not in planes:
            quant = {name: _random_quant(rng, shape) for name, shape in layout.shapes.items()}
            planes[(layer, e)] = layout.expert_planes(quant)
        return planes[(layer, e)]

    for slot, key in enumerate(record.slots_before or ()):
        if key is not None:
            place_slot(images, layout, slot, expert(layout.moe_layers[key[0]], key[1]))
    read = lpddr_read(stream, p)
    for region in sorted({addr // layout.expert_words for addr in read}):
        layer = layout.moe_layers[region // layout.config.num_experts]
        e = region % layout.config.num_experts
        place_lpddr(images, layout, layer, e, expert(layer, e), read)
    act_bytes = p.mac.act_beat_bits // 8
    used = max((c.imem + c.count for c in stream if c.op is Opcode.LOAD_ACT), default=0)
    for addr in range(used):
        images.imem[addr] = int.from_bytes(rng.integers(-127, 128, act_bytes, dtype=np.int8)
                                           .tobytes(), "little")
    return images


def _measure_stream(params, layout, streams):
    """The streams' MAC_DQ commands back to back (phase 1), the verification's HB loads of the
    old resident set (phase 2: LOAD_SLOT before its first cache request, valid from its prologue)
    and all LPDDR loads (phase 3); returns the stream, weight beats, HB and LPDDR bytes."""
    mac = params.mac
    B = mac.beats_per_group
    word = mac.weight_beat_bits // 8
    every = [c for _, _, _, s in streams for c in s]
    macs = [c for c in every if c.op is Opcode.MAC_DQ]
    lp = [c for c in every if c.op is Opcode.LOAD_LPDDR]
    _, record, _, verify = streams[-1]
    head = prologue(record, layout)
    body = verify[len(head):]
    first_cache = next((i for i, c in enumerate(body) if c.op is Opcode.CACHE), len(body))
    hb = [c for c in body[:first_cache] if c.op is Opcode.LOAD_SLOT]
    beats = sum(c.count * B * (2 if c.split else 1) for c in macs)
    stream = (head + [Command(Opcode.BARRIER, phase=1)] + macs
              + [Command(Opcode.BARRIER, phase=2)] + hb
              + [Command(Opcode.BARRIER, phase=3)] + lp + [Command(Opcode.END)])
    return (stream, beats, sum(c.count for c in hb) * word, sum(c.count for c in lp) * word)


def run_paper_layer(model="qwen3-30b-a3b", pes=1, batch=1, capacity=None, seed=0, progress=None):
    """Run the layer (module docstring); returns a dict of figures and checks."""
    say = progress or (lambda message: None)
    config = _one_layer(model)
    capacity = capacity if capacity is not None else 2 * config.top_k
    params = paper_layer_machine(config, pes, capacity)
    layout, streams = paper_layer_streams(config, params, batch, seed)
    rng = np.random.default_rng(seed)
    jobs, golden = [], []
    for name, record, sched, stream in streams:
        say(f"{name}: {len(stream)} commands, images and golden executor")
        images = _images(layout, record, stream, rng)
        gold = execute(stream, params, images)
        jobs.append(Job(stream, images, max_cycles=20_000_000))
        golden.append(gold)
    measure, beats, hb_bytes, lp_bytes = _measure_stream(params, layout, streams)
    jobs.append(Job(measure, jobs[-1].images, max_cycles=20_000_000))
    say(f"RTL on Verilator ({params.describe()}): {len(jobs)} streams")
    start = time.monotonic()
    results = run_streams(params, jobs, seed=seed)
    seconds = time.monotonic() - start
    out = {"model": model, "pes": pes, "batch": batch, "capacity": capacity,
           "machine": params.describe(), "streams": []}
    for (name, record, sched, stream), gold, rtl in zip(streams, golden, results):
        differences = gold.images.differences(rtl.images)
        out["streams"].append({
            "name": name, "commands": len(stream), "cycles": rtl.cycles,
            "match": (rtl.done and rtl.error == gold.error and rtl.progress == gold.progress
                      and not differences and rtl.slot_table == gold.slot_table()),
            "error": gold.error.name, "differences": differences[:5],
            "mac_dq": sum(c.op is Opcode.MAC_DQ for c in stream),
            "outputs": len(sched.results)})
    m = results[-1]
    mac_cycles, hb_cycles, lp_cycles = m.phase_cycles[1], m.phase_cycles[2], m.phase_cycles[3]
    out["measure_done"] = m.done and m.error.name == "NONE"
    out["mac_beats"], out["mac_cycles"] = beats, mac_cycles
    out["mac_utilisation"] = beats / mac_cycles if mac_cycles else 0.0
    # HB: every PE's channel loads in parallel, at most one HB word per cycle each
    out["hb_bytes"], out["hb_cycles"] = hb_bytes, hb_cycles
    out["hb_share"] = (hb_bytes / (hb_cycles * pes * params.hb.bytes_per_word)
                       if hb_cycles else 0.0)
    out["lpddr_bytes"], out["lpddr_cycles"] = lp_bytes, lp_cycles
    out["lpddr_share"] = (lp_bytes / (lp_cycles * params.lpddr.bytes_per_word)
                          if lp_cycles else 0.0)
    total = sum(r.cycles for r in results)
    out.update({"run_seconds": round(seconds, 1), "cycles": total,
                "cycles_per_second": round(total / seconds) if seconds else 0})
    return out
