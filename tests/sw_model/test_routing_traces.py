"""Routing traces: the generator's statistics and the on-disk format's round trip and checks."""

import numpy as np
import pytest

from sw_model.model.routing_traces import (RoutingTrace, generate_routing_trace, load_routing_trace,
                                           TRACE_FORMAT)


@pytest.mark.parametrize("batch", [1, 4, 16])
def test_shape_range_and_distinct_top_k(batch, seed):
    trace = generate_routing_trace(3, 16, 4, steps=20, batch=batch, seed=seed)
    assert trace.experts.shape == (20, batch, 3, 4)
    assert trace.experts.min() >= 0 and trace.experts.max() < 16
    for row in trace.experts.reshape(-1, 4):
        assert len(set(row.tolist())) == 4
    needed = trace.needed(5, 1)
    assert len(needed) == len(set(needed)) and set(needed) == set(trace.experts[5, :, 1].flat)


def test_same_seed_same_trace_other_seed_other_trace():
    a = generate_routing_trace(2, 32, 2, steps=30, batch=4, seed=7)
    b = generate_routing_trace(2, 32, 2, steps=30, batch=4, seed=7)
    c = generate_routing_trace(2, 32, 2, steps=30, batch=4, seed=8)
    assert np.array_equal(a.experts, b.experts) and not np.array_equal(a.experts, c.experts)


def _reuse_fraction(trace):
    prev, cur = trace.experts[:-1], trace.experts[1:]
    kept = [len(set(p) & set(c)) for p, c in zip(prev.reshape(-1, trace.top_k),
                                                 cur.reshape(-1, trace.top_k))]
    return np.mean(kept) / trace.top_k


def test_temporal_reuse_is_tunable(seed):
    """Kept fraction ~ reuse + (1 - reuse) * chance of redrawing a previous expert."""
    low = generate_routing_trace(1, 64, 4, steps=400, reuse=0.0, zipf=0.0, seed=seed)
    high = generate_routing_trace(1, 64, 4, steps=400, reuse=0.8, zipf=0.0, seed=seed)
    assert _reuse_fraction(low) < 0.15
    assert 0.75 < _reuse_fraction(high) < 0.9


def test_zipf_popularity_is_tunable(seed):
    """The most used expert's share grows with the exponent (uniform at 0)."""
    def top_share(zipf):
        t = generate_routing_trace(1, 32, 1, steps=3000, reuse=0.0, zipf=zipf, seed=seed)
        return np.bincount(t.experts.ravel(), minlength=32).max() / t.experts.size
    assert top_share(0.0) < 0.06
    assert 0.2 < top_share(1.2) < 0.4
    assert top_share(2.0) > 0.5


def test_round_trip(tmp_path, seed):
    trace = generate_routing_trace(2, 8, 2, steps=5, batch=3, seed=seed)
    path = trace.save(tmp_path / "trace.npz")
    loaded = load_routing_trace(path)
    assert np.array_equal(loaded.experts, trace.experts) and loaded.num_experts == 8


def test_a_writer_without_this_module(tmp_path):
    """The documented format, written with plain NumPy (as the golden MoE model may)."""
    experts = np.array([[[[0, 3]], [[2, 1]]]], dtype=np.int32)    # 1 step, batch 2, 1 layer
    np.savez(tmp_path / "t.npz", format=TRACE_FORMAT, version=1, num_experts=4, experts=experts)
    trace = load_routing_trace(tmp_path / "t.npz")
    assert (trace.steps, trace.batch, trace.layers, trace.top_k) == (1, 2, 1, 2)
    assert trace.needed(0, 0) == [0, 3, 2, 1]


@pytest.mark.parametrize("fields, message", [
    ({"format": "other"}, "format is 'other'"),
    ({"version": 2}, "version 2 is not supported"),
    ({"num_experts": 3}, r"expert id 3 outside \[0, 3\)"),
    ({"experts": np.zeros((2, 1, 2))}, "4 axes"),
    ({"experts": np.array([[[[1, 1]]]])}, "repeated expert"),
    ({"experts": np.array([[[[0.5, 1]]]])}, "integers"),
    ({"num_experts": None}, "missing field"),
])
def test_bad_files_are_named(tmp_path, fields, message):
    values = {"format": TRACE_FORMAT, "version": 1, "num_experts": 4,
              "experts": np.array([[[[0, 3]]]])}
    values.update(fields)
    values = {k: v for k, v in values.items() if v is not None}
    np.savez(tmp_path / "bad.npz", **values)
    with pytest.raises(ValueError, match=message):
        load_routing_trace(tmp_path / "bad.npz")


def test_not_an_archive(tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a routing trace"):
        load_routing_trace(tmp_path / "x.npz")


@pytest.mark.parametrize("kwargs, message", [
    ({"top_k": 9}, r"top_k \(9\) exceeds num_experts \(8\)"),
    ({"batch": 0}, "batch must be a positive integer"),
    ({"reuse": 1.5}, "reuse must be a probability"),
    ({"zipf": -1}, "zipf exponent"),
])
def test_bad_generator_arguments(kwargs, message):
    args = dict(layers=1, num_experts=8, top_k=2, steps=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate_routing_trace(**args)


def test_trace_object_checks():
    with pytest.raises(ValueError, match="num_experts"):
        RoutingTrace(np.zeros((1, 1, 1, 1), dtype=int), 0)
    with pytest.raises(ValueError, match="empty axis"):
        RoutingTrace(np.zeros((0, 1, 1, 1), dtype=int), 4)
