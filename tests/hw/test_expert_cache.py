"""The expert-cache controller in Amaranth's simulator: every operation as directed cases, bad
requests with the state checked after, mixed traces on several configurations, each with and
without random idle cycles and back-pressure, every response compared with the golden model."""


import pytest
from amaranth.sim import Simulator

from hw.expert_cache import ExpertCache, request_layout, response_layout
from hw.params import CacheOp, CacheStatus, ExpertCacheParams
from sim.amaranth_streams import PRESSURE
from sim.expert_cache.ops import (FastCodec, run_in_amaranth, encode_request, decode_response,
                                  expected_responses, compare_responses, mixed_requests,
                                  bad_requests, lookup_sweep)
from sw_model.golden.expert_cache import ExpertCacheModel, Request, Response, apply_request

CONFIGS = {
    "lru-4way": ExpertCacheParams(),
    "frequency-global-full": ExpertCacheParams(slots=8, layers=3, experts=12, ways=8,
                                               counter_width=4, policy="FREQUENCY",
                                               select_scope="GLOBAL", select_capacity=6),
    "direct-mapped": ExpertCacheParams(slots=4, layers=2, experts=5, ways=1, counter_width=2,
                                       select_capacity=2),
    "frequency-3way": ExpertCacheParams(slots=6, layers=1, experts=9, ways=3, counter_width=3,
                                        policy="FREQUENCY", select_capacity=5),
}

L, I, P, U, V, A, C, S, R = (CacheOp.LOOKUP, CacheOp.INSTALL, CacheOp.PIN, CacheOp.UNPIN,
                             CacheOp.INVALIDATE, CacheOp.INVALIDATE_ALL, CacheOp.COUNT,
                             CacheOp.SELECT, CacheOp.RESET_COUNTS)


def check(params, requests, pressure="free", seed=1):
    """RTL versus golden model on ``requests``; returns the golden beats."""
    expected = expected_responses(params, requests)
    compare_responses(run_in_amaranth(params, requests, seed, *PRESSURE[pressure]), expected)
    return expected


def statuses(beats):
    return [b.status for b in beats]


# -- each operation, directed ----------------------------------------------------------------------
P0 = CONFIGS["lru-4way"]          # 2 sets x 4 ways; key k = 12 * layer + expert, set k % 2


@pytest.mark.parametrize("pressure", PRESSURE)
def test_lookup_install_and_lru_victims(pressure):
    # five keys of set 0 into four ways: the fifth evicts the least recently used one
    keys = [(0, 0), (0, 2), (0, 4), (0, 6)]
    reqs = [Request(L, 0, *keys[0])] + [Request(I, i, *k) for i, k in enumerate(keys)]
    reqs += [Request(L, 9, *keys[0]), Request(I, 10, 0, 8), Request(L, 11, *keys[1])]
    beats = check(P0, reqs, pressure)
    assert statuses(beats) == [CacheStatus.MISS] + [CacheStatus.OK] * 4 + [
        CacheStatus.HIT, CacheStatus.OK, CacheStatus.MISS]
    assert [b.slot for b in beats[1:5]] == [0, 1, 2, 3]      # free ways, way 0 first
    install = beats[6]
    assert install.victim_valid and (install.victim_layer, install.victim_expert) == keys[1]
    assert install.slot == 1


@pytest.mark.parametrize("pressure", PRESSURE)
def test_pin_unpin_invalidate(pressure):
    reqs = [Request(I, 0, 1, 1), Request(P, 1, 1, 1), Request(P, 2, 1, 1), Request(V, 3, 1, 1),
            Request(A, 4), Request(L, 5, 1, 1), Request(U, 6, 1, 1), Request(U, 7, 1, 1),
            Request(V, 8, 1, 1), Request(L, 9, 1, 1), Request(I, 10, 1, 3), Request(A, 11),
            Request(L, 12, 1, 3)]
    beats = check(P0, reqs, pressure)
    assert statuses(beats) == [
        CacheStatus.OK, CacheStatus.OK, CacheStatus.OK, CacheStatus.PINNED, CacheStatus.OK,
        CacheStatus.HIT, CacheStatus.OK, CacheStatus.OK, CacheStatus.OK, CacheStatus.MISS,
        CacheStatus.OK, CacheStatus.OK, CacheStatus.MISS]


@pytest.mark.parametrize("pressure", PRESSURE)
def test_count_saturates_and_select_per_layer(pressure):
    p = P0                                   # 3-bit counters, 2 picks per layer
    mask = lambda *es: sum(1 << e for e in es)
    reqs = [Request(C, 0, 0, 0, mask(3, 5, 7))] * 9          # saturate at 7
    reqs += [Request(C, 1, 0, 0, mask(1))] * 2 + [Request(C, 2, 2, 0, mask(11, 0))]
    reqs += [Request(I, 3, 0, 3), Request(S, 4), Request(S, 5), Request(R, 6), Request(S, 7)]
    model = ExpertCacheModel(p)
    for r in reqs[:12]:
        apply_request(model, r)
    assert model.counts(0)[3] == model.counts(0)[5] == p.counter_max
    beats = check(p, reqs, pressure)
    first = [b for b in beats if b.tag == 4]
    # layer 0: 3, 5 (equal counts: lower index first); layer 2: 0, 11 (tie); layer 1 nothing
    assert [(b.layer, b.expert) for b in first[:-1]] == [(0, 3), (0, 5), (2, 0), (2, 11)]
    assert statuses(first) == [CacheStatus.HIT] + [CacheStatus.OK] * 4
    assert [b.last for b in first] == [0, 0, 0, 0, 1]
    second = [b for b in beats if b.tag == 5]
    assert statuses(second) == [CacheStatus.HIT] * 4 + [CacheStatus.OK]
    assert [b for b in beats if b.tag == 7] == [beats[-1]] and beats[-1].last == 1


@pytest.mark.parametrize("pressure", PRESSURE)
def test_select_global_capacity_and_no_room(pressure):
    p = ExpertCacheParams(slots=2, layers=2, experts=4, ways=1, counter_width=3,
                          select_scope="GLOBAL", select_capacity=2)
    # keys (0,0), (1,0) share set 0 (k = 0, 4); (0,1) is in set 1
    reqs = [Request(C, 0, 1, 0, 0b0001)] * 3 + [Request(C, 1, 0, 0, 0b0011)] * 2
    reqs += [Request(I, 2, 0, 1), Request(P, 3, 0, 1), Request(S, 4)]
    beats = check(p, reqs, pressure)
    sel = [b for b in beats if b.tag == 4]
    assert [(b.layer, b.expert, b.status) for b in sel[:-1]] == [
        (1, 0, CacheStatus.OK), (0, 0, CacheStatus.NO_ROOM)]    # capacity 2 reached


@pytest.mark.parametrize("pressure", PRESSURE)
@pytest.mark.parametrize("config", ["frequency-global-full", "frequency-3way"])
def test_frequency_victim_is_the_least_counted(config, pressure):
    p = CONFIGS[config]
    keys = [(0, e) for e in range(p.experts) if p.set_of(0, e) == 0][:p.ways + 1]
    reqs = [Request(I, 0, *k) for k in keys[:p.ways]]
    # the second key gets no count; the others one each; then a new key evicts the second
    reqs += [Request(C, 1, 0, 0, sum(1 << e for _, e in keys[:p.ways] if e != keys[1][1]))]
    reqs += [Request(L, 2, *keys[1]), Request(I, 3, *keys[p.ways])]
    beats = check(p, reqs, pressure)
    assert (beats[-1].victim_layer, beats[-1].victim_expert) == keys[1]


# -- the contract's stated values, field by field ----------------------------------------------
OK, HIT, MISS, NO_ROOM = CacheStatus.OK, CacheStatus.HIT, CacheStatus.MISS, CacheStatus.NO_ROOM


def beat(tag, op, status, slot=0, layer=0, expert=0, victim=(0, 0, 0), last=1):
    """A response beat as the contract states it (``Response`` field order)."""
    return Response(tag, int(op), status, last, slot, layer, expert, *victim)


@pytest.mark.parametrize("pressure", PRESSURE)
def test_every_response_field_in_every_case(pressure):
    """``slot`` is the resident slot whenever the key is resident (PRESENT and INVALIDATE's
    PINNED alike), the installed slot on OK installs, else 0; the victim fields are 0 except on an
    install that displaced a key; ``layer``/``expert``/``op``/``tag`` echo the request, errors
    included; ``last`` is 1."""
    bad_op = len(CacheOp) + 3
    reqs = [Request(L, 0, 0, 0), Request(I, 1, 0, 0), Request(I, 2, 0, 0), Request(P, 3, 0, 0),
            Request(P, 4, 0, 0), Request(V, 5, 0, 0), Request(I, 6, 0, 2), Request(U, 7, 0, 2),
            Request(P, 8, 1, 5), Request(U, 9, 1, 5), Request(V, 10, 1, 5), Request(L, 11, 3, 0),
            Request(I, 12, 0, 12), Request(bad_op, 13, 2, 7), Request(C, 14, 1, 4, 0b101),
            Request(V, 15, 0, 2), Request(A, 16, 2, 7), Request(R, 17, 1, 1),
            Request(L, 18, 0, 0), Request(C, 19, 3, 1, 1)]
    got = check(P0, reqs, pressure)
    Sx = CacheStatus
    assert got == [
        beat(0, L, MISS), beat(1, I, OK, 0), beat(2, I, Sx.PRESENT, 0), beat(3, P, OK, 0),
        beat(4, P, OK, 0), beat(5, V, Sx.PINNED, 0), beat(6, I, OK, 1, 0, 2),
        beat(7, U, OK, 1, 0, 2), beat(8, P, Sx.ABSENT, 0, 1, 5), beat(9, U, Sx.ABSENT, 0, 1, 5),
        beat(10, V, Sx.ABSENT, 0, 1, 5), beat(11, L, Sx.BAD_RANGE, 0, 3, 0),
        beat(12, I, Sx.BAD_RANGE, 0, 0, 12), beat(13, bad_op, Sx.BAD_OPCODE, 0, 2, 7),
        beat(14, C, OK, 0, 1, 4), beat(15, V, OK, 1, 0, 2), beat(16, A, OK, 0, 2, 7),
        beat(17, R, OK, 0, 1, 1), beat(18, L, HIT, 0), beat(19, C, Sx.BAD_RANGE, 0, 3, 1)]


@pytest.mark.parametrize("pressure", PRESSURE)
def test_recency_from_reset_and_what_touches_it(pressure):
    """After reset way 0 is the least recently used; PIN, UNPIN, COUNT, a SELECT hit,
    RESET_COUNTS and errors leave the order; a LOOKUP hit and an install refresh a way; a freed
    way keeps its place, so the least recently used free way is refilled first."""
    keys = [(0, 0), (0, 2), (0, 4), (0, 6)]          # set 0 of P0
    reqs = [Request(I, i, *k) for i, k in enumerate(keys)]
    reqs += [Request(P, 4, 0, 0), Request(U, 5, 0, 0), Request(C, 6, 0, 0, 1), Request(S, 7),
             Request(R, 8), Request(I, 9, 0, 2), Request(L, 10, 3, 3), Request(I, 11, 0, 8)]
    reqs += [Request(L, 12, 0, 2), Request(I, 13, 0, 10)]           # way 1 refreshed: way 2 goes
    reqs += [Request(V, 14, 0, 6), Request(V, 15, 0, 10), Request(I, 16, 1, 0), Request(I, 17, 1, 2)]
    got = check(P0, reqs, pressure)
    assert [b.slot for b in got[:4]] == [0, 1, 2, 3]
    assert got[7] == beat(7, S, HIT, 0, 0, 0, last=0)               # SELECT picks (0, 0): a hit
    assert got[12] == beat(11, I, OK, 0, 0, 8, (1, 0, 0))           # still way 0 (its LRU)
    assert got[14] == beat(13, I, OK, 2, 0, 10, (1, 0, 4))
    # ways 3 (freed first, older) and 2 are free: way 3 is less recently used than way 2
    assert got[17:] == [beat(16, I, OK, 3, 1, 0), beat(17, I, OK, 2, 1, 2)]


@pytest.mark.parametrize("pressure", PRESSURE)
def test_frequency_fills_the_least_recent_free_way_whatever_the_counts(pressure):
    """FREQUENCY looks at counts only among occupied ways: with ways 0 (stale key counted high)
    and 2 (stale key never counted) freed, the next install takes way 0, the least recent."""
    p = CONFIGS["frequency-3way"]                   # 2 sets x 3 ways; key (0, e) in set e % 2
    reqs = [Request(I, 0, 0, 0), Request(I, 1, 0, 2), Request(I, 2, 0, 4),
            Request(C, 3, 0, 0, 1 << 0), Request(C, 4, 0, 0, 1 << 0), Request(C, 5, 0, 0, 1 << 2),
            Request(V, 6, 0, 0), Request(V, 7, 0, 4), Request(I, 8, 0, 6), Request(I, 9, 0, 8)]
    got = check(p, reqs, pressure)
    assert [b.slot for b in got[-2:]] == [0, 2]
    assert not any(b.victim_valid for b in got[-2:])


@pytest.mark.parametrize("pressure", PRESSURE)
def test_select_skips_zero_counts_and_no_room_uses_quota(pressure):
    """Direct mapped, two picks per layer: (0, 4) has the highest count but its only way holds a
    pinned key, so it answers NO_ROOM and still uses one of layer 0's two picks; (0, 1) takes the
    other; (0, 2) is not picked; (0, 3), never counted, is never picked; a SELECT with every
    count zero answers its final beat only."""
    p = CONFIGS["direct-mapped"]                    # 4 sets x 1 way; key (0, e) in set e % 4
    reqs = [Request(S, 0, 1, 2), Request(I, 1, 0, 0), Request(P, 2, 0, 0)]
    reqs += [Request(C, 3, 0, 0, 0b10110), Request(C, 4, 0, 0, 0b10010),
             Request(C, 5, 0, 0, 0b10000), Request(S, 6, 3, 3)]      # counts 3, 2, 1

    got = check(p, reqs, pressure)
    assert got[0] == beat(0, S, OK)                                 # final beat: layer, expert 0
    sel = [b for b in got if b.tag == 6]
    assert sel == [beat(6, S, NO_ROOM, 0, 0, 4, last=0), beat(6, S, OK, 1, 0, 1, last=0),
                   beat(6, S, OK)]


def _always_ready(p, reqs, cycles):
    """Offer ``reqs`` back to back with the response stream always ready, for ``cycles`` cycles;
    returns the cycles each request was taken, and ``(cycle, tag)`` of each response beat."""
    dut = ExpertCache(p)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    taken, answered = [], []

    async def driver(ctx):
        ctx.set(dut.resp.ready, 1)
        pending = list(reqs)
        for cycle in range(cycles):
            if pending:
                ctx.set(dut.req.payload, encode_request(p, pending[0]))
            ctx.set(dut.req.valid, bool(pending))
            _, _, ready, valid, payload = await ctx.tick().sample(dut.req.ready, dut.resp.valid,
                                                                  dut.resp.payload)
            if pending and ready:
                taken.append(cycle)
                pending.pop(0)
            if valid:
                answered.append((cycle, decode_response(p, payload).tag))

    sim.add_testbench(driver)
    sim.run()
    return taken, answered


@pytest.mark.parametrize("picks", [0, 1, 3])
def test_select_holds_the_request_stream_2k_plus_2_cycles(picks):
    """With both streams always ready, a SELECT of ``k`` picks is answered by pick beats at
    cycles 3, 5, ... after it is taken, the final beat at ``2k + 2``, and the next request is
    taken ``2k + 2`` cycles after it."""
    p = P0
    per_layer = min(picks, p.select_capacity)
    reqs = [Request(C, 0, 0, 0, (1 << per_layer) - 1),
            Request(C, 1, 1, 0, (1 << (picks - per_layer)) - 1)]
    reqs += [Request(S, 2), Request(L, 3, 0, 0)]
    taken, answered = _always_ready(p, reqs, 4 * picks + 12)
    select = taken[2]
    assert taken[3] - select == 2 * picks + 2
    beats = [c - select for c, tag in answered if tag == 2]
    assert beats == [3 + 2 * i for i in range(picks)] + [2 * picks + 2]


# -- bad requests: error status, state unchanged ---------------------------------------------------
@pytest.mark.parametrize("config", ["lru-4way", "frequency-global-full"])
def test_bad_requests_leave_the_state_unchanged(config, rng):
    p = CONFIGS[config]
    setup = mixed_requests(p, 300, seed=int(rng.integers(1000)))
    model = ExpertCacheModel(p)
    for r in setup:
        apply_request(model, r)
    # a fully pinned set too, so INSTALL into it must fail
    first = [k for k in model.resident() if p.set_of(*k) == 0]
    setup += [Request(I, 0, l, e) for l in range(p.layers) for e in range(p.experts)
              if p.set_of(l, e) == 0 and (l, e) not in model.resident()][:p.ways - len(first)]
    for r in setup[300:]:
        apply_request(model, r)
    setup += [Request(P, 0, *k) for k in model.resident() if p.set_of(*k) == 0]
    for r in setup[-p.ways:]:
        apply_request(model, r)
    bad = bad_requests(p, model, rng)
    full = [(l, e) for l in range(p.layers) for e in range(p.experts)
            if p.set_of(l, e) == 0 and (l, e) not in model.resident()]
    bad += [Request(I, 0, *full[0])]
    before = model.snapshot()
    beats = [b for r in bad for b in apply_request(model, r)]
    assert all(b.status.is_error for b in beats), [b for b in beats if not b.status.is_error]
    assert beats[-1].status is CacheStatus.PINNED          # INSTALL into the fully pinned set
    assert model.snapshot() == before
    assert {CacheStatus.BAD_RANGE, CacheStatus.BAD_OPCODE, CacheStatus.ABSENT,
            CacheStatus.PRESENT, CacheStatus.PINNED} <= set(statuses(beats))
    # the RTL: same error beats, then probes that expose the state (residency, LRU order)
    probes = lookup_sweep(p, tag=1) + [Request(I, 2, l, e) for l in range(p.layers)
                                       for e in range(p.experts)]
    beats = check(p, setup + bad + probes, "pressure")
    tail = beats[-(len(bad) + len(probes)):]       # one beat each
    assert all(b.status.is_error for b in tail[:len(bad)])


# -- mixed traces on every configuration -----------------------------------------------------------
@pytest.mark.parametrize("pressure", PRESSURE)
@pytest.mark.parametrize("config", CONFIGS)
def test_mixed_traces(config, pressure, seed):
    p = CONFIGS[config]
    reqs = mixed_requests(p, 700, seed)
    beats = check(p, reqs, pressure, seed)
    seen = set(statuses(beats))
    assert {CacheStatus.HIT, CacheStatus.MISS, CacheStatus.OK, CacheStatus.BAD_OPCODE} <= seen


def test_one_lookup_per_cycle_and_latency():
    """Both streams always ready: a LOOKUP is taken every cycle and answered the next."""
    p = P0
    reqs = [Request(I, 0, 0, e) for e in range(4)] + [Request(L, i, 0, i % 8) for i in range(40)]
    taken, answered = _always_ready(p, reqs, len(reqs) + 6)
    answered = [cycle for cycle, _ in answered]
    assert taken == list(range(len(reqs)))
    assert [b - a for a, b in zip(taken, answered)] == [1] * len(reqs)


# -- encoding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS)
def test_fast_codec_matches_the_layouts(config, rng):
    p = CONFIGS[config]
    codec = FastCodec(p)
    for req in mixed_requests(p, 200, seed=int(rng.integers(1000))):
        assert codec.encode(req) == encode_request(p, req).as_bits()
    width = response_layout(p).size
    for bits in [0, (1 << width) - 1] + [int(rng.integers(1 << 62)) % (1 << width)
                                         for _ in range(200)]:
        assert codec.decode(bits) == decode_response(p, bits)
    with pytest.raises(ValueError, match="layer"):
        codec.encode(Request(L, 0, 1 << p.layer_bits, 0))
    assert request_layout(p).size == codec._req[-1][1] + codec._req[-1][2]


def test_component_rejects_non_params():
    with pytest.raises(TypeError, match="ExpertCacheParams"):
        ExpertCache({"slots": 8})
