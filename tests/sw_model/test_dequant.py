"""The dequantising arithmetic (sw_model.golden.dequant): its rule step by step, its error against
float64 on real layers, the MAC_DQ command on the golden executor (split = MSB + LSB as integers,
first/last, accumulators, NaN), and the checks that name bad input."""

import numpy as np
import pytest

from hw.isa import Command, ErrorCode, Opcode, StreamError, check_command
from hw.params import TOP_DEFAULT, MacMode
from sw_model.golden import dequant
from sw_model.golden.mac_array import SliceLevelMac, reference_group_sums
from sw_model.golden.quant import quantize_activations, quantize_weights
from sw_model.golden.top import Images, execute, pack_act_beat, pack_weight_beat

P = TOP_DEFAULT


def test_the_rule_is_one_binary32_rounding_per_operation():
    rng = np.random.default_rng(1)
    sums = rng.integers(-2 ** 20, 2 ** 20, (5, 3, 4))
    scales = rng.uniform(1e-4, 1e-1, (5, 4)).astype(np.float16)
    ts = rng.uniform(1e-3, 1, 3).astype(np.float32)
    got = dequant.dequantize(sums, scales, ts)
    for t in range(3):
        for n in range(4):
            acc = np.float32(0)
            for g in range(5):
                acc = np.float32(acc + np.float32(np.float32(sums[g, t, n]) * np.float32(
                    scales[g, n])))
            assert dequant.bits(np.float32(acc * ts[t])) == dequant.bits(got[t, n])
    # continuing an accumulator equals one pass over all groups
    half = dequant.accumulate(sums[2:], scales[2:], dequant.accumulate(sums[:2], scales[:2]))
    np.testing.assert_array_equal(dequant.finish(half, ts), got)


def test_nan_is_canonical_and_bad_input_is_named():
    x = np.array([np.nan, -np.nan, np.inf, 1.0], dtype=np.float32)
    assert list(dequant.bits(x)) == [0x7FC00000, 0x7FC00000, 0x7F800000, 0x3F800000]
    with pytest.raises(ValueError, match=r"scale\[2, 1\] = nan is not a finite FP16 value"):
        scales = np.ones((3, 2), np.float16)
        scales[2, 1] = np.nan
        dequant.check_scales(scales)
    with pytest.raises(ValueError, match="3 groups of sums but 2 groups of scales"):
        dequant.accumulate(np.zeros((3, 1, 2)), np.ones((2, 2), np.float16))
    with pytest.raises(ValueError, match="2\\*\\*24 or more is not exact"):
        dequant.accumulate(np.full((1, 1, 1), 1 << 24), np.ones((1, 1), np.float16))


def test_error_against_float64_is_that_of_binary32():
    """On a real layer of the shipped trained model the binary32 result is within a few units in
    the last place of the float64 computation of the same integer sums and scales."""
    from sw_model.model.checkpoints import default_model
    model = default_model()[0]
    layer = model.config.moe_layers[0]
    lin = model.layers[layer]["experts"][0].gate
    x = quantize_activations(np.random.default_rng(2).normal(size=(6, lin.k)))
    sums = lin.group_sums(x, MacMode.FULL)
    got = dequant.dequantize(sums, lin.quant.scales, x.scales).astype(np.float64)
    exact = (sums.astype(np.float64) * lin.quant.scales.astype(np.float64)[:, None, :]).sum(0)
    exact = exact * x.scales.astype(np.float64)[:, None]
    rel = np.abs(got - exact) / np.abs(exact).max()
    assert rel.max() < 2 ** -20 and rel.max() > 0


def _dq_image(rng, mac):
    """WMEM with one group's MSB, LSB and FULL weights, scale slots; AMEM activations and token
    scales; returns images and (codes, x, scales, token scales)."""
    q = rng.integers(-128, 128, (mac.group_size, mac.result_channels))
    x = rng.integers(-128, 128, (mac.tokens, mac.group_size))
    scales = rng.uniform(1e-4, 1e-1, mac.result_channels).astype(np.float16)
    ts = rng.uniform(1e-3, 1, mac.tokens).astype(np.float32)
    gold = SliceLevelMac(mac)
    images = Images.empty(P)
    B = mac.beats_per_group
    for mode, base in ((MacMode.MSB, 0), (MacMode.LSB, P.weight_words // 2), (MacMode.FULL, 8)):
        wb = gold.pack_weights(mode, q if mode is not MacMode.FULL else q[:, :mac.out_channels])
        for b in range(B):
            images.wmem[0][base + b] = pack_weight_beat(mac, wb[b * mac.lanes:(b + 1) * mac.lanes])
    for b in range(B):
        images.amem[0][b] = pack_act_beat(mac, x[:, b * mac.lanes:(b + 1) * mac.lanes])
    images.wmem[0][20] = int.from_bytes(scales.tobytes(), "little") << (16 * mac.result_channels)
    images.amem[0][9] = int.from_bytes(ts.tobytes(), "little")
    return images, q, x, scales, ts


def _read(result, omem):
    flat = sum(result.images.omem[0].get(omem + j, 0) << (j * P.result_bits)
               for j in range(P.dq_words))
    n = P.mac.tokens * P.mac.result_channels
    return np.frombuffer(flat.to_bytes(P.dq_words * P.result_bits // 8 + 8, "little")[:4 * n],
                         "<f4").reshape(P.mac.tokens, -1)


def test_mac_dq_on_the_golden_executor():
    rng = np.random.default_rng(3)
    mac = P.mac
    images, q, x, scales, ts = _dq_image(rng, mac)
    full = reference_group_sums(x, q, MacMode.FULL, mac.group_size)       # [tokens, 1, channels]
    want = dequant.dequantize(full.transpose(1, 0, 2), scales[None], ts)
    dq = dict(pe=0, count=1, scales=41, tscale=9)                          # slot 1 of word 20
    split = [Command(Opcode.MAC_DQ, mode=MacMode.FULL, split=1, first=1, last=1, omem=4, **dq),
             Command(Opcode.END)]
    r = execute(split, P, images)
    assert r.error is ErrorCode.NONE
    np.testing.assert_array_equal(dequant.bits(_read(r, 4)), dequant.bits(want))
    # FULL without split: the lower half of the channels, the upper half 0 * scale
    plain = [Command(Opcode.MAC_DQ, mode=MacMode.FULL, wmem=8, first=1, last=1, omem=4, **dq),
             Command(Opcode.END)]
    got = _read(execute(plain, P, images), 4)
    np.testing.assert_array_equal(got[:, :mac.out_channels], want[:, :mac.out_channels])
    assert not got[:, mac.out_channels:].any()
    # two accumulators, each continued; without last nothing is written
    two = [Command(Opcode.MAC_DQ, mode=MacMode.FULL, split=1, first=1, acc=1, omem=0, **dq),
           Command(Opcode.MAC_DQ, mode=MacMode.MSB, first=1, acc=2, omem=0, **dq),
           Command(Opcode.MAC_DQ, mode=MacMode.FULL, split=1, acc=1, last=1, omem=4, **dq),
           Command(Opcode.END)]
    assert not execute(two[:2] + [two[-1]], P, images).images.omem[0]
    r = execute(two, P, images)
    twice = dequant.dequantize(np.concatenate([full.transpose(1, 0, 2)] * 2),
                               np.stack([scales, scales]), ts)
    np.testing.assert_array_equal(dequant.bits(_read(r, 4)), dequant.bits(twice))
    # a NaN scale gives the canonical NaN in its channel only
    images.wmem[0][20] |= 0x7E01 << (16 * mac.result_channels + 16 * 3)
    got = dequant.bits(_read(execute(split, P, images), 4))
    assert (got[:, 3] == dequant.F32_NAN).all() and not (got[:, :3] == dequant.F32_NAN).any()


@pytest.mark.parametrize("command, field", [
    (Command(Opcode.MAC_DQ, mode=MacMode.DRAFT, split=1, count=1), "split"),
    (Command(Opcode.MAC_DQ, acc=3, count=1), "acc"),
    (Command(Opcode.MAC_DQ, omem=P.output_words - 1, count=1), "omem"),
    (Command(Opcode.MAC_DQ, split=1, wmem=P.weight_words // 2, count=1), "wmem"),
    (Command(Opcode.MAC_DQ, scales=P.weight_words * P.scale_slots - 1, count=2), "scales"),
    (Command(Opcode.MAC_DQ, tscale=P.act_words, count=1), "tscale"),
])
def test_illegal_mac_dq_names_its_field(command, field):
    import dataclasses
    params = dataclasses.replace(P, accumulators=3)
    with pytest.raises(StreamError) as err:
        check_command(command, 0, params)
    assert err.value.field == field
    # and the executor stops before any memory changes
    result = execute([command, Command(Opcode.END)], params)
    assert result.error is err.value.code and result.error_index == 0
