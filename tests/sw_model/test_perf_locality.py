"""The routing locality measured on the trained model and the trace generator fitted to it
(sw_model/perf/locality.py), and the Locality the performance model takes by default."""

from dataclasses import replace

import numpy as np
import pytest

from sw_model.perf import locality as loc
from sw_model.perf.workload import ASSUMED_LOCALITY, Locality
from sw_model.perf.zoo import get_model


def test_repeat_probability_and_top_share_on_hand_made_routes():
    # one sequence, 3 tokens, 1 layer, top-2 over 8 experts
    routes = np.array([[[[0, 1]], [[1, 2]], [[3, 4]]]])
    # token 0 -> 1 keeps expert 1 (1 of 2), token 1 -> 2 keeps none
    assert loc.repeat_probability(routes)[0] == pytest.approx(0.25)
    counts = loc.popularity(routes, 8)
    assert counts.tolist() == [[1, 2, 1, 1, 1, 0, 0, 0]]
    assert loc.top_share(counts[0]) == pytest.approx(3 / 6)      # experts 1 and one of the 1s
    assert loc.top_share(np.ones(32)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="positions >= 2"):
        loc.repeat_probability(np.zeros((2, 1, 1, 2), dtype=int))
    with pytest.raises(ValueError, match="no choices"):
        loc.top_share(np.zeros(8))


def test_zipf_fits_recover_the_exponent():
    for experts, exponent in ((32, 0.55), (64, 1.0), (128, 0.3), (8, 1.5)):
        share = loc.zipf_top_share(experts, exponent)
        assert loc.zipf_for_top_share(experts, share) == pytest.approx(exponent, abs=1e-6)
        counts = 1e6 / np.arange(1, experts + 1) ** exponent
        assert loc.zipf_least_squares(counts) == pytest.approx(exponent, abs=1e-6)
    # the same top-quarter share needs a smaller exponent over a larger pool
    assert loc.zipf_for_top_share(128, 0.46) < loc.zipf_for_top_share(32, 0.46)
    for bad in (0.2, 1.0):
        with pytest.raises(ValueError, match="outside what a Zipf popularity gives"):
            loc.zipf_for_top_share(32, bad)


def test_the_generator_fit_recovers_its_own_reuse():
    """The fitted reuse of a generated trace is the reuse it was generated with (the generator's
    repeat rate exceeds its reuse, since fresh draws can land on a previous expert)."""
    repeat = loc.generated_repeat(32, 4, 0.55, 0.3, seed=7)
    assert repeat > 0.3
    assert loc.fit_generator_reuse(repeat, 32, 4, 0.55, seed=7) == pytest.approx(0.3, abs=0.02)
    with pytest.raises(ValueError, match="below what the popularity alone gives"):
        loc.fit_generator_reuse(0.05, 32, 4, 0.55)


def test_the_shipped_constants_are_consistent():
    """The constants measured by `perf --measure-locality` fit together: the Zipf exponent gives
    the measured top share over 32 experts, the generator with that exponent and the fitted
    reuse repeats the measured share of experts, and both are well above random routing."""
    assert loc.zipf_for_top_share(32, loc.MEASURED_TOP_SHARE) == pytest.approx(
        loc.MEASURED_ZIPF_32, abs=0.001)
    assert loc.generated_repeat(32, 4, loc.MEASURED_ZIPF_32, loc.GENERATOR_REUSE) \
        == pytest.approx(loc.MEASURED_REPEAT, abs=0.005)
    assert loc.MEASURED_REPEAT > 2 * 4 / 32 and loc.MEASURED_TOP_SHARE > 0.25 + 0.15


def test_the_default_locality_is_the_measured_one_scaled_per_model():
    d = Locality()
    assert d.top_share == loc.MEASURED_TOP_SHARE and d.reuse == loc.GENERATOR_REUSE
    assert d.zipf is None
    assert d.exponent(32) == pytest.approx(loc.MEASURED_ZIPF_32, abs=0.001)
    for name in ("qwen3-30b-a3b", "deepseek-v2-lite", "mixtral-8x7b"):
        experts = get_model(name).experts
        assert loc.zipf_top_share(experts, d.exponent(experts)) == pytest.approx(
            loc.MEASURED_TOP_SHARE, abs=1e-6)
    assert ASSUMED_LOCALITY.exponent(128) == 1.0 and ASSUMED_LOCALITY.reuse == 0.5
    assert Locality.parse("measured") == d and Locality.parse("assumed") == ASSUMED_LOCALITY
    assert Locality.parse("zipf=1.0,reuse=0.5") == ASSUMED_LOCALITY
    assert Locality.parse("top_share=0.6") == replace(d, top_share=0.6)


@pytest.mark.parametrize("text, message", [
    ("zipf=x", "zipf must be a number, not 'x'"),
    ("zipf=-1", r"zipf exponent must be in \[0, 16\]"),
    ("reuse=1.5", r"reuse must be a probability in \[0, 1\]"),
    ("top_share=0.1", r"top_share .* must be in \[0.25, 1\)"),
    ("zipf=1,top_share=0.5", "either a Zipf exponent"),
    ("skew=2", "expected 'measured', 'assumed' or"),
    ("reuse=0.2,reuse=0.3", "reuse given twice"),
    ("sticky", "expected 'measured', 'assumed' or"),
])
def test_bad_localities_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        Locality.parse(text)


def test_heldout_routing_is_the_models_own_teacher_forced_routing():
    """A recorded window's routing is the model's routing of that window's bytes (checked on a
    prefix run alone: the model is causal)."""
    from sw_model.model.corpus import heldout_text
    from sw_model.model.checkpoints import default_model
    model = default_model()[0]
    routes = loc.record_heldout_routing(model, window=32, limit=1, domains=("prose",))["prose"]
    assert routes.shape == (1, 32, len(model.config.moe_layers), model.config.top_k)
    data = heldout_text("prose")[:12].astype(np.int64)
    res = model.forward(model.new_cache(1, 12), [list(data)])
    for i, layer in enumerate(model.config.moe_layers):
        assert np.array_equal(np.sort(routes[0, :12, i], -1),
                              np.sort(res.routes[layer].experts, -1))
    with pytest.raises(ValueError, match="window must be an integer >= 2"):
        loc.record_heldout_routing(model, window=1)


@pytest.mark.slow
def test_measuring_the_heldout_text_reproduces_the_shipped_constants():
    """`perf --measure-locality` in full (about 5 minutes): every token of both held-out texts."""
    m = loc.measure_locality()
    assert m["tokens"]["both"] == 77184
    both = m["both"]
    assert round(both["top_share"], 3) == loc.MEASURED_TOP_SHARE
    assert round(both["repeat"], 3) == loc.MEASURED_REPEAT
    assert round(both["zipf"], 3) == loc.MEASURED_ZIPF_32
    assert both["generator_reuse"] == pytest.approx(loc.GENERATOR_REUSE, abs=0.001)
