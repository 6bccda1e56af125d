"""The golden expert-cache model on its own: the API a decoder drives, the policies, bad requests
(error status, snapshot unchanged), and the parameters' checks."""

import pytest

from hw.params import (CacheOp, CachePolicy, CacheStatus, ExpertCacheParams, SelectScope,
                       CACHE_PRESETS)
from sim.expert_cache.ops import mixed_requests
from sw_model.golden.expert_cache import (CacheResult, ExpertCacheModel, Request, apply_request,
                                          replay)

FULL = ExpertCacheParams(slots=4, layers=2, experts=8, ways=4, counter_width=4,
                         select_capacity=2)


def model(**changes):
    values = FULL.to_dict()
    values.update(changes)
    return ExpertCacheModel(ExpertCacheParams.from_dict(values))


def test_lru_cached_decoding_flow():
    cache = model()
    for e in range(4):
        assert cache.lookup(0, e).status is CacheStatus.MISS
        assert cache.install(0, e) == CacheResult(CacheStatus.OK, slot=e)   # free ways first
    assert cache.lookup(0, 0).status is CacheStatus.HIT          # 0 becomes most recent
    result = cache.install(1, 0)
    assert result.status is CacheStatus.OK and result.victim == (0, 1) and result.slot == 1
    assert cache.resident() == {(0, 0): 0, (1, 0): 1, (0, 2): 2, (0, 3): 3}


def test_frequency_victim_lowest_count_then_lru():
    cache = model(policy="FREQUENCY")
    for e in range(4):
        cache.install(0, e)
    cache.count(0, [0, 1, 3])
    cache.count(0, [0, 3])
    # counts: 0->2, 1->1, 2->0, 3->2: expert 2 goes first
    assert cache.install(1, 5).victim == (0, 2)
    # now (1,5) has count 0 and is the most recent: still the lowest count, so it goes
    assert cache.install(1, 6).victim == (1, 5)
    # all counts equal: the least recently used goes
    cache.reset_counts()
    assert cache.install(1, 7).victim == (0, 0)


def test_pinned_entries_are_never_evicted():
    cache = model()
    for e in range(4):
        cache.install(0, e)
        assert cache.pin(0, e).status is CacheStatus.OK
    before = cache.snapshot()
    assert cache.install(1, 1).status is CacheStatus.PINNED
    assert cache.invalidate(0, 2).status is CacheStatus.PINNED
    cache.invalidate_all()
    for _ in range(3):
        cache.count(1, range(8))
    select = cache.select()
    assert [e.status for e in select.entries] == [CacheStatus.NO_ROOM] * 2
    assert select.evictions == ()
    assert cache.snapshot().entries == before.entries
    cache.unpin(0, 2)
    assert cache.install(1, 1).victim == (0, 2)


@pytest.mark.parametrize("scope, capacity, expected", [
    ("PER_LAYER", 1, [(1, 3), (0, 1)]),
    ("PER_LAYER", 2, [(1, 3), (0, 1), (0, 2), (1, 0)]),
    ("GLOBAL", 3, [(1, 3), (0, 1), (0, 2)]),
])
def test_select_order_and_tie_break(scope, capacity, expected):
    cache = model(select_scope=scope, select_capacity=capacity)
    cache.count(0, [1, 2])
    cache.count(0, [1, 2, 5])
    cache.count(1, [0, 3])
    cache.count(1, [3])
    cache.count(1, [3])
    # counts: (1,3)=3, (0,1)=2, (0,2)=2, (0,5)=1, (1,0)=1: ties go to the lower key index
    result = cache.select()
    assert list(result.selected) == expected
    assert all(e.status is CacheStatus.OK for e in result.entries)
    assert set(cache.resident()) == set(expected)
    again = cache.select()
    assert all(e.status is CacheStatus.HIT for e in again.entries)
    cache.reset_counts()
    assert cache.select().entries == ()


def test_select_does_not_evict_its_own_picks():
    cache = model(ways=1, slots=2, select_scope="GLOBAL", select_capacity=2)
    cache.count(0, [0, 2])                   # keys 0 and 2 both map to set 0 of 2
    result = cache.select()
    assert [e.status for e in result.entries] == [CacheStatus.OK, CacheStatus.NO_ROOM]


def test_counters_saturate():
    cache = model(counter_width=2)
    for _ in range(10):
        cache.count(1, [4, 4, 6])
    assert cache.counts(1)[4] == cache.counts(1)[6] == 3 and sum(cache.counts(1)) == 6


BAD = [
    ("lookup", (2, 0), CacheStatus.BAD_RANGE), ("lookup", (0, 8), CacheStatus.BAD_RANGE),
    ("lookup", (-1, 0), CacheStatus.BAD_RANGE), ("install", (0, 9), CacheStatus.BAD_RANGE),
    ("pin", (3, 3), CacheStatus.BAD_RANGE), ("unpin", (0, 8), CacheStatus.BAD_RANGE),
    ("invalidate", (2, 0), CacheStatus.BAD_RANGE),
    ("count", (2, [0]), CacheStatus.BAD_RANGE), ("count", (0, [8]), CacheStatus.BAD_RANGE),
    ("unpin", (1, 7), CacheStatus.ABSENT), ("pin", (1, 7), CacheStatus.ABSENT),
    ("invalidate", (1, 7), CacheStatus.ABSENT), ("install", (0, 0), CacheStatus.PRESENT),
    ("install", (1, 4), CacheStatus.PINNED), ("invalidate", (0, 1), CacheStatus.PINNED),
]


@pytest.mark.parametrize("method, args, status", BAD, ids=[f"{m}{a}" for m, a, _ in BAD])
def test_bad_requests_leave_the_state_unchanged(method, args, status):
    cache = model(policy="FREQUENCY")
    for e in range(4):
        cache.install(0, e)
    cache.count(0, [1, 2])
    for e in (1, 2, 3):
        cache.pin(0, e)
    cache.pin(0, 0)                      # every way pinned: INSTALL has no candidate
    before = cache.snapshot()
    result = getattr(cache, method)(*args)
    assert result.status is status and result.status.is_error
    assert cache.snapshot() == before


def test_bad_opcode_in_a_replayed_trace():
    cache = model()
    before = cache.snapshot()
    (beat,) = apply_request(cache, Request(12, 5, 1, 2))
    assert beat.status is CacheStatus.BAD_OPCODE and beat.tag == 5 and beat.op == 12
    assert cache.snapshot() == before


def test_replay_is_the_api_applied_in_order(rng):
    """The op-trace replay is a thin layer: the same trace through the API gives the same state."""
    p = CACHE_PRESETS["default"]
    requests = mixed_requests(p, 2000, seed=int(rng.integers(1000)))
    a, b = ExpertCacheModel(p), ExpertCacheModel(p)
    beats = replay(a, requests)
    assert len(beats) >= len(requests)
    for r in requests:
        if r.op == CacheOp.LOOKUP:
            b.lookup(r.layer, r.expert)
        elif r.op == CacheOp.INSTALL:
            b.install(r.layer, r.expert)
        elif r.op == CacheOp.COUNT:
            b.count(r.layer, [e for e in range(p.experts) if r.vector >> e & 1])
        elif r.op in (CacheOp.PIN, CacheOp.UNPIN, CacheOp.INVALIDATE):
            getattr(b, CacheOp(r.op).name.lower())(r.layer, r.expert)
        elif r.op in (CacheOp.INVALIDATE_ALL, CacheOp.SELECT, CacheOp.RESET_COUNTS):
            getattr(b, CacheOp(r.op).name.lower())()
    assert a.snapshot() == b.snapshot()
    # every pinned key stays resident until unpinned: checked along the whole trace
    c = ExpertCacheModel(p)
    for r in requests:
        pinned = c.pinned()
        for beat in apply_request(c, r):
            assert not (beat.victim_valid and (beat.victim_layer, beat.victim_expert) in pinned)
        if r.op != CacheOp.UNPIN:
            assert pinned <= set(c.resident())


# -- parameters ------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    ({"slots": 0}, "slots"),
    ({"ways": 3}, r"slots \(8\) must be a multiple of ways \(3\)"),
    ({"slots": 12, "ways": 4, "experts": 12}, "3 sets must be a power of two"),
    ({"slots": 64}, r"slots \(64\) exceeds the 36 keys"),
    ({"select_capacity": 3}, r"select_capacity \(3\) per layer x 3 layers exceeds the 8 slots"),
    ({"select_capacity": 9, "select_scope": "GLOBAL"}, r"select_capacity \(9\) exceeds 8"),
    ({"policy": "RANDOM"}, "policy must be one of LRU, FREQUENCY, not 'RANDOM'"),
    ({"select_scope": 7}, "select_scope must be one of PER_LAYER, GLOBAL"),
])
def test_bad_parameters_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        ExpertCacheParams(**changes)


def test_parameter_types_and_round_trip():
    with pytest.raises(TypeError, match="counter_width"):
        ExpertCacheParams(counter_width=2.0)
    with pytest.raises(ValueError, match="colour"):
        ExpertCacheParams.from_dict({"colour": 1})
    for params in CACHE_PRESETS.values():
        assert ExpertCacheParams.from_dict(params.to_dict()) == params
    p = ExpertCacheParams(policy=1, select_scope="global", select_capacity=8)
    assert p.policy is CachePolicy.FREQUENCY and p.select_scope is SelectScope.GLOBAL
    assert ExpertCacheParams().layer_bits == 2 and ExpertCacheParams(layers=4).layer_bits == 3


def test_model_rejects_non_params():
    with pytest.raises(TypeError, match="ExpertCacheParams"):
        ExpertCacheModel({"slots": 4})
