"""Golden model of the expert-cache controller: a textbook set-associative cache, naive on purpose.

:class:`ExpertCacheModel` is the API a decoder drives directly (cached decoding, Elastic-SD)::

    cache = ExpertCacheModel(ExpertCacheParams(...))
    r = cache.lookup(layer, expert)          # CacheResult(status=HIT|MISS, slot=...)
    if r.status is CacheStatus.MISS:
        r = cache.install(layer, expert)     # CacheResult(status=OK, slot=..., victim=(l, e) | None)
    cache.count(layer, [e0, e1])             # add a k-hot routing vector to the counters
    s = cache.select()                       # SelectResult: the next resident set, installs done
    cache.reset_counts()

Every method returns a frozen :class:`CacheResult` (``select`` a :class:`SelectResult`). A result
whose ``status.is_error`` leaves the state exactly as it was (:meth:`ExpertCacheModel.snapshot`
shows it). The rules, which the RTL (``hw/expert_cache.py``) follows to the slot:

* Key ``(layer, expert)`` lives in set ``(layer * experts + expert) % sets``; slot ``set * ways +
  way``. Each set keeps a recency order of its ways, initially way 0 least recently used. LOOKUP hits
  and every install make the way the most recently used; nothing else changes the order.
* Victim of an install, among the set's ways that are neither pinned nor (during SELECT) already
  chosen by this SELECT: a free way if there is one (the least recently used free way); otherwise by
  the policy: LRU the least recently used way; FREQUENCY the way whose key has the lowest routing
  count, ties to the least recently used. No candidate: INSTALL answers ``PINNED``.
* PIN/UNPIN set and clear a pin bit (idempotent on a resident key; ``ABSENT`` otherwise).
  INVALIDATE of a pinned entry answers ``PINNED``; INVALIDATE_ALL empties every unpinned way.
  ``slot`` is the key's slot whenever the key is resident (INSTALL's ``PRESENT`` and
  INVALIDATE's ``PINNED`` included), the installed slot on an install, else None.
* COUNT adds one to the saturating counter (``counter_width`` bits) of every expert of the layer in
  the k-hot vector. RESET_COUNTS clears every counter.
* SELECT repeatedly picks, among keys with a non-zero count not yet picked whose quota (per layer or
  global, ``select_capacity``) is not full, the one with the highest count, ties to the lowest key
  index ``layer * experts + expert``. For each pick, in order: resident -> ``HIT`` (its slot, kept);
  else installed like INSTALL (``OK``, slot, victim) or ``NO_ROOM`` if no way is left. A pick counts
  against the quota whatever its outcome. Keys not picked stay resident unless displaced.

:func:`replay` is the thin layer that turns raw requests (the RTL's op trace) into the exact
response sequence the hardware must produce.
"""

from collections import namedtuple
from dataclasses import dataclass

from hw.params import CacheOp, CachePolicy, CacheStatus, ExpertCacheParams, SelectScope

__all__ = ["CacheResult", "SelectResult", "CacheSnapshot", "ExpertCacheModel", "Request",
           "Response", "replay", "apply_request"]


@dataclass(frozen=True)
class CacheResult:
    """Outcome of one operation: ``slot`` when the status concerns a resident entry, ``victim``
    the ``(layer, expert)`` an install evicted, ``key`` the key it concerns (SELECT entries)."""
    status: CacheStatus
    slot: int | None = None
    victim: tuple | None = None
    key: tuple | None = None


@dataclass(frozen=True)
class SelectResult:
    """SELECT's picks in order, one :class:`CacheResult` each (status HIT, OK or NO_ROOM)."""
    entries: tuple
    status: CacheStatus = CacheStatus.OK

    @property
    def selected(self):
        return tuple(e.key for e in self.entries)

    @property
    def installs(self):
        return tuple(e for e in self.entries if e.status is CacheStatus.OK)

    @property
    def evictions(self):
        return tuple(e.victim for e in self.entries if e.victim is not None)


@dataclass(frozen=True)
class CacheSnapshot:
    """The whole state: per slot ``(key or None, pinned)``, per set the recency order of its ways
    (most recent first), and the counters as ``counts[layer][expert]``."""
    entries: tuple
    recency: tuple
    counts: tuple


class ExpertCacheModel:
    """The expert-cache controller's behaviour; see the module docstring for the rules."""

    def __init__(self, params):
        if not isinstance(params, ExpertCacheParams):
            raise TypeError(f"params must be an ExpertCacheParams, not {params!r}")
        self.params = params
        p = params
        self._key = [None] * p.slots           # (layer, expert) per slot, None when free
        self._slot = {}                        # the inverse of _key: (layer, expert) -> slot
        self._pinned = [False] * p.slots
        self._recency = [list(range(p.ways))[::-1] for _ in range(p.sets)]  # most recent first
        self._counts = [[0] * p.experts for _ in range(p.layers)]

    # -- queries -----------------------------------------------------------------------------------
    def snapshot(self):
        return CacheSnapshot(tuple(zip(self._key, self._pinned)),
                             tuple(tuple(r) for r in self._recency),
                             tuple(tuple(c) for c in self._counts))

    def resident(self):
        """``{(layer, expert): slot}`` of every resident key."""
        return dict(self._slot)

    def slot_of(self, layer, expert):
        """The slot holding ``(layer, expert)``, or None (also for a key out of range); one
        dictionary lookup, whatever the associativity."""
        if not self._in_range(layer, expert):
            return None
        return self._find(layer, expert)

    def pinned(self):
        return {k for s, k in enumerate(self._key) if k is not None and self._pinned[s]}

    def counts(self, layer):
        return tuple(self._counts[layer])

    # -- operations --------------------------------------------------------------------------------
    def lookup(self, layer, expert):
        if not self._in_range(layer, expert):
            return CacheResult(CacheStatus.BAD_RANGE)
        slot = self._find(layer, expert)
        if slot is None:
            return CacheResult(CacheStatus.MISS)
        self._touch(slot)
        return CacheResult(CacheStatus.HIT, slot)

    def install(self, layer, expert):
        if not self._in_range(layer, expert):
            return CacheResult(CacheStatus.BAD_RANGE)
        resident = self._find(layer, expert)
        if resident is not None:
            return CacheResult(CacheStatus.PRESENT, resident)
        slot = self._victim(layer, expert, exclude=())
        if slot is None:
            return CacheResult(CacheStatus.PINNED)
        return CacheResult(CacheStatus.OK, slot, self._place(slot, (layer, expert)))

    def pin(self, layer, expert):
        return self._set_pin(layer, expert, True)

    def unpin(self, layer, expert):
        return self._set_pin(layer, expert, False)

    def invalidate(self, layer, expert):
        if not self._in_range(layer, expert):
            return CacheResult(CacheStatus.BAD_RANGE)
        slot = self._find(layer, expert)
        if slot is None:
            return CacheResult(CacheStatus.ABSENT)
        if self._pinned[slot]:
            return CacheResult(CacheStatus.PINNED, slot)
        self._key[slot] = None
        del self._slot[(layer, expert)]
        return CacheResult(CacheStatus.OK, slot)

    def invalidate_all(self):
        """Empty every unpinned way; pinned entries stay."""
        for slot in range(self.params.slots):
            if not self._pinned[slot] and self._key[slot] is not None:
                del self._slot[self._key[slot]]
                self._key[slot] = None
        return CacheResult(CacheStatus.OK)

    def count(self, layer, experts):
        """Add one to the counter of every expert in ``experts`` (a k-hot set of ids) of ``layer``."""
        experts = set(experts)
        if not 0 <= layer < self.params.layers or any(
                not 0 <= e < self.params.experts for e in experts):
            return CacheResult(CacheStatus.BAD_RANGE)
        for e in experts:
            self._counts[layer][e] = min(self._counts[layer][e] + 1, self.params.counter_max)
        return CacheResult(CacheStatus.OK)

    def reset_counts(self):
        self._counts = [[0] * self.params.experts for _ in range(self.params.layers)]
        return CacheResult(CacheStatus.OK)

    def select(self):
        p = self.params
        picked, per_layer, claimed, entries = set(), [0] * p.layers, set(), []
        while True:
            best = None
            for layer in range(p.layers):
                quota_left = (per_layer[layer] < p.select_capacity
                              if p.select_scope is SelectScope.PER_LAYER
                              else len(picked) < p.select_capacity)
                if not quota_left:
                    continue
                for expert in range(p.experts):
                    c = self._counts[layer][expert]
                    # keys are visited in index order, so '>' keeps the lowest index on a tie
                    if c > 0 and (layer, expert) not in picked and (best is None or c > best[0]):
                        best = (c, (layer, expert))
            if best is None:
                return SelectResult(tuple(entries))
            key = best[1]
            picked.add(key)
            per_layer[key[0]] += 1
            slot = self._find(*key)
            if slot is not None:
                entries.append(CacheResult(CacheStatus.HIT, slot, key=key))
            else:
                slot = self._victim(*key, exclude=claimed)
                if slot is None:
                    entries.append(CacheResult(CacheStatus.NO_ROOM, key=key))
                    continue
                entries.append(CacheResult(CacheStatus.OK, slot, self._place(slot, key), key=key))
            claimed.add(slot)

    # -- the textbook cache ------------------------------------------------------------------------
    def _in_range(self, layer, expert):
        return 0 <= layer < self.params.layers and 0 <= expert < self.params.experts

    def _find(self, layer, expert):
        # a key is in at most one slot, of its own set: the index answers what a search of the
        # set's ways would
        return self._slot.get((layer, expert))

    def _touch(self, slot):
        order = self._recency[slot // self.params.ways]
        order.remove(slot % self.params.ways)
        order.insert(0, slot % self.params.ways)

    def _victim(self, layer, expert, exclude):
        p = self.params
        first = p.set_of(layer, expert) * p.ways
        order = self._recency[first // p.ways]
        by_age = [first + w for w in reversed(order)]          # least recently used first
        candidates = [s for s in by_age if not self._pinned[s] and s not in exclude]
        free = [s for s in candidates if self._key[s] is None]
        if free:
            return free[0]
        if not candidates:
            return None
        if p.policy is CachePolicy.LRU:
            return candidates[0]
        # min() keeps the first of equal counts: the least recently used
        return min(candidates, key=lambda s: self._counts[self._key[s][0]][self._key[s][1]])

    def _place(self, slot, key):
        victim = self._key[slot]
        if victim is not None:
            del self._slot[victim]
        self._key[slot] = key
        self._slot[key] = slot
        self._pinned[slot] = False
        self._touch(slot)
        return victim

    def _set_pin(self, layer, expert, value):
        if not self._in_range(layer, expert):
            return CacheResult(CacheStatus.BAD_RANGE)
        slot = self._find(layer, expert)
        if slot is None:
            return CacheResult(CacheStatus.ABSENT)
        self._pinned[slot] = value
        return CacheResult(CacheStatus.OK, slot)


# -- op-trace replay (what the RTL is compared with) -----------------------------------------------

#: One raw request as the hardware sees it: ``vector`` is COUNT's k-hot bit mask over experts.
Request = namedtuple("Request", "op tag layer expert vector", defaults=(0, 0, 0, 0))

#: One response beat, every field defined (``hw/expert_cache.py`` states each case): ``slot``/``victim_*``
#: are 0 when not meaningful; ``layer``
#: and ``expert`` echo the request (SELECT entries: the picked key; SELECT's final beat: 0, 0);
#: ``last`` is 0 only on SELECT's per-key beats.
Response = namedtuple("Response", "tag op status last slot layer expert victim_valid victim_layer "
                                  "victim_expert")


def _beat(req, result, last=True, key=None):
    layer, expert = key if key is not None else (req.layer, req.expert)
    victim = result.victim
    return Response(req.tag, req.op, CacheStatus(result.status), int(last), result.slot or 0,
                    layer, expert, int(victim is not None), victim[0] if victim else 0,
                    victim[1] if victim else 0)


def apply_request(model, req):
    """Apply one raw :class:`Request` to ``model``; returns its response beats (a list)."""
    try:
        op = CacheOp(req.op)
    except ValueError:
        return [_beat(req, CacheResult(CacheStatus.BAD_OPCODE))]
    key_ops = {CacheOp.LOOKUP: model.lookup, CacheOp.INSTALL: model.install,
               CacheOp.PIN: model.pin, CacheOp.UNPIN: model.unpin,
               CacheOp.INVALIDATE: model.invalidate}
    if op in key_ops:
        return [_beat(req, key_ops[op](req.layer, req.expert))]
    if op is CacheOp.COUNT:
        experts = [e for e in range(model.params.experts) if req.vector >> e & 1]
        return [_beat(req, model.count(req.layer, experts))]
    if op is CacheOp.INVALIDATE_ALL:
        return [_beat(req, model.invalidate_all())]
    if op is CacheOp.RESET_COUNTS:
        return [_beat(req, model.reset_counts())]
    result = model.select()
    return ([_beat(req, e, last=False, key=e.key) for e in result.entries]
            + [_beat(req, CacheResult(CacheStatus.OK), key=(0, 0))])


def replay(model, requests):
    """Every response beat of ``requests`` applied in order to ``model``."""
    return [beat for req in requests for beat in apply_request(model, req)]
