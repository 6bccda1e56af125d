"""Quantisation and slicing: the number format of docs/number-format.md.

Weights are symmetric INT8 codes with one FP16 scale per group of ``group`` consecutive weights along
the reduction axis; activations are symmetric INT8 with one scale per token. A code ``q`` splits into
an upper slice ``h = q >> 4`` (arithmetic, in [-8, 7]) and a lower slice ``l = q & 0xF`` (in [0, 15])
with ``q = 16h + l``.
"""

from dataclasses import dataclass

import numpy as np

from hw.params import QUANT_GROUP

__all__ = ["QuantWeights", "QuantActivations", "quantize_weights", "quantize_activations",
           "slice_codes", "join_slices", "as_codes", "QMAX", "FP16_MAX"]

#: Largest code the quantiser emits; the hardware also accepts -128.
QMAX = 127
FP16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class QuantWeights:
    """``codes[k, n]`` (int8) for reduction index ``k`` and output channel ``n``;
    ``scales[g, n]`` (float16) for weight group ``g = k // group``."""
    codes: np.ndarray
    scales: np.ndarray
    group: int

    def dequantize(self):
        scales = np.repeat(self.scales.astype(np.float32), self.group, axis=0)
        return self.codes.astype(np.float32) * scales


@dataclass(frozen=True)
class QuantActivations:
    """``codes[t, k]`` (int8) for token ``t``; ``scales[t]`` (float32), one per token."""
    codes: np.ndarray
    scales: np.ndarray

    def dequantize(self):
        return self.codes.astype(np.float32) * self.scales[:, None]


def _check_finite(name, array):
    bad = ~np.isfinite(array)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or infinity); "
            f"the first is {array[where]} at index {where}")


def _as_float_matrix(name, array):
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold real numbers, not {array.dtype}")
    array = array.astype(np.float64)
    _check_finite(name, array)
    return array


def quantize_weights(weights, group=QUANT_GROUP):
    """Quantise ``weights[k, n]`` (reduction axis first) to INT8 codes and FP16 group scales.

    The scale of a group is ``max|w| / 127`` rounded to FP16; codes are ``round(w / scale)`` with the
    FP16 scale, clipped to [-127, 127]. An all-zero group gets scale 1 and zero codes.
    """
    weights = _as_float_matrix("weights", weights)
    if isinstance(group, bool) or not isinstance(group, int) or group <= 0:
        raise ValueError(f"group must be a positive integer, not {group!r}")
    k, n = weights.shape
    if k == 0 or n == 0:
        raise ValueError(f"weights must not be empty, got shape {weights.shape}")
    if k % group != 0:
        raise ValueError(
            f"the reduction dimension of weights ({k}) must be a multiple of group ({group})")
    grouped = weights.reshape(k // group, group, n)
    amax = np.abs(grouped).max(axis=1)
    if (amax / QMAX > FP16_MAX).any():
        raise ValueError(
            f"weights reach {amax.max():.4g}, beyond what an FP16 group scale can represent "
            f"({FP16_MAX * QMAX:.4g})")
    scales = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float16)
    # A group of tiny weights can underflow to a zero FP16 scale; its codes are then all zero.
    safe = np.where(scales > 0, scales.astype(np.float64), 1.0)
    codes = np.rint(grouped / safe[:, None, :])
    codes = np.where(scales[:, None, :] > 0, codes, 0)
    codes = np.clip(codes, -QMAX, QMAX).astype(np.int8).reshape(k, n)
    scales = np.where(scales > 0, scales, np.float16(1.0)).astype(np.float16)
    return QuantWeights(codes=codes, scales=scales, group=group)


def quantize_activations(x):
    """Quantise activations ``x[t, k]`` to INT8 with one dynamic scale per token."""
    x = _as_float_matrix("activations", x)
    amax = np.abs(x).max(axis=1)
    scales = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    codes = np.clip(np.rint(x / scales[:, None].astype(np.float64)), -QMAX, QMAX).astype(np.int8)
    return QuantActivations(codes=codes, scales=scales)


def as_codes(q, name="weight codes"):
    """``q`` as int64 codes, checked to be integers in [-128, 127]; errors name ``name``."""
    q = np.asarray(q)
    if not np.issubdtype(q.dtype, np.integer):
        raise TypeError(f"{name} must be integers, not {q.dtype}")
    q = q.astype(np.int64)
    if q.size and (q.min() < -128 or q.max() > 127):
        raise ValueError(f"{name} must lie in [-128, 127], found [{q.min()}, {q.max()}]")
    return q


def slice_codes(q):
    """Split INT8 codes into ``(h, l)``: ``h = q >> 4`` in [-8, 7], ``l = q & 0xF`` in [0, 15]."""
    q = as_codes(q)
    return q >> 4, q & 0xF


def join_slices(h, l):
    """Inverse of :func:`slice_codes`: ``16h + l``."""
    return 16 * np.asarray(h, dtype=np.int64) + np.asarray(l, dtype=np.int64)
