"""Formal harness of the expert-cache controller (:mod:`hw.expert_cache`) at a small
configuration.

:class:`CacheContract`: requests of any opcode and any (also out-of-range) key, under any
back-pressure; the stream rules are assumed on ``req`` and asserted on ``resp``, and the controller
promises:

* one answer per request, in order with its tag: SELECT with any number of beats, ``last`` only on
  its final one; every other request with one beat, ``last`` set;
* no key is resident twice (the tag store holds distinct keys in its valid slots);
* a pinned entry is never the victim of INSTALL or SELECT;
* the routing counters saturate: a counter never decreases except by RESET_COUNTS, and one at its
  maximum stays there until then;
* for one key the solver picks (any key), a LOOKUP hits exactly when the answers so far say the key
  is resident: from an INSTALL (or SELECT) that placed it until an INSTALL or SELECT names it as
  its victim, an INVALIDATE removes it, or an INVALIDATE_ALL finds it unpinned.

The tag store, pin bits and counters are the controller's own registers, read by name.
"""

from amaranth import *
from amaranth.asserts import AnyConst

from hw.expert_cache import ExpertCache
from hw.formal.harness import FormalHarness
from hw.params import CacheOp, CacheStatus, ExpertCacheParams

__all__ = ["SMALL", "CacheContract"]

#: 2 slots in 1 set of 2 ways, 1 layer of 3 experts (so the cache can be full and a third key
#: must evict), 2-bit counters (saturating at 3), SELECT of up to 2 keys.
SMALL = ExpertCacheParams(slots=2, layers=1, experts=3, ways=2, counter_width=2,
                          select_capacity=2, tag_width=2)


class CacheContract(FormalHarness):
    """The controller's contract; broken: the harness expects a counter to wrap to 0 past its
    maximum, where the controller (rightly) saturates."""

    SMALL = SMALL

    def build(self, m, platform):
        p = self.params
        dut = ExpertCache(p)
        internal = self.instantiate(m, "dut", dut, platform)
        self.stream_in(m, dut.req, "req")
        self.stream_out(m, dut.resp, "resp")
        req, resp = dut.req.payload, dut.resp.payload
        req_fire = dut.req.valid & dut.req.ready
        resp_fire = dut.resp.valid & dut.resp.ready

        # -- one answer per request, in order, with its tag
        waiting = Signal(range(4))
        tags = [Signal(p.tag_width, name=f"tag_{i}") for i in range(2)]   # in order, oldest first
        done = resp_fire & resp.last
        m.d.sync += waiting.eq(waiting + req_fire - done)
        with m.If(done):
            m.d.sync += tags[0].eq(tags[1])
        with m.If(req_fire):
            with m.If((waiting == 0) | ((waiting == 1) & done)):
                m.d.sync += tags[0].eq(req.tag)
            with m.Else():
                m.d.sync += tags[1].eq(req.tag)
        self.check(m, "assert", waiting <= 2, "at most 2 requests unanswered")
        with m.If(dut.resp.valid):
            self.check(m, "assert", (waiting != 0) & (resp.tag == tags[0]),
                       "answers in request order with their tags")
            with m.If(resp.op != CacheOp.SELECT):
                self.check(m, "assert", resp.last, "one beat per request other than SELECT")
        # invariant: the controller takes a request only once it has answered the ones before
        # but the last (SELECT stalls the stream meanwhile): the one unanswered request is in
        # the response register or in SELECT's state
        selecting = internal["cache_fsm_state"] != 0
        self.check(m, "assert", waiting == (dut.resp.valid | selecting),
                   "invariant: the unanswered request is in the response register or SELECT")
        self.check(m, "assert", internal["cache_fsm_state"] < 3, "invariant: FSM state")
        with m.If(selecting):
            self.check(m, "assert", tags[0] == dut.sel_tag, "invariant: SELECT's tag")
            with m.If(dut.resp.valid):
                self.check(m, "assert", ~resp.last & (resp.op == CacheOp.SELECT) &
                           (resp.tag == dut.sel_tag), "invariant: SELECT's beats before its last")
        with m.Elif(dut.resp.valid):
            self.check(m, "assert", resp.last, "invariant: outside SELECT, every beat is a last")
        self.check(m, "cover", resp_fire & (resp.op == CacheOp.SELECT) & ~resp.last,
                   "a SELECT answers a picked key before its final beat")

        # -- no key resident twice
        for a in range(p.slots):
            for b in range(a + 1, p.slots):
                same = (dut.key_layer[a] == dut.key_layer[b]) & \
                    (dut.key_expert[a] == dut.key_expert[b])
                self.check(m, "assert", ~(dut.valid[a] & dut.valid[b] & same),
                           "no key is resident twice")
        for a in range(p.slots):
            with m.If(dut.valid[a]):
                self.check(m, "assert", (dut.key_layer[a] < p.layers) &
                           (dut.key_expert[a] < p.experts), "only keys in range are resident")
        self.check(m, "assert", (dut.sel_layer < p.layers) & (dut.sel_expert < p.experts),
                   "invariant: SELECT picks keys in range")
        self.check(m, "cover", dut.valid.all(), "every slot holds a key")

        # -- pinned entries are never victims
        install = internal["do_install"]
        victim = internal["probe_victim_slot"]
        with m.If(install):
            self.check(m, "assert", ~dut.pinned.bit_select(victim, 1),
                       "a pinned entry is never the victim")
        self.check(m, "cover", install & dut.valid.bit_select(victim, 1) & dut.pinned.any(),
                   "an install evicts a key while another is pinned")

        # -- a LOOKUP after INSTALL hits until an eviction or INVALIDATE names the key
        self._tracked_key(m, dut, resp_fire)

        # -- counters saturate
        reset_counts = self.past(m, internal["do_reset_counts"], "past_reset_counts")
        for l in range(p.layers):
            for e in range(p.experts):
                count = dut.counts[l][e]
                before = self.past(m, count, f"past_count_{l}_{e}")
                with m.If(self.settled & ~reset_counts):
                    self.check(m, "assert", count >= before,
                               "a counter never decreases except by RESET_COUNTS")
                    with m.If(before == p.counter_max):
                        if self.broken:
                            counted = self.past(m, req_fire & (req.op == CacheOp.COUNT) &
                                                (req.layer == l) & req.vector[e])
                            with m.If(counted):
                                self.check(m, "assert", count == 0,
                                           "a counter at its maximum wraps when counted")
                        else:
                            self.check(m, "assert", count == before,
                                       "a counter at its maximum stays there")
        self.check(m, "cover", (dut.counts[0][0] == p.counter_max) & req_fire &
                   (req.op == CacheOp.COUNT) & req.vector[0] & (req.layer == 0),
                   "a saturated counter is counted again")

    def _tracked_key(self, m, dut, resp_fire):
        """LOOKUP of one key hits exactly while the answers so far leave it resident."""
        p = self.params
        resp = dut.resp.payload
        layer, expert = Signal(p.layer_bits), Signal(p.expert_bits)
        m.d.comb += [layer.eq(AnyConst(p.layer_bits)), expert.eq(AnyConst(p.expert_bits))]
        resident, pinned = Signal(), Signal()      # what the answers taken so far say
        after, after_pinned = Signal(), Signal()   # ... and the answer waiting, if any
        ok = resp.status == CacheStatus.OK
        names_key = (resp.layer == layer) & (resp.expert == expert)
        evicts_key = resp.victim_valid & (resp.victim_layer == layer) & \
            (resp.victim_expert == expert)
        placing = ok & ((resp.op == CacheOp.INSTALL) | ((resp.op == CacheOp.SELECT) & ~resp.last))
        m.d.comb += [after.eq(resident), after_pinned.eq(pinned)]
        with m.If(dut.resp.valid):
            with m.If(placing & names_key):
                m.d.comb += [after.eq(1), after_pinned.eq(0)]
            with m.Elif(placing & evicts_key):
                m.d.comb += after.eq(0)
            with m.Elif(ok & (resp.op == CacheOp.INVALIDATE) & names_key):
                m.d.comb += after.eq(0)
            with m.Elif(ok & (resp.op == CacheOp.INVALIDATE_ALL)):
                m.d.comb += after.eq(resident & pinned)
            with m.Elif(ok & (resp.op == CacheOp.PIN) & names_key):
                m.d.comb += after_pinned.eq(1)
            with m.Elif(ok & (resp.op == CacheOp.UNPIN) & names_key):
                m.d.comb += after_pinned.eq(0)
        with m.If(resp_fire):
            m.d.sync += [resident.eq(after), pinned.eq(after_pinned)]
        with m.If(dut.resp.valid & (resp.op == CacheOp.LOOKUP) & names_key):
            self.check(m, "assert", (resp.status == CacheStatus.HIT) == resident,
                       "a LOOKUP hits exactly while the key is resident by the answers so far")
        evicted = Signal()              # the key was named as a victim in an answer taken
        with m.If(resp_fire & placing & evicts_key):
            m.d.sync += evicted.eq(1)
        self.check(m, "cover", resp_fire & (resp.op == CacheOp.LOOKUP) & names_key & evicted &
                   (resp.status != CacheStatus.HIT),
                   "a key is looked up after its eviction and misses")
        self.check(m, "cover", resp_fire & (resp.op == CacheOp.LOOKUP) & names_key &
                   (resp.status == CacheStatus.HIT), "a LOOKUP of the key hits")

        # invariant: with the answer waiting applied, the tag store agrees
        holds = Cat(dut.valid[s] & (dut.key_layer[s] == layer) & (dut.key_expert[s] == expert)
                    for s in range(p.slots))
        pin = Cat(holds[s] & dut.pinned[s] for s in range(p.slots))
        self.check(m, "assert", (holds.any() == after) & (pin.any() == (after & after_pinned)),
                   "invariant: the tag store holds the key as the answers say")
