"""IEEE 754 binary32 arithmetic as combinational logic: the dequantising unit's multiply and add.

Each function adds logic to a module and returns the result signal; all of them are exact to the
standard: round to nearest, ties to even, subnormal inputs and outputs, signed zeros, infinities.
A NaN result is always the canonical quiet NaN :data:`F32_NAN` (``0x7FC00000``), whatever the NaN
inputs carried, so the golden model can predict every bit
(:mod:`sw_model.golden.dequant`). Flags (inexact, overflow, ...) are not produced.

* :func:`f16_to_f32`: an IEEE binary16 value, exactly (subnormals become normal binary32);
* :func:`int_to_f32`: a signed integer of at most 24 bits, exactly;
* :func:`f32_mul`, :func:`f32_add`: one correctly rounded operation each;
* :func:`int_f16_mul`: ``f32(f32(S) * f32(h))`` of a signed integer of at most 24 bits and a
  binary16 encoding, by a narrow integer product (the dequantising unit's scaling).
"""

from amaranth import *

__all__ = ["F32_NAN", "f16_to_f32", "int_to_f32", "int_f16_mul", "f32_mul", "f32_add",
           "leading_zeros", "normalize"]

#: The one NaN the unit produces.
F32_NAN = 0x7FC00000


def normalize(m, value, width, name):
    """``(lz, shifted)``: the leading zeros of the ``width``-bit ``value`` (``width`` when it is
    zero) and ``value << lz``, by stages that shift by 32, 16, ..., 1 when that many top bits are
    zero."""
    lz = Signal(range(width + 1), name=f"{name}_lz")
    stage = value[:width]
    count = []
    step = 1 << (width - 1).bit_length()
    while step >= 1:
        if step < width:
            zero = Signal(name=f"{name}_z{step}")
            m.d.comb += zero.eq(stage[width - step:] == 0)
            nxt = Signal(width, name=f"{name}_s{step}")
            m.d.comb += nxt.eq(Mux(zero, stage << step, stage))
            stage = nxt
            count.append((zero, step))
        step //= 2
    # the flags of the shifts by 1, 2, 4, ... are the bits of the count; all zero: the stages
    # stop one short of the width
    total = Cat(*(z for z, _ in reversed(count)))
    m.d.comb += lz.eq(Mux(value[:width] == 0, width, total))
    return lz, stage


def leading_zeros(m, value, width, name):
    """Leading zeros of the ``width``-bit ``value`` (``width`` when it is zero), as a signal."""
    return normalize(m, value, width, name)[0]


def f16_to_f32(m, h, name="f16"):
    """The binary32 encoding of the binary16 encoding ``h`` (16 bits); a NaN gives F32_NAN."""
    out = Signal(32, name=f"{name}_f32")
    sign, exp, frac = h[15], h[10:15], h[0:10]
    lz = leading_zeros(m, frac, 10, f"{name}_lz")
    sub = Signal(10, name=f"{name}_sub")
    m.d.comb += sub.eq(frac << (lz + 1))          # the subnormal's bits below its leading one
    with m.If(exp == 31):
        m.d.comb += out.eq(Mux(frac == 0, Cat(C(0, 23), C(0xFF, 8), sign), F32_NAN))
    with m.Elif(exp == 0):
        with m.If(frac == 0):
            m.d.comb += out.eq(Cat(C(0, 31), sign))
        with m.Else():      # frac * 2**-24 = 1.sub * 2**(-15 - lz): biased 112 - lz
            m.d.comb += out.eq(Cat(C(0, 13), sub, (112 - lz)[:8], sign))
    with m.Else():
        m.d.comb += out.eq(Cat(C(0, 13), frac, (exp + 112)[:8], sign))
    return out


def int_to_f32(m, value, name="i2f"):
    """The binary32 encoding of the signed integer ``value`` (at most 24 bits: exact)."""
    width = len(value)
    assert width <= 24, "more than 24 bits would need rounding"
    out = Signal(32, name=f"{name}_f32")
    neg = value[-1]
    mag = Signal(width, name=f"{name}_mag")
    m.d.comb += mag.eq(Mux(neg, -value, value))
    lz, norm = normalize(m, mag, width, f"{name}_n")    # the leading one at the top
    frac = Signal(23, name=f"{name}_frac")
    m.d.comb += frac.eq(norm[:width - 1] << (24 - width))
    with m.If(mag == 0):
        m.d.comb += out.eq(0)
    with m.Else():          # leading one at bit width - 1 - lz: exponent 127 + width - 1 - lz
        m.d.comb += out.eq(Cat(frac, (127 + width - 1 - lz)[:8], neg))
    return out


def _fields(m, x, name):
    """sign, effective biased exponent (1 for subnormals), 24-bit significand, and the class
    flags of a binary32 encoding."""
    exp, frac = x[23:31], x[0:23]
    sig = Signal(24, name=f"{name}_sig")
    eff = Signal(8, name=f"{name}_exp")
    m.d.comb += [sig.eq(Cat(frac, exp != 0)), eff.eq(Mux(exp == 0, 1, exp))]
    nan = (exp == 0xFF) & (frac != 0)
    inf = (exp == 0xFF) & (frac == 0)
    zero = (exp == 0) & (frac == 0)
    return x[31], eff, sig, nan, inf, zero


def _round_pack(m, sign, exp, sig24, guard, sticky, name):
    """The encoding of ``sig24 * 2**(exp - 150)`` plus the rounding bits, rounded to nearest even.
    ``exp`` (signed) is 1..254 for a normal ``sig24`` (bit 23 set) or exactly 1 with bit 23 clear
    for a subnormal; larger exponents are handled by the caller. A carry out of the fraction
    moves into the exponent, and one out of exponent 254 gives infinity, as the encoding does."""
    packed = Signal(32, name=f"{name}_packed")
    field = Mux(sig24[23], exp[:8], 0)
    inc = guard & (sticky | sig24[0])
    m.d.comb += packed.eq(Cat(sig24[:23], field, sign) + inc)
    return packed


def int_f16_mul(m, value, h, name="if16"):
    """The binary32 encoding of ``f32(f32(value) * f32(h))``: the signed integer ``value`` (at
    most 24 bits, so exact in binary32) times the binary16 encoding ``h``, rounded once. The exact
    product ``|value| * significand`` has at most 34 bits and lies within the normal range, so
    only the specials need care: an infinite scale gives an infinity (a NaN times 0), a NaN gives
    F32_NAN, a zero gives a zero of sign ``sign(h)`` (``f32(0)`` is +0)."""
    width = len(value)
    assert width <= 24, "more than 24 bits would not be exact in binary32"
    pw = width - 1 + 11                             # bits of |value| * significand
    out = Signal(32, name=name)
    neg = value[-1]
    mag = Signal(width, name=f"{name}_mag")
    m.d.comb += mag.eq(Mux(neg, -value, value))
    exp, frac = h[10:15], h[0:10]
    sig = Cat(frac, exp != 0)                       # 11 bits
    eff = Mux(exp == 0, 1, exp)
    prod = Signal(pw, name=f"{name}_p")
    m.d.comb += prod.eq(mag * sig)
    lz, norm = normalize(m, prod, pw, f"{name}_n")
    # value = norm * 2**(eff - 25 - lz) = 1.f * 2**(pw - 1 + eff - 25 - lz)
    biased = Signal(signed(10), name=f"{name}_e")
    m.d.comb += biased.eq(101 + pw + eff - lz)
    sign = neg ^ h[15]
    packed = _round_pack(m, sign, biased, norm[pw - 24:pw], norm[pw - 25],
                         norm[:pw - 25] != 0, name)
    with m.If(exp == 31):
        m.d.comb += out.eq(Mux((frac != 0) | (mag == 0), F32_NAN,
                               Cat(C(0, 23), C(0xFF, 8), sign)))
    with m.Elif(prod == 0):
        m.d.comb += out.eq(Cat(C(0, 31), h[15] ^ (neg & (mag != 0))))
    with m.Else():
        m.d.comb += out.eq(packed)
    return out


def f32_mul(m, a, b, name="fmul"):
    """``a * b`` (binary32 encodings), correctly rounded."""
    out = Signal(32, name=name)
    sa, ea, ma, nan_a, inf_a, zero_a = _fields(m, a, f"{name}_a")
    sb, eb, mb, nan_b, inf_b, zero_b = _fields(m, b, f"{name}_b")
    sign = sa ^ sb
    prod = Signal(48, name=f"{name}_p")
    m.d.comb += prod.eq(ma * mb)
    lz, norm = normalize(m, prod, 48, f"{name}_n")
    # value = norm * 2**(ea + eb - 300 - lz) = 1.f * 2**(ea + eb - 253 - lz): biased ea + eb - 126 - lz
    exp = Signal(signed(11), name=f"{name}_e")
    m.d.comb += exp.eq(ea + eb - 126 - lz)
    # below the normal range: shift right by 1 - exp more, every bit shifted out kept as sticky
    shift = Signal(6, name=f"{name}_sh")
    m.d.comb += shift.eq(Mux(exp >= 1, 0, Mux(exp < -61, 63, 1 - exp)))
    wide = Signal(112, name=f"{name}_w")
    m.d.comb += wide.eq(Cat(C(0, 64), norm) >> shift)
    sig = wide[88:112]
    packed = _round_pack(m, sign, Mux(exp >= 1, exp, 1), sig, wide[87], wide[:87] != 0, name)
    with m.If(nan_a | nan_b | (inf_a & zero_b) | (inf_b & zero_a)):
        m.d.comb += out.eq(F32_NAN)
    with m.Elif(inf_a | inf_b | (exp >= 255)):
        m.d.comb += out.eq(Cat(C(0, 23), C(0xFF, 8), sign))
    with m.Elif(zero_a | zero_b):
        m.d.comb += out.eq(Cat(C(0, 31), sign))
    with m.Else():
        m.d.comb += out.eq(packed)
    return out


def f32_add(m, a, b, name="fadd"):
    """``a + b`` (binary32 encodings), correctly rounded; an exact zero sum is +0 unless both
    addends are -0."""
    out = Signal(32, name=name)
    # the operand of larger magnitude first
    swap = b[:31] > a[:31]
    x, y = Signal(32, name=f"{name}_x"), Signal(32, name=f"{name}_y")
    m.d.comb += [x.eq(Mux(swap, b, a)), y.eq(Mux(swap, a, b))]
    sx, ex, mx, nan_x, inf_x, zero_x = _fields(m, x, f"{name}_x")
    sy, ey, my, nan_y, inf_y, zero_y = _fields(m, y, f"{name}_y")
    sub = sx ^ sy
    # 26 bits below the significands; the smaller one shifted right, the bits it loses as sticky
    d = Signal(8, name=f"{name}_d")
    m.d.comb += d.eq(ex - ey)
    shift = Signal(6, name=f"{name}_sh")
    m.d.comb += shift.eq(Mux(d > 52, 52, d))
    big = Signal(51, name=f"{name}_big")
    m.d.comb += big.eq(mx << 26)
    aligned = Signal(51 + 52, name=f"{name}_al")
    m.d.comb += aligned.eq(Cat(C(0, 52 + 26), my, C(0, 1)) >> shift)
    small = Signal(51, name=f"{name}_small")
    m.d.comb += small.eq(Cat(aligned[52] | (aligned[:52] != 0), aligned[53:103]))
    total = Signal(51, name=f"{name}_sum")
    m.d.comb += total.eq(Mux(sub, big - small, big + small))
    lz = leading_zeros(m, total, 51, f"{name}_lz")
    # normalise, but not below the smallest exponent (the result is then subnormal)
    lz_eff = Signal(6, name=f"{name}_lze")
    m.d.comb += lz_eff.eq(Mux(lz > ex, ex, lz))
    norm = Signal(51, name=f"{name}_n")
    m.d.comb += norm.eq(total << lz_eff)
    exp = Signal(signed(11), name=f"{name}_e")
    m.d.comb += exp.eq(ex + 1 - lz_eff)
    packed = _round_pack(m, sx, exp, norm[27:51], norm[26], norm[:26] != 0, name)
    with m.If(nan_x | nan_y | (inf_x & inf_y & sub)):
        m.d.comb += out.eq(F32_NAN)
    with m.Elif(inf_x | inf_y):
        m.d.comb += out.eq(Cat(C(0, 23), C(0xFF, 8), Mux(inf_x, sx, sy)))
    with m.Elif(total == 0):
        m.d.comb += out.eq(Cat(C(0, 31), sx & sy))
    with m.Elif(exp >= 255):
        m.d.comb += out.eq(Cat(C(0, 23), C(0xFF, 8), sx))
    with m.Else():
        m.d.comb += out.eq(packed)
    return out
