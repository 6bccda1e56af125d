"""Workloads: routing statistics from routing traces, and acceptance rates.

**Routing.** Every count the model needs about which experts a step touches comes from a routing
trace (:mod:`sw_model.model.routing_traces`): generated with a :class:`Locality` (Zipf popularity
exponent, ``reuse`` probability that a sequence keeps an expert from its previous token), by
default the one *measured* on the trained model's routing over the held-out text
(:mod:`sw_model.perf.locality`: the top quarter of a layer's experts takes 46% of its choices,
scaled to each model's pool; generator reuse 0.202, i.e. 31.6% of a token's experts chosen again
by the next token), or recorded from the golden model (``python build.py sd --save-routing``,
``perf --trace``). The earlier assumption (Zipf 1.0, reuse 0.5, as ``bench cache``) stays
selectable as ``--locality assumed``. Layers of a generated trace are independent and alike, so
:data:`STAT_LAYERS` layers stand for all of them.
:class:`RoutingStats` measures on the trace, per batch size and HB capacity (slots per layer):

* ``touched(window)``: distinct experts per layer one pass needs when it runs ``window``
  consecutive tokens of every sequence (1: plain/cached decoding and a draft token; gamma+1:
  verification);
* ``lru_hit_rate``: cached decoding with an LRU cache (``decoding.LRUExpertCache``);
* ``frequency``: Elastic-SD's resident set, the most frequent experts of the previous window's
  choices (paper: the draft's one-hot sums), as ``coverage`` (share of the next window's
  token-expert choices inside the set), ``hits`` (touched experts inside it) and ``installs``
  (experts entering the set per step);
* ``static``: a set pinned from an offline profile's popularity (SpecMoE's hot experts, a
  profiled placement), same figures; the profile is a separate trace of
  :data:`PROFILE_BATCH` sequences with the same popularity.

A draft pass is confined to the resident set; it touches ``min(slots, touched(1))`` experts
(assumed: top-k inside the set spreads like unrestricted routing).

**Acceptance.** :class:`AcceptanceModel` is the one place acceptance rates come from. By default
self-drafts take the measured tokens per verification (:mod:`sw_model.perf.measured`: the
trained byte-level MoE with 1/8 .. all of its experts resident) at the share of the paper model's
experts that fit in HB, clamped to the paper's published range 0.33-0.91 (the class docstring
states the mapping); the earlier assumed rule on routing coverage stays selectable; separate-draft
methods have assumed constant rates.
"""

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from sw_model.decode.decoding import LRUExpertCache
from sw_model.decode.tree import parse_tree
from sw_model.perf.locality import GENERATOR_REUSE, MEASURED_TOP_SHARE, TOP_FRACTION, \
    zipf_for_top_share
from sw_model.perf.measured import ABLATE_EXPERTS, ABLATE_GAMMA, CHAIN_WINDOW_UNION, \
    TOKENS_PER_VERIFICATION, TREE_SEQUENCE_UNION, TREE_SHARES, TREE_TOKENS_PER_VERIFICATION
from sw_model.model.routing_traces import generate_routing_trace

__all__ = ["RoutingStats", "routing_stats", "AcceptanceModel", "ACCEPTANCE", "expected_length",
           "alpha_for_length", "SELECTION_CURVE",
           "STAT_LAYERS", "STAT_STEPS", "Locality", "ASSUMED_LOCALITY", "stat_steps", "trace_stats", "step_strides"]

#: Layers of a generated trace the statistics are measured on (layers are i.i.d. in the generator).
STAT_LAYERS = 4
#: Decode steps per generated trace at small batch; the first quarter warms caches up and is not
#: counted. Large batches need fewer steps for the same number of tokens (:func:`stat_steps`).
STAT_STEPS = 40
#: Tokens per layer a trace should hold at least (sets the steps of large batches).
STAT_TOKENS = 640


def stat_steps(batch):
    """Steps of the generated trace for ``batch`` sequences: STAT_STEPS, fewer at large batch
    (at least 16, so warm-up and several verification windows remain)."""
    return max(16, min(STAT_STEPS, STAT_TOKENS // batch))


@dataclass(frozen=True)
class Locality:
    """Routing locality of generated traces. ``reuse``: the generator's probability that a
    sequence keeps each expert of its previous token; popularity either a fixed Zipf exponent
    ``zipf`` for every model, or (``zipf`` None) the exponent that puts ``top_share`` of a layer's
    choices on its top quarter of experts, for each model's number of experts
    (:func:`sw_model.perf.locality.zipf_for_top_share`). The default is the measured locality
    (:mod:`sw_model.perf.locality`; values and source there)."""
    reuse: float = GENERATOR_REUSE
    top_share: float = MEASURED_TOP_SHARE
    zipf: float = None
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.reuse, bool) or not isinstance(self.reuse, (int, float)) \
                or not 0 <= self.reuse <= 1:
            raise ValueError(f"locality reuse must be a probability in [0, 1], not "
                             f"{self.reuse!r}")
        if (self.zipf is None) == (self.top_share is None):
            raise ValueError("a locality takes either a Zipf exponent (zipf) or a top-quarter "
                             f"share (top_share), not zipf={self.zipf!r} and "
                             f"top_share={self.top_share!r}")
        if self.zipf is not None and (isinstance(self.zipf, bool) or not isinstance(
                self.zipf, (int, float)) or not 0 <= self.zipf <= 16):
            raise ValueError(f"locality zipf exponent must be in [0, 16], not {self.zipf!r}")
        if self.top_share is not None and (isinstance(self.top_share, bool) or not isinstance(
                self.top_share, (int, float)) or not TOP_FRACTION <= self.top_share < 1):
            raise ValueError(f"locality top_share (share of the choices on the top quarter of "
                             f"the experts) must be in [{TOP_FRACTION}, 1), not "
                             f"{self.top_share!r}")

    def exponent(self, num_experts):
        """The Zipf exponent of the popularity over ``num_experts``."""
        if self.zipf is not None:
            return float(self.zipf)
        return zipf_for_top_share(num_experts, float(self.top_share))

    def describe(self):
        if self.zipf is not None:
            return f"Zipf {self.zipf:g}, reuse {self.reuse:g}"
        return (f"top-quarter share {self.top_share:g} (Zipf exponent per model), reuse "
                f"{self.reuse:g}")

    @classmethod
    def parse(cls, text):
        """``measured`` (the default), ``assumed`` (the earlier Zipf 1.0 / reuse 0.5), or
        ``key=value`` pairs: ``zipf=1.0,reuse=0.5``, ``top_share=0.5,reuse=0.3`` (``reuse``
        defaults to the measured one, a missing popularity to the measured top share)."""
        text = text.strip()
        if text == "measured":
            return cls()
        if text == "assumed":
            return ASSUMED_LOCALITY
        values = {}
        for part in text.split(","):
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or key not in ("zipf", "reuse", "top_share", "seed"):
                raise ValueError(f"locality {text!r}: expected 'measured', 'assumed' or "
                                 "comma-separated zipf=, top_share=, reuse=, seed= values, not "
                                 f"{part.strip()!r}")
            if key in values:
                raise ValueError(f"locality {text!r}: {key} given twice")
            try:
                values[key] = int(value) if key == "seed" else float(value)
            except ValueError:
                raise ValueError(f"locality {text!r}: {key} must be a number, not "
                                 f"{value.strip()!r}") from None
        if "zipf" in values and "top_share" not in values:
            values["top_share"] = None
        return cls(**values)


#: The locality assumed before it was measured (and ``bench cache``'s default): Zipf 1.0 for
#: every model, reuse 0.5.
ASSUMED_LOCALITY = Locality(reuse=0.5, top_share=None, zipf=1.0)


@dataclass(frozen=True)
class SetStats:
    """A resident set of ``slots`` per layer over passes of ``window`` tokens per sequence (all
    per layer): ``coverage`` share of the window's token-expert choices inside the set, ``hits``
    touched experts inside it, ``installs`` experts entering the next set during verification and
    ``installs_streamed`` of those the verification streams anyway (misses now), ``draft_touched``
    and ``draft_tiles`` distinct experts and MAC token tiles of one draft pass confined to the set
    (``window - 1`` draft passes; the scheduler's rule: a token's wanted resident experts, topped up
    with other resident ones, lowest id first, to top-k). A token tree's draft passes differ in
    width: ``draft_passes`` holds ``(touched, tiles)`` of each of them."""
    coverage: float
    hits: float
    installs: float
    installs_streamed: float
    draft_touched: float
    draft_tiles: float
    draft_passes: tuple = ()


def _tiles(rows, tile):
    """MAC token tiles of a pass: each expert runs its rows ``tile`` tokens at a time."""
    return int(np.sum(-(-rows[rows > 0] // tile)))


class RoutingStats:
    """Statistics of one trace (``experts[step, sequence, layer, k]``) over ``num_experts``."""

    def __init__(self, trace, profile=None):
        self.trace = trace
        self.profile = trace if profile is None else profile
        self.experts = trace.experts
        self.num_experts = trace.num_experts
        self.top_k = trace.top_k
        self.warm = max(1, trace.steps // 4)

    def _windows(self, window, stride=None):
        """Windows of ``window`` positions from the warm-up on, ``stride`` apart: a number, or a
        tuple of strides taken in turn (speculative steps keep different numbers of tokens)."""
        steps = self.trace.steps
        strides = (stride or window,) if not isinstance(stride, tuple) else stride
        out, t, i = [], self.warm, 0
        while t + window <= steps:
            out.append((t, t + window))
            t += strides[i % len(strides)]
            i += 1
        return out or [(0, min(window, steps))]

    @lru_cache(maxsize=None)
    def touched(self, window=1):
        """Mean distinct experts per layer in a pass over ``window`` tokens of every sequence."""
        counts = [len(np.unique(self.experts[a:b, :, layer]))
                  for a, b in self._windows(window) for layer in range(self.trace.layers)]
        return float(np.mean(counts))

    @lru_cache(maxsize=None)
    def tiles(self, window, tile):
        """Mean MAC token tiles per layer of a pass over ``window`` tokens of every sequence."""
        counts = [_tiles(np.bincount(self.experts[a:b, :, layer].ravel(),
                                     minlength=self.num_experts), tile)
                  for a, b in self._windows(window) for layer in range(self.trace.layers)]
        return float(np.mean(counts))

    @lru_cache(maxsize=None)
    def tiles_scaled(self, window, tokens, tile):
        """Mean MAC token tiles per layer of a pass carrying ``tokens`` tokens per sequence whose
        experts are those of ``window`` consecutive tokens (a token tree's verification): each
        expert's rows of the window scaled by ``tokens / window``."""
        factor = tokens / window
        counts = [int(np.sum(np.ceil(rows[rows > 0] * factor / tile - 1e-9)))
                  for a, b in self._windows(window) for layer in range(self.trace.layers)
                  for rows in (np.bincount(self.experts[a:b, :, layer].ravel(),
                                           minlength=self.num_experts),)]
        return float(np.mean(counts))

    @lru_cache(maxsize=None)
    def lru_hit_rate(self, slots):
        """Hit rate of cached decoding (one token per sequence per step), LRU per layer, each
        step's experts accessed in ascending order."""
        if slots <= 0:
            return 0.0
        cache = LRUExpertCache(slots)
        hits = total = 0
        for t in range(self.trace.steps):
            for layer in range(self.trace.layers):
                # ascending, as the scheduler's cached steps access them
                # (sw_model.compiler.trace_steps)
                for e in sorted(self.trace.needed(t, layer)):
                    hit = cache.access(layer, e)
                    if t >= self.warm:
                        hits += hit
                        total += 1
        return hits / total if total else 0.0

    def _draft(self, a, drafts, layer, resident, tile):
        """(distinct experts, tiles) per draft pass at positions a .. a+drafts-1; ``drafts`` a
        number (one token per sequence each) or a tuple of the passes' tokens per sequence (a
        token tree's levels: pass ``j`` takes the next ``drafts[j]`` positions)."""
        touched, tiles = [], []
        ordered = np.array(sorted(resident), dtype=np.int64)
        widths = (1,) * drafts if isinstance(drafts, int) else drafts
        at = a
        for width in widths:
            wanted = self.experts[at:at + width, :, layer].reshape(-1, self.top_k)  # [tokens, k]
            at += width
            inside = (ordered[None, :, None] == wanted[:, None, :]).any(-1)  # [tokens, slots]
            room = self.top_k - inside.sum(1, keepdims=True)
            top_up = ~inside & (np.cumsum(~inside, axis=1) <= room)
            rows = (inside | top_up).sum(0)
            touched.append(int(np.count_nonzero(rows)))
            tiles.append(_tiles(rows, tile))
        return touched, tiles

    def _set_stats(self, slots, window, tile, chooser, stride=None, levels=None):
        slots = min(slots, self.num_experts)
        if slots <= 0:
            return SetStats(0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                            tuple((0.0, 0.0) for _ in (levels or ())))
        drafts = window - 1 if levels is None else levels
        span = window if levels is None else max(window, sum(levels))
        cover, hits, installs, streamed, dt, dtiles = [], [], [], [], [], []
        per_pass = [[] for _ in (levels or ())]
        current = {}
        first = (stride[0] if isinstance(stride, tuple) else stride) or window
        for a, end in self._windows(span, stride):
            b = a + window
            for layer in range(self.trace.layers):
                if layer not in current:
                    current[layer] = chooser(max(0, a - first), layer, set())
                now_set = current[layer]
                next_set = current[layer] = chooser(a, layer, now_set)
                now = self.experts[a:b, :, layer]
                used = set(int(e) for e in np.unique(now))
                cover.append(np.isin(now, list(now_set)).mean())
                hits.append(len(used & now_set))
                new = next_set - now_set
                installs.append(len(new))
                streamed.append(len(new & used))
                if drafts:
                    t, n = self._draft(a, drafts, layer, now_set, tile)
                    dt += t
                    dtiles += n
                    for j, pair in enumerate(zip(t, n) if levels is not None else ()):
                        per_pass[j].append(pair)
        mean = lambda v: float(np.mean(v)) if v else 0.0
        passes = tuple((mean([p[0] for p in v]), mean([p[1] for p in v])) for v in per_pass)
        return SetStats(mean(cover), mean(hits), mean(installs), mean(streamed), mean(dt),
                        mean(dtiles), passes)

    def _top(self, counts, slots):
        order = np.lexsort((np.arange(self.num_experts), -counts))
        return set(int(e) for e in order[:slots])

    @lru_cache(maxsize=None)
    def frequency(self, slots, window, tile=16, stride=None, levels=None):
        """Elastic-SD's set: the ``slots`` most chosen experts of the previous step's draft
        positions (the first ``window - 1`` of its window; all of them when ``window`` is 1);
        when fewer were chosen, earlier residents keep the other slots (the controller's SELECT).
        Steps start ``stride`` positions apart (default ``window``; a speculative step advances
        by the tokens it keeps, so the next window overlaps the rejected drafts). ``levels``: a
        token tree's draft passes, tokens per sequence each (``TreeShape.levels`` without
        the deepest): pass ``j`` takes the next ``levels[j]`` positions, the set counts all of
        them, and verification the first ``window``."""
        span = max(1, window - 1) if levels is None else sum(levels)

        def chooser(a, layer, previous):
            picks = self.experts[a:a + span, :, layer]
            counts = np.bincount(picks.ravel(), minlength=self.num_experts)
            chosen = self._top(counts, min(slots, int(np.count_nonzero(counts))))
            # like the controller's SELECT: residents nobody picked stay until displaced
            keep = sorted(previous - chosen)[:max(0, slots - len(chosen))]
            return chosen | set(keep)
        return self._set_stats(slots, window, tile, chooser, stride, levels)

    @lru_cache(maxsize=None)
    def static(self, slots, window=1, tile=16, stride=None, levels=None):
        """A set pinned from an offline profile's popularity (``profile``: a separate trace with
        the same popularity; without one, this trace itself)."""
        tops = {layer: self._top(np.bincount(self.profile.experts[:, :, layer].ravel(),
                                             minlength=self.num_experts), slots)
                for layer in range(self.trace.layers)}
        return self._set_stats(slots, window, tile, lambda a, layer, prev: tops[layer], stride,
                               levels)

    @lru_cache(maxsize=None)
    def random_set(self, slots, window, tile=16, stride=None, levels=None):
        """A random set of the same size (the paper's comparison for the resident-set choice)."""
        rng = np.random.default_rng(12345)
        sets = {layer: set(int(e) for e in rng.choice(self.num_experts,
                                                      min(slots, self.num_experts),
                                                      replace=False))
                for layer in range(self.trace.layers)}
        return self._set_stats(slots, window, tile, lambda a, layer, prev: sets[layer], stride,
                               levels)


@lru_cache(maxsize=256)
def routing_stats(num_experts, top_k, batch, locality=Locality(), steps=None,
                  layers=STAT_LAYERS):
    """:class:`RoutingStats` of a generated trace (cached per arguments)."""
    steps = stat_steps(batch) if steps is None else steps
    trace = generate_routing_trace(layers, num_experts, top_k, steps, batch=batch,
                                   zipf=locality.exponent(num_experts), reuse=locality.reuse,
                                   seed=locality.seed, fast=True)
    return RoutingStats(trace, _profile(num_experts, top_k, locality, STAT_STEPS, layers))


#: Sequences of the offline routing profile static placements are chosen from.
PROFILE_BATCH = 64


@lru_cache(maxsize=64)
def _profile(num_experts, top_k, locality, steps, layers):
    """The offline profile: a trace of PROFILE_BATCH sequences drawn with the same seed, hence
    the same per-layer popularity (the generator draws popularity first), other token draws."""
    return generate_routing_trace(layers, num_experts, top_k, steps, batch=PROFILE_BATCH,
                                  zipf=locality.exponent(num_experts), reuse=locality.reuse,
                                  seed=locality.seed, fast=True)


_TRACE_STATS = {}


def trace_stats(trace, model, batch):
    """:class:`RoutingStats` of a given trace's first ``batch`` sequences (for ``model``: its
    experts and top-k must match the trace's)."""
    if trace.num_experts != model.experts or trace.top_k != model.top_k:
        raise ValueError(f"the routing trace has {trace.num_experts} experts, top-{trace.top_k}; "
                         f"{model.name} has {model.experts}, top-{model.top_k}")
    if batch > trace.batch:
        raise ValueError(f"the routing trace holds {trace.batch} sequences, fewer than batch "
                         f"{batch}")
    key = (id(trace), batch)
    if key not in _TRACE_STATS:
        from sw_model.model.routing_traces import RoutingTrace
        _TRACE_STATS[key] = (trace, RoutingStats(RoutingTrace(trace.experts[:, :batch],
                                                              trace.num_experts)))
    return _TRACE_STATS[key][1]


def step_strides(alpha, gamma, count=16):
    """``count`` positions a speculative step advances by (accepted drafts plus one), the
    quantiles of that distribution (each draft accepted with probability ``alpha`` until the
    first rejection), interleaved: a deterministic stand-in for the random advance."""
    probs = [alpha ** n * (1 - alpha) for n in range(gamma)] + [alpha ** gamma]
    cdf = np.cumsum(probs)
    picks = [int(np.searchsorted(cdf, (i + 0.5) / count)) + 1 for i in range(count)]
    order = sorted(range(count), key=lambda i: (i * 7) % count)
    return tuple(min(gamma + 1, picks[i]) for i in order)


def expected_length(alpha, gamma):
    """Expected tokens a sequence keeps per speculative step with ``gamma`` drafts, each accepted
    with probability ``alpha`` (the accepted prefix plus the target's own next token)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"acceptance rate must be in [0, 1], not {alpha!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 0:
        raise ValueError(f"gamma must be an int >= 0, not {gamma!r}")
    if alpha == 1:
        return float(gamma + 1)
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def _curves(table):
    """Hashable form of :data:`sw_model.perf.measured.TOKENS_PER_VERIFICATION`."""
    return tuple((sel, tuple(sorted((float(f), tuple(e)) for f, e in by_f.items())))
                 for sel, by_f in table.items())


def _trees(lengths, unions):
    """Hashable form of the measured tree tables: ``(spec, E per share, union per share)`` of
    every tree shape (the chain rows stay with the chain curves)."""
    return tuple((spec, tuple(lengths[spec]), tuple(unions[spec])) for spec in lengths
                 if not spec.startswith("chain:"))


def effective_draws(union, experts=ABLATE_EXPERTS):
    """How many independent uniform draws from ``experts`` experts leave ``union`` distinct ones
    (``log(1 - u/E) / log(1 - 1/E)``): the scale on which two unions are compared (it grows in
    proportion to the tokens when routing has no locality, and stays finite below ``E``)."""
    if not 0 <= union < experts:
        raise ValueError(f"a union of {union!r} experts must lie in [0, {experts})")
    return float(np.log1p(-union / experts) / np.log1p(-1 / experts))


def measured_tree_specs():
    """The tree shapes with measured acceptance (:mod:`sw_model.perf.measured`), as specs."""
    return [spec for spec in TREE_TOKENS_PER_VERIFICATION if not spec.startswith("chain:")]


def alpha_for_length(length, gamma):
    """The per-position acceptance ``alpha`` whose :func:`expected_length` with ``gamma`` drafts
    is ``length`` (bisection; ``length`` in [1, gamma + 1])."""
    if not 1 <= length <= gamma + 1:
        raise ValueError(f"tokens per verification must be in [1, {gamma + 1}] for gamma "
                         f"{gamma}, not {length!r}")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_length(mid, gamma) < length else (lo, mid)
    return (lo + hi) / 2


#: What the draft of each resident-set rule is looked up as in the measured curves: ``static``
#: (a set pinned from an offline profile) was not measured; it takes the ``random`` curve (no
#: feedback from the draft; conservative, stated).
SELECTION_CURVE = {"frequency": "frequency", "random": "random", "static": "random",
                   "lru": "lru"}


@dataclass(frozen=True)
class AcceptanceModel:
    """Acceptance per method, as the per-position rate ``alpha`` (each draft accepted with
    probability ``alpha`` until the first rejection; :func:`expected_length`).

    Self-drafts confined to the HB-resident experts (Elastic-SD, Quant-SD, SpecMoE-SD) follow
    ``mapping``:

    * ``"resident"`` (default): the ablations' measurement (:mod:`sw_model.perf.measured`) mapped to
      a paper model by the **fraction of its experts resident** in HB (the upper nibbles that fit
      after dense weights and KV; :meth:`rate`'s ``fraction``). Tokens per verification ``E(g)`` at
      the machine's gamma (g <= 6: measured directly; g > 6: the ``alpha`` of ``E(6)`` extended
      geometrically) are interpolated piecewise linearly in ``log2(fraction)`` between the measured
      sizes 1/8, 1/4, 1/2, 1 of the experts (below 1/8 linearly in the share down to the paper's
      floor at no resident expert); the acceptance ``(E - 1) / g`` (the paper's definition, accepted
      / proposed drafts) is clamped to the paper's published range [``floor``, ``full``] = [0.33,
      0.91]; ``alpha`` is the rate whose :func:`expected_length` is that ``E``. Why the fraction:
      the draft of a model with a share ``f`` of its experts resident differs from the target in the
      same way as the measured model's with ``f``: both restrict each token's top-k to the same
      share of the expert pool (the measured model's top-4 of 32 is 1/8 of its pool, the paper
      models' 1/16 to 1/8). What it cannot carry: a model with more skewed routing covers more of
      its choices with the same share, and GPT-OSS-20B's resident MXFP4 experts are exact (the
      measured draft is 4-bit), so the mapping is conservative there.
    * ``"coverage"``: the earlier assumed rule ``max(floor, full - slope * (1 - coverage))``,
      coverage the share of the routing's choices inside the set.

    **Token trees** (``Settings.tree``; :meth:`tree_length`, :meth:`tree_window`): ``"resident"``
    takes the tree study's tokens per verification (``trees``: ``python build.py ablate --study
    trees``, :mod:`sw_model.perf.measured`) of the same shape, interpolated in ``log2(fraction)``
    between the measured shares like the chain curves; below 1/8 linearly in the share down to 1
    at no resident expert (nothing to draft with); at most ``1 + depth``. The paper's acceptance
    range (0.33-0.91 of a chain's drafts) is not applied: it is a chain's, and the tree study
    measures deep drafts far below its floor (a chain of 16 keeps 3.1 tokens at 1/8, not
    ``1 + 0.33 * 16``). ``"coverage"``: the assumed rule's ``alpha`` over the tree's depth. A shape
    that was not measured has no acceptance: :meth:`tree_entry` names it.

    What-ifs (the report's): ``tree_union`` ``"chain"`` makes a tree's verification touch the
    experts of a chain carrying as many tokens (no measured growth); ``share`` looks every
    self-draft's acceptance up at that resident share instead of the real one (1.0: as with every
    expert resident).

    ``eagle`` / ``slm``: assumed constant rates of the separate drafts. ``measured`` maps
    ``(model, method)`` or ``method`` to a per-position ``alpha`` and overrides everything
    (``perf --acceptance-json``; for a tree, over its depth)."""
    full: float = 0.91          # paper: top of the 0.33-0.91 range
    floor: float = 0.33         # paper: bottom of the range
    slope: float = 0.30         # assumed ("coverage" mapping only)
    eagle: float = 0.60         # assumed: EAGLE head on an MoE target
    slm: float = 0.55           # assumed: a ~0.6B-parameter draft LM of the same family
    slm_params: float = 0.6e9   # assumed size of that draft LM
    mapping: str = "resident"
    curves: tuple = _curves(TOKENS_PER_VERIFICATION)
    curve_gamma: int = ABLATE_GAMMA
    measured: dict = field(default_factory=dict)
    trees: tuple = _trees(TREE_TOKENS_PER_VERIFICATION, TREE_SEQUENCE_UNION)
    tree_shares: tuple = TREE_SHARES
    chain_union: tuple = tuple(sorted((float(f), tuple(c)) for f, c in CHAIN_WINDOW_UNION.items()))
    tree_union: str = "measured"
    share: float = None

    def __post_init__(self):
        for name in ("full", "floor", "slope", "eagle", "slm"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"AcceptanceModel.{name} must be in [0, 1], not {value!r}")
        if self.mapping not in ("resident", "coverage"):
            raise ValueError(f"AcceptanceModel.mapping must be 'resident' or 'coverage', not "
                             f"{self.mapping!r}")
        for sel, points in self.curves:
            for f, lengths in points:
                if not 0 < f <= 1 or len(lengths) != self.curve_gamma or any(
                        not 1 <= e <= g + 1 for g, e in enumerate(lengths, 1)):
                    raise ValueError(f"AcceptanceModel.curves[{sel!r}]: the point at fraction "
                                     f"{f!r} must give E(1..{self.curve_gamma}) within "
                                     f"[1, g + 1], not {lengths!r}")
        for key, value in self.measured.items():
            if not 0 <= value <= 1:
                raise ValueError(f"measured acceptance for {key!r} must be in [0, 1], not "
                                 f"{value!r}")
        if self.tree_union not in ("measured", "chain"):
            raise ValueError(f"AcceptanceModel.tree_union must be 'measured' or 'chain', not "
                             f"{self.tree_union!r}")
        if self.share is not None and not 0 < self.share <= 1:
            raise ValueError(f"AcceptanceModel.share must be None or in (0, 1], not "
                             f"{self.share!r}")
        for spec, lengths, unions in self.trees:
            shape = parse_tree(spec)
            if len(lengths) != len(self.tree_shares) or len(unions) != len(self.tree_shares) \
                    or any(not 1 <= e <= shape.depth + 1 for e in lengths):
                raise ValueError(f"AcceptanceModel.trees[{spec!r}]: one E in [1, depth + 1] and "
                                 f"one union per share of {self.tree_shares}, not {lengths!r}, "
                                 f"{unions!r}")

    def __hash__(self):
        return hash((self.full, self.floor, self.slope, self.eagle, self.slm, self.slm_params,
                     self.mapping, self.curves, self.curve_gamma,
                     tuple(sorted(self.measured.items())), self.trees, self.tree_shares,
                     self.chain_union, self.tree_union, self.share))

    def tree_entry(self, shape):
        """``(E per share, union per share)`` measured for ``shape`` (a ``TreeShape`` or a
        spec); ValueError naming ``decoding.tree`` and the measured shapes when it has none."""
        spec = parse_tree(shape).spec
        for s, lengths, unions in self.trees:
            if parse_tree(s).spec == spec:
                return lengths, unions
        raise ValueError(f"decoding.tree {spec}: no measured acceptance for this shape (python "
                         f"build.py ablate --study trees measures shapes); measured: "
                         f"{', '.join(s for s, _, _ in self.trees)}")

    def _by_share(self, values, fraction):
        """``values`` (one per :attr:`tree_shares`) at ``fraction``, piecewise linear in
        ``log2(fraction)``, held at the ends."""
        return float(np.interp(np.log2(max(fraction, self.tree_shares[0])),
                               np.log2(self.tree_shares), values))

    def tree_length(self, shape, fraction, clamp=True):
        """Tokens a sequence keeps per verification with the tree ``shape`` when ``fraction`` of
        the experts are resident (class docstring; ``clamp``: at most ``1 + depth``)."""
        if not 0 <= fraction <= 1:
            raise ValueError(f"resident fraction must be in [0, 1], not {fraction!r}")
        fraction = self.share if self.share is not None else fraction
        shape = parse_tree(shape)
        lengths, _ = self.tree_entry(shape)
        low = self.tree_shares[0]
        if fraction >= low:
            length = self._by_share(lengths, fraction)
        else:
            length = 1 + (lengths[0] - 1) * fraction / low
        if clamp:
            length = min(1.0 + shape.depth, max(1.0, length))
        return length

    def _chain_union(self, share, tokens):
        """One sequence's union over ``tokens`` verified chain positions at ``share``."""
        curve = dict(self.chain_union)[share]
        if tokens > len(curve):
            raise ValueError(f"the chain's union is measured over at most {len(curve)} "
                             f"positions, not {tokens}")
        return curve[tokens - 1]

    def tree_growth(self, shape, share):
        """How much more of the routing one sequence's verification covers with the tree than
        with a chain carrying as many tokens, at a measured ``share``: the ratio of their unions'
        :func:`effective_draws`."""
        shape = parse_tree(shape)
        _, unions = self.tree_entry(shape)
        i = list(self.tree_shares).index(share)
        return (effective_draws(unions[i])
                / effective_draws(self._chain_union(share, shape.nodes + 1)))

    def tree_window(self, shape, fraction):
        """The consecutive tokens per sequence whose experts the tree's verification touches:
        ``nodes + 1`` times :meth:`tree_growth`, interpolated in ``log2(fraction)`` (held at the
        measured ends); at least 1."""
        shape = parse_tree(shape)
        if self.tree_union == "chain":
            return float(shape.nodes + 1)
        growth = [self.tree_growth(shape, f) for f in self.tree_shares]
        return max(1.0, (shape.nodes + 1) * self._by_share(growth, fraction))

    def tokens_per_verification(self, fraction, gamma, selection="frequency", clamp=True):
        """``E(gamma)`` of a self-draft with ``fraction`` of the experts resident, chosen by
        ``selection`` (the ``"resident"`` mapping; class docstring)."""
        if not 0 <= fraction <= 1:
            raise ValueError(f"resident fraction must be in [0, 1], not {fraction!r}")
        fraction = self.share if self.share is not None else fraction
        try:
            points = dict(self.curves)[SELECTION_CURVE[selection]]
        except KeyError:
            raise ValueError(f"no measured acceptance curve for selection {selection!r}; "
                             f"measured: {', '.join(dict(self.curves))}") from None
        g = min(gamma, self.curve_gamma)
        xs = np.log2([f for f, _ in points])
        ys = [lengths[g - 1] for _, lengths in points]
        if fraction >= points[0][0]:
            length = float(np.interp(np.log2(fraction), xs, ys))
        else:
            # below the smallest measured set: linear in the share, down to the paper's floor
            # when no expert is resident (the draft then has no expert to run)
            bottom = 1 + g * self.floor
            length = bottom + (ys[0] - bottom) * fraction / points[0][0]
        if gamma > g:
            length = expected_length(alpha_for_length(length, g), gamma)
        if clamp:
            length = 1 + gamma * min(self.full, max(self.floor, (length - 1) / gamma))
        return length

    def rate(self, model, method, coverage=1.0, fraction=1.0, gamma=ABLATE_GAMMA,
             selection="frequency"):
        """Per-position acceptance of ``method`` on ``model`` with gamma ``gamma`` and a draft
        confined to a resident set holding ``fraction`` of the experts (``"resident"``
        mapping) or covering ``coverage`` of the routing's choices (``"coverage"``)."""
        for key in ((model, method), method):
            if key in self.measured:
                return self.measured[key]
        if method == "eagle_sd":
            return self.eagle
        if method == "slm_sd":
            return self.slm
        if self.mapping == "coverage":
            return max(self.floor, self.full - self.slope * (1 - coverage))
        return alpha_for_length(self.tokens_per_verification(fraction, gamma, selection), gamma)


#: The default acceptance model (paper range, assumed slope and separate-draft rates).
ACCEPTANCE = AcceptanceModel()
