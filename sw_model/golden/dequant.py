"""The dequantising accumulation: integer group sums to one binary32 value per token and channel.

This is the arithmetic of the PE's dequantising unit (:mod:`hw.fp32`, the ``MAC_DQ`` command of
:mod:`hw.isa`) and of every quantised linear layer of the golden model
(:class:`sw_model.model.moe.QLinear`); docs/number-format.md states it. For token ``t`` and
output channel ``n`` of a layer with weight groups ``g = 0, 1, ..., G-1``::

    acc = +0.0                                              (or the value carried in)
    acc = f32(acc + f32(f32(S[g, t, n]) * f32(scale[g, n])))    for g = 0, 1, ... in order
    y   = f32(acc * token_scale[t])

``S`` is the integer group sum (exact in binary32: below 2**24), ``scale`` the FP16 group scale
(exact in binary32), ``token_scale`` the activation's binary32 scale, ``f32`` one IEEE 754
binary32 rounding to nearest, ties to even, with subnormals. Every operation is separate (no fused
multiply-add). NaN results are the canonical quiet NaN ``0x7FC00000``.

NumPy's float32 arithmetic is exactly this on every platform the project supports (IEEE
operations, no flush to zero); :func:`bits` and :func:`from_bits` convert to and from the 32-bit
encodings the hardware stores.
"""

import numpy as np

__all__ = ["F32_NAN", "accumulate", "finish", "dequantize", "bits", "from_bits",
           "f16_bits", "check_scales", "float64_reference", "ErrorStats"]

#: The canonical NaN of the unit (a NaN result's only encoding).
F32_NAN = 0x7FC00000


def bits(values):
    """uint32 encodings of float32 ``values``, NaNs as :data:`F32_NAN`."""
    values = np.asarray(values, dtype=np.float32)
    out = values.view(np.uint32).copy()
    out[np.isnan(values)] = F32_NAN
    return out


def from_bits(words):
    """float32 values of uint32 encodings."""
    return np.asarray(words, dtype=np.uint32).view(np.float32)


def f16_bits(values):
    """uint16 encodings of float16 ``values``."""
    return np.asarray(values, dtype=np.float16).view(np.uint16)


def accumulate(sums, scales, acc=None):
    """``acc`` (float32 ``[..., N]``, default +0.0) after adding every group of ``sums``
    (integers ``[G, ..., N]``) times its FP16 ``scales`` (``[G, N]``), group 0 first."""
    sums = np.asarray(sums)
    scales = np.asarray(scales, dtype=np.float16).astype(np.float32)
    if sums.shape[0] != scales.shape[0]:
        raise ValueError(f"{sums.shape[0]} groups of sums but {scales.shape[0]} groups of scales")
    if sums.size and np.abs(sums).max() >= 1 << 24:
        raise ValueError("a group sum of 2**24 or more is not exact in binary32")
    shape = sums.shape[1:]
    acc = (np.zeros(shape, dtype=np.float32) if acc is None
           else np.array(np.broadcast_to(np.asarray(acc, dtype=np.float32), shape)))
    with np.errstate(all="ignore"):
        for g in range(sums.shape[0]):
            product = sums[g].astype(np.float32) * scales[g]
            acc = acc + product
    return acc


def finish(acc, token_scales):
    """``f32(acc * token_scale)`` per token (the rows of ``acc``; ``token_scales`` float32)."""
    token_scales = np.asarray(token_scales, dtype=np.float32)
    with np.errstate(all="ignore"):
        return np.asarray(acc, dtype=np.float32) * token_scales[:, None]


def dequantize(sums, scales, token_scales):
    """The whole rule: ``sums [G, T, N]``, ``scales [G, N]`` (FP16), ``token_scales [T]``
    (binary32) to float32 ``[T, N]``."""
    return finish(accumulate(sums, scales), token_scales)


def check_scales(scales, what="scale"):
    """ValueError naming the first group scale the format cannot hold: a NaN or an infinity
    (every finite FP16 value, subnormals included, is exact in binary32)."""
    scales = np.asarray(scales, dtype=np.float16)
    bad = ~np.isfinite(scales)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what}{list(index)} = {scales[index]} is not a finite FP16 value")


def float64_reference(sums, scales, token_scales):
    """The same rule in IEEE binary64 (groups in the same order): what the result would be without
    binary32 rounding, ``[T, N]`` float64."""
    scales = np.asarray(scales, dtype=np.float16).astype(np.float64)
    acc = np.zeros(np.shape(sums)[1:], dtype=np.float64)
    for g in range(np.shape(sums)[0]):
        acc = acc + np.asarray(sums[g], dtype=np.float64) * scales[g]
    return acc * np.asarray(token_scales, dtype=np.float32).astype(np.float64)[:, None]


class ErrorStats:
    """The binary32 rule's error against :func:`float64_reference`, gathered over many layer
    calls: the largest error relative to the call's largest output, and over outputs of at least
    2**-10 of that largest output, the largest and the median elementwise relative error."""

    def __init__(self):
        self.calls = self.values = 0
        self.max_scaled = 0.0
        self._relative = []

    def add(self, sums, scales, token_scales):
        got = dequantize(sums, scales, token_scales).astype(np.float64)
        ref = float64_reference(sums, scales, token_scales)
        peak = np.abs(ref).max()
        self.calls += 1
        self.values += ref.size
        if peak == 0:
            return
        err = np.abs(got - ref)
        self.max_scaled = max(self.max_scaled, float(err.max() / peak))
        big = np.abs(ref) >= peak * 2.0 ** -10
        self._relative.append(err[big] / np.abs(ref[big]))

    def summary(self):
        rel = np.concatenate(self._relative) if self._relative else np.zeros(1)
        return {"calls": self.calls, "values": self.values,
                "max_error_of_peak": self.max_scaled, "max_relative": float(rel.max()),
                "median_relative": float(np.median(rel))}
