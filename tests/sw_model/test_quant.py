import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from sw_model.golden.quant import quantize_weights, quantize_activations, slice_codes, join_slices


def test_weight_quantiser_groups_and_scales(rng):
    w = rng.normal(size=(128, 6)).astype(np.float32)
    qw = quantize_weights(w)
    assert qw.codes.dtype == np.int8 and qw.scales.dtype == np.float16
    assert qw.codes.shape == (128, 6) and qw.scales.shape == (4, 6)
    assert qw.codes.min() >= -127 and qw.codes.max() <= 127
    # every group uses its full range: the largest magnitude maps to +-127
    assert (np.abs(qw.codes.reshape(4, 32, 6)).max(axis=1) == 127).all()
    err = np.abs(qw.dequantize() - w).reshape(4, 32, 6)
    assert (err <= 0.5 * qw.scales.astype(np.float32)[:, None, :] * 1.01).all()


def test_all_zero_group_quantises_to_zero():
    qw = quantize_weights(np.zeros((32, 2)))
    assert not qw.codes.any() and (qw.scales == 1).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_weight_quantiser_rejects_non_finite(bad):
    w = np.ones((64, 3))
    w[40, 2] = bad
    with pytest.raises(ValueError, match=r"weights contains 1 non-finite.*\(40, 2\)"):
        quantize_weights(w)


def test_activation_quantiser_rejects_non_finite():
    x = np.ones((2, 32))
    x[1, 5] = np.nan
    with pytest.raises(ValueError, match=r"activations contains 1 non-finite.*\(1, 5\)"):
        quantize_activations(x)


@pytest.mark.parametrize("shape, group, match", [
    ((48, 4), 32, r"reduction dimension of weights \(48\).*group \(32\)"),
    ((32,), 32, "2-D"),
    ((0, 4), 32, "empty"),
    ((32, 4), 0, "group"),
])
def test_weight_quantiser_rejects_bad_shapes(shape, group, match):
    with pytest.raises(ValueError, match=match):
        quantize_weights(np.ones(shape), group=group)


def test_weight_quantiser_rejects_fp16_overflow():
    with pytest.raises(ValueError, match="FP16"):
        quantize_weights(np.full((32, 1), 1e10))


def test_activation_quantiser_per_token(rng):
    x = rng.normal(size=(3, 64)) * np.array([[1.0], [10.0], [0.01]])
    qa = quantize_activations(x)
    assert (np.abs(qa.codes).max(axis=1) == 127).all()
    assert np.allclose(qa.dequantize(), x, atol=float(qa.scales.max()) * 0.51)


def test_slicing_covers_every_code():
    q = np.arange(-128, 128)
    h, l = slice_codes(q)
    assert h.min() == -8 and h.max() == 7 and l.min() == 0 and l.max() == 15
    assert (join_slices(h, l) == q).all()


def test_slicing_rejects_out_of_range_codes():
    with pytest.raises(ValueError, match=r"\[-128, 127\]"):
        slice_codes(np.array([0, 128]))


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float32, (64, 3), elements=st.floats(-1e4, 1e4, width=32)))
def test_quantiser_error_is_half_a_step_plus_clipping(w):
    qw = quantize_weights(w)
    err = np.abs(qw.dequantize() - w).reshape(2, 32, 3)
    step = qw.scales.astype(np.float32)[:, None, :]
    amax = np.abs(w.reshape(2, 32, 3)).max(axis=1, keepdims=True)
    # rounding costs half a step; an FP16 scale rounded down can push the largest weight past the
    # 127th step, and clipping costs exactly that overshoot
    clip = np.maximum(0, amax - 127 * step)
    assert (err <= 0.5 * step + clip + 1e-6 * step).all()
