"""Draft policies of Elastic-SD: which experts a draft token uses, and which experts HB holds.

A policy is a small strategy object with three methods, called by :func:`sw_model.decoding.elastic_sd`:

* ``start(model, cache, counts)``: fix the first HB-resident set of every MoE layer from the prompt's
  routing counts (``counts[layer]``: picks per expert during prefill);
* ``route(layer, scores, select, cache) -> Route``: the draft's experts for one layer, given the
  target router's scores (and selection scores) and the cache's resident set;
* ``next_resident(layer, counts, cache) -> list``: the next resident set, from the counts of this
  step's draft choices; the decoder installs it before verification (writes happen while
  verification streams those experts).

The draft always runs its experts at DRAFT precision (the bit policy is the decoder's ``draft_bits``).
"""

import numpy as np

from sw_model.moe import MoEModel, top_k_route

__all__ = ["frequency_set", "ResidentSetPolicy", "SpecMoEPolicy", "ElasticKPolicy",
           "make_policy", "POLICY_NAMES"]

POLICY_NAMES = ("resident", "specmoe", "elastic-k")


def frequency_set(counts, capacity, current=()):
    """The ``capacity`` most counted experts; ties go to currently resident experts, then to the
    lower index (so an idle layer keeps its set)."""
    counts = np.asarray(counts)
    current = set(int(e) for e in current)
    order = sorted(range(len(counts)), key=lambda e: (-counts[e], e not in current, e))
    return sorted(order[:capacity])


class ResidentSetPolicy:
    """ELMoE-3D: the target router's ranking kept, top-k taken inside the HB-resident set; the next
    set is the most frequent experts of the previous draft (frequency set)."""
    name = "resident"

    def start(self, model, cache, counts):
        self.config = model.config
        for layer, cnt in counts.items():
            cache.select(layer, frequency_set(cnt, cache.capacity, cache.resident(layer)))

    def route(self, layer, scores, select, cache):
        allowed = np.zeros(self.config.num_experts, dtype=bool)
        allowed[list(cache.resident(layer))] = True
        return top_k_route(self.config, scores, select, allowed=allowed)

    def next_resident(self, layer, counts, cache):
        return frequency_set(counts, cache.capacity, cache.resident(layer))


class SpecMoEPolicy:
    """SpecMoE: a fixed set of pinned hot experts (the prompt's most frequent); a routed expert that
    is not pinned is replaced by the most similar pinned one (cosine similarity of the experts'
    dequantised weights, precomputed once per layer). Router weights are kept; an expert chosen
    twice gets the sum of its weights."""
    name = "specmoe"

    def start(self, model, cache, counts):
        if not isinstance(model, MoEModel):
            raise TypeError(f"model must be an MoEModel, not {model!r}")
        self.config = model.config
        self.similarity = {}
        for layer in counts:
            vecs = []
            for ffn in model.layers[layer]["experts"]:
                v = np.concatenate([l.quant.dequantize().ravel()
                                    for l in (ffn.gate, ffn.up, ffn.down)]).astype(np.float64)
                vecs.append(v / (np.linalg.norm(v) or 1.0))
            vecs = np.array(vecs)
            self.similarity[layer] = vecs @ vecs.T
            cache.select(layer, frequency_set(counts[layer], cache.capacity, cache.resident(layer)))
        self.pinned = {layer: sorted(cache.resident(layer)) for layer in counts}

    def substitute(self, layer, expert):
        """The pinned expert most similar to ``expert`` (itself if pinned)."""
        pinned = self.pinned[layer]
        if expert in pinned:
            return expert
        sim = self.similarity[layer][expert, pinned]
        return pinned[int(np.argmax(sim))]

    def route(self, layer, scores, select, cache):
        route = top_k_route(self.config, scores, select)
        table = np.array([self.substitute(layer, e) for e in range(self.config.num_experts)])
        route.experts = np.where(route.experts >= 0, table[np.maximum(route.experts, 0)], -1)
        return route

    def next_resident(self, layer, counts, cache):
        return self.pinned[layer]


class ElasticKPolicy:
    """Elastic MoE: the draft activates the router's best ``k_draft`` < k experts, wherever they are
    (resident ones read their upper slices from HB, others from LPDDR); HB holds the frequency set."""
    name = "elastic-k"

    def __init__(self, k_draft=None):
        if k_draft is not None and (isinstance(k_draft, bool) or not isinstance(k_draft, int)
                                    or k_draft < 1):
            raise ValueError(f"k_draft must be a positive integer, not {k_draft!r}")
        self.k_draft = k_draft

    def start(self, model, cache, counts):
        self.config = model.config
        if self.k_draft is None:
            self.k_draft = max(1, self.config.top_k // 2)
        if self.k_draft >= self.config.top_k:
            raise ValueError(f"k_draft ({self.k_draft}) must be below the model's top_k "
                             f"({self.config.top_k})")
        for layer, cnt in counts.items():
            cache.select(layer, frequency_set(cnt, cache.capacity, cache.resident(layer)))

    def route(self, layer, scores, select, cache):
        return top_k_route(self.config, scores, select, k=self.k_draft)

    def next_resident(self, layer, counts, cache):
        return frequency_set(counts, cache.capacity, cache.resident(layer))


def make_policy(name, k_draft=None):
    """A policy by name: ``resident``, ``specmoe`` or ``elastic-k`` (``k_draft`` default: half the
    model's top-k, at least 1)."""
    if name == "resident":
        return ResidentSetPolicy()
    if name == "specmoe":
        return SpecMoEPolicy()
    if name == "elastic-k":
        return ElasticKPolicy(k_draft)
    raise ValueError(f"draft policy must be one of {', '.join(POLICY_NAMES)}, not {name!r}")
