"""Draft policies of Elastic-SD: which experts a draft token uses, and which experts HB holds.

A policy is a small strategy object, called by :func:`sw_model.decode.decoding.elastic_sd`:

* ``start(model, cache, counts, picks=None)``: fix the first HB-resident set of every MoE layer from
  the prompt's routing (``counts[layer]``: picks per expert during prefill; ``picks[layer]``: each
  token's experts, rows ``[tokens, k]``);
* ``route(layer, scores, select, cache) -> Route``: the draft's experts for one layer, given the
  target router's scores (and selection scores) and the cache's resident set;
* ``next_resident(layer, counts, cache) -> list``: the next resident set, from the counts of this
  step's draft choices; the decoder installs it before verification (writes happen while
  verification streams those experts);
* ``next_sets(counts, picks, cache) -> {layer: list}``: every layer's next set, the call the decoder
  makes (:class:`Policy`: ``next_resident`` per layer).

The frequency set comes from :func:`next_frequency_sets`: the cache's own ``frequency_select`` when
it offers one (the cache controller's COUNT/SELECT, whose tie-break and leftover rules then win),
else :func:`frequency_set`.

The draft always runs its experts at DRAFT precision (the bit policy is the decoder's ``draft_bits``).
"""

import numpy as np

from sw_model.model.moe import MoEModel, top_k_route

__all__ = ["frequency_set", "next_frequency_sets", "Policy", "ResidentSetPolicy", "SpecMoEPolicy",
           "ElasticKPolicy", "RandomSetPolicy", "RecencySetPolicy", "make_policy", "POLICY_NAMES",
           "SELECTION_POLICIES"]

POLICY_NAMES = ("resident", "specmoe", "elastic-k")


def frequency_set(counts, capacity, current=()):
    """The ``capacity`` most counted experts; ties go to currently resident experts, then to the
    lower index (so an idle layer keeps its set)."""
    counts = np.asarray(counts)
    current = set(int(e) for e in current)
    order = sorted(range(len(counts)), key=lambda e: (-counts[e], e not in current, e))
    return sorted(order[:capacity])


def next_frequency_sets(counts, cache, picks=None):
    """``{layer: experts}``: the next frequency set of every layer in ``counts``. A cache offering
    ``frequency_select`` chooses by its own rule from the per-token ``picks`` (and may already have
    installed the sets); otherwise :func:`frequency_set` of each layer's counts."""
    chooser = getattr(cache, "frequency_select", None)
    if chooser is not None and picks is not None:
        return chooser({layer: picks[layer] for layer in counts})
    return {layer: frequency_set(cnt, cache.capacity, cache.resident(layer))
            for layer, cnt in counts.items()}


class Policy:
    """Shared behaviour: the first set is the prompt's frequency set; ``next_sets`` asks
    ``next_resident`` per layer (frequency-set policies override it to ask the cache)."""

    def start(self, model, cache, counts, picks=None):
        self.config = model.config
        self.first_sets = next_frequency_sets(counts, cache, picks)
        for layer, experts in self.first_sets.items():
            cache.select(layer, experts)

    def next_sets(self, counts, picks, cache):
        return {layer: self.next_resident(layer, counts[layer], cache) for layer in counts}


class _FrequencySetPolicy(Policy):
    """HB holds the frequency set of the previous draft."""

    def next_sets(self, counts, picks, cache):
        if getattr(cache, "frequency_select", None) is None:
            return super().next_sets(counts, picks, cache)
        return next_frequency_sets(counts, cache, picks)

    def next_resident(self, layer, counts, cache):
        return frequency_set(counts, cache.capacity, cache.resident(layer))


class ResidentSetPolicy(_FrequencySetPolicy):
    """ELMoE-3D: the target router's ranking kept, top-k taken inside the HB-resident set; the next
    set is the most frequent experts of the previous draft (frequency set)."""
    name = "resident"

    def route(self, layer, scores, select, cache):
        allowed = np.zeros(self.config.num_experts, dtype=bool)
        allowed[list(cache.resident(layer))] = True
        return top_k_route(self.config, scores, select, allowed=allowed)


class SpecMoEPolicy(Policy):
    """SpecMoE: a fixed set of pinned hot experts (the prompt's most frequent); a routed expert that
    is not pinned is replaced by the most similar pinned one (cosine similarity of the experts'
    dequantised weights, precomputed once per layer). Router weights are kept; an expert chosen
    twice gets the sum of its weights."""
    name = "specmoe"

    def start(self, model, cache, counts, picks=None):
        if not isinstance(model, MoEModel):
            raise TypeError(f"model must be an MoEModel, not {model!r}")
        super().start(model, cache, counts, picks)
        self.similarity = {}
        for layer in counts:
            vecs = []
            for ffn in model.layers[layer]["experts"]:
                v = np.concatenate([l.quant.dequantize().ravel()
                                    for l in (ffn.gate, ffn.up, ffn.down)]).astype(np.float64)
                vecs.append(v / (np.linalg.norm(v) or 1.0))
            vecs = np.array(vecs)
            self.similarity[layer] = vecs @ vecs.T
        self.pinned = {layer: sorted(self.first_sets[layer]) for layer in counts}

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


class ElasticKPolicy(_FrequencySetPolicy):
    """Elastic MoE: the draft activates the router's best ``k_draft`` < k experts, wherever they are
    (resident ones read their upper slices from HB, others from LPDDR); HB holds the frequency set."""
    name = "elastic-k"

    def __init__(self, k_draft=None):
        if k_draft is not None and (isinstance(k_draft, bool) or not isinstance(k_draft, int)
                                    or k_draft < 1):
            raise ValueError(f"k_draft must be a positive integer, not {k_draft!r}")
        self.k_draft = k_draft

    def start(self, model, cache, counts, picks=None):
        if self.k_draft is None:
            self.k_draft = max(1, model.config.top_k // 2)
        if self.k_draft >= model.config.top_k:
            raise ValueError(f"k_draft ({self.k_draft}) must be below the model's top_k "
                             f"({model.config.top_k})")
        super().start(model, cache, counts, picks)

    def route(self, layer, scores, select, cache):
        return top_k_route(self.config, scores, select, k=self.k_draft)


class RandomSetPolicy(ResidentSetPolicy):
    """The resident-set draft with a random resident set: ``capacity`` experts per layer drawn
    afresh (seeded) for the first step and after every step (the selection baseline the paper's
    frequency set is compared with)."""
    name = "random"

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)

    def _draw(self, cache):
        return sorted(int(e) for e in self.rng.choice(self.config.num_experts, cache.capacity,
                                                      replace=False))

    def start(self, model, cache, counts, picks=None):
        self.config = model.config
        self.first_sets = {layer: self._draw(cache) for layer in counts}
        for layer, experts in self.first_sets.items():
            cache.select(layer, experts)

    def next_sets(self, counts, picks, cache):
        return {layer: self._draw(cache) for layer in counts}


class RecencySetPolicy(ResidentSetPolicy):
    """The resident-set draft with an LRU resident set: HB holds the ``capacity`` experts most
    recently chosen by the (unrestricted) router, tokens taken in order and each token's experts in
    rank order, as an LRU cache filled by the draft's choices would."""
    name = "lru"

    def _touch(self, picks, cache):
        sets = {}
        for layer, rows in picks.items():
            order = self.recency.setdefault(layer, {})
            for row in np.asarray(rows):
                for e in row[::-1]:               # the best-ranked expert is the most recent use
                    if e >= 0:
                        order.pop(int(e), None)
                        order[int(e)] = True
            sets[layer] = sorted(list(order)[-cache.capacity:])
        return sets

    def start(self, model, cache, counts, picks=None):
        if picks is None:
            raise ValueError("the LRU resident set needs the prompt's per-token picks")
        self.config, self.recency = model.config, {}
        self.first_sets = self._touch(picks, cache)
        for layer, experts in self.first_sets.items():
            cache.select(layer, experts)

    def next_sets(self, counts, picks, cache):
        return self._touch(picks, cache)


#: Resident-set selection rules of the ablation (all with the resident-set draft).
SELECTION_POLICIES = {"frequency": ResidentSetPolicy, "random": RandomSetPolicy,
                      "lru": RecencySetPolicy}


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
