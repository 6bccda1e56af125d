"""Step records without a model: decode steps of a zoo model driven by a generated routing trace.

For a model-zoo shape there are no weights to run, so routing comes from
:func:`sw_model.model.routing_traces.generate_routing_trace` (per-layer Zipf popularity with
exponent ``zipf`` and temporal reuse ``reuse``: each expert a sequence used at its previous position
is kept with that probability; the defaults give an LRU hit rate in the 40-60% range the model-zoo
notes report). Trace position ``t`` of sequence ``b`` is the target's routing of that sequence's
``t``-th token. The expert cache is the controller's golden model
(:class:`sw_model.decode.cache_bridge.ControllerExpertCache`), driven exactly as the decoders drive
it, so the records have the same form as :class:`sw_model.decode.step_record.StepRecorder`'s.

* **Prefill**: the first ``prompt`` positions of every sequence. Cached decoding: the prompt's
  experts are accessed (LOOKUP, INSTALL on a miss) layer by layer in ascending order. Elastic-SD:
  their per-token routing is counted and SELECT fixes the first resident sets.
* **Cached decoding step**: each sequence's next position; per layer the experts any sequence needs,
  ascending, are accessed.
* **Elastic-SD step** (stated acceptance model): draft token ``j`` of a sequence at position ``t``
  *wants* the trace's experts of position ``t + j`` (what COUNT counts) and runs the resident ones
  among them, topped up with the other resident experts, lowest id first, to ``top_k`` (the draft
  router keeps its ranking inside the resident set; the trace carries no scores, so the top-up
  order is the stated stand-in). Verification covers positions ``t .. t + gamma``. Each draft token
  is accepted independently with probability ``acceptance`` until the first rejection; the
  sequence advances by the accepted tokens plus one.

Same arguments and seed, same records.
"""

import numpy as np

from sw_model.decode.cache_bridge import ControllerExpertCache
from sw_model.model.routing_traces import generate_routing_trace
from sw_model.decode.step_record import PassRecord, StepRecord

__all__ = ["trace_records", "PROMPT_POSITIONS"]

#: Prompt positions counted (Elastic-SD) or accessed (cached) before the first decode step.
PROMPT_POSITIONS = 8


def _restricted(wanted, resident, k):
    """The draft's experts: the wanted resident ones, then other resident ones, lowest first."""
    inside = [int(e) for e in wanted if int(e) in resident]
    rest = [e for e in sorted(resident) if e not in inside]
    row = (inside + rest)[:k]
    return row + [-1] * (k - len(row))


def trace_records(config, batch, steps, mode, capacity, gamma=3, acceptance=0.7, zipf=1.0,
                  reuse=0.5, seed=0):
    """``steps`` :class:`StepRecord` of ``mode`` ("cached" or "elastic_sd") for ``batch``
    sequences of ``config`` (module docstring). Returns ``(records, cache)``."""
    if mode not in ("cached", "elastic_sd"):
        raise ValueError(f"mode must be 'cached' or 'elastic_sd', not {mode!r}")
    if not 0 <= acceptance <= 1:
        raise ValueError(f"acceptance must be a probability in [0, 1], not {acceptance}")
    c = config
    layers = tuple(c.moe_layers)
    span = gamma + 1 if mode == "elastic_sd" else 1
    positions = PROMPT_POSITIONS + steps * span
    trace = generate_routing_trace(len(layers), c.num_experts, c.top_k, positions, batch, zipf,
                                   reuse, seed)
    x = trace.experts                                   # [position, sequence, layer, k]
    rng = np.random.default_rng(seed + 1)
    cache = ControllerExpertCache(c, capacity, "LRU" if mode == "cached" else "FREQUENCY")
    prompt = x[:PROMPT_POSITIONS]
    if mode == "cached":
        for li, layer in enumerate(layers):
            for e in np.unique(prompt[:, :, li]):
                cache.access(layer, int(e))
    else:
        picks = {layer: prompt[:, :, li].reshape(-1, c.top_k) for li, layer in enumerate(layers)}
        for layer, experts in cache.select_by_counts(picks).items():
            cache.select(layer, experts)
    pointer = np.full(batch, PROMPT_POSITIONS)
    records = []
    for index in range(steps):
        mark = len(cache.trace)
        before = {l: tuple(sorted(cache.resident(l))) for l in layers}
        record = StepRecord(mode=mode, index=index, layers=layers,
                            sequences=tuple(range(batch)), gamma=gamma if span > 1 else 0,
                            resident_before=before,
                            slots_before=tuple(k for k, _ in cache.model.snapshot().entries),
                            prior_requests=tuple(t.request for t in cache.trace))
        if mode == "cached":
            target = PassRecord("target", {l: x[pointer, np.arange(batch), li]
                                           for li, l in enumerate(layers)})
            for li, layer in enumerate(layers):
                for e in np.unique(target.routes[layer]):
                    cache.access(layer, int(e))
            record.passes = [target]
            record.cache_requests = {"target": list(cache.trace[mark:])}
            record.accepted = (0,) * batch
            pointer += 1
        else:
            drafts, picks = [], {l: [] for l in layers}
            for j in range(gamma):
                wanted = x[pointer + j, np.arange(batch)]          # [batch, layer, k]
                routes = {}
                for li, layer in enumerate(layers):
                    routes[layer] = np.array([_restricted(w, set(before[layer]), c.top_k)
                                              for w in wanted[:, li]])
                    picks[layer].append(wanted[:, li])
                drafts.append(PassRecord("draft", routes))
            picks = {l: np.concatenate(rows) for l, rows in picks.items()}
            next_sets = cache.select_by_counts(picks)
            select_mark = len(cache.trace)
            rows = np.concatenate([pointer[:, None] + np.arange(span)[None, :]], axis=0)
            target = PassRecord("target", {
                l: x[rows.reshape(-1), np.repeat(np.arange(batch), span), li]
                for li, l in enumerate(layers)})
            installed = {l: tuple(cache.select(l, next_sets[l])[0]) for l in layers}
            record.passes = drafts + [target]
            record.cache_requests = {"select": list(cache.trace[mark:select_mark])}
            if len(cache.trace) > select_mark:
                record.cache_requests["install"] = list(cache.trace[select_mark:])
            record.next_sets = {l: tuple(s) for l, s in next_sets.items()}
            record.installed = installed
            accepted = []
            for b in range(batch):
                n = 0
                while n < gamma and rng.random() < acceptance:
                    n += 1
                accepted.append(n)
            record.accepted = tuple(accepted)
            pointer += np.array(accepted) + 1
        record.resident_after = {l: tuple(sorted(cache.resident(l))) for l in layers}
        record.slots_after = tuple(k for k, _ in cache.model.snapshot().entries)
        records.append(record)
    return records, cache
