"""Decoding on the golden MoE model: cached decoding and Elastic self-speculative decoding.

Both produce the target's tokens (greedy: exactly target-only greedy decoding; temperature > 0: the
target's distribution) and, per step, the statistics the scheduler and performance model consume.

Byte accounting (routed experts; ``W`` = weights of one expert, ``S`` = its FP16 scale bytes):
* HB holds, per MoE layer, ``capacity`` experts' upper nibbles plus their scales: ``W/2 + S``.
* A pass reads each expert it touches once (its tokens are batched), whatever the number of tokens.
* Draft: a touched HB-resident expert reads ``W/2 + S`` from HB; a non-resident one (only the
  elastic-k policy drafts with those) reads ``W/2 + S`` from LPDDR.
* Target pass (verification, cached decoding): a hit reads ``W/2 + S`` (MSB and scales) from HB and
  ``W/2`` (LSB) from LPDDR; a miss reads ``W + S`` from LPDDR.
* Installing an expert writes ``W/2 + S`` into HB; it is read from LPDDR unless the same pass
  already streams that expert from LPDDR as a miss (then the fill piggy-backs on it).
* Dense weights (attention, routers, shared/dense FFNs, LM head; INT8 + scales) are read from HB
  once per pass (:attr:`MoEModel.dense_bytes`). KV-cache traffic and embedding lookups are not
  counted.

Per-token figures divide decode-step bytes by the tokens those steps emitted and kept (a final
step's accepted tokens beyond ``max_new`` are dropped; the prompt's prefill, which also yields each
sequence's first token, is reported separately).
"""

from collections import OrderedDict
from dataclasses import dataclass, field
import logging
from typing import Protocol

import numpy as np

from sw_model.decode.policy import DEFAULT_POLICY
from sw_model.decode.tree import (DraftTree, TreeShape, accept_tree_greedy, accept_tree_sampling,
                                  grow_children, parse_tree)
from sw_model.golden.mac_array import DRAFT_METHODS, parse_draft_method
from sw_model.model.moe import MoEModel, PassPlan, Precision, TreeSpan, softmax

__all__ = ["ExpertCache", "LRUExpertCache", "record_routing", "CACHE_MODELS", "make_cache", "StepStats",
           "DecodeResult", "SDConfig", "target_greedy", "cached_decode", "elastic_sd", "decode",
           "accept_greedy", "accept_rejection", "commit_path"]

log = logging.getLogger(__name__)


class ExpertCache(Protocol):
    """What the decoders need from an expert-cache model (HB slots per MoE layer). Any object with
    these members can be passed as ``cache``: :class:`LRUExpertCache`, or
    :class:`sw_model.decode.cache_bridge.ControllerExpertCache` (the cache controller's golden
    model, the default). A cache may also offer ``frequency_select(picks) -> {layer: experts}``
    (choose the next frequency sets by its own rule); the draft policies then ask it instead of
    :func:`sw_model.decode.draft_policies.frequency_set`."""

    capacity: int

    def access(self, layer: int, expert: int) -> bool:
        """A target pass needs ``expert``: True on a hit; a miss installs it (policy's victim)."""

    def resident(self, layer: int) -> frozenset:
        """The experts whose upper slices HB holds now."""

    def select(self, layer: int, experts) -> tuple:
        """Make ``experts`` resident (:class:`LRUExpertCache`: exactly those; the controller keeps
        others it did not displace); return ``(installed, evicted)`` sorted lists."""


class LRUExpertCache:
    """A plain expert cache: ``capacity`` HB slots per MoE layer, LRU replacement per layer.

    The interface (any cache model with these methods can be plugged in):

    * ``capacity``: slots per layer;
    * ``access(layer, expert) -> bool``: a target pass needs ``expert``; True on a hit. A miss
      installs it (evicting the least recently used when full);
    * ``resident(layer) -> frozenset``: the experts whose upper slices HB holds now;
    * ``select(layer, experts) -> (installed, evicted)``: make exactly ``experts`` resident
      (Elastic-SD's frequency set), returning the sorted lists of changes.
    """

    def __init__(self, capacity):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"cache capacity must be a positive integer, not {capacity!r}")
        self.capacity = capacity
        self._sets = {}

    def _set(self, layer):
        return self._sets.setdefault(layer, OrderedDict())

    def access(self, layer, expert):
        s = self._set(layer)
        if expert in s:
            s.move_to_end(expert)
            return True
        if len(s) >= self.capacity:
            s.popitem(last=False)
        s[expert] = True
        return False

    def resident(self, layer):
        return frozenset(self._set(layer))

    def select(self, layer, experts):
        experts = [int(e) for e in experts]
        if len(set(experts)) > self.capacity:
            raise ValueError(f"layer {layer}: {len(set(experts))} experts selected for "
                             f"{self.capacity} slots")
        s = self._set(layer)
        evicted = sorted(e for e in s if e not in experts)
        for e in evicted:
            del s[e]
        installed = sorted(e for e in set(experts) if e not in s)
        for e in installed:
            s[e] = True
        return installed, evicted


#: Expert-cache models by name: the controller's golden model (default) and the plain LRU stand-in.
CACHE_MODELS = ("controller", "lru")


def make_cache(cache, config, capacity, mode):
    """``cache`` itself if it is a cache object, else a new cache model by name (``None``: the
    controller) with ``capacity`` experts per MoE layer of ``config``; ``mode`` "cached" gives the
    controller the LRU policy, "elastic_sd" the FREQUENCY policy."""
    if cache is None:
        cache = "controller"
    if not isinstance(cache, str):
        return cache
    if cache == "lru":
        return LRUExpertCache(capacity)
    if cache == "controller":
        from sw_model.decode.cache_bridge import ControllerExpertCache
        return ControllerExpertCache(config, capacity,
                                     policy="LRU" if mode == "cached" else "FREQUENCY")
    raise ValueError(f"cache model must be one of {', '.join(CACHE_MODELS)}, not {cache!r}")


@dataclass
class StepStats:
    """One decode step (``mode`` "cached" or "elastic_sd"), or the prefill (``mode`` "prefill").

    ``proposed``: draft tokens (tree nodes below the roots); ``accepted``: those kept; ``verified``:
    tokens the target's verification pass carried (the roots and every draft).

    ``touched[phase][layer]``: distinct experts a phase ("draft", "target") used in each MoE layer
    (index into ``layers``); ``loads[phase][layer]``: expert reads summed over the phase's passes.
    """
    mode: str
    sequences: int
    proposed: int = 0
    accepted: int = 0
    emitted: int = 0
    accept_lengths: list = field(default_factory=list)
    verified: int = 0
    touched: dict = field(default_factory=dict)
    loads: dict = field(default_factory=dict)
    hb_expert_bytes: int = 0
    hb_dense_bytes: int = 0
    lpddr_bytes: int = 0
    hb_write_bytes: int = 0
    hits: int = 0
    misses: int = 0

    @property
    def hb_bytes(self):
        return self.hb_expert_bytes + self.hb_dense_bytes


@dataclass
class DecodeResult:
    """Generated tokens per sequence (``max_new`` each), the prefill's stats and every step's."""
    tokens: list
    prefill: StepStats
    steps: list
    layers: list

    def summary(self):
        """Totals and per-token figures over the decode steps."""
        steps = self.steps
        emitted = sum(s.emitted for s in steps)
        proposed = sum(s.proposed for s in steps)
        accepted = sum(s.accepted for s in steps)
        lengths = [n for s in steps for n in s.accept_lengths]
        per = lambda v: v / emitted if emitted else 0.0
        phases = sorted({p for s in steps for p in s.touched})
        touched = {p: [float(np.mean([s.touched[p][i] for s in steps if p in s.touched]))
                       for i in range(len(self.layers))] for p in phases}
        loads = {p: float(np.mean([sum(s.loads[p]) for s in steps if p in s.loads]))
                 for p in phases}
        hits, misses = sum(s.hits for s in steps), sum(s.misses for s in steps)
        return {
            "mode": steps[0].mode if steps else "none",
            "steps": len(steps),
            "tokens": emitted,
            "proposed": proposed,
            "accepted": accepted,
            "verified": sum(s.verified for s in steps),
            "tokens_per_verified": (emitted / sum(s.verified for s in steps)
                                    if sum(s.verified for s in steps) else None),
            "acceptance_rate": accepted / proposed if proposed else None,
            "mean_accepted_length": float(np.mean(lengths)) if lengths else None,
            "experts_touched_per_layer": touched,
            "expert_loads_per_step": loads,
            "hb_bytes_per_token": per(sum(s.hb_bytes for s in steps)),
            "hb_expert_bytes_per_token": per(sum(s.hb_expert_bytes for s in steps)),
            "hb_dense_bytes_per_token": per(sum(s.hb_dense_bytes for s in steps)),
            "lpddr_bytes_per_token": per(sum(s.lpddr_bytes for s in steps)),
            "hb_write_bytes_per_token": per(sum(s.hb_write_bytes for s in steps)),
            "hits": hits,
            "misses": misses,
            "hit_rate": hits / (hits + misses) if hits + misses else None,
        }


@dataclass(frozen=True)
class SDConfig:
    """Decoding parameters: draft length ``gamma``, the batch ``threshold`` at and above which
    Elastic-SD runs, HB ``capacity`` (experts per MoE layer), ``temperature`` (0: greedy) and the
    ``draft_bits`` method (a spec of :func:`sw_model.golden.mac_array.parse_draft_method`: a name of
    :data:`~sw_model.golden.mac_array.DRAFT_METHODS`, 4 bits, or ``"<name>:<bits>"``). ``tree``:
    ``"chain"`` (a chain of ``gamma`` drafts) or a token-tree shape
    (:func:`sw_model.decode.tree.parse_tree`: ``"static:4,2,1"``, ``"dynamic:nodes=16,..."``, or a
    :class:`~sw_model.decode.tree.TreeShape`); with a tree, ``gamma`` is not used."""
    gamma: int = DEFAULT_POLICY.gamma
    threshold: int = DEFAULT_POLICY.threshold
    capacity: int = 8
    temperature: float = 0.0
    draft_bits: str = "augmented"
    tree: object = "chain"

    def __post_init__(self):
        for name in ("gamma", "threshold", "capacity"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SDConfig.{name} must be a positive integer, not {v!r}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0
                and np.isfinite(self.temperature)):
            raise ValueError(f"SDConfig.temperature must be a finite number >= 0, not "
                             f"{self.temperature!r}")
        try:
            parse_draft_method(self.draft_bits)
        except ValueError:
            raise ValueError(f"SDConfig.draft_bits must be one of {', '.join(DRAFT_METHODS)}, "
                             f"optionally with ':<bits>' (e.g. 'rounding:3'), not "
                             f"{self.draft_bits!r}") from None
        parse_tree(self.tree)

    @property
    def shape(self):
        """The :class:`~sw_model.decode.tree.TreeShape`, or None for a chain."""
        return parse_tree(self.tree)

    @property
    def verify_tokens(self):
        """Tokens one verification pass carries per sequence: the root and every draft."""
        shape = self.shape
        return (shape.nodes if shape is not None else self.gamma) + 1


# -- helpers ------------------------------------------------------------------------------------------

def _check_prompts(model, prompts, max_new):
    if not isinstance(model, MoEModel):
        raise TypeError(f"model must be an MoEModel, not {model!r}")
    if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1:
        raise ValueError(f"max_new must be a positive integer, not {max_new!r}")
    if len(prompts) == 0:
        raise ValueError("no prompts given")
    out = []
    for b, p in enumerate(prompts):
        p = np.asarray(p)
        if p.ndim != 1 or p.size == 0 or not np.issubdtype(p.dtype, np.integer):
            raise ValueError(f"prompt {b} must be a non-empty 1-D array of token ids")
        if p.min() < 0 or p.max() >= model.config.vocab_size:
            raise ValueError(f"prompt {b} holds token ids outside 0..{model.config.vocab_size - 1}")
        out.append(p.astype(np.int64))
    return out


def _probs(logits, temperature):
    return softmax(np.asarray(logits, dtype=np.float64) / temperature)


def _choose(logits, temperature, rng):
    """Greedy argmax (ties to the lower id) or a sample at ``temperature``."""
    if temperature == 0:
        return int(np.argmax(logits))
    return int(rng.choice(len(logits), p=_probs(logits, temperature)))


class _Meter:
    """Accumulates one step's expert reads per phase and layer into a :class:`StepStats`."""

    def __init__(self, model, stats):
        self.model, self.stats = model, stats
        self.layers = model.config.moe_layers
        self.index = {l: i for i, l in enumerate(self.layers)}
        w, s = model.expert_weights, model.expert_scale_bytes
        self.msb, self.lsb, self.full, self.scales = w // 2, w // 2, w, s
        self.sets = {}

    def phase(self, name):
        self.stats.touched.setdefault(name, [0] * len(self.layers))
        self.stats.loads.setdefault(name, [0] * len(self.layers))
        self.sets.setdefault(name, [set() for _ in self.layers])

    def read(self, phase, layer, expert, kind):
        i = self.index[layer]
        st = self.stats
        st.loads[phase][i] += 1
        self.sets[phase][i].add(expert)
        st.touched[phase][i] = len(self.sets[phase][i])
        if kind == "draft_hb":
            st.hb_expert_bytes += self.msb + self.scales
        elif kind == "draft_lpddr":
            st.lpddr_bytes += self.msb + self.scales
        elif kind == "hit":
            st.hb_expert_bytes += self.msb + self.scales
            st.lpddr_bytes += self.lsb
            st.hits += 1
        elif kind == "miss":
            st.lpddr_bytes += self.full + self.scales
            st.misses += 1
        else:
            raise AssertionError(kind)

    def install(self, layer, experts, streamed):
        for e in experts:
            self.stats.hb_write_bytes += self.msb + self.scales
            if e not in streamed:
                self.stats.lpddr_bytes += self.msb + self.scales

    def dense_pass(self):
        self.stats.hb_dense_bytes += self.model.dense_bytes


def _cached_plan(cache, meter):
    """A target pass through the expert cache: a hit runs split (MSB from HB, LSB from LPDDR), a
    miss FULL from LPDDR and installs the expert (by the cache's policy): its upper slices are
    written into HB as they stream past."""
    def precision(layer, expert):
        hit = cache.access(layer, expert)
        meter.read("target", layer, expert, "hit" if hit else "miss")
        if not hit:
            meter.install(layer, [expert], {expert})
        return Precision.SPLIT if hit else Precision.FULL
    return PassPlan(precision=precision)


def _prefill(model, prompts, max_new, extra, cache, temperature, rng):
    """Process the prompts with the target; returns the KV cache, first tokens, routing counts and
    the prefill's stats (every touched expert a miss or hit of ``cache`` via LRU access)."""
    batch = len(prompts)
    kv = model.new_cache(batch, max(len(p) for p in prompts) + max_new + extra)
    stats = StepStats(mode="prefill", sequences=batch)
    meter = _Meter(model, stats)
    meter.phase("target")

    res = model.forward(kv, prompts, _cached_plan(cache, meter), last_only=True)
    meter.dense_pass()
    counts = _route_counts(model, res.routes)
    picks = _route_picks(model, res.routes)
    first = [_choose(res.logits[b][-1], temperature, rng) for b in range(batch)]
    stats.emitted = batch
    return kv, first, counts, picks, stats


def _route_counts(model, routes, counts=None):
    e = model.config.num_experts
    counts = counts if counts is not None else {l: np.zeros(e, dtype=np.int64)
                                                for l in model.config.moe_layers}
    for layer in model.config.moe_layers:
        picks = routes[layer].experts
        counts[layer] += np.bincount(picks[picks >= 0], minlength=e)
    return counts


def _route_picks(model, routes, picks=None):
    """Append each token's experts per MoE layer (rows of ``[tokens, k]``; what a cache controller
    COUNTs) to ``picks[layer]`` (lists of row arrays)."""
    picks = picks if picks is not None else {l: [] for l in model.config.moe_layers}
    for layer in model.config.moe_layers:
        picks[layer].append(routes[layer].experts)
    return picks


def _stack(picks, k):
    return {l: np.concatenate(rows) if rows else np.zeros((0, k), dtype=np.int64)
            for l, rows in picks.items()}


# -- target-only decoding ------------------------------------------------------------------------------

def target_greedy(model, prompts, max_new):
    """Target-only greedy decoding, one token per step, every expert FULL: the lossless reference."""
    prompts = _check_prompts(model, prompts, max_new)
    kv = model.new_cache(len(prompts), max(len(p) for p in prompts) + max_new)
    res = model.forward(kv, prompts, last_only=True)
    out = [[int(np.argmax(l[-1]))] for l in res.logits]
    for _ in range(max_new - 1):
        res = model.forward(kv, [[t[-1]] for t in out])
        for b, l in enumerate(res.logits):
            out[b].append(int(np.argmax(l[-1])))
    return [np.array(t, dtype=np.int64) for t in out]


def record_routing(model, prompts, max_new):
    """The target's routing while it greedily decodes ``prompts``: a
    :class:`~sw_model.model.routing_traces.RoutingTrace` with one step per generated token after the
    first (``experts[step, sequence, layer, k]``, MoE layers in order), the replay input of the
    cache studies (``python build.py bench cache --trace``). The tokens equal
    :func:`target_greedy`'s."""
    from sw_model.model.routing_traces import RoutingTrace
    prompts = _check_prompts(model, prompts, max_new)
    if max_new < 2:
        raise ValueError(f"max_new must be at least 2 to record a decode step, not {max_new}")
    layers = model.config.moe_layers
    kv = model.new_cache(len(prompts), max(len(p) for p in prompts) + max_new)
    res = model.forward(kv, prompts, last_only=True)
    out = [[int(np.argmax(l[-1]))] for l in res.logits]
    steps = []
    for _ in range(max_new - 1):
        res = model.forward(kv, [[t[-1]] for t in out])
        order = np.argsort(res.row_seq, kind="stable")      # one row per sequence
        steps.append(np.stack([res.routes[l].experts[order] for l in layers], axis=1))
        for b, l in enumerate(res.logits):
            out[b].append(int(np.argmax(l[-1])))
    return RoutingTrace(experts=np.stack(steps), num_experts=model.config.num_experts)


def cached_decode(model, prompts, max_new, cache=None, capacity=8, temperature=0.0, rng=None,
                  recorder=None):
    """Decoding one token per step (below the batch threshold) with an expert cache: hits run split
    (MSB from HB + LSB from LPDDR), misses FULL from LPDDR. ``cache``: a cache object or a name of
    :data:`CACHE_MODELS` (default: the cache controller's golden model, LRU policy, ``capacity``
    experts per MoE layer). ``recorder``: a :class:`sw_model.decode.step_record.StepRecorder` that
    keeps every decode step's record."""
    prompts = _check_prompts(model, prompts, max_new)
    cache = make_cache(cache, model.config, capacity, "cached")
    rng = rng if rng is not None else np.random.default_rng(0)
    kv, first, _, _, prefill = _prefill(model, prompts, max_new, 0, cache, temperature, rng)
    out = [[t] for t in first]
    steps = []
    for _ in range(max_new - 1):
        stats = StepStats(mode="cached", sequences=len(prompts))
        meter = _Meter(model, stats)
        meter.phase("target")
        if recorder is not None:
            recorder.begin_step("cached", model, cache, range(len(prompts)))
            recorder.phase("target")
        res = model.forward(kv, [[t[-1]] for t in out], _cached_plan(cache, meter))
        meter.dense_pass()
        for b, l in enumerate(res.logits):
            out[b].append(_choose(l[-1], temperature, rng))
        stats.emitted = len(prompts)
        stats.accept_lengths = [1] * len(prompts)
        steps.append(stats)
        if recorder is not None:
            recorder.end_step(stats)
        log.info("cached step %d: %d hits, %d misses", len(steps), stats.hits, stats.misses)
    return DecodeResult(tokens=[np.array(t, dtype=np.int64) for t in out], prefill=prefill,
                        steps=steps, layers=model.config.moe_layers)


# -- acceptance ----------------------------------------------------------------------------------------

def accept_greedy(drafts, target_logits):
    """Greedy verification of one sequence: ``(n_accepted, next_token)``. Accept draft tokens while
    they equal the target's argmax; the next token is the target's argmax after them."""
    for j, d in enumerate(drafts):
        t = int(np.argmax(target_logits[j]))
        if d != t:
            return j, t
    return len(drafts), int(np.argmax(target_logits[len(drafts)]))


def accept_rejection(drafts, draft_probs, target_probs, rng):
    """Speculative sampling (Leviathan et al.; Chen et al.) of one sequence.

    ``drafts[j]`` was sampled from ``draft_probs[j]``; ``target_probs`` holds ``len(drafts) + 1``
    rows. Token j is accepted with probability ``min(1, p/q)``; on rejection the next token is drawn
    from ``max(p - q, 0)`` normalised; if all are accepted, from the last target row. The emitted
    tokens are distributed exactly as target sampling. Returns ``(n_accepted, next_token)``.
    """
    for j, d in enumerate(drafts):
        p, q = target_probs[j][d], draft_probs[j][d]
        if rng.random() * q < p:
            continue
        residual = np.maximum(target_probs[j] - draft_probs[j], 0.0)
        total = residual.sum()
        if not total > 0:           # p == q up to rounding: sampling p is then exact
            residual, total = target_probs[j], 1.0
        return j, int(rng.choice(len(residual), p=residual / total))
    last = target_probs[len(drafts)]
    return len(drafts), int(rng.choice(len(last), p=last))


# -- Elastic-SD ---------------------------------------------------------------------------------------

def _draft_plan(model, policy, cache, sd, meter):
    """A draft pass's plan: ``policy``'s experts at DRAFT precision, each read metered from HB
    (resident) or LPDDR."""
    resident = {l: cache.resident(l) for l in model.config.moe_layers}

    def precision(layer, expert):
        meter.read("draft", layer, expert,
                   "draft_hb" if expert in resident[layer] else "draft_lpddr")
        return Precision.DRAFT

    return PassPlan(route=lambda l, s, sel: policy.route(l, s, sel, cache), precision=precision,
                    draft_method=sd.draft_bits)


def _verify_precision(model, resident, meter):
    """A verification pass's ``precision`` (resident experts SPLIT, the others FULL, metered) and
    the experts it streams from LPDDR in full, per layer (filled as the pass runs)."""
    missed = {l: set() for l in model.config.moe_layers}

    def precision(layer, expert):
        if expert in resident[layer]:
            meter.read("target", layer, expert, "hit")
            return Precision.SPLIT
        meter.read("target", layer, expert, "miss")
        missed[layer].add(expert)
        return Precision.FULL

    return precision, missed


def _draft(model, kv, out, active, policy, cache, sd, meter, rng):
    """``gamma`` chained draft passes; returns draft tokens and logits ``[batch, gamma(, vocab)]``
    and the draft router's picks per MoE layer (its unrestricted top-k, see :func:`elastic_sd`):
    counted per expert, and per token (rows ``[tokens, k]``)."""
    c, batch = model.config, len(out)
    plan = _draft_plan(model, policy, cache, sd, meter)
    drafts = np.zeros((batch, sd.gamma), dtype=np.int64)
    logits = np.zeros((batch, sd.gamma, c.vocab_size))
    counts = {l: np.zeros(c.num_experts, dtype=np.int64) for l in c.moe_layers}
    picks = {l: [] for l in c.moe_layers}
    feed = {b: out[b][-1] for b in active}
    for j in range(sd.gamma):
        res = model.forward(kv, [[feed[b]] if b in feed else [] for b in range(batch)], plan)
        meter.dense_pass()
        _route_counts(model, res.wanted, counts)
        _route_picks(model, res.wanted, picks)
        for b in active:
            logits[b, j] = res.logits[b][0]
            drafts[b, j] = feed[b] = _choose(res.logits[b][0], sd.temperature, rng)
    return drafts, logits, counts, _stack(picks, c.top_k)


def _verify(model, kv, out, active, drafts, resident, meter):
    """One target pass over ``gamma + 1`` positions per active sequence; resident experts run split
    (MSB from HB, LSB from LPDDR), the others FULL from LPDDR. Returns the pass and, per layer, the
    experts streamed from LPDDR in full (fills of those piggy-back)."""
    precision, missed = _verify_precision(model, resident, meter)

    active = set(active)
    chunks = [[out[b][-1], *drafts[b]] if b in active else [] for b in range(len(out))]
    res = model.forward(kv, chunks, PassPlan(precision=precision))
    meter.dense_pass()
    return res, missed


def _tree_draft(model, kv, out, active, policy, cache, sd, shape, meter, rng):
    """Grow every active sequence's draft tree, one draft pass per depth over that depth's nodes
    (tree mask, KV slots after the committed ones); returns the trees and the draft router's picks
    of every drafted node (counted per expert, and per token)."""
    c, batch = model.config, len(out)
    plan = _draft_plan(model, policy, cache, sd, meter)
    base = kv.length.copy()
    trees = {b: DraftTree(out[b][-1]) for b in active}
    counts = {l: np.zeros(c.num_experts, dtype=np.int64) for l in c.moe_layers}
    picks = {l: [] for l in c.moe_layers}
    growing = list(active)
    for depth in range(shape.depth):
        levels = {b: trees[b].level(depth) for b in growing}
        growing = [b for b in growing if levels[b]]
        if not growing:
            break
        for b in growing:
            kv.length[b] = base[b] + levels[b][0]
        chunks = [[trees[b].tokens[j] for j in levels[b]] if b in levels and levels[b] else []
                  for b in range(batch)]
        spans = [TreeSpan(trees[b].parents, base[b], levels[b][0]) if b in growing else None
                 for b in range(batch)]
        res = model.forward(kv, chunks, plan, trees=spans)
        meter.dense_pass()
        _route_counts(model, res.wanted, counts)
        _route_picks(model, res.wanted, picks)
        grew = grow_children(shape, [trees[b] for b in growing], depth,
                             [res.logits[b] for b in growing], sd.temperature, rng)
        growing = [growing[i] for i in grew]
    kv.length[:] = base
    return trees, counts, _stack(picks, c.top_k)


def _tree_verify(model, kv, trees, base, resident, meter):
    """One target pass over every active sequence's whole tree (the tree mask; KV for every node);
    as :func:`_verify`."""
    precision, missed = _verify_precision(model, resident, meter)

    chunks = [trees[b].tokens if b in trees else [] for b in range(kv.batch)]
    spans = [TreeSpan(trees[b].parents, base[b]) if b in trees else None for b in range(kv.batch)]
    res = model.forward(kv, chunks, PassPlan(precision=precision), trees=spans)
    meter.dense_pass()
    return res, missed


def commit_path(kv, b, base, path):
    """Keep sequence ``b``'s accepted tree nodes ``path`` (after the root, by depth): node
    ``path[i]``'s keys and values move from slot ``base + path[i]`` to ``base + i + 1`` (its
    position: a node at depth ``i + 1`` was already rotated for it), and the cache ends after
    them."""
    for i, node in enumerate(path, 1):
        if node != i:
            for layer in range(len(kv.k)):
                kv.k[layer][b, base + i] = kv.k[layer][b, base + node]
                kv.v[layer][b, base + i] = kv.v[layer][b, base + node]
    kv.length[b] = base + len(path) + 1


def elastic_sd(model, prompts, max_new, policy, sd=None, cache=None, rng=None, recorder=None):
    """Elastic self-speculative decoding of a batch (chain drafts of ``sd.gamma`` tokens).

    Per step: draft ``gamma`` tokens for every unfinished sequence with ``policy``'s experts at
    DRAFT precision (``sd.draft_bits``); count the draft's expert choices and fix the next resident
    set (the choices counted are the draft router's unrestricted top-k: counting the experts the
    draft was confined to would only ever re-select the current set); verify ``gamma + 1``
    positions with the INT8 target (resident experts split MSB/LSB, others FULL); install the new
    set (its upper slices are written while verification runs); accept greedily
    (``sd.temperature == 0``) or by rejection sampling, and roll the KV cache back to the accepted
    prefix.

    With a tree shape (``sd.tree``, :mod:`sw_model.decode.tree`) the draft grows a token tree
    instead, one draft pass per depth (the next resident set counts the routing of every drafted
    node); verification is one target pass over every node of every sequence (tree mask,
    positions by depth); the accepted path is the longest one matching the target's greedy tokens,
    or the one recursive rejection sampling without replacement walks, and its keys and values
    move into place (:func:`commit_path`) while the rest are dropped.

    ``cache``: a cache object or a name of :data:`CACHE_MODELS` (default: the cache controller's
    golden model, FREQUENCY policy, ``sd.capacity`` experts per MoE layer; the policy then takes the
    next set from the controller's COUNT/SELECT). ``recorder``: a
    :class:`sw_model.decode.step_record.StepRecorder` that keeps every decode step's record.
    """
    prompts = _check_prompts(model, prompts, max_new)
    sd = sd if sd is not None else SDConfig()
    if not isinstance(sd, SDConfig):
        raise TypeError(f"sd must be an SDConfig, not {sd!r}")
    cache = make_cache(cache, model.config, sd.capacity, "elastic_sd")
    if cache.capacity < model.config.top_k:
        raise ValueError(f"cache capacity ({cache.capacity} experts per layer) must hold at least "
                         f"top_k ({model.config.top_k}) experts to draft from the resident set")
    rng = rng if rng is not None else np.random.default_rng(0)
    temp, gamma, layers = sd.temperature, sd.gamma, model.config.moe_layers
    shape = sd.shape
    if shape is not None:
        gamma = shape.depth
    kv, first, counts, picks, prefill = _prefill(model, prompts, max_new, sd.verify_tokens, cache,
                                                 temp, rng)
    policy.start(model, cache, counts, _stack(picks, model.config.top_k))
    out = [[t] for t in first]
    steps = []
    while True:
        active = [b for b in range(len(out)) if len(out[b]) < max_new]
        if not active:
            break
        stats = StepStats(mode="elastic_sd", sequences=len(active))
        meter = _Meter(model, stats)
        meter.phase("draft")
        meter.phase("target")
        resident = {l: cache.resident(l) for l in layers}
        base = kv.length.copy()
        if recorder is not None:
            recorder.begin_step("elastic_sd", model, cache, active, gamma)
            recorder.phase("draft")
        if shape is not None:
            trees, counts, picks = _tree_draft(model, kv, out, active, policy, cache, sd, shape,
                                               meter, rng)
        else:
            drafts, draft_logits, counts, picks = _draft(model, kv, out, active, policy, cache,
                                                         sd, meter, rng)
        # The next resident set is fixed from this draft's choices before verification.
        if recorder is not None:
            recorder.phase("select")
        next_sets = policy.next_sets(counts, picks, cache)
        kv.length[:] = base
        if recorder is not None:
            recorder.phase("target")
        if shape is not None:
            res, missed = _tree_verify(model, kv, trees, base, resident, meter)
        else:
            res, missed = _verify(model, kv, out, active, drafts, resident, meter)
        if recorder is not None:
            recorder.phase("install")
        installs = {}
        for layer in layers:
            installed, _ = cache.select(layer, next_sets[layer])
            meter.install(layer, installed, missed[layer])
            installs[layer] = installed
        for b in active if shape is not None else ():
            t = trees[b]
            if temp == 0:
                path, nxt = accept_tree_greedy(t.tokens, t.parents, res.logits[b])
            else:
                draft_probs = [_probs(t.logits[j], temp) if j in t.logits else None
                               for j in range(len(t))]
                path, nxt = accept_tree_sampling(t.tokens, t.parents, draft_probs,
                                                 _probs(res.logits[b], temp), rng)
            commit_path(kv, b, base[b], path)
            n = len(path)
            stats.emitted += min(n + 1, max_new - len(out[b]))     # tokens past max_new dropped
            out[b].extend([t.tokens[j] for j in path] + [nxt])
            stats.proposed += len(t) - 1
            stats.accepted += n
            stats.accept_lengths.append(n + 1)
            stats.verified += len(t)
        for b in active if shape is None else ():
            d = [int(t) for t in drafts[b]]
            if temp == 0:
                n, nxt = accept_greedy(d, res.logits[b])
            else:
                n, nxt = accept_rejection(d, _probs(draft_logits[b], temp),
                                          _probs(res.logits[b], temp), rng)
            kv.length[b] = base[b] + n + 1
            stats.emitted += min(n + 1, max_new - len(out[b]))     # tokens past max_new dropped
            out[b].extend(d[:n] + [nxt])
            stats.proposed += gamma
            stats.accepted += n
            stats.accept_lengths.append(n + 1)
            stats.verified += gamma + 1
        steps.append(stats)
        if recorder is not None:
            recorder.end_step(stats, next_sets=next_sets, installed=installs,
                              trees=({b: (tuple(trees[b].tokens), tuple(trees[b].parents))
                                      for b in active} if shape is not None else None))
        log.info("Elastic-SD step %d: %d sequences, %d of %d drafts accepted, %d hits, %d misses",
                 len(steps), stats.sequences, stats.accepted, stats.proposed, stats.hits,
                 stats.misses)
    return DecodeResult(tokens=[np.array(t[:max_new], dtype=np.int64) for t in out],
                        prefill=prefill, steps=steps, layers=layers)


def decode(model, prompts, max_new, policy, sd=None, rng=None, cache=None, recorder=None):
    """Cached decoding below ``sd.threshold`` sequences, Elastic-SD at or above it; ``cache`` and
    ``recorder`` as for those (default cache: the cache controller's golden model)."""
    sd = sd if sd is not None else SDConfig()
    if len(prompts) >= sd.threshold:
        return elastic_sd(model, prompts, max_new, policy, sd, cache=cache, rng=rng,
                          recorder=recorder)
    return cached_decode(model, prompts, max_new, cache=cache, capacity=sd.capacity,
                         temperature=sd.temperature, rng=rng, recorder=recorder)
