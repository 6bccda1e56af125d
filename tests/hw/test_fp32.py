"""The dequantising unit's binary32 logic (hw.fp32) against NumPy's IEEE arithmetic, bit for bit:
random encodings of every class (normal, subnormal, zero, infinity, NaN), near cancellations,
products that underflow to subnormals or overflow, and every FP16 and 21-bit integer input the
conversions take."""

import numpy as np
from amaranth import Elaboratable, Module, Signal, signed
from amaranth.sim import Simulator

from hw.fp32 import F32_NAN, f16_to_f32, f32_add, f32_mul, int_f16_mul, int_to_f32
from sw_model.golden.dequant import bits


class _Unit(Elaboratable):
    def __init__(self):
        self.a, self.b = Signal(32), Signal(32)
        self.h, self.i = Signal(16), Signal(signed(21))
        self.mul, self.add = Signal(32), Signal(32)
        self.f16, self.i2f, self.scaled = Signal(32), Signal(32), Signal(32)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.mul.eq(f32_mul(m, self.a, self.b)), self.add.eq(f32_add(m, self.a, self.b)),
                     self.f16.eq(f16_to_f32(m, self.h)), self.i2f.eq(int_to_f32(m, self.i)),
                     self.scaled.eq(int_f16_mul(m, self.i, self.h))]
        return m


SPECIAL = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00001, 0xFFBFFFFF, 0x00000001,
                    0x807FFFFF, 0x7F7FFFFF, 0x00800000, 0x3F800000, 0xBF800000, 0x00400000],
                   dtype=np.uint32)


def _encodings(rng, n):
    out = rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32)
    kind = rng.integers(0, 6, n)
    out[kind == 1] &= 0x807FFFFF                                   # subnormals
    out[kind == 2] = rng.choice(SPECIAL, (kind == 2).sum())
    near = kind == 3                                               # around 0.5 .. 2
    out[near] = (out[near] & 0x80FFFFFF) | 0x3F000000
    tiny = kind == 4                                               # products near the bottom
    out[tiny] = (out[tiny] & 0x81FFFFFF) | 0x1E000000
    return out


def _run(a, b, h, i):
    unit = _Unit()
    got = {name: [] for name in ("mul", "add", "f16", "i2f", "scaled")}

    async def testbench(ctx):
        for k in range(len(a)):
            ctx.set(unit.a, int(a[k]))
            ctx.set(unit.b, int(b[k]))
            ctx.set(unit.h, int(h[k]))
            ctx.set(unit.i, int(i[k]))
            for name in got:
                got[name].append(ctx.get(getattr(unit, name)))

    sim = Simulator(unit)
    sim.add_testbench(testbench)
    sim.run()
    return {name: np.array(v, dtype=np.uint32) for name, v in got.items()}


def _first_difference(name, got, want, *inputs):
    bad = np.flatnonzero(got != want)
    if bad.size:
        k = bad[0]
        operands = ", ".join(f"{x[k]:#x}" for x in inputs)
        return f"{name}({operands}): {got[k]:#010x}, NumPy {want[k]:#010x} ({bad.size} differ)"
    return None


def test_binary32_logic_equals_numpy():
    rng = np.random.default_rng(0)
    n = 3000
    a, b = _encodings(rng, n), _encodings(rng, n)
    b[::7] = (a[::7] ^ 0x80000000) + rng.integers(-3, 4, len(a[::7])).astype(np.uint32)
    h = rng.integers(0, 2 ** 16, n).astype(np.uint16)
    h[:8] = [0x0001, 0x03FF, 0x7C00, 0xFE01, 0x8000, 0x0000, 0xFC00, 0x7BFF]
    i = rng.integers(-2 ** 20, 2 ** 20, n)
    i[:8] = [0, -2 ** 20, 2 ** 20 - 1, -1, -5, 0, 0, -2 ** 20]    # with them: 0 x inf, -5 x -0
    i[8:40] = 0                                                    # zeros times every class
    fa, fb = a.view(np.float32), b.view(np.float32)
    with np.errstate(all="ignore"):
        want = {"mul": bits(fa * fb), "add": bits(fa + fb),
                "f16": bits(h.view(np.float16).astype(np.float32)),
                "i2f": bits(i.astype(np.float32)),
                "scaled": bits(i.astype(np.float32) * h.view(np.float16).astype(np.float32))}
    got = _run(a, b, h, i)
    problems = [_first_difference("mul", got["mul"], want["mul"], a, b),
                _first_difference("add", got["add"], want["add"], a, b),
                _first_difference("f16", got["f16"], want["f16"], h),
                _first_difference("i2f", got["i2f"], want["i2f"], i),
                _first_difference("int x f16", got["scaled"], want["scaled"], i, h)]
    assert not any(problems), [p for p in problems if p]
    assert (got["mul"] == F32_NAN).any() and (got["add"] == F32_NAN).any()
    subnormal = (got["mul"] & 0x7F800000) == 0
    assert (subnormal & (got["mul"] & 0x7FFFFF != 0)).any()    # subnormal products were made
