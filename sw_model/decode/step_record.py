"""The golden model's per-step record: what the scheduler turns into one decode step's stream.

A :class:`StepRecorder` passed to :func:`sw_model.decode.decoding.cached_decode`,
:func:`~sw_model.decode.decoding.elastic_sd` or :func:`~sw_model.decode.decoding.decode`
(``recorder=``) keeps one :class:`StepRecord` per decode step (not the prefill):

* ``mode`` ("cached" or "elastic_sd"), the active ``sequences``, ``gamma`` (0 when cached);
* per MoE layer, the routing of every pass: ``draft_routes[j][layer]`` (the experts each draft token
  of pass ``j`` used, rows ``[tokens, k]``, -1 for none) and ``target_routes[layer]`` (the target
  pass: one row per sequence when cached, ``gamma + 1`` per sequence when verifying);
* the resident set before and after the step (``resident_before``/``resident_after``: per layer,
  sorted expert ids) and, when the cache is the controller's golden model, its slot map
  (``slots_before``/``slots_after``: per HB slot the controller key ``(layer index, expert)`` or
  None);
* the expert-cache controller requests the step issued, split by phase (``cache_requests``:
  "target" for cached decoding's LOOKUP/INSTALL; "select" for Elastic-SD's RESET_COUNTS, COUNT and
  SELECT; "install" for anything the decoder's install point added), each a
  :class:`sw_model.decode.cache_bridge.TraceEntry`, and ``prior_requests``: every request issued
  before the step (what brings a reset controller to ``slots_before``);
* Elastic-SD: the chosen ``next_sets`` and what was ``installed`` per layer, and ``accepted`` draft
  tokens per sequence (cached: all 0; each sequence emits ``accepted + 1`` tokens);
* a token-tree step (:mod:`sw_model.decode.tree`): ``trees``, per active sequence ``(tokens,
  parents)`` of its tree (node 0 the root); the draft passes are its depths (one row per node of
  that depth, sequences in order), the target pass holds one row per node of every tree, in node
  order; ``gamma`` is the tree's depth. A chain step has ``trees`` None (``gamma + 1`` target rows
  per sequence).

With ``detail=True`` it also keeps, per pass and MoE layer, the :class:`sw_model.model.moe.MoECall`
the model reported: the quantised INT8 inputs of every expert linear layer (gate/up: ``x``; down:
``hidden``), each expert's float output and the block output (the end-to-end check compares the
hardware against these). Without ``detail`` a step record holds only routing and cache data, and
recording costs nothing measurable.
"""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["StepRecord", "PassRecord", "StepRecorder"]


@dataclass
class PassRecord:
    """One forward pass: ``phase`` ("draft" or "target") and, with detail, ``calls[layer]``."""
    phase: str
    routes: dict = field(default_factory=dict)
    calls: dict = field(default_factory=dict)


@dataclass
class StepRecord:
    """One decode step (see the module docstring)."""
    mode: str
    index: int
    layers: tuple
    sequences: tuple
    gamma: int
    resident_before: dict
    slots_before: tuple = None
    prior_requests: tuple = ()
    passes: list = field(default_factory=list)
    cache_requests: dict = field(default_factory=dict)
    resident_after: dict = None
    slots_after: tuple = None
    next_sets: dict = None
    installed: dict = None
    accepted: tuple = ()
    trees: dict = None

    @property
    def draft_passes(self):
        return [p for p in self.passes if p.phase == "draft"]

    @property
    def target_pass(self):
        target = [p for p in self.passes if p.phase == "target"]
        return target[0] if target else None

    @property
    def draft_routes(self):
        return [p.routes for p in self.draft_passes]

    @property
    def target_routes(self):
        return self.target_pass.routes

    @property
    def proposed(self):
        """Draft tokens proposed: ``gamma`` per sequence, or every tree's nodes below its root."""
        if self.trees is not None:
            return sum(len(tokens) - 1 for tokens, _ in self.trees.values())
        return self.gamma * len(self.sequences)

    @property
    def acceptance_rate(self):
        """Accepted over proposed draft tokens (None when cached)."""
        proposed = self.proposed
        return sum(self.accepted) / proposed if proposed else None


def _slots(cache):
    model = getattr(cache, "model", None)
    if model is None or not hasattr(model, "snapshot"):
        return None
    return tuple(key for key, _pinned in model.snapshot().entries)


class StepRecorder:
    """Collects :class:`StepRecord` objects in :attr:`steps` (see the module docstring).

    The decoders call ``begin_step``, ``phase`` and ``end_step``; while a step runs, the recorder is
    the model's ``observer``, so every MoE block of every pass reaches it.
    """

    def __init__(self, detail=False):
        self.detail = detail
        self.steps = []
        self._step = None

    def begin_step(self, mode, model, cache, sequences, gamma=0):
        layers = tuple(model.config.moe_layers)
        trace = getattr(cache, "trace", None)
        self._model, self._cache, self._first = model, cache, layers[0]
        self._step = StepRecord(
            mode=mode, index=len(self.steps), layers=layers,
            sequences=tuple(int(b) for b in sequences), gamma=gamma,
            resident_before={l: tuple(sorted(cache.resident(l))) for l in layers},
            slots_before=_slots(cache),
            prior_requests=tuple(t.request for t in trace) if trace is not None else ())
        self._phase = None
        self._mark = len(trace) if trace is not None else 0
        model.observer = self._observe

    def phase(self, name):
        """The step enters phase ``name`` ("draft", "select", "target", "install")."""
        self._close_requests()
        self._phase = name

    def end_step(self, stats, next_sets=None, installed=None, trees=None):
        step, cache = self._step, self._cache
        self._close_requests()
        self._model.observer = None
        step.resident_after = {l: tuple(sorted(cache.resident(l))) for l in step.layers}
        step.slots_after = _slots(cache)
        step.next_sets = ({l: tuple(int(e) for e in s) for l, s in next_sets.items()}
                          if next_sets is not None else None)
        step.installed = ({l: tuple(int(e) for e in s) for l, s in installed.items()}
                          if installed is not None else None)
        step.accepted = tuple(n - 1 for n in stats.accept_lengths)
        step.trees = trees
        self.steps.append(step)
        self._step = None

    def _close_requests(self):
        trace = getattr(self._cache, "trace", None)
        if trace is None or self._phase is None:
            return
        new = list(trace[self._mark:])
        if new:
            self._step.cache_requests.setdefault(self._phase, []).extend(new)
        self._mark = len(trace)

    def _observe(self, call):
        if call.layer == self._first:
            self._step.passes.append(PassRecord(self._phase))
        p = self._step.passes[-1]
        p.routes[call.layer] = np.array(call.route.experts, copy=True)
        if self.detail:
            p.calls[call.layer] = call
