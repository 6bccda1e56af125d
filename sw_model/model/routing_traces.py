"""Per-layer MoE routing traces: a seeded generator and an on-disk format.

A trace is ``experts[step, sequence, layer, k]``: at decode step ``step`` the token of batch
sequence ``sequence`` is routed, in layer ``layer``, to ``top_k`` distinct experts (router order).

**Generator** (:func:`generate_routing_trace`): each layer has its own expert popularity, Zipf with
exponent ``zipf`` over a random permutation of the experts (``zipf = 0`` is uniform). Temporal
reuse: each expert a sequence used at the previous step in a layer is kept with probability
``reuse``; the remaining choices are drawn from the popularity without replacement. Batch 1-16
(any positive batch is accepted). Same seed, same trace. ``fast=True`` draws the same model
vectorised over sequences and layers (the Gumbel-top-k form of weighted sampling without
replacement, which is the same sequential draw in distribution): same popularity for the same
seed, other draws; for large traces (the performance model's statistics).

**On-disk format** (``.npz``, written by :meth:`RoutingTrace.save`, e.g. by the golden MoE model):

=============== ========================================================================
``format``       the string ``"elmoe3d-routing-trace"``
``version``      integer 1
``num_experts``  integer, experts per layer
``experts``      integer array ``[steps, batch, layers, top_k]`` of expert ids in
                 ``[0, num_experts)``, distinct along the last axis
=============== ========================================================================

:func:`load_routing_trace` checks every field and raises ``ValueError`` naming what is wrong.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["RoutingTrace", "generate_routing_trace", "load_routing_trace", "TRACE_FORMAT",
           "TRACE_VERSION"]

TRACE_FORMAT = "elmoe3d-routing-trace"
TRACE_VERSION = 1


@dataclass(frozen=True, eq=False)
class RoutingTrace:
    """Routing decisions ``experts[step, sequence, layer, k]`` over ``num_experts`` per layer."""
    experts: np.ndarray
    num_experts: int

    def __post_init__(self):
        e = np.asarray(self.experts)
        if isinstance(self.num_experts, bool) or not isinstance(self.num_experts, (int, np.integer)) \
                or self.num_experts <= 0:
            raise ValueError(f"num_experts must be a positive integer, not {self.num_experts!r}")
        if e.ndim != 4:
            raise ValueError(f"experts must have 4 axes [steps, batch, layers, top_k], "
                             f"not shape {e.shape}")
        if min(e.shape) == 0:
            raise ValueError(f"experts has an empty axis: shape {e.shape}")
        if not np.issubdtype(e.dtype, np.integer):
            raise ValueError(f"experts must be integers, not {e.dtype}")
        if e.min() < 0 or e.max() >= self.num_experts:
            bad = e[(e < 0) | (e >= self.num_experts)].flat[0]
            raise ValueError(f"expert id {bad} outside [0, {self.num_experts})")
        ordered = np.sort(e, axis=-1)
        if (ordered[..., 1:] == ordered[..., :-1]).any():
            where = tuple(int(i) for i in np.argwhere(ordered[..., 1:] == ordered[..., :-1])[0][:3])
            raise ValueError(f"repeated expert in one token's top-k at (step, sequence, layer) "
                             f"{where}")
        object.__setattr__(self, "experts", e.astype(np.int64))
        object.__setattr__(self, "num_experts", int(self.num_experts))

    steps = property(lambda self: self.experts.shape[0], doc="Decode steps.")
    batch = property(lambda self: self.experts.shape[1], doc="Sequences.")
    layers = property(lambda self: self.experts.shape[2], doc="MoE layers.")
    top_k = property(lambda self: self.experts.shape[3], doc="Experts per token and layer.")

    def needed(self, step, layer):
        """Experts any sequence of the batch needs at ``step`` in ``layer``, distinct, in order of
        first use (sequence 0's top-k in router order, then sequence 1's new ones, ...)."""
        return list(dict.fromkeys(int(x) for x in self.experts[step, :, layer].flat))

    def save(self, path):
        path = Path(path)
        with open(path, "wb") as f:   # a file object, so numpy does not append '.npz'
            np.savez_compressed(f, format=np.array(TRACE_FORMAT), version=np.array(TRACE_VERSION),
                                num_experts=np.array(self.num_experts), experts=self.experts)
        return path


def load_routing_trace(path):
    """Read a trace written by :meth:`RoutingTrace.save` (or any writer of the same format)."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a routing trace (.npz): {exc}") from None
    with archive:
        missing = sorted({"format", "version", "num_experts", "experts"} - set(archive.files))
        if missing:
            raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
        if str(archive["format"]) != TRACE_FORMAT:
            raise ValueError(f"{path}: format is {str(archive['format'])!r}, "
                             f"expected {TRACE_FORMAT!r}")
        if int(archive["version"]) != TRACE_VERSION:
            raise ValueError(f"{path}: version {int(archive['version'])} is not supported "
                             f"(this reader knows {TRACE_VERSION})")
        try:
            return RoutingTrace(archive["experts"], int(archive["num_experts"]))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def _zipf_weights(num_experts, exponent, rng):
    weights = 1.0 / np.arange(1, num_experts + 1) ** exponent
    popularity = np.empty(num_experts)
    popularity[rng.permutation(num_experts)] = weights / weights.sum()
    return popularity


def _fast_draws(popularity, top_k, steps, batch, reuse, rng):
    """``experts[step, sequence, layer, k]``: kept experts first (in their previous order), then
    fresh ones by Gumbel-top-k over the popularity with the kept ones excluded."""
    layers, num_experts = popularity.shape
    log_p = np.log(popularity)[None]                        # [1, layers, experts]
    experts = np.empty((steps, batch, layers, top_k), dtype=np.int64)
    previous = None
    for t in range(steps):
        keys = log_p - np.log(-np.log(rng.random((batch, layers, num_experts))))
        keep = np.zeros((batch, layers, top_k), dtype=bool)
        if previous is not None:
            keep = rng.random((batch, layers, top_k)) < reuse
            np.put_along_axis(keys, previous, np.where(keep, -np.inf, np.take_along_axis(
                keys, previous, axis=-1)), axis=-1)
        fresh = np.argsort(-keys, axis=-1, kind="stable")[..., :top_k]
        if previous is None:
            row = fresh
        else:
            # kept ones first in their old order, then the best fresh ones
            order = np.arange(top_k)
            priority = np.concatenate([np.where(keep, order, np.inf),
                                       np.broadcast_to(top_k + order, keep.shape)], axis=-1)
            pick = np.argsort(priority, axis=-1, kind="stable")[..., :top_k]
            row = np.take_along_axis(np.concatenate([previous, fresh], axis=-1), pick, axis=-1)
        experts[t] = row
        previous = row
    return experts


def generate_routing_trace(layers, num_experts, top_k, steps, batch=1, zipf=1.0, reuse=0.5,
                           seed=0, fast=False):
    """A seeded synthetic trace (see the module docstring for the model; ``fast``: vectorised)."""
    for name, value in (("layers", layers), ("num_experts", num_experts), ("top_k", top_k),
                        ("steps", steps), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if top_k > num_experts:
        raise ValueError(f"top_k ({top_k}) exceeds num_experts ({num_experts})")
    if not zipf >= 0:
        raise ValueError(f"zipf exponent must be >= 0, not {zipf}")
    if not 0 <= reuse <= 1:
        raise ValueError(f"reuse must be a probability in [0, 1], not {reuse}")
    rng = np.random.default_rng(seed)
    popularity = [_zipf_weights(num_experts, zipf, rng) for _ in range(layers)]
    if fast:
        return RoutingTrace(_fast_draws(np.array(popularity), top_k, steps, batch, reuse, rng),
                            num_experts)
    experts = np.empty((steps, batch, layers, top_k), dtype=np.int64)
    for t in range(steps):
        for b in range(batch):
            for l in range(layers):
                kept = []
                if t > 0:
                    kept = [int(x) for x in experts[t - 1, b, l] if rng.random() < reuse]
                weights = popularity[l].copy()
                weights[kept] = 0.0
                fresh = rng.choice(num_experts, size=top_k - len(kept), replace=False,
                                   p=weights / weights.sum())
                experts[t, b, l] = kept + [int(x) for x in fresh]
    return RoutingTrace(experts, num_experts)
