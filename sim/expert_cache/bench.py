"""``build.py bench cache``: hit rates of the two policies and the controller's lookup rate.

* **Hit rates** come from the golden model (:class:`sw_model.golden.expert_cache.ExpertCacheModel`,
  which the RTL matches response for response) replaying generated routing traces: at each decode
  step and layer, every expert any sequence of the batch needs is looked up once.
  - LRU (cached decoding): a miss installs the expert, evicting the least recently used.
  - Frequency-set (Elastic-SD): the resident set is fixed for a window of ``WINDOW`` steps; misses
    are not installed (they stream from LPDDR). Every token's routing is COUNTed; at the end of
    the window SELECT installs the most frequent experts of each layer (capacity per layer) and
    RESET_COUNTS starts the next window.
  Capacities are fractions of the experts of each layer; the study's cache is fully associative.
* **Lookups per cycle and lookup latency** are measured on the Verilated RTL
  (``sim.expert_cache.tb.throughput``): back-to-back LOOKUPs, no back-pressure.
"""

import json
import logging
import tempfile
from pathlib import Path

from hw.params import CachePolicy, CacheStatus, ExpertCacheParams
from sw_model.golden.expert_cache import ExpertCacheModel
from sw_model.model.routing_traces import generate_routing_trace

__all__ = ["TRACE", "CAPACITIES", "BATCHES", "WINDOW", "hit_rate", "hit_rate_table", "run_bench",
           "quick_check"]

log = logging.getLogger(__name__)

#: The generated traces: DeepSeek-V2-Lite-like routing (64 experts, top-6), 4 layers.
TRACE = {"layers": 4, "num_experts": 64, "top_k": 6, "steps": 256, "zipf": 1.0, "reuse": 0.5}
CAPACITIES = (0.10, 0.25, 0.50)
BATCHES = (1, 4, 16)
#: Steps per frequency-set window (draft length gamma of Elastic-SD).
WINDOW = 4
#: Steps before hits and lookups are counted (the caches start empty).
WARMUP = 16


def hit_rate(trace, capacity, policy, window=WINDOW, warmup=WARMUP, params=None):
    """Fraction of lookups that hit, after ``warmup`` steps, for ``capacity`` experts per layer
    in a fully associative cache; or, with ``params``, in that cache (its slots, ways, counters,
    policy and selection; ``capacity`` and ``policy`` are then its own)."""
    if params is None:
        params = ExpertCacheParams(
            slots=capacity * trace.layers, layers=trace.layers, experts=trace.num_experts,
            ways=capacity * trace.layers, counter_width=8, policy=policy,
            select_scope="PER_LAYER", select_capacity=capacity)
    policy = params.policy
    cache = ExpertCacheModel(params)
    hits = lookups = 0
    for step in range(trace.steps):
        for layer in range(trace.layers):
            for expert in trace.needed(step, layer):
                status = cache.lookup(layer, expert).status
                if step >= warmup:
                    lookups += 1
                    hits += status is CacheStatus.HIT
                if status is CacheStatus.MISS and policy is CachePolicy.LRU:
                    assert cache.install(layer, expert).status is CacheStatus.OK
            if policy is CachePolicy.FREQUENCY:
                for seq in range(trace.batch):
                    cache.count(layer, trace.experts[step, seq, layer])
        if policy is CachePolicy.FREQUENCY and step % window == window - 1:
            cache.select()
            cache.reset_counts()
    return hits / lookups


def hit_rate_table(seed, steps=TRACE["steps"]):
    """``{batch: {policy: {capacity: rate}}}`` over :data:`BATCHES` and :data:`CAPACITIES`, on
    traces of ``steps`` decode steps (more than :data:`WARMUP`)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= WARMUP:
        raise ValueError(f"the hit-rate traces need more than the {WARMUP} warm-up steps, "
                         f"not {steps!r}")
    rates = {}
    for batch in BATCHES:
        trace = generate_routing_trace(batch=batch, seed=seed, **{**TRACE, "steps": steps})
        rates[batch] = {}
        for policy in CachePolicy:
            rates[batch][policy.name.lower()] = {
                f"{round(100 * c)}%": round(hit_rate(
                    trace, max(1, round(c * trace.num_experts)), policy), 4)
                for c in CAPACITIES}
        log.info("batch %d: %s", batch, rates[batch])
    return rates


def machine_trace_shape(params):
    """The generated trace a machine's cache is measured on: its layers and experts, top-k of a
    sixth of the experts (at most :data:`TRACE`'s 6), :data:`TRACE`'s locality."""
    return {**TRACE, "layers": params.layers, "num_experts": params.experts,
            "top_k": max(1, min(TRACE["top_k"], params.experts // 6))}


def machine_hit_rates(params, seed, steps=TRACE["steps"]):
    """``{batch: rate}`` over :data:`BATCHES`: the golden model of the cache ``params`` (its own
    policy: LRU installs every miss, FREQUENCY selects each window) on traces of its shape
    (:func:`machine_trace_shape`)."""
    shape = {**machine_trace_shape(params), "steps": steps}
    return {batch: round(hit_rate(generate_routing_trace(batch=batch, seed=seed, **shape), None,
                                  None, params=params), 4) for batch in BATCHES}


def recorded_hit_rates(trace):
    """``({policy: {capacity: rate}}, warmup)`` for a recorded trace (e.g. written by ``python
    build.py sd --save-routing``): the first quarter of its steps, at most :data:`WARMUP`, warm
    the caches up."""
    warmup = min(WARMUP, trace.steps // 4)
    return {policy.name.lower(): {
                f"{round(100 * c)}%": round(hit_rate(trace, max(1, round(c * trace.num_experts)),
                                                     policy, warmup=warmup), 4)
                for c in CAPACITIES}
            for policy in CachePolicy}, warmup


def run_bench(params, preset, lookups, seed, waves=False, recorded=None, trace_path=None,
              trace_steps=TRACE["steps"]):
    """Run both parts; returns ``(tables, figures)``: tables as ``(title, headers, rows)``.
    ``recorded``: also replay that routing trace (as
    :func:`sw_model.model.routing_traces.load_routing_trace` read it from ``trace_path``);
    ``trace_steps``: decode steps of the generated traces."""
    from sim.expert_cache.run import run_cache_bench
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        run_cache_bench(params, testcase="throughput", seed=seed, waves=waves,
                        env={"ELMOE_BENCH_OUT": str(out), "ELMOE_BENCH_LOOKUPS": str(lookups)})
        sim = json.loads(out.read_text())
    rates = hit_rate_table(seed, trace_steps)
    rtl_rows = [[preset, sim["lookups"], sim["hits"], sim["cycles"],
                 f"{sim['lookups_per_cycle']:.4f}", sim["lookup_latency_cycles"]]]
    rate_rows = [[batch, capacity, f"{rates[batch]['lru'][capacity]:.3f}",
                  f"{rates[batch]['frequency'][capacity]:.3f}"]
                 for batch in BATCHES for capacity in rates[batch]["lru"]]
    t = {**TRACE, "steps": trace_steps}
    own = machine_hit_rates(params, seed, trace_steps)
    shape = machine_trace_shape(params)
    tables = [
        (f"Verilated RTL, {params.describe()}: back-to-back LOOKUPs, no back-pressure; latency "
         "is cycles from request handshake to response handshake",
         ["preset", "lookups", "hits", "cycles", "lookups/cycle", "latency (cycles)"],
         rtl_rows),
        (f"Golden-model replay of generated traces: {t['layers']} layers x {t['num_experts']} "
         f"experts, top-{t['top_k']}, Zipf {t['zipf']}, reuse {t['reuse']}, {t['steps']} steps "
         f"(first {WARMUP} not counted); fully associative; frequency-set window {WINDOW} steps",
         ["batch", "capacity (of experts/layer)", "LRU hit rate (golden model)",
          "frequency-set hit rate (golden model)"], rate_rows),
        (f"This machine's cache ({params.describe()}) in the golden model "
         f"on generated traces of its shape: {shape['layers']} layers x {shape['num_experts']} "
         f"experts, top-{shape['top_k']}, Zipf {shape['zipf']}, reuse {shape['reuse']}, "
         f"{trace_steps} steps (first {WARMUP} not counted)",
         ["batch", f"{params.policy.name} hit rate (golden model)"],
         [[b, f"{r:.3f}"] for b, r in own.items()]),
    ]
    figures = {
        "block": "expert_cache",
        "preset": preset,
        "params": params.to_dict(),
        "lookups": sim["lookups"],
        "lookups_per_cycle": round(sim["lookups_per_cycle"], 5),
        "responses_per_cycle": round(sim["responses_per_cycle"], 5),
        "lookup_latency_cycles": sim["lookup_latency_cycles"],
        "hit_rates": {policy: rates[1][policy] for policy in ("lru", "frequency")},
        "hit_rates_by_batch": {str(b): r for b, r in rates.items()},
        "hit_rate_source": "golden model replaying generated traces",
        "machine_cache_hit_rates": {str(b): r for b, r in own.items()},
        "machine_cache_trace": shape,
        "trace": {**t, "window": WINDOW, "warmup": WARMUP, "seed": seed},
    }
    if recorded is not None:
        rec, warmup = recorded_hit_rates(recorded)
        tables.append((
            f"Golden-model replay of the recorded trace {trace_path}: {recorded.steps} steps x "
            f"batch {recorded.batch}, {recorded.layers} layers x {recorded.num_experts} experts, "
            f"top-{recorded.top_k} (first {warmup} steps not counted); fully associative; "
            f"frequency-set window {WINDOW} steps",
            ["capacity (of experts/layer)", "LRU hit rate (golden model)",
             "frequency-set hit rate (golden model)"],
            [[c, f"{rec['lru'][c]:.3f}", f"{rec['frequency'][c]:.3f}"] for c in rec["lru"]]))
        figures["recorded_trace"] = {
            "path": str(trace_path), "steps": recorded.steps, "batch": recorded.batch,
            "layers": recorded.layers, "num_experts": recorded.num_experts,
            "top_k": recorded.top_k, "warmup": warmup, "hit_rates": rec}
    return tables, figures


def quick_check(params, requests, seed, waves=False):
    """The Verilated controller against the golden model on ``requests`` mixed requests (plus the
    pinning and throughput tests); returns ``(cocotb tests passed, response beats compared)``."""
    from sim.expert_cache.run import run_cache_bench
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.jsonl"
        tests, _ = run_cache_bench(params, seed=seed, waves=waves,
                                   env={"ELMOE_CACHE_OPS": str(requests),
                                        "ELMOE_SUMMARY": str(summary)})
        beats = sum(json.loads(line)["beats"] for line in summary.read_text().splitlines())
    return tests, beats
