"""The golden executor: split verification equals the full-precision reference, every command does
what the ISA says, an illegal command leaves every memory and the cache as before it."""

import dataclasses

import numpy as np
import pytest

from hw.isa import Command, ErrorCode, Opcode, assemble
from hw.params import CacheOp, MacMode, TOP_DEFAULT, TopParams
from sim.top.cases import (SPLIT, error_cases, random_codes, split_verification_job, store_weights)
from sw_model.golden.mac_array import SliceLevelMac, reference_group_sums
from sw_model.golden.top import (Images, execute, pack_act_beat, pack_result, pack_weight_beat,
                                 unpack_result)

P = TOP_DEFAULT
MAC = P.mac
ERROR_CASES = error_cases(P)


def test_split_verification_equals_full_precision(rng):
    stream, images, q, x = split_verification_job(rng, P)
    before = images.copy()
    result = execute(stream, P, images)
    assert result.error is ErrorCode.NONE and result.progress == len(stream) - 1
    assert images == before, "the input images must not change"
    out = result.outputs(1)
    full = reference_group_sums(x, q, MacMode.FULL, MAC.group_size)[:, 0, :]
    np.testing.assert_array_equal(out[2], full)
    np.testing.assert_array_equal(out[0], reference_group_sums(x, q, MacMode.MSB, 32)[:, 0, :])
    np.testing.assert_array_equal(out[3], reference_group_sums(x, q, MacMode.DRAFT, 32)[:, 0, :])
    assert result.slot_table() == {result.cache.resident()[(1, 5)]: (1, 5, False)}


def test_mac_count_and_reuse_tile_the_memories(rng):
    """count operations walk the weights by a group each; without reuse the activations too."""
    images = Images.empty(P)
    qs = [random_codes(rng, MAC) for _ in range(3)]
    xs = [rng.integers(-128, 128, (MAC.tokens, MAC.group_size)) for _ in range(3)]
    B = MAC.beats_per_group
    for i, (q, x) in enumerate(zip(qs, xs)):
        store_weights(images.wmem[0], i * B, MacMode.FULL, q[:, :MAC.out_channels], MAC)
        for b, beat in enumerate(SliceLevelMac(MAC).act_beats(x)):
            images.amem[0][i * B + b] = pack_act_beat(MAC, beat)
    stream = [Command(Opcode.MAC, pe=0, mode=MacMode.FULL, count=3, omem=10),
              Command(Opcode.MAC, pe=0, mode=MacMode.FULL, reuse=1, count=3, omem=20),
              Command(Opcode.END)]
    out = execute(stream, P, images).outputs(0)
    n = MAC.out_channels
    for i in range(3):
        ref = reference_group_sums(xs[i], qs[i][:, :n], MacMode.FULL, 32)[:, 0, :]
        np.testing.assert_array_equal(out[10 + i][:, :n], ref)
        np.testing.assert_array_equal(out[10 + i][:, n:], 0)
        ref = reference_group_sums(xs[0], qs[i][:, :n], MacMode.FULL, 32)[:, 0, :]
        np.testing.assert_array_equal(out[20 + i][:, :n], ref)


def test_combine_runs_in_order_and_wraps():
    """Overlapping ranges see earlier results (a running sum); sums wrap at result_width."""
    images = Images.empty(P)
    top = (1 << (MAC.result_width - 1)) - 1
    ones = np.ones((MAC.tokens, MAC.result_channels), dtype=np.int64)
    images.omem[0] = {0: pack_result(MAC, ones), 1: pack_result(MAC, ones),
                      2: pack_result(MAC, ones), 8: pack_result(MAC, ones * top)}
    stream = [Command(Opcode.COMBINE, pe=0, a=0, b=1, dst=1, count=2),
              Command(Opcode.COMBINE, pe=0, a=8, b=0, dst=9, count=1), Command(Opcode.END)]
    out = execute(stream, P, images).outputs(0)
    assert out[1][0, 0] == 2 and out[2][0, 0] == 3          # 1+1, then (1+1)+1
    assert out[9][0, 0] == -(1 << (MAC.result_width - 1))   # top + 1 wraps


def test_wide_weight_words_span_several_memory_words(rng):
    """With a weight beat of two HB words, loads take the low word first and WRITE_SLOT splits."""
    mac = dataclasses.replace(MAC, out_channels=8)           # 512-bit weight beats
    p = TopParams(mac=mac)
    assert p.hb_ratio == 2 and p.lpddr_ratio == 2
    images = Images.empty(p)
    images.lpddr = {10: 0x11, 11: 0x22}
    images.wmem[0] = {5: (0xBB << 256) | 0xAA}
    stream = [Command(Opcode.LOAD_LPDDR, pe=0, count=1, lpddr=10, wmem=0),
              Command(Opcode.CACHE, cop=CacheOp.INSTALL, layer=0, expert=0),
              Command(Opcode.WRITE_SLOT, pe=0, wmem=5, count=1, offset=2),
              Command(Opcode.LOAD_SLOT, pe=0, wmem=1, count=1, offset=2), Command(Opcode.END)]
    r = execute(stream, p, images)
    slot = r.cache.resident()[(0, 0)]
    assert r.images.wmem[0][0] == (0x22 << 256) | 0x11
    assert r.images.hb[0][slot * p.slot_words + 2] == 0xAA
    assert r.images.hb[0][slot * p.slot_words + 3] == 0xBB
    assert r.images.wmem[0][1] == images.wmem[0][5]


@pytest.mark.parametrize("name, stream, code, index, field", ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_illegal_command_leaves_everything_as_before(rng, name, stream, code, index, field):
    _, images, _, _ = split_verification_job(rng, P)
    prefix = assemble(SPLIT)[:-1]           # real work first, so there is state to keep
    full = prefix + list(stream)
    result = execute(full, P, images)
    assert (result.error, result.error_index, result.progress) == (
        code, len(prefix) + index, len(prefix) + index)
    assert code.name in result.message
    reference = execute(full[:len(prefix) + index] + [Command(Opcode.END)], P, images)
    assert result.images == reference.images
    assert result.cache.snapshot() == reference.cache.snapshot()


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="TopParams"):
        execute([], "big")
    images = Images.empty(P)
    images.wmem[0][P.weight_words] = 1
    with pytest.raises(ValueError, match=r"images.wmem\[0\]: address 64"):
        execute([Command(Opcode.END)], P, images)
    images = Images.empty(P)
    images.lpddr[0] = 1 << P.lpddr.data_width
    with pytest.raises(ValueError, match=r"images.lpddr\[0\].*256-bit"):
        execute([Command(Opcode.END)], P, images)


def test_word_formats_are_the_hardware_layouts(rng):
    """The executor's words are exactly the MAC array's ``lib.data`` layouts, bit for bit."""
    from hw.mac_array import act_layout, result_layout, weight_layout
    from sw_model.golden.top import unpack_act_beat, unpack_weight_beat
    wbytes = rng.integers(0, 256, (MAC.lanes, MAC.out_channels))
    const = weight_layout(MAC).const([[{"lo": int(b) & 0xF, "hi": int(b) >> 4} for b in row]
                                      for row in wbytes])
    assert pack_weight_beat(MAC, wbytes) == const.as_value().value
    np.testing.assert_array_equal(unpack_weight_beat(MAC, const.as_value().value), wbytes)
    x = rng.integers(-128, 128, (MAC.tokens, MAC.lanes))
    const = act_layout(MAC).const([[int(v) for v in row] for row in x])
    assert pack_act_beat(MAC, x) == const.as_value().value
    np.testing.assert_array_equal(unpack_act_beat(MAC, const.as_value().value), x)
    lo, hi = -(1 << (MAC.result_width - 1)), (1 << (MAC.result_width - 1))
    sums = rng.integers(lo, hi, (MAC.tokens, MAC.result_channels))
    sums_layout = result_layout(MAC).members["sums"]
    const = sums_layout.const([[int(v) for v in row] for row in sums])
    assert pack_result(MAC, sums) == const.as_value().value
    np.testing.assert_array_equal(unpack_result(MAC, const.as_value().value), sums)
