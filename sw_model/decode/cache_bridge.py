"""The decoders' expert cache, played by the expert-cache controller's golden model.

:class:`ControllerExpertCache` implements the cache protocol of :mod:`sw_model.decode.decoding`
(``capacity``, ``access``, ``resident``, ``select``; with the FREQUENCY policy also
``frequency_select``, the hook the frequency-set draft policies ask) by issuing raw controller
requests (:class:`sw_model.golden.expert_cache.Request`) to one
:class:`sw_model.golden.expert_cache.ExpertCacheModel` through
:func:`sw_model.golden.expert_cache.apply_request`. Every request and its response beats are
recorded in :attr:`ControllerExpertCache.trace`, in issue order, so that the scheduler can emit them
as cache commands and the RTL can replay them.

How the decoders' view maps onto the controller:

* **Keys.** The model's MoE layers (``config.moe_layers``, which need not start at 0: dense first
  layers are skipped) are controller layers ``0 .. L-1`` in order; experts keep their ids.
* **Capacity.** HB holds ``capacity`` experts per MoE layer: the controller gets ``slots = capacity
  x L``, SELECT scope ``PER_LAYER`` with quota ``capacity``. The slots form one pool, so a layer's
  occupancy can differ from ``capacity`` (LRU is global; SELECT leaves keys it does not pick
  resident); the total never exceeds the HB slots.
* **Associativity.** Fully associative by default (``ways = slots``): a SELECT that picks at most
  ``capacity`` keys per layer then always finds an unclaimed way (no ``NO_ROOM`` while nothing is
  pinned), so every layer keeps its picks. Smaller ``ways`` are allowed (a key's set is
  ``(layer * experts + expert) % sets``, so layers share sets); a SELECT may then answer
  ``NO_ROOM``.
* **Cached decoding** (``policy="LRU"``): ``access`` is a LOOKUP, and on a MISS an INSTALL.
* **Elastic-SD** (``policy="FREQUENCY"``): ``select_by_counts(picks)`` (offered as
  ``frequency_select``) issues RESET_COUNTS, one COUNT per token and layer with the token's k-hot
  routing vector, and SELECT; SELECT's picks are the next resident sets (controller rule: most
  counted first, ties to the lowest key index, zero-count keys never picked, unpicked keys stay
  resident). The HB writes SELECT made (its OK beats: a key SELECT evicted for an earlier pick and
  then picked itself is written twice) are reported by the next ``select(layer, experts)`` call
  for that layer (the decoder's install point), so the decoders' byte accounting counts them.
* **Fewer than top-k resident.** The resident-set draft needs ``top_k`` resident experts per layer.
  Every layer that routed a token has at least ``top_k`` keys with a non-zero count, so with full
  associativity SELECT leaves at least ``top_k`` per layer. If a layer still falls short (set
  conflicts with fewer ways), the adapter tops it up with controller operations: it PINs every key
  SELECT just placed, INSTALLs the layer's next most counted (then lowest-id) absent experts until
  ``top_k`` are resident, and UNPINs what it pinned; if that cannot reach ``top_k`` it raises
  :class:`ValueError`.
* **select(layer, experts)** (a set the decoder chose itself: SpecMoE's pinned set, or every set
  when Elastic-SD runs on an LRU controller, where the policies fall back to
  :func:`sw_model.decode.draft_policies.frequency_set`): nothing when all are resident; otherwise
  LOOKUP (a use: the most recent now) and PIN the wanted experts already resident, INSTALL the
  missing ones (each PINned once placed, so a later install cannot evict it), then UNPIN them all.
  Other keys stay resident unless an install displaced them: the controller has no "make exactly
  this set" operation, and INVALIDATEs would only throw away HB contents.
* **Counters** saturate at ``counter_width`` bits (default 16). A round counts each expert at most
  once per token, so counts stay exact while a round has at most ``2**counter_width - 1`` tokens
  (the adapter logs a warning when a round has more: saturated counts tie, and ties go to the
  lowest key).
* ``resident(layer)`` reads the golden model's tag store (the mirror the scheduler keeps); it issues
  no request.

Timing note for the scheduler: SELECT is issued before verification (the set is fixed from the
draft's counts) while verification still reads the previous resident set from HB; an eviction must
not overwrite an HB slot before verification has read it.
"""

from dataclasses import dataclass
import logging

import numpy as np

from hw.params import CacheOp, CachePolicy, CacheStatus, ExpertCacheParams, SelectScope
from sw_model.golden.expert_cache import ExpertCacheModel, Request, apply_request

__all__ = ["ControllerExpertCache", "TraceEntry", "controller_params"]

log = logging.getLogger(__name__)

#: Default counter width: exact counts for rounds of up to 65,535 tokens.
COUNTER_WIDTH = 16


@dataclass(frozen=True)
class TraceEntry:
    """One controller request the adapter issued and the response beats it got back."""
    request: Request
    responses: tuple


def controller_params(config, capacity, policy="LRU", ways=None, counter_width=COUNTER_WIDTH):
    """The :class:`ExpertCacheParams` for ``capacity`` HB experts per MoE layer of ``config`` (an
    :class:`sw_model.model.moe.MoEConfig`): ``capacity x L`` slots, ``ways`` per set (default: fully
    associative), per-layer SELECT quota ``capacity``."""
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise ValueError(f"cache capacity must be an integer, not {capacity!r}")
    if capacity < config.top_k:
        raise ValueError(f"cache capacity ({capacity} experts per layer) must hold at least top_k "
                         f"({config.top_k}) experts to draft from the resident set")
    if capacity > config.num_experts:
        raise ValueError(f"cache capacity ({capacity} experts per layer) exceeds the "
                         f"{config.num_experts} experts of a layer")
    layers = len(config.moe_layers)
    if layers == 0:
        raise ValueError(f"model {config.name!r} has no MoE layer to cache")
    slots = capacity * layers
    return ExpertCacheParams(slots=slots, layers=layers, experts=config.num_experts,
                             ways=slots if ways is None else ways, counter_width=counter_width,
                             policy=policy, select_scope=SelectScope.PER_LAYER,
                             select_capacity=capacity)


class ControllerExpertCache:
    """The decoders' expert cache driven through the controller's golden model (module docstring).

    ``config``: the :class:`sw_model.model.moe.MoEConfig`; ``capacity``: HB experts per MoE layer;
    ``policy``: ``"LRU"`` (cached decoding) or ``"FREQUENCY"`` (Elastic-SD); ``ways`` and
    ``counter_width``: see :func:`controller_params`. ``trace`` holds every :class:`TraceEntry` in
    issue order.
    """

    def __init__(self, config, capacity, policy="LRU", ways=None, counter_width=COUNTER_WIDTH):
        self.params = controller_params(config, capacity, policy, ways, counter_width)
        self.capacity = capacity
        self.top_k = config.top_k
        self.layers = tuple(config.moe_layers)
        self._index = {layer: i for i, layer in enumerate(self.layers)}
        self.model = ExpertCacheModel(self.params)
        self.trace = []
        self._pending = {}              # layer -> (installed, evicted) of the last SELECT
        if self.params.policy is CachePolicy.FREQUENCY:
            # the hook the draft policies look for: with it, the controller chooses the sets
            self.frequency_select = self.select_by_counts

    def describe(self):
        return f"expert-cache controller golden model ({self.params.describe()})"

    # -- requests ----------------------------------------------------------------------------------
    @property
    def requests(self):
        """The issued requests, in order (what the RTL is given)."""
        return [t.request for t in self.trace]

    @property
    def responses(self):
        """Every response beat, in order (what the RTL must answer)."""
        return [beat for t in self.trace for beat in t.responses]

    def _issue(self, op, layer=0, expert=0, vector=0):
        req = Request(op, len(self.trace) % (1 << self.params.tag_width), layer, expert, vector)
        beats = apply_request(self.model, req)
        self.trace.append(TraceEntry(req, tuple(beats)))
        return beats

    def _key(self, layer, expert):
        if layer not in self._index:
            raise ValueError(f"layer {layer!r} is not an MoE layer of the model (MoE layers: "
                             f"{list(self.layers)})")
        if isinstance(expert, bool) or not 0 <= int(expert) < self.params.experts:
            raise ValueError(f"expert {expert!r} of layer {layer} is outside "
                             f"0..{self.params.experts - 1}")
        return self._index[layer], int(expert)

    def _check(self, beat, what):
        if beat.status.is_error:
            raise RuntimeError(f"expert-cache controller answered {beat.status.name} to {what}")

    # -- the decoders' protocol --------------------------------------------------------------------
    def access(self, layer, expert):
        """LOOKUP; on a MISS, INSTALL (the policy's victim). True on a hit."""
        c_layer, e = self._key(layer, expert)
        beat, = self._issue(CacheOp.LOOKUP, c_layer, e)
        if beat.status is CacheStatus.HIT:
            return True
        self._check(beat, f"LOOKUP of layer {layer} expert {e}")
        beat, = self._issue(CacheOp.INSTALL, c_layer, e)
        self._check(beat, f"INSTALL of layer {layer} expert {e} (every way of its set pinned)")
        return False

    def resident(self, layer):
        c_layer, _ = self._key(layer, 0)
        return frozenset(e for (l, e) in self.model.resident() if l == c_layer)

    def select(self, layer, experts):
        """Make ``experts`` resident (others stay unless displaced); returns ``(installed,
        evicted)`` sorted, evicted as expert ids of ``layer`` only. Right after
        :meth:`select_by_counts` chose exactly this set, returns what that SELECT did to the layer:
        every key it wrote into HB (a key SELECT evicted and then picked again is written again)
        and the keys no longer resident."""
        c_layer, _ = self._key(layer, 0)
        wanted = sorted({self._key(layer, e)[1] for e in experts})
        if len(wanted) > self.capacity:
            raise ValueError(f"layer {layer}: {len(wanted)} experts selected for {self.capacity} "
                             f"slots")
        pending = self._pending.pop(layer, None)
        if pending is not None and pending[0] == wanted:
            return pending[1]
        installed, evicted = [], []
        if all(e in self.resident(layer) for e in wanted):
            return installed, evicted
        kept = [(c_layer, e) for e in wanted if e in self.resident(layer)]
        for key in kept:            # a use: with LRU, the older unwanted keys go first later on
            beat, = self._issue(CacheOp.LOOKUP, *key)
            self._check(beat, f"LOOKUP of controller key {key}")
        pinned = self._pin_all(kept)
        try:
            for e in wanted:
                if e in self.resident(layer):
                    continue
                beat, = self._issue(CacheOp.INSTALL, c_layer, e)
                self._check(beat, f"INSTALL of layer {layer} expert {e}")
                installed.append(e)
                if beat.victim_valid and beat.victim_layer == c_layer:
                    evicted.append(beat.victim_expert)
                pinned += self._pin_all([(c_layer, e)])
        finally:
            self._unpin_all(pinned)
        return installed, sorted(evicted)

    def select_by_counts(self, picks):
        """The next resident set of every MoE layer by the controller's SELECT.

        ``picks[layer]``: int array ``[tokens, k]`` of each counted token's experts (-1: none).
        Issues RESET_COUNTS, a COUNT per token and layer, SELECT (and a top-up if a layer is left
        with fewer than ``top_k``); returns ``{layer: sorted experts}`` of SELECT's picks, the sets
        to pass to :meth:`select`."""
        p = self.params
        if p.policy is not CachePolicy.FREQUENCY:
            raise ValueError(f"select_by_counts needs the FREQUENCY policy, this controller is "
                             f"{p.policy.name}")
        unknown = sorted(set(picks) - set(self.layers), key=str)
        if unknown:
            raise ValueError(f"layer {unknown[0]!r} is not an MoE layer of the model (MoE layers: "
                             f"{list(self.layers)})")
        picks = {layer: np.asarray(rows).reshape(len(rows), -1) for layer, rows in picks.items()}
        for layer, rows in picks.items():      # checked before any request: nothing half done
            if rows.size and (rows.max() >= p.experts or rows.min() < -1):
                raise ValueError(f"layer {layer}: expert ids outside 0..{p.experts - 1}")
            if len(rows) > p.counter_max:
                log.warning("layer %s: %d tokens counted, %d-bit counters may saturate", layer,
                            len(rows), p.counter_width)
        before = {layer: self.resident(layer) for layer in self.layers}
        self._issue(CacheOp.RESET_COUNTS)
        counts = {layer: np.zeros(p.experts, dtype=np.int64) for layer in self.layers}
        for layer, rows in picks.items():
            c_layer = self._index[layer]
            for row in rows:
                experts = {int(e) for e in row if e >= 0}
                if experts:
                    self._issue(CacheOp.COUNT, c_layer, vector=sum(1 << e for e in experts))
                    counts[layer][list(experts)] += 1
        beats = self._issue(CacheOp.SELECT)
        chosen = {layer: [] for layer in self.layers}
        written = {layer: [] for layer in self.layers}
        placed = []
        for beat in beats[:-1]:
            if beat.status is not CacheStatus.NO_ROOM:
                chosen[self.layers[beat.layer]].append(beat.expert)
                placed.append((beat.layer, beat.expert))
            if beat.status is CacheStatus.OK:
                written[self.layers[beat.layer]].append(beat.expert)
        self._top_up(chosen, written, counts, placed)
        self._pending = {}
        for layer in self.layers:
            chosen[layer] = sorted(chosen[layer])
            self._pending[layer] = (chosen[layer], (sorted(written[layer]),
                                                    sorted(before[layer] - self.resident(layer))))
        return chosen

    # -- helpers -----------------------------------------------------------------------------------
    def _pin_all(self, keys):
        pinned = []
        for key in keys:
            beat, = self._issue(CacheOp.PIN, *key)
            self._check(beat, f"PIN of controller key {key}")
            pinned.append(key)
        return pinned

    def _unpin_all(self, keys):
        for key in keys:
            beat, = self._issue(CacheOp.UNPIN, *key)
            self._check(beat, f"UNPIN of controller key {key}")

    def _top_up(self, chosen, written, counts, placed):
        """Bring every layer to at least ``top_k`` resident experts (module docstring)."""
        short = [l for l in self.layers if len(self.resident(l)) < self.top_k]
        if not short:
            return
        pinned = self._pin_all(placed)
        try:
            for layer in short:
                c_layer = self._index[layer]
                order = sorted(range(self.params.experts), key=lambda e: (-counts[layer][e], e))
                for e in order:
                    if len(self.resident(layer)) >= self.top_k:
                        break
                    if e in self.resident(layer):
                        continue
                    beat, = self._issue(CacheOp.INSTALL, c_layer, e)
                    if beat.status is CacheStatus.OK:
                        chosen[layer].append(e)
                        written[layer].append(e)
                        pinned += self._pin_all([(c_layer, e)])
                if len(self.resident(layer)) < self.top_k:
                    raise ValueError(
                        f"layer {layer}: only {len(self.resident(layer))} experts can be resident, "
                        f"fewer than top_k ({self.top_k}); {self.params.ways}-way sets are too "
                        f"small for this selection")
        finally:
            self._unpin_all(pinned)
