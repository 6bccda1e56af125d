"""Bit-nested expert arithmetic at two levels.

* The algorithmic reference: ``effective_weights`` and ``reference_group_sums`` compute the group
  partial sums of ``x * w_eff`` with int64 matrix products, where ``w_eff`` is what each MAC mode
  means (docs/number-format.md). Naive on purpose.
* The architectural model: :class:`SliceLevelMac` does what the MAC array does, beat by beat: it
  packs weights into slice-lane bytes, widens each nibble to a 5-bit field with the augmentation
  bit, forms lane products, sums ``lanes`` of them per beat, accumulates a group in accumulators of
  the declared widths, and combines the two slice sums per mode. Every intermediate is checked
  against the width :class:`hw.params.MacArrayParams` derives, so an undersized register shows up
  here first.

pytest proves the two equal; the RTL is compared with the second.
"""

import numpy as np

from hw.params import MacMode, MacArrayParams
from sw_model.golden.quant import as_codes

__all__ = ["parse_mode", "effective_weights", "draft_weights", "parse_draft_method",
           "reference_group_sums", "SliceLevelMac", "DRAFT_METHODS", "DRAFT_WIDTHS"]

#: Ways of making a 4-bit draft weight from an INT8 code (the draft-bit ablation).
DRAFT_METHODS = ("augmented", "truncation", "rounding")


def parse_mode(mode):
    """A :class:`MacMode` from a member, its value or its name; anything else is a ``ValueError``."""
    if isinstance(mode, MacMode):
        return mode
    if isinstance(mode, str):
        try:
            return MacMode[mode.upper()]
        except KeyError:
            pass
    elif isinstance(mode, (int, np.integer)) and not isinstance(mode, bool):
        try:
            return MacMode(int(mode))
        except ValueError:
            pass
    names = ", ".join(m.name for m in MacMode)
    raise ValueError(f"mode must be one of {names}, not {mode!r}")


#: Widths a draft weight may have (4: the hardware's draft; fewer: the ablation of narrower drafts).
DRAFT_WIDTHS = (1, 2, 3, 4, 5, 6, 7)


def parse_draft_method(spec):
    """``(method, bits)`` of a draft-method spec: a name of :data:`DRAFT_METHODS` (4 bits, what the
    hardware drafts with) or ``"<name>:<bits>"`` (e.g. ``"rounding:3"``); else a ``ValueError``."""
    if isinstance(spec, str):
        name, sep, bits = spec.partition(":")
        if name in DRAFT_METHODS:
            if not sep:
                return name, 4
            if bits.isdigit() and int(bits) in DRAFT_WIDTHS:
                return name, int(bits)
    raise ValueError(f"draft method must be one of {', '.join(DRAFT_METHODS)}, optionally with "
                     f"':<bits>' for bits in {DRAFT_WIDTHS[0]}..{DRAFT_WIDTHS[-1]} (e.g. "
                     f"'augmented:3'), not {spec!r}")


def draft_weights(q, method="augmented", bits=None):
    """The draft's weight value (in code units) for each INT8 code ``q``.

    With ``b`` draft bits (default 4, or the ``:<bits>`` of a spec such as ``"augmented:3"``), step
    ``s = 2**(8-b)`` and upper slice ``h = q >> (8-b)``: ``augmented``: ``s*h + s/2``, the midpoint
    of the truncated interval (what ELMoE-3D uses at b = 4: ``16h + 8``); ``truncation``: ``s*h``;
    ``rounding``: ``s * clip(round(q / s), -2**(b-1), 2**(b-1) - 1)``, a separately rounded b-bit
    copy (not nested: it needs its own storage).
    """
    method, spec_bits = parse_draft_method(method)
    bits = spec_bits if bits is None else bits
    if bits not in DRAFT_WIDTHS:
        raise ValueError(f"draft bits must be one of {DRAFT_WIDTHS}, not {bits!r}")
    q = as_codes(q)
    shift = 8 - bits
    step = 1 << shift
    if method == "augmented":
        return step * (q >> shift) + step // 2
    if method == "truncation":
        return step * (q >> shift)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return step * np.clip(np.floor(q / step + 0.5), lo, hi).astype(np.int64)


def effective_weights(q, mode, augmented=True):
    """``w_eff`` of each code in ``mode``: q, 16h+8 (16h without augmentation), 16h, or l."""
    mode = parse_mode(mode)
    q = as_codes(q)
    if mode is MacMode.FULL:
        return q
    if mode is MacMode.DRAFT:
        return draft_weights(q, "augmented" if augmented else "truncation")
    if mode is MacMode.MSB:
        return 16 * (q >> 4)
    return q & 0xF


def reference_group_sums(x, q, mode, group, augmented=True):
    """Group partial sums ``out[t, g, n] = sum_{k in group g} x[t, k] * w_eff[k, n]`` in int64.

    ``x[t, k]`` are activation codes, ``q[k, n]`` weight codes with the reduction axis first.
    """
    x = as_codes(x, "activation codes")
    w = effective_weights(q, mode, augmented)
    if x.ndim != 2 or w.ndim != 2:
        raise ValueError(f"x and q must be 2-D, got shapes {x.shape} and {w.shape}")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"x has {x.shape[1]} reduction positions but q has {w.shape[0]}")
    k = w.shape[0]
    if isinstance(group, bool) or not isinstance(group, int) or group <= 0 or k % group:
        raise ValueError(f"group ({group!r}) must be a positive divisor of the reduction size {k}")
    xg = x.reshape(x.shape[0], k // group, group)
    wg = w.reshape(k // group, group, w.shape[1])
    return np.einsum("tgk,gkn->tgn", xg, wg)


def _check_width(name, values, width):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if values.size and (values.min() < lo or values.max() > hi):
        raise OverflowError(
            f"{name} reached [{values.min()}, {values.max()}], outside its {width}-bit register")
    return values


class SliceLevelMac:
    """The MAC array as the hardware computes it, one operation (one weight group) at a time.

    Operation inputs: activations ``x[t, k]`` for ``tokens`` tokens and the ``group_size`` positions
    of one group; weight codes ``q[k, c]`` for ``params.channels(mode)`` channels. Output:
    ``sums[t, s]`` over ``result_channels`` slots. Slot ``s`` is channel ``s`` for the 4-bit modes;
    FULL fills slots ``0 .. out_channels-1`` and leaves the rest zero.
    """

    def __init__(self, params):
        if not isinstance(params, MacArrayParams):
            raise TypeError(f"params must be a MacArrayParams, not {params!r}")
        self.params = params

    # -- the weight format on the wire ----------------------------------------------------------
    def pack_weights(self, mode, q):
        """Bytes ``b[k, n]`` the weight stream carries for one operation: ``(hi << 4) | lo``.

        FULL: the code itself (hi = h, lo = l). DRAFT and MSB: hi = h of channel n, lo = h of channel
        n + out_channels. LSB: hi = l of channel n, lo = l of channel n + out_channels.
        """
        p, mode = self.params, parse_mode(mode)
        q = as_codes(q)
        expected = (p.group_size, p.channels(mode))
        if q.shape != expected:
            raise ValueError(f"{mode.name} weights must have shape {expected}, got {q.shape}")
        n = p.out_channels
        if mode is MacMode.FULL:
            return (q & 0xFF).astype(np.uint8)
        nibble = (q >> 4) & 0xF if mode in (MacMode.DRAFT, MacMode.MSB) else q & 0xF
        return ((nibble[:, :n] << 4) | nibble[:, n:]).astype(np.uint8)

    def weight_beats(self, wbytes):
        """Split packed bytes ``[group_size, out_channels]`` into ``beats_per_group`` beats of
        ``[lanes, out_channels]``."""
        p = self.params
        return [wbytes[b * p.lanes:(b + 1) * p.lanes] for b in range(p.beats_per_group)]

    def act_beats(self, x):
        """Split activations ``[tokens, group_size]`` into beats of ``[tokens, lanes]``."""
        p = self.params
        return [x[:, b * p.lanes:(b + 1) * p.lanes] for b in range(p.beats_per_group)]

    # -- the datapath ----------------------------------------------------------------------------
    def lane_fields(self, mode, wbytes):
        """The signed 5-bit fields ``(H5, L5)`` the upper and lower lanes multiply by."""
        p, mode = self.params, parse_mode(mode)
        wbytes = np.asarray(wbytes, dtype=np.int64)
        hi, lo = (wbytes >> 4) & 0xF, wbytes & 0xF
        signed = lambda nib: np.where(nib >= 8, nib - 16, nib)
        aug = int(p.augmented and mode is MacMode.DRAFT)
        if mode is MacMode.LSB:
            upper = hi                               # {0, hi}: an unsigned l
        else:
            upper = 2 * signed(hi) + aug             # {hi, a}
        if mode in (MacMode.DRAFT, MacMode.MSB):
            lower = 2 * signed(lo) + aug             # {lo, a}: a second weight's h
        else:
            lower = lo                               # {0, lo}: an unsigned l
        for name, field in (("upper field", upper), ("lower field", lower)):
            _check_width(name, field, 5)
        return upper, lower

    def operate(self, mode, x, q):
        """Group sums ``[tokens, result_channels]`` of one operation, as the array computes them."""
        p, mode = self.params, parse_mode(mode)
        x = as_codes(x, "activation codes")
        if x.shape != (p.tokens, p.group_size):
            raise ValueError(f"activations must have shape {(p.tokens, p.group_size)}, got {x.shape}")
        return self.operate_packed(mode, x, self.pack_weights(mode, q))

    def operate_packed(self, mode, x, wbytes):
        """Group sums of one operation from the weight bytes as the array receives them
        (``[group_size, out_channels]``, :meth:`pack_weights`'s format; any byte is legal)."""
        p, mode = self.params, parse_mode(mode)
        x = as_codes(x, "activation codes")
        if x.shape != (p.tokens, p.group_size):
            raise ValueError(f"activations must have shape {(p.tokens, p.group_size)}, got {x.shape}")
        wbytes = np.asarray(wbytes, dtype=np.int64)
        if wbytes.shape != (p.group_size, p.out_channels) or wbytes.min() < 0 or wbytes.max() > 255:
            raise ValueError(f"weight bytes must be [{p.group_size}, {p.out_channels}] in [0, 255]")
        acc_h = np.zeros((p.tokens, p.out_channels), dtype=np.int64)
        acc_l = np.zeros_like(acc_h)
        for xb, wb in zip(self.act_beats(x), self.weight_beats(wbytes)):
            upper, lower = self.lane_fields(mode, wb)          # [lanes, out_channels]
            prod_h = xb[:, :, None] * upper[None, :, :]         # [tokens, lanes, out_channels]
            prod_l = xb[:, :, None] * lower[None, :, :]
            lo, hi = p.lane_product_range
            for name, prod in (("upper lane product", prod_h), ("lower lane product", prod_l)):
                if prod.min() < lo or prod.max() > hi:
                    raise OverflowError(f"{name} left its range [{lo}, {hi}]")
            acc_h = _check_width("upper slice accumulator",
                                 acc_h + _check_width("upper beat sum", prod_h.sum(axis=1),
                                                      p.slice_sum_width), p.slice_acc_width)
            acc_l = _check_width("lower slice accumulator",
                                 acc_l + _check_width("lower beat sum", prod_l.sum(axis=1),
                                                      p.slice_sum_width), p.slice_acc_width)
        out = np.zeros((p.tokens, p.result_channels), dtype=np.int64)
        n = p.out_channels
        if mode is MacMode.FULL:
            out[:, :n] = 8 * acc_h + acc_l
        elif mode is MacMode.LSB:
            out[:, :n], out[:, n:] = acc_h, acc_l
        else:
            out[:, :n], out[:, n:] = 8 * acc_h, 8 * acc_l
        return _check_width("result", out, p.result_width)

    def operate_packed_many(self, mode, x, wbytes):
        """:meth:`operate_packed` of ``N`` operations at once (``x`` ``[N, tokens, group_size]``,
        ``wbytes`` ``[N, group_size, out_channels]``), vectorised over the operations with the
        same arithmetic and the same width checks (every beat sum and every partial
        accumulation); returns ``[N, tokens, result_channels]``."""
        p, mode = self.params, parse_mode(mode)
        x = np.asarray(x, dtype=np.int64)
        wbytes = np.asarray(wbytes, dtype=np.int64)
        n_ops = x.shape[0]
        if x.shape[1:] != (p.tokens, p.group_size) or x.min(initial=0) < -128 \
                or x.max(initial=0) > 127:
            raise ValueError(f"activations must be [N, {p.tokens}, {p.group_size}] INT8 codes")
        if wbytes.shape != (n_ops, p.group_size, p.out_channels) or wbytes.min(initial=0) < 0 \
                or wbytes.max(initial=0) > 255:
            raise ValueError(f"weight bytes must be [{n_ops}, {p.group_size}, {p.out_channels}] "
                             f"in [0, 255]")
        beats, lanes, n = p.beats_per_group, p.lanes, p.out_channels
        upper, lower = self.lane_fields(mode, wbytes)
        xb = x.reshape(n_ops, p.tokens, beats, lanes)[..., None]
        lo, hi = p.lane_product_range
        accs = []
        for name, field in (("upper", upper), ("lower", lower)):
            prod = xb * field.reshape(n_ops, 1, beats, lanes, n)
            if prod.min(initial=0) < lo or prod.max(initial=0) > hi:
                raise OverflowError(f"{name} lane product left its range [{lo}, {hi}]")
            beat_sums = _check_width(f"{name} beat sum", prod.sum(axis=3), p.slice_sum_width)
            partial = _check_width(f"{name} slice accumulator", np.cumsum(beat_sums, axis=2),
                                   p.slice_acc_width)
            accs.append(partial[:, :, -1, :])
        acc_h, acc_l = accs
        out = np.zeros((n_ops, p.tokens, p.result_channels), dtype=np.int64)
        if mode is MacMode.FULL:
            out[..., :n] = 8 * acc_h + acc_l
        elif mode is MacMode.LSB:
            out[..., :n], out[..., n:] = acc_h, acc_l
        else:
            out[..., :n], out[..., n:] = 8 * acc_h, 8 * acc_l
        return _check_width("result", out, p.result_width)

    def channel_sums(self, mode, sums):
        """The meaningful slots of an operation's result: ``[tokens, channels(mode)]``."""
        mode = parse_mode(mode)
        return np.asarray(sums)[:, :self.params.channels(mode)]

    def group_sums(self, x, q, mode):
        """Group partial sums of a whole matrix product, tiled into operations as the array runs them.

        ``x[t, k]`` with ``t`` a multiple of ``tokens`` and ``k`` of ``group_size``; ``q[k, n]`` with
        ``n`` a multiple of ``channels(mode)``. Returns ``[t, k // group_size, n]``, comparable with
        :func:`reference_group_sums`.
        """
        p, mode = self.params, parse_mode(mode)
        x, q = as_codes(x, "activation codes"), as_codes(q)
        (t, k), (k2, n) = x.shape, q.shape
        c = p.channels(mode)
        if k != k2:
            raise ValueError(f"x has {k} reduction positions but q has {k2}")
        for name, size, tile in (("tokens", t, p.tokens), ("reduction size", k, p.group_size),
                                 ("output channels", n, c)):
            if size == 0 or size % tile:
                raise ValueError(f"{name} ({size}) must be a positive multiple of {tile}")
        out = np.zeros((t, k // p.group_size, n), dtype=np.int64)
        for t0 in range(0, t, p.tokens):
            for g in range(k // p.group_size):
                ks = slice(g * p.group_size, (g + 1) * p.group_size)
                for n0 in range(0, n, c):
                    sums = self.operate(mode, x[t0:t0 + p.tokens, ks], q[ks, n0:n0 + c])
                    out[t0:t0 + p.tokens, g, n0:n0 + c] = self.channel_sums(mode, sums)
        return out
