"""The number format's algebra, and the slice-level model proved equal to the int64 reference."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from hw.params import MacArrayParams, MacMode
from sw_model.golden.mac_array import (SliceLevelMac, effective_weights, reference_group_sums,
                                       draft_weights)
from sw_model.golden.quant import quantize_weights, slice_codes

codes = st.integers(-128, 127)


def matrices(rows, cols):
    return hnp.arrays(np.int64, (rows, cols), elements=codes)


@settings(max_examples=200, deadline=None)
@given(matrices(3, 64), matrices(64, 5))
def test_full_is_msb_plus_lsb_exactly(x, q):
    full = reference_group_sums(x, q, MacMode.FULL, 32)
    msb = reference_group_sums(x, q, MacMode.MSB, 32)
    lsb = reference_group_sums(x, q, MacMode.LSB, 32)
    assert np.array_equal(full, msb + lsb)


@settings(max_examples=200, deadline=None)
@given(matrices(2, 32), matrices(32, 4))
def test_draft_is_sum_of_x_times_16h_plus_8(x, q):
    h, _ = slice_codes(q)
    draft = reference_group_sums(x, q, MacMode.DRAFT, 32)
    explicit = np.array([[[sum(int(x[t, k]) * (16 * int(h[k, n]) + 8) for k in range(32))
                           for n in range(4)]] for t in range(2)])
    assert np.array_equal(draft, explicit)


def test_effective_weights_of_every_code():
    q = np.arange(-128, 128)
    h, l = q >> 4, q & 15
    assert np.array_equal(effective_weights(q, "FULL"), q)
    assert np.array_equal(effective_weights(q, "DRAFT"), 16 * h + 8)
    assert np.array_equal(effective_weights(q, "DRAFT", augmented=False), 16 * h)
    assert np.array_equal(effective_weights(q, "MSB"), 16 * h)
    assert np.array_equal(effective_weights(q, "LSB"), l)
    # the draft lies in the middle of the truncated interval [16h, 16h + 15]
    assert (np.abs(effective_weights(q, "DRAFT") - q) <= 8).all()


mac_params = st.builds(
    MacArrayParams,
    tokens=st.integers(1, 3),
    group_size=st.sampled_from([4, 8, 32]),
    out_channels=st.integers(1, 3),
    lanes=st.sampled_from([1, 2, 4]),
    augmented=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(mac_params, st.sampled_from(list(MacMode)), st.data())
def test_slice_level_model_equals_reference(params, mode, data):
    c = params.channels(mode)
    x = data.draw(matrices(params.tokens * 2, params.group_size * 2))
    q = data.draw(matrices(params.group_size * 2, c * 2))
    model = SliceLevelMac(params)
    assert np.array_equal(model.group_sums(x, q, mode),
                          reference_group_sums(x, q, mode, params.group_size, params.augmented))


@pytest.mark.parametrize("mode", list(MacMode))
@pytest.mark.parametrize("value", [-128, 127, 0, -1])
def test_slice_level_model_at_the_extremes(mode, value):
    p = MacArrayParams()
    x = np.full((p.tokens, p.group_size), value)
    for wv in (-128, 127, 0, -1):
        q = np.full((p.group_size, p.channels(mode)), wv)
        sums = SliceLevelMac(p).operate(mode, x, q)
        ref = reference_group_sums(x, q, mode, p.group_size)[:, 0, :]
        assert np.array_equal(sums[:, :p.channels(mode)], ref)
        assert not sums[:, p.channels(mode):].any()


def test_worst_case_fills_the_result_register_exactly():
    """-128 x -128 over a group is the largest result: 2**19 for 32 weights, in 21 bits."""
    p = MacArrayParams()
    x = np.full((p.tokens, p.group_size), -128)
    q = np.full((p.group_size, p.out_channels), -128)
    sums = SliceLevelMac(p).operate(MacMode.FULL, x, q)
    assert sums.max() == 128 * 128 * 32 == (1 << (p.result_width - 2))


def test_pack_weights_layout():
    p = MacArrayParams(tokens=1, group_size=4, out_channels=1, lanes=4)
    model = SliceLevelMac(p)
    q = np.array([[-128, 127], [-1, 0], [0x35, -0x35], [8, -8]])
    assert list(model.pack_weights("FULL", q[:, :1]).ravel()) == [0x80, 0xFF, 0x35, 0x08]
    # DRAFT/MSB: hi nibble = h of channel 0, lo nibble = h of channel 1
    assert list(model.pack_weights("DRAFT", q).ravel()) == [0x87, 0xF0, 0x3C, 0x0F]
    # LSB: hi nibble = l of channel 0, lo nibble = l of channel 1
    assert list(model.pack_weights("LSB", q).ravel()) == [0x0F, 0xF0, 0x5B, 0x88]


def test_operate_rejects_wrong_shapes():
    model = SliceLevelMac(MacArrayParams())
    with pytest.raises(ValueError, match=r"DRAFT weights must have shape \(32, 8\)"):
        model.operate("DRAFT", np.zeros((2, 32), int), np.zeros((32, 4), int))
    with pytest.raises(ValueError, match="activations must have shape"):
        model.operate("FULL", np.zeros((3, 32), int), np.zeros((32, 4), int))
    with pytest.raises(TypeError, match="integers"):
        model.operate("FULL", np.zeros((2, 32)), np.zeros((32, 4), int))


def test_augmented_draft_error_is_centred_and_a_quarter_of_truncation(rng):
    """Measured on quantised Gaussian weights: per-weight error in code units, and the error of
    group dot products against FULL."""
    w = rng.normal(size=(4096, 64))
    q = quantize_weights(w).codes.astype(np.int64)
    err_aug = draft_weights(q, "augmented") - q
    err_trunc = draft_weights(q, "truncation") - q
    mean_aug, mean_trunc = err_aug.mean(), err_trunc.mean()
    mse_ratio = (err_aug ** 2).mean() / (err_trunc ** 2).mean()
    print(f"weight error: augmented mean {mean_aug:+.3f} codes, truncation {mean_trunc:+.3f}; "
          f"MSE ratio {mse_ratio:.3f}")
    # truncation is biased by about -7.5 codes; the augmented draft by about +0.5 at most
    assert mean_trunc < -7.0
    assert abs(mean_aug) < 0.6
    # uniform lower slices give 21.5 / 77.5 = 0.277: about a quarter
    assert 0.22 < mse_ratio < 0.33

    x = rng.integers(-127, 128, size=(16, 4096))
    full = reference_group_sums(x, q, "FULL", 32)
    d_aug = reference_group_sums(x, q, "DRAFT", 32) - full
    d_trunc = reference_group_sums(x, q, "DRAFT", 32, augmented=False) - full
    dot_ratio = (d_aug.astype(float) ** 2).mean() / (d_trunc.astype(float) ** 2).mean()
    print(f"dot-product MSE ratio {dot_ratio:.3f}")
    assert dot_ratio < 0.35


@pytest.mark.parametrize("mode", list(MacMode), ids=lambda m: m.name)
def test_operate_packed_many_equals_one_operation_at_a_time(mode, rng):
    """The vectorised slice-level model (the free-running benches' golden model) gives exactly
    :meth:`SliceLevelMac.operate_packed` per operation, extremes included, and checks widths."""
    from hw.params import MAC_DEFAULT
    model = SliceLevelMac(MAC_DEFAULT)
    p = MAC_DEFAULT
    x = rng.integers(-128, 128, size=(9, p.tokens, p.group_size))
    x[0], x[1] = -128, 127
    wbytes = rng.integers(0, 256, size=(9, p.group_size, p.out_channels))
    wbytes[0], wbytes[1] = 0x88, 0x77
    many = model.operate_packed_many(mode, x, wbytes)
    for i in range(9):
        assert np.array_equal(many[i], model.operate_packed(mode, x[i], wbytes[i]))
    with pytest.raises(ValueError, match="weight bytes"):
        model.operate_packed_many(mode, x, wbytes[:, :-1])
