"""The expert-cache controller: tag store (layer, expert) -> HB slot, LRU / frequency-set policy.

Streams (``lib.stream``; ready may depend on valid, never the reverse):

* ``req`` (in): ``op`` (:class:`hw.params.CacheOp`), ``tag``, ``layer``, ``expert`` and, for COUNT,
  ``vector`` (k-hot over the layer's experts). ``layer`` and ``expert`` are one bit wider than
  their ranges, so an out-of-range index reaches the controller and is rejected, not wrapped.
* ``resp`` (out): ``tag``, ``op``, ``status`` (:class:`hw.params.CacheStatus`), ``last``,
  ``slot``, ``layer``, ``expert``, ``victim_valid``, ``victim_layer``, ``victim_expert``. SELECT
  answers one beat per picked key (``last = 0``) and a final beat (``last = 1``); every other
  request one beat (``last = 1``).

State and rules. Key ``k = layer * experts + expert`` lives in set ``k % sets``, slot
``set * ways + way``. Each set orders its ways by recency; after reset way 0 is the least recently
used and way ``ways - 1`` the most recently used, every way is free and unpinned, every counter is
0. Only a LOOKUP that hits and an install (INSTALL ``OK``, a SELECT pick answered ``OK``) make a
way the most recently used; nothing else (PIN, UNPIN, INVALIDATE, INVALIDATE_ALL, a SELECT pick
answered ``HIT``, errors) changes the order, and a freed way keeps its place in it.

* The victim of an install is chosen among the set's ways that are unpinned and (during SELECT)
  not already chosen by this SELECT: the least recently used free way if one is free, under both
  policies (counts are not looked at for free ways); otherwise with ``LRU`` the least recently
  used way, with ``FREQUENCY`` the way whose key has the lowest count, ties to the least recently
  used. An installed key is unpinned.
* LOOKUP: ``HIT`` or ``MISS``. INSTALL: ``OK``; ``PRESENT`` if the key is resident; ``PINNED`` if
  no way is a candidate. PIN / UNPIN: set / clear the pin bit (``OK`` also when it already had
  that value), ``ABSENT`` if not resident. INVALIDATE: free the way, ``PINNED`` if it is pinned,
  ``ABSENT`` if not resident. INVALIDATE_ALL: free every unpinned way. COUNT: add one to the
  saturating ``counter_width``-bit counter of every expert of ``layer`` set in ``vector``.
  RESET_COUNTS: clear every counter.
* SELECT repeatedly picks, among keys with a non-zero count (a zero count is never picked) not yet
  picked by this SELECT whose quota is not full (``select_capacity`` picks per layer, or over all
  layers with ``select_scope = GLOBAL``), the highest count, ties to the lowest key ``k``. A
  resident pick answers ``HIT`` (recency unchanged); otherwise it is installed (``OK``) or, with no
  candidate way, answered ``NO_ROOM``. Every pick counts against its quota, ``NO_ROOM`` included.
  Keys not picked stay resident unless displaced. Counters are unchanged.
* ``BAD_RANGE``: ``layer`` or ``expert`` out of range (COUNT: ``layer``); ``BAD_OPCODE``: codes 9
  to 15. ``BAD_RANGE``, ``BAD_OPCODE``, ``ABSENT``, ``PRESENT`` and ``PINNED`` are errors: the
  state is exactly as before the request.

Response fields, every case:

* ``tag`` and ``op``: the request's (every SELECT beat: the SELECT's).
* ``layer``, ``expert``: the request's (also on errors and on key-less operations); a SELECT pick
  beat: the picked key; SELECT's final beat: 0, 0.
* ``slot``: the key's slot whenever the key is resident at the request (LOOKUP ``HIT``; INSTALL
  ``PRESENT``; PIN, UNPIN, INVALIDATE ``OK``; INVALIDATE ``PINNED``; a SELECT ``HIT``); the slot
  installed into on ``OK`` installs; 0 otherwise (``MISS``, ``ABSENT``, INSTALL ``PINNED``,
  ``NO_ROOM``, ``BAD_RANGE``, ``BAD_OPCODE``, COUNT, INVALIDATE_ALL, RESET_COUNTS, SELECT's final
  beat).
* ``victim_valid``, ``victim_layer``, ``victim_expert``: on an ``OK`` install that displaced a
  key, 1 and that key; 0, 0, 0 in every other case (installs into free ways included).

Timing: the tag store, pin bits, recency ages and counters are flip-flops, so every request but
SELECT is taken in one cycle and answered in the next: with ``resp`` ready, one request per cycle.
SELECT is a small FSM: after the cycle it is taken, two cycles per picked key (PICK: an argmax tree
over the counters; PLACE: the same probe and victim logic as a request, the ways chosen by this
SELECT excluded; its beat leaves after PLACE) and one more PICK that finds nothing and sends the
final beat, so with ``resp`` always ready a SELECT of ``k`` picks answers its final beat ``2k + 2``
cycles after it is taken and the next request is taken ``2k + 2`` cycles after it (``req.ready``
is low from the cycle after SELECT is taken until then); back-pressure on ``resp`` stretches PLACE
and the final PICK. Recency is a true-LRU age per way (a permutation of ``0..ways-1`` per set,
0 = most recent); the victim is the candidate way with the highest ``{free, inverted count
(FREQUENCY only), age}``, and ages are distinct, so there are no ties.

:mod:`sw_model.golden.expert_cache` implements the same rules naively; the tests compare the two
beat for beat.
"""

from amaranth import *
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from hw.component_args import ParamsComponent
from hw.params import (ExpertCacheParams, CacheOp, CacheStatus, CachePolicy, SelectScope)

__all__ = ["ExpertCache", "request_layout", "response_layout"]


def request_layout(params):
    return data.StructLayout({
        "op": CacheOp,
        "tag": unsigned(params.tag_width),
        "layer": unsigned(params.layer_bits),
        "expert": unsigned(params.expert_bits),
        "vector": unsigned(params.experts),
    })


def response_layout(params):
    return data.StructLayout({
        "tag": unsigned(params.tag_width),
        "op": CacheOp,
        "status": CacheStatus,
        "last": unsigned(1),
        "slot": unsigned(params.slot_bits),
        "layer": unsigned(params.layer_bits),
        "expert": unsigned(params.expert_bits),
        "victim_valid": unsigned(1),
        "victim_layer": unsigned(params.layer_bits),
        "victim_expert": unsigned(params.expert_bits),
    })


class ExpertCache(ParamsComponent):
    """The expert-cache controller for ``params`` (:data:`hw.params.CACHE_DEFAULT` when omitted);
    the module docstring states its stream contract."""

    PARAMS = ExpertCacheParams

    def members(self, params):
        return {
            "req": In(stream.Signature(request_layout(params))),
            "resp": Out(stream.Signature(response_layout(params))),
        }

    def elaborate(self, platform):
        p = self.params
        m = Module()
        self._state(m)
        req, resp = self.req.payload, self.resp.payload

        advance = Signal()        # the response register is free this cycle
        m.d.comb += advance.eq(~self.resp.valid | self.resp.ready)

        # the key the probe works on: the request's, or SELECT's current pick
        placing = Signal()
        cur_layer = Signal(p.layer_bits)
        cur_expert = Signal(p.expert_bits)
        m.d.comb += [cur_layer.eq(Mux(placing, self.sel_layer, req.layer)),
                     cur_expert.eq(Mux(placing, self.sel_expert, req.expert))]
        probe = self._probe(m, cur_layer, cur_expert, exclude_claimed=placing)
        pick = self._argmax(m)

        # what this cycle does to the state (decided below, applied in _update)
        ctl = {name: Signal(name=f"do_{name}") for name in (
            "touch", "install", "pin", "unpin", "invalidate", "invalidate_all", "count",
            "reset_counts", "claim", "select_start", "pick")}
        target_way = Signal(p.way_bits)
        emit = Signal()           # load the response register
        nxt = Signal(response_layout(p))
        m.d.comb += [nxt.tag.eq(req.tag), nxt.op.eq(req.op), nxt.last.eq(1),
                     nxt.layer.eq(cur_layer), nxt.expert.eq(cur_expert)]

        with m.FSM(name="cache_fsm"):
            with m.State("Take requests"):
                m.d.comb += self.req.ready.eq(advance)
                with m.If(self.req.valid & advance):
                    self._decode(m, probe, ctl, target_way, emit, nxt)
                    with m.If(ctl["select_start"]):
                        m.next = "Select pick"
            with m.State("Select pick"):
                with m.If(pick["valid"]):
                    m.d.comb += ctl["pick"].eq(1)
                    m.next = "Select place"
                with m.Elif(advance):
                    m.d.comb += [emit.eq(1), nxt.tag.eq(self.sel_tag), nxt.op.eq(CacheOp.SELECT),
                                 nxt.status.eq(CacheStatus.OK), nxt.layer.eq(0),
                                 nxt.expert.eq(0)]
                    m.next = "Take requests"
            with m.State("Select place"):
                m.d.comb += placing.eq(1)
                with m.If(advance):
                    m.d.comb += [emit.eq(1), nxt.tag.eq(self.sel_tag), nxt.op.eq(CacheOp.SELECT),
                                 nxt.last.eq(0)]
                    with m.If(probe["hit"]):
                        m.d.comb += [nxt.status.eq(CacheStatus.HIT), nxt.slot.eq(probe["hit_slot"]),
                                     ctl["claim"].eq(1), target_way.eq(probe["hit_way"])]
                    with m.Elif(probe["victim_ok"]):
                        self._install(m, probe, ctl, target_way, nxt)
                        m.d.comb += ctl["claim"].eq(1)
                    with m.Else():
                        m.d.comb += nxt.status.eq(CacheStatus.NO_ROOM)
                    m.next = "Select pick"

        with m.If(advance):
            m.d.sync += self.resp.valid.eq(emit)
            with m.If(emit):
                m.d.sync += resp.eq(nxt)
        with m.If(ctl["pick"]):
            m.d.sync += [self.sel_layer.eq(pick["layer"]), self.sel_expert.eq(pick["expert"])]
        with m.If(ctl["select_start"]):
            m.d.sync += self.sel_tag.eq(req.tag)
        self._update(m, probe, ctl, target_way, cur_layer, cur_expert, pick)
        return m

    # -- state -------------------------------------------------------------------------------------
    def _state(self, m):
        p = self.params
        self.valid = Signal(p.slots)
        self.pinned = Signal(p.slots)
        self.claimed = Signal(p.slots)          # chosen by the running SELECT
        self.key_layer = [Signal(p.layer_bits, name=f"key_layer_{s}") for s in range(p.slots)]
        self.key_expert = [Signal(p.expert_bits, name=f"key_expert_{s}") for s in range(p.slots)]
        # way 0 starts least recently used: age ways-1
        self.age = [Signal(p.way_bits, name=f"age_{s}", init=p.ways - 1 - s % p.ways)
                    for s in range(p.slots)]
        self.counts = [[Signal(p.counter_width, name=f"count_{l}_{e}") for e in range(p.experts)]
                       for l in range(p.layers)]
        self.picked = [[Signal(name=f"picked_{l}_{e}") for e in range(p.experts)]
                       for l in range(p.layers)]
        quota = range(p.select_capacity + 1)
        self.quota_used = [Signal(quota, name=f"quota_used_{l}") for l in range(p.layers)]
        self.quota_total = Signal(quota)
        self.sel_tag = Signal(p.tag_width)
        self.sel_layer = Signal(p.layer_bits)
        self.sel_expert = Signal(p.expert_bits)

    # -- the probe: one set read, hit detection and victim choice ---------------------------------
    def _probe(self, m, layer, expert, exclude_claimed):
        p = self.params
        probe = {"set": Signal(max(1, p.set_bits), name="probe_set")}
        if p.set_bits:
            largest = ((1 << p.layer_bits) - 1) * p.experts + (1 << p.expert_bits) - 1
            key = Signal(range(largest + 1), name="probe_key")
            m.d.comb += [key.eq(layer * p.experts + expert), probe["set"].eq(key[:p.set_bits])]
        way = {name: [] for name in ("valid", "pinned", "claimed", "layer", "expert", "age")}
        sources = {"valid": self.valid, "pinned": self.pinned, "claimed": self.claimed,
                   "layer": self.key_layer, "expert": self.key_expert, "age": self.age}
        for w in range(p.ways):
            for name, src in sources.items():
                # one named signal per way and field: indexing the sets at every use would
                # replicate the selector
                sig = Signal(len(src[0]) if isinstance(src, list) else 1, name=f"way{w}_{name}")
                m.d.comb += sig.eq(Array(src[s * p.ways + w] for s in range(p.sets))[probe["set"]])
                way[name].append(sig)
        probe["way"] = way

        hits = Signal(p.ways, name="probe_hits")
        m.d.comb += hits.eq(Cat(way["valid"][w] & (way["layer"][w] == layer)
                                & (way["expert"][w] == expert) for w in range(p.ways)))
        probe["hit"] = hits.any()
        probe["hit_way"] = Signal(p.way_bits, name="probe_hit_way")
        for w in range(p.ways):
            with m.If(hits[w]):
                m.d.comb += probe["hit_way"].eq(w)

        # victim: the candidate way with the highest {free, ~count, age}
        score_width = 1 + (p.counter_width if p.policy is CachePolicy.FREQUENCY else 0) + p.way_bits
        best_ok = Const(0, 1)
        best_way = Const(0, p.way_bits)
        best_score = Const(0, score_width)
        for w in range(p.ways):
            free = ~way["valid"][w]
            parts = [way["age"][w]]
            if p.policy is CachePolicy.FREQUENCY:
                count = self._count_of(m, way["layer"][w], way["expert"][w], f"way{w}_count")
                parts.append(Mux(free, 0, ~count))
            score = Signal(score_width, name=f"way{w}_score")
            cand = Signal(name=f"way{w}_candidate")
            m.d.comb += [score.eq(Cat(*parts, free)),
                         cand.eq(~way["pinned"][w] & ~(exclude_claimed & way["claimed"][w]))]
            # named per step: reusing the expressions would grow the tree exponentially in ways
            better = cand & (~best_ok | (score > best_score))
            step = (Signal(name=f"victim{w}_ok"), Signal(p.way_bits, name=f"victim{w}_way"),
                    Signal(score_width, name=f"victim{w}_score"))
            m.d.comb += [step[0].eq(better | best_ok), step[1].eq(Mux(better, w, best_way)),
                         step[2].eq(Mux(better, score, best_score))]
            best_ok, best_way, best_score = step
        probe["victim_ok"] = Signal(name="probe_victim_ok")
        probe["victim_way"] = Signal(p.way_bits, name="probe_victim_way")
        m.d.comb += [probe["victim_ok"].eq(best_ok), probe["victim_way"].eq(best_way)]
        for name in ("hit_slot", "victim_slot"):
            probe[name] = Signal(p.slot_bits, name=f"probe_{name}")
        m.d.comb += [probe["hit_slot"].eq(probe["set"] * p.ways + probe["hit_way"]),
                     probe["victim_slot"].eq(probe["set"] * p.ways + probe["victim_way"])]
        return probe

    def _count_of(self, m, layer, expert, name):
        """The counter of a dynamic key, as a named signal (one mux tree per level)."""
        p = self.params
        rows = []
        for l, row in enumerate(self.counts):
            sig = Signal(p.counter_width, name=f"{name}_row{l}")
            m.d.comb += sig.eq(Array(row)[expert])
            rows.append(sig)
        count = Signal(p.counter_width, name=name)
        m.d.comb += count.eq(Array(rows)[layer])
        return count

    # -- request decode -----------------------------------------------------------------------------
    def _decode(self, m, probe, ctl, target_way, emit, nxt):
        p = self.params
        req = self.req.payload
        hit_way, hit = probe["hit_way"], probe["hit"]
        layer_ok = req.layer < p.layers
        key_ok = layer_ok & (req.expert < p.experts)
        m.d.comb += [emit.eq(1), target_way.eq(hit_way), nxt.status.eq(CacheStatus.OK)]
        with m.Switch(req.op):
            with m.Case(CacheOp.LOOKUP, CacheOp.INSTALL, CacheOp.PIN, CacheOp.UNPIN,
                        CacheOp.INVALIDATE):
                with m.If(~key_ok):
                    m.d.comb += nxt.status.eq(CacheStatus.BAD_RANGE)
                with m.Elif(req.op == CacheOp.INSTALL):
                    with m.If(hit):
                        m.d.comb += [nxt.status.eq(CacheStatus.PRESENT),
                                     nxt.slot.eq(probe["hit_slot"])]
                    with m.Elif(~probe["victim_ok"]):
                        m.d.comb += nxt.status.eq(CacheStatus.PINNED)
                    with m.Else():
                        self._install(m, probe, ctl, target_way, nxt)
                with m.Elif(~hit):
                    m.d.comb += nxt.status.eq(Mux(req.op == CacheOp.LOOKUP, CacheStatus.MISS,
                                                  CacheStatus.ABSENT))
                with m.Else():
                    m.d.comb += nxt.slot.eq(probe["hit_slot"])
                    pinned = Array(probe["way"]["pinned"])[hit_way]
                    with m.Switch(req.op):
                        with m.Case(CacheOp.LOOKUP):
                            m.d.comb += [nxt.status.eq(CacheStatus.HIT), ctl["touch"].eq(1)]
                        with m.Case(CacheOp.PIN):
                            m.d.comb += ctl["pin"].eq(1)
                        with m.Case(CacheOp.UNPIN):
                            m.d.comb += ctl["unpin"].eq(1)
                        with m.Case(CacheOp.INVALIDATE):
                            with m.If(pinned):
                                m.d.comb += nxt.status.eq(CacheStatus.PINNED)
                            with m.Else():
                                m.d.comb += ctl["invalidate"].eq(1)
            with m.Case(CacheOp.COUNT):
                with m.If(layer_ok):
                    m.d.comb += ctl["count"].eq(1)
                with m.Else():
                    m.d.comb += nxt.status.eq(CacheStatus.BAD_RANGE)
            with m.Case(CacheOp.INVALIDATE_ALL):
                m.d.comb += ctl["invalidate_all"].eq(1)
            with m.Case(CacheOp.RESET_COUNTS):
                m.d.comb += ctl["reset_counts"].eq(1)
            with m.Case(CacheOp.SELECT):
                m.d.comb += [emit.eq(0), ctl["select_start"].eq(1)]
            with m.Default():
                m.d.comb += nxt.status.eq(CacheStatus.BAD_OPCODE)

    def _install(self, m, probe, ctl, target_way, nxt):
        victim_way = probe["victim_way"]
        way = probe["way"]
        m.d.comb += [
            ctl["install"].eq(1), target_way.eq(victim_way),
            nxt.status.eq(CacheStatus.OK), nxt.slot.eq(probe["victim_slot"]),
            nxt.victim_valid.eq(Array(way["valid"])[victim_way]),
        ]
        with m.If(Array(way["valid"])[victim_way]):
            m.d.comb += [nxt.victim_layer.eq(Array(way["layer"])[victim_way]),
                         nxt.victim_expert.eq(Array(way["expert"])[victim_way])]

    # -- state updates ------------------------------------------------------------------------------
    def _update(self, m, probe, ctl, target_way, cur_layer, cur_expert, pick):
        p = self.params
        req = self.req.payload
        target_age = Signal(p.way_bits)
        m.d.comb += target_age.eq(Array(probe["way"]["age"])[target_way])
        touch = ctl["touch"] | ctl["install"]
        for s in range(p.slots):
            here = Signal(name=f"target_{s}")
            in_set = probe["set"] == s // p.ways if p.sets > 1 else C(1, 1)
            m.d.comb += here.eq(in_set & (target_way == s % p.ways))
            with m.If(touch & in_set):
                with m.If(here):
                    m.d.sync += self.age[s].eq(0)
                with m.Elif(self.age[s] < target_age):
                    m.d.sync += self.age[s].eq(self.age[s] + 1)
            with m.If(here):
                with m.If(ctl["install"]):
                    m.d.sync += [self.valid[s].eq(1), self.pinned[s].eq(0),
                                 self.key_layer[s].eq(cur_layer),
                                 self.key_expert[s].eq(cur_expert)]
                with m.If(ctl["pin"] | ctl["unpin"]):
                    m.d.sync += self.pinned[s].eq(ctl["pin"])
                with m.If(ctl["invalidate"]):
                    m.d.sync += self.valid[s].eq(0)
                with m.If(ctl["claim"]):
                    m.d.sync += self.claimed[s].eq(1)
            with m.If(ctl["invalidate_all"] & ~self.pinned[s]):
                m.d.sync += self.valid[s].eq(0)
        with m.If(ctl["select_start"]):
            m.d.sync += self.claimed.eq(0)
        for l in range(p.layers):
            for e in range(p.experts):
                count = self.counts[l][e]
                with m.If(ctl["reset_counts"]):
                    m.d.sync += count.eq(0)
                with m.Elif(ctl["count"] & (req.layer == l) & req.vector[e]
                            & (count != p.counter_max)):
                    m.d.sync += count.eq(count + 1)
                with m.If(ctl["select_start"]):
                    m.d.sync += self.picked[l][e].eq(0)
                with m.Elif(ctl["pick"] & (pick["layer"] == l) & (pick["expert"] == e)):
                    m.d.sync += self.picked[l][e].eq(1)
            with m.If(ctl["select_start"]):
                m.d.sync += self.quota_used[l].eq(0)
            with m.Elif(ctl["pick"] & (pick["layer"] == l)):
                m.d.sync += self.quota_used[l].eq(self.quota_used[l] + 1)
        with m.If(ctl["select_start"]):
            m.d.sync += self.quota_total.eq(0)
        with m.Elif(ctl["pick"]):
            m.d.sync += self.quota_total.eq(self.quota_total + 1)

    # -- SELECT's pick: the most frequent eligible key, ties to the lowest index -------------------
    def _argmax(self, m):
        p = self.params
        nodes = []
        for l in range(p.layers):
            if p.select_scope is SelectScope.PER_LAYER:
                room = self.quota_used[l] < p.select_capacity
            else:
                room = self.quota_total < p.select_capacity
            for e in range(p.experts):
                ok = Signal(name=f"eligible_{l}_{e}")
                m.d.comb += ok.eq(room & (self.counts[l][e] != 0) & ~self.picked[l][e])
                nodes.append((ok, self.counts[l][e], C(l, p.layer_bits), C(e, p.expert_bits)))
        level = 0
        while len(nodes) > 1:
            paired = []
            for i in range(0, len(nodes) - 1, 2):
                (lv, lc, ll, le), (rv, rc, rl, re) = nodes[i], nodes[i + 1]
                # the left node holds the lower key indices, so it wins ties
                take_left = Signal(name=f"argmax{level}_{i // 2}_left")
                m.d.comb += take_left.eq(lv & (~rv | (lc >= rc)))
                out = (Signal(name=f"argmax{level}_{i // 2}_valid"),
                       Signal(p.counter_width, name=f"argmax{level}_{i // 2}_count"),
                       Signal(p.layer_bits, name=f"argmax{level}_{i // 2}_layer"),
                       Signal(p.expert_bits, name=f"argmax{level}_{i // 2}_expert"))
                m.d.comb += [out[0].eq(lv | rv), out[1].eq(Mux(take_left, lc, rc)),
                             out[2].eq(Mux(take_left, ll, rl)), out[3].eq(Mux(take_left, le, re))]
                paired.append(out)
            if len(nodes) % 2:
                paired.append(nodes[-1])
            nodes, level = paired, level + 1
        valid, _, layer, expert = nodes[0]
        return {"valid": valid, "layer": layer, "expert": expert}
