"""Routing locality measured on the trained MoE, and how the trace generator is fitted to it.

The performance model's routing traces come from the generator of
:mod:`sw_model.model.routing_traces` (two knobs: a per-layer Zipf popularity exponent and a
probability ``reuse`` that a sequence keeps each expert of its previous token). This module measures
what those knobs stand for on the project's trained model, and ships the result as constants so
``perf`` never reruns the model.

**Measurement** (:func:`record_heldout_routing`, :func:`measure_locality`): the built-in trained
model (``sw_model.model.checkpoints.default_model()``: 4 MoE layers, 32 experts, top-4, trained with
a load-balance loss like the paper's models) runs teacher-forced over the whole committed held-out
text (``heldout_code.txt`` and ``heldout_prose.txt``) cut into windows of :data:`WINDOW` bytes (its
training context), each window a sequence from an empty KV cache. Every position's top-k per MoE
layer is one token's routing. Figures, per layer and over both texts:

* *temporal reuse* :func:`repeat_probability`: the share of the experts a token chooses in a
  layer that the next token of the same sequence chooses again in that layer (random routing:
  ``top_k / experts`` = 0.125);
* *popularity skew* :func:`top_share`: the share of all choices of a layer that go to its most
  chosen quarter of the experts (uniform: 0.25). The Zipf exponent is fitted by matching it
  (:func:`zipf_for_top_share`); a least-squares fit on log rank-frequency
  (:func:`zipf_least_squares`) is printed alongside (the tail's few rare experts dominate it, so
  it is not the one used).

**Fitting the generator** (:func:`fit_generator_reuse`): the generator's ``reuse`` is not the
measured repeat probability (a token's fresh draws can land on a previous expert again), so it is
the value at which the generator, with the fitted exponent, 32 experts and top-4, reproduces the
measured repeat probability.

**Mapping to other models** (:class:`sw_model.perf.workload.Locality`, the default of ``perf`` and
``sweep``): every model gets the measured top-quarter share and the fitted generator ``reuse``;
its Zipf exponent is the one giving that top-quarter share over *its* experts. Why the share, not
the exponent: caches and resident sets hold a share of the expert pool, and a load-balanced
router spreads its choices over the pool whatever its size; a fixed exponent would make a
128-expert pool markedly more skewed than the measured 32-expert one (an artefact of the Zipf
form: exponent 0.55 puts 46% of the choices on the top quarter of 32 experts, 52% of 128). Why
the same ``reuse``: it is a per-expert stickiness of a sequence, beyond popularity and beyond
chance, which does not depend on the pool size.
"""

from functools import lru_cache

import numpy as np

__all__ = ["WINDOW", "TOP_FRACTION", "MEASURED_TOP_SHARE", "MEASURED_REPEAT",
           "MEASURED_ZIPF_32", "GENERATOR_REUSE", "LOCALITY_SOURCE", "LOCALITY_COMMAND",
           "record_heldout_routing", "repeat_probability", "popularity", "top_share",
           "zipf_top_share", "zipf_for_top_share", "zipf_least_squares", "generated_repeat",
           "fit_generator_reuse", "measure_locality", "window_stats"]

#: Bytes per teacher-forced window: the trained model's training sequence length.
WINDOW = 128
#: The popularity skew is the share of choices on this top fraction of a layer's experts.
TOP_FRACTION = 0.25

#: The command that regenerates the constants below (about 5 minutes on this machine).
LOCALITY_COMMAND = "python build.py perf --measure-locality"
LOCALITY_SOURCE = ("the trained elmoe-byte-standard (4 layers, 32 experts, top-4) "
                   "teacher-forced over both held-out texts (code 46,720 + prose 30,464 = 77,184 "
                   f"tokens in {WINDOW}-byte windows); {LOCALITY_COMMAND}")
#: Share of a layer's choices on its top quarter of experts, mean over the 4 layers, both texts
#: (per layer 0.409 / 0.454 / 0.438 / 0.540; code alone 0.454, prose alone 0.516; uniform 0.25).
MEASURED_TOP_SHARE = 0.460
#: Probability that an expert chosen at token t is chosen again at t+1 in the same layer, mean
#: over the layers, both texts (per layer 0.251 / 0.299 / 0.313 / 0.400; code 0.370, prose
#: 0.233; random routing 0.125).
MEASURED_REPEAT = 0.316
#: The Zipf exponent with MEASURED_TOP_SHARE over 32 experts (the measured model's pool; per
#: layer 0.430 / 0.531 / 0.496 / 0.719; least squares on log rank-frequency 0.549 / 0.701 / 0.691
#: / 0.971, pulled up by the few rarely chosen experts of the tail).
MEASURED_ZIPF_32 = 0.546
#: The generator's reuse that reproduces MEASURED_REPEAT at 32 experts, top-4, MEASURED_ZIPF_32
#: (with it, the generator gives 13.1 distinct experts per layer over 5 tokens of one sequence
#: against the recording's 12.5, and LRU hit rates of 0.24 / 0.41 / 0.64 with 4 / 8 / 16 slots
#: against 0.26 / 0.44 / 0.72: the recording has longer-range locality than the generator's
#: one-step memory, so generated traces slightly understate caching).
GENERATOR_REUSE = 0.202


# -- recording ------------------------------------------------------------------------------------

def record_heldout_routing(model=None, window=WINDOW, batch=32, limit=None, domains=None):
    """``{domain: experts[windows, position, moe_layer, k]}``: the routing of ``model`` (default:
    the built-in trained model) teacher-forced over the held-out text of each domain, cut into
    consecutive ``window``-byte windows (at most ``limit`` per domain, evenly spaced), ``batch``
    windows per forward pass."""
    from sw_model.model.corpus import DOMAINS, heldout_text
    from sw_model.model.checkpoints import default_model
    if model is None:
        model = default_model()[0]
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"window must be an integer >= 2, not {window!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 1):
        raise ValueError(f"limit must be None or a positive integer, not {limit!r}")
    layers = model.config.moe_layers
    out = {}
    for domain in (domains or DOMAINS):
        data = heldout_text(domain).astype(np.int64)
        count = len(data) // window
        if count < 1:
            raise ValueError(f"the held-out {domain} text is shorter than one window")
        windows = data[:count * window].reshape(count, window)
        if limit is not None and limit < count:
            windows = windows[np.linspace(0, count - 1, limit).astype(np.int64)]
        chunks = []
        for i in range(0, len(windows), batch):
            part = windows[i:i + batch]
            res = model.forward(model.new_cache(len(part), window), [list(w) for w in part])
            order = np.argsort(res.row_seq, kind="stable")    # rows grouped by sequence
            e = np.stack([res.routes[l].experts[order] for l in layers], axis=1)
            chunks.append(e.reshape(len(part), window, len(layers), model.config.top_k))
        out[domain] = np.concatenate(chunks)
    return out


# -- statistics -----------------------------------------------------------------------------------

def _check_routes(experts):
    e = np.asarray(experts)
    if e.ndim != 4 or e.shape[1] < 2:
        raise ValueError(f"routes must be [sequences, positions >= 2, layers, top_k], not shape "
                         f"{e.shape}")
    return e


def repeat_probability(experts):
    """Per layer: the share of (token, chosen expert) pairs whose expert the next token of the
    same sequence chooses again (``experts[sequence, position, layer, k]``)."""
    e = _check_routes(experts)
    hit = (e[:, :-1, :, :, None] == e[:, 1:, :, None, :]).any(-1)
    return hit.mean(axis=(0, 1, 3))


def popularity(experts, num_experts):
    """Per layer: how often each expert is chosen, ``[layers, num_experts]``."""
    e = _check_routes(experts)
    return np.stack([np.bincount(e[:, :, l].ravel(), minlength=num_experts)
                     for l in range(e.shape[2])])


def top_share(counts, fraction=TOP_FRACTION):
    """Share of the choices on the most chosen ``fraction`` of the experts (rounded to whole
    experts, at least one)."""
    c = np.sort(np.asarray(counts, dtype=float))[::-1]
    if c.sum() <= 0:
        raise ValueError("no choices counted")
    return float(c[:max(1, round(fraction * len(c)))].sum() / c.sum())


def zipf_top_share(num_experts, exponent, fraction=TOP_FRACTION):
    """The top-``fraction`` share of a Zipf popularity with ``exponent`` over ``num_experts``."""
    return top_share(1.0 / np.arange(1, num_experts + 1) ** exponent, fraction)


@lru_cache(maxsize=256)
def zipf_for_top_share(num_experts, share, fraction=TOP_FRACTION):
    """The Zipf exponent whose popularity over ``num_experts`` puts ``share`` of the choices on
    the top ``fraction`` of the experts (bisection; the share grows with the exponent)."""
    if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 2:
        raise ValueError(f"need at least 2 experts to fit a popularity skew, not {num_experts!r}")
    lo_share = zipf_top_share(num_experts, 0.0, fraction)
    hi = 16.0
    if not lo_share <= share < zipf_top_share(num_experts, hi, fraction):
        raise ValueError(f"top share {share!r} of the top {fraction:g} of {num_experts} experts is "
                         f"outside what a Zipf popularity gives ([{lo_share:.3f}, 1))")
    lo = 0.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if zipf_top_share(num_experts, mid, fraction) < share:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def zipf_least_squares(counts):
    """The Zipf exponent of a least-squares line through log frequency vs log rank (experts
    never chosen are left out)."""
    c = np.sort(np.asarray(counts, dtype=float))[::-1]
    c = c[c > 0]
    if len(c) < 2:
        raise ValueError("need at least 2 chosen experts to fit a line")
    rank = np.arange(1, len(c) + 1, dtype=float)
    slope = np.polyfit(np.log(rank), np.log(c), 1)[0]
    return float(-slope)


def window_stats(experts, windows=(2, 5), slots=(4, 8, 16), num_experts=32, warm=32):
    """Batch-1 figures the performance model uses, per sequence and layer, averaged: distinct
    experts over ``w`` consecutive tokens (a verification of ``w - 1`` drafts), and the hit rate
    of a per-layer LRU cache of ``s`` experts (accesses from position ``warm`` on)."""
    from sw_model.decode.decoding import LRUExpertCache
    e = _check_routes(experts)
    seqs, positions, layers, _ = e.shape
    out = {}
    for w in windows:
        counts = [len(np.unique(e[s, a:a + w, l])) for s in range(seqs) for l in range(layers)
                  for a in range(0, positions - w + 1, w)]
        out[f"distinct_in_{w}"] = float(np.mean(counts))
    for n in slots:
        if n >= num_experts:
            continue
        hits = total = 0
        for s in range(seqs):
            cache = LRUExpertCache(n)
            for t in range(positions):
                for l in range(layers):
                    for x in sorted(int(v) for v in e[s, t, l]):
                        hit = cache.access(l, x)
                        if t >= warm:
                            hits += hit
                            total += 1
        out[f"lru_hit_{n}"] = hits / total if total else 0.0
    return out


def _generated(num_experts, top_k, zipf, reuse, sequences=64, positions=WINDOW, layers=4, seed=0):
    """Generated routes in the measured layout ``[sequence, position, layer, k]``."""
    from sw_model.model.routing_traces import generate_routing_trace
    trace = generate_routing_trace(layers, num_experts, top_k, positions, batch=sequences,
                                   zipf=zipf, reuse=reuse, seed=seed, fast=True)
    return trace.experts.transpose(1, 0, 2, 3)


def generated_repeat(num_experts, top_k, zipf, reuse, seed=0):
    """The repeat probability (:func:`repeat_probability`, mean over layers) of a generated
    trace of 64 sequences x 128 tokens x 4 layers."""
    return float(repeat_probability(_generated(num_experts, top_k, zipf, reuse, seed=seed))
                 .mean())


def fit_generator_reuse(target, num_experts, top_k, zipf, seed=0):
    """The generator ``reuse`` whose traces repeat ``target`` of their experts from token to
    token (bisection on a fixed seed; ValueError when even ``reuse`` 0 repeats more)."""
    if not generated_repeat(num_experts, top_k, zipf, 0.0, seed) <= target <= 1:
        raise ValueError(f"repeat probability {target!r} is below what the popularity alone "
                         f"gives ({generated_repeat(num_experts, top_k, zipf, 0.0, seed):.3f})")
    lo, hi = 0.0, 1.0
    for _ in range(16):
        mid = (lo + hi) / 2
        if generated_repeat(num_experts, top_k, zipf, mid, seed) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def measure_locality(routes=None, num_experts=32, top_k=4, progress=None):
    """Every locality figure of ``routes`` (``{domain: experts[...]}``; default: recorded by
    :func:`record_heldout_routing`, minutes): per domain and pooled (``"both"``), per layer and
    mean, the fitted Zipf exponents and generator reuse, and the batch-1 window statistics of the
    recording next to the fitted generator's."""
    if routes is None:
        routes = record_heldout_routing()
    routes = dict(routes)
    routes["both"] = np.concatenate(list(routes.values()))
    out = {"tokens": {d: int(r.shape[0] * r.shape[1]) for d, r in routes.items()},
           "random_repeat": top_k / num_experts, "uniform_top_share": TOP_FRACTION}
    for d, r in routes.items():
        counts = popularity(r, num_experts)
        repeat = repeat_probability(r)
        shares = [top_share(c) for c in counts]
        out[d] = {"repeat_per_layer": [float(x) for x in repeat],
                  "repeat": float(repeat.mean()),
                  "top_share_per_layer": shares, "top_share": float(np.mean(shares)),
                  "zipf_top_share_per_layer": [zipf_for_top_share(num_experts, s)
                                               for s in shares],
                  "zipf_least_squares_per_layer": [zipf_least_squares(c) for c in counts]}
        out[d]["zipf"] = zipf_for_top_share(num_experts, out[d]["top_share"])
        if progress:
            progress(d)
    both = out["both"]
    both["generator_reuse"] = fit_generator_reuse(both["repeat"], num_experts, top_k,
                                                  both["zipf"])
    out["recorded_window_stats"] = window_stats(routes["both"], num_experts=num_experts)
    out["generated_window_stats"] = window_stats(
        _generated(num_experts, top_k, both["zipf"], both["generator_reuse"], seed=1),
        num_experts=num_experts)
    return out
