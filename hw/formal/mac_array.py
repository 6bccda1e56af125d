"""Formal harness of the MAC array (:mod:`hw.mac_array`) at a small configuration.

* :class:`MacStreams`: the four streams obey the stream rules (inputs assumed, ``results``
  asserted), and operations are neither lost nor duplicated: the operations accepted on ``op``
  minus the results given equal the operations held in the pipeline (stage 1, stage 2, output
  register), at most 2 (3 when an operation is one beat), and after 3 cycles of
  ``results.ready`` without a new operation none is left (the latency bound).

* :class:`MacLanes`: the lane identities on one weight byte, for every byte, activation and mode:
  the array's lane fields are the contract's, and scaled by the mode's factor they are the
  effective weights (FULL ``8*H5 + L5 = q``, DRAFT ``8*H5 = 16h + 8``, MSB ``16h``, LSB ``l``);
  with ``products``, the lane products add up to the activation times the effective weight.
* :class:`MacSums`: every result is its operation's lane sums ``SH = sum x*H5``, ``SL = sum
  x*L5`` (over the group, with the contract's fields) combined per mode, for every input
  sequence.

Together they give the integer reference: a result slot is ``sum x*w_eff`` over its operation
(:class:`MacSums` states it as a sum of the lane products, :class:`MacLanes` equates each lane
product with ``x*w_eff``, and a sum of equal terms is equal). Stated whole, the same equality is
an equivalence of sums of differently built multipliers that the SMT solvers do not decide in
minutes; split this way, each part takes seconds (the lane products one minute).

The array's pipeline registers are read by name (stage 1, stage 2, the accumulators) to state the
invariants that make the proofs inductive.
"""

from amaranth import *
from amaranth.lib import data

from hw.formal.harness import FormalHarness
from hw.mac_array import MacArray, act_layout, weight_layout
from hw.params import ACT_BITS, MacArrayParams, MacMode

__all__ = ["SMALL", "WIDE", "MacStreams", "MacLanes", "MacSums", "contract_fields",
           "effective_weight"]

#: 1 token, 1 channel, 2 lanes, a group of 4 (2 beats per operation: accumulation is exercised).
SMALL = MacArrayParams(tokens=1, group_size=4, out_channels=1, lanes=2, tag_width=2)
#: The top of the small range: 2 tokens, 2 channels, 4 lanes, a group of 8 (2 beats).
WIDE = MacArrayParams(tokens=2, group_size=8, out_channels=2, lanes=4, tag_width=2)
#: Cycles from the operation's last beat being taken to its result being valid, all stages moving.
LATENCY = 3


class _MacHarness(FormalHarness):
    SMALL = SMALL

    def _dut(self, m, platform, name="dut", params=None):
        dut = MacArray(params or self.params)
        return dut, self.instantiate(m, name, dut, platform)


class MacStreams(_MacHarness):
    """Stream rules and beat counting; broken: the result payload changes while stalled."""

    def build(self, m, platform):
        p = self.params
        dut, internal = self._dut(m, platform)
        for name in ("op", "act", "weights"):
            self.stream_in(m, getattr(dut, name), name)
        payload = dut.results.payload.as_value()
        if self.broken:
            # a mutated output: one bit of the payload flips every other cycle
            flip = Signal()
            m.d.sync += flip.eq(~flip)
            payload = payload ^ flip
        self.stream_out(m, dut.results, "results", payload=payload)

        op_fire = dut.op.valid & dut.op.ready
        out_fire = dut.results.valid & dut.results.ready
        in_flight = Signal(range(8))
        m.d.sync += in_flight.eq(in_flight + op_fire - out_fire)
        held = (internal["s1_valid"] & internal["s1_last"]) + \
            (internal["s2_valid"] & internal["s2_last"]) + dut.results.valid
        self.check(m, "assert", in_flight == held,
                   "operations accepted - results given = operations in the pipeline")
        # the stages hold an operation only by its last beat, and two stages hold two last
        # beats only when an operation is one beat: at most 2 in flight, 3 with one-beat ones
        most = 1 + (2 if p.beats_per_group == 1 else 1)
        self.check(m, "assert", in_flight <= most, f"at most {most} operations in flight")
        # the latency bound: LATENCY cycles of ready without a new operation drain the pipeline
        quiet = dut.results.ready & ~op_fire
        window = self.history(m, quiet, LATENCY, "quiet")
        settled = self.history(m, self.settled, LATENCY - 1, "settled")
        with m.If(self.settled & Cat(*settled).all() & Cat(*window).all()):
            self.check(m, "assert", in_flight == 0,
                       "3 cycles of results.ready without a new operation leave none in flight")
        self.check(m, "cover", in_flight == most, f"{most} operations in flight")
        self.check(m, "cover", out_fire & (in_flight == 1) & op_fire,
                   "a result leaves as the next operation is taken")


def _sext(nibble):
    """A 4-bit nibble read as a signed number."""
    return nibble.as_signed()


def contract_fields(mode, pair, augmented=True):
    """The signed lane fields ``(H5, L5)`` of one weight byte ``pair`` in ``mode``, written from
    the contract (hw.mac_array's docstring) independently of the array's own bit layout: upper
    ``2h + a`` (``l`` in LSB), lower ``l`` (``2h + a`` of a second weight in DRAFT and MSB);
    ``a`` is 1 in DRAFT only."""
    aug = (mode == MacMode.DRAFT) if augmented else C(0, 1)
    lsb = mode == MacMode.LSB
    packed = (mode == MacMode.DRAFT) | (mode == MacMode.MSB)
    upper = Mux(lsb, pair.hi, 2 * _sext(pair.hi) + aug)
    lower = Mux(packed, 2 * _sext(pair.lo) + aug, pair.lo)
    return upper, lower


def effective_weight(mode, code, augmented=True):
    """``w_eff`` of an INT8 code in ``mode`` (docs/number-format.md): ``q``, ``16h + 8`` (``16h``
    without augmentation), ``16h`` or ``l``."""
    h, l = code[4:8].as_signed(), code[0:4]
    draft = 16 * h + 8 if augmented else 16 * h
    return Mux(mode == MacMode.FULL, code.as_signed(),
               Mux(mode == MacMode.DRAFT, draft, Mux(mode == MacMode.MSB, 16 * h, l)))


class MacLanes(_MacHarness):
    """The lane identities, for every activation, weight byte and mode (no state: one cycle).

    The array's own lane-field logic (:meth:`MacArray._lane_fields`) on a free weight beat
    gives the contract's fields (:func:`contract_fields`) on every lane pair; scaled by the
    mode's factor, the contract's fields are the effective weights: FULL ``8*H5 + L5 = q``,
    DRAFT ``8*H5 = 16h + 8`` (and ``8*L5`` for the second weight), MSB ``8*H5 = 16h``, LSB
    ``H5 = l``; and FULL's effective weight is MSB's plus LSB's. With ``products``, for every activation ``x`` too: the lane products add up to
    ``x`` times the effective weight (``8*(x*H5) + x*L5 = x*q`` in FULL, ``8*(x*F) = x*w_eff``
    in DRAFT and MSB, ``x*F = x*l`` in LSB), the distributive law the solver takes a minute
    for. Broken: the harness expects a DRAFT weight of ``16h + 7``."""

    def __init__(self, params=None, broken=False, products=False):
        super().__init__(params, broken)
        self.products = bool(products)

    def build(self, m, platform):
        p = self.params
        dut = MacArray(p)
        dut._MustUse__used = True          # only its lane-field logic is instantiated
        mode = Signal(MacMode)
        weights = Signal(weight_layout(p))
        m.d.comb += [mode.eq(self.free(2, "mode_in")),
                     weights.eq(self.free(p.weight_beat_bits, "weights_in"))]
        x = self.free(signed(ACT_BITS), "x")
        upper, lower = dut._lane_fields(m, mode, weights)
        same = [(upper[k][n] == ref[0]) & (lower[k][n] == ref[1])
                for k in range(p.lanes) for n in range(p.out_channels)
                for ref in [contract_fields(mode, weights[k][n], p.augmented)]]
        self.check(m, "assert", Cat(*same).all(),
                   "the array's lane fields are the contract's (every lane pair)")

        pair = weights[0][0]
        h5, l5 = contract_fields(mode, pair, p.augmented)
        w_full = effective_weight(mode, Cat(pair.lo, pair.hi), p.augmented)
        # the 4-bit modes: the first weight's nibble is hi, the second's lo
        w_first = effective_weight(mode, Cat(pair.hi, pair.hi), p.augmented)
        w_second = effective_weight(mode, Cat(pair.lo, pair.lo), p.augmented)
        eff = lambda mode_: effective_weight(C(mode_, 2), Cat(pair.lo, pair.hi), p.augmented)
        self.check(m, "assert", eff(MacMode.FULL) == eff(MacMode.MSB) + eff(MacMode.LSB),
                   "FULL = MSB + LSB: q = 16h + l")
        if self.broken:
            w_first = Mux(mode == MacMode.DRAFT, w_first - 1, w_first)
        for mode_ in MacMode:
            name = mode_.name
            with m.If(mode == mode_):
                if mode_ == MacMode.FULL:
                    self.check(m, "assert", 8 * h5 + l5 == w_full, "FULL: 8*H5 + L5 = q")
                    if self.products:
                        self.check(m, "assert", 8 * (x * h5) + x * l5 == x * w_full,
                                   "FULL: 8*(x*H5) + x*L5 = x*q")
                else:
                    scale = 1 if mode_ == MacMode.LSB else 8
                    self.check(m, "assert", (scale * h5 == w_first) & (scale * l5 == w_second),
                               f"{name}: {scale}*H5 and {scale}*L5 are the two weights' w_eff")
                    if self.products:
                        self.check(m, "assert", (scale * (x * h5) == x * w_first) &
                                   (scale * (x * l5) == x * w_second),
                                   f"{name}: {scale}*(x*F) = x*w_eff on both lanes")
                self.check(m, "cover", (x == -128) & pair.hi[3] & pair.lo[3],
                           f"{name}: x = -128, both nibbles' top bits set")


def _wide():
    """A wide signed register for a reference value (no sum of a small configuration comes
    near 24 bits, so the reference never wraps: a narrower array register would show)."""
    return signed(24)


class MacSums(_MacHarness):
    """Each result is the contract's lane-decomposed reference of its operation, for every input.

    The harness keeps its own model of the operation's arithmetic, fed from the streams alone:
    its own beat counter and record of the activation tile (``load_act = 0`` reuses the last
    tile loaded, all-zero after a reset), and for every weight beat taken the lane sums ``SH =
    sum x*H5`` and ``SL = sum x*L5`` with the contract's fields (:func:`contract_fields`), in
    wide registers, moved along as the contract says the stages move (all together whenever
    the result register is empty or being read), accumulated over the operation's beats (from 0
    at its first beat) and combined per mode: FULL ``8*SH + SL`` and 0, DRAFT/MSB ``8*SH`` and
    ``8*SL``, LSB ``SH`` and ``SL``. A result offered on ``results`` must carry exactly these
    sums, its operation's mode and tag. The invariants that make it inductive: the array's
    pipeline registers (read by name) equal the model's at every stage. Broken: the model
    leaves out the augmentation bit (DRAFT as ``16h``)."""

    def build(self, m, platform):
        p = self.params
        dut, internal = self._dut(m, platform)
        for name in ("op", "act", "weights"):
            self.stream_in(m, getattr(dut, name), name)
        self.stream_out(m, dut.results, "results")
        op, act, weights, res = (dut.op.payload, dut.act.payload, dut.weights.payload,
                                 dut.results.payload)
        advance = ~dut.results.valid | dut.results.ready
        w_fire = dut.weights.valid & dut.weights.ready
        act_fire = dut.act.valid & dut.act.ready
        beats, T, C, K = p.beats_per_group, p.tokens, p.out_channels, p.lanes

        # -- the model's input side: beat counter, activation tile, this beat's activations
        beat = Signal(range(max(beats, 2)), name="m_beat")
        last = beat == beats - 1
        tile = Signal(data.ArrayLayout(act_layout(p), beats), name="m_tile")
        with m.If(w_fire):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
        with m.If(act_fire):
            m.d.sync += tile[beat].eq(act)
        x_in = Signal(act_layout(p), name="m_x_in")
        m.d.comb += x_in.eq(Mux(op.load_act, act.as_value(), tile[beat].as_value()))

        # -- stage 1: this beat's operands
        s1 = dict(valid=Signal(name="m1_valid"), first=Signal(name="m1_first"),
                  last=Signal(name="m1_last"), mode=Signal(MacMode, name="m1_mode"),
                  tag=Signal(p.tag_width, name="m1_tag"), load=Signal(name="m1_load"),
                  beat=Signal.like(beat, name="m1_beat"))
        s1_x = Signal(act_layout(p), name="m1_x")
        s1_w = Signal(weight_layout(p), name="m1_w")
        with m.If(advance):
            m.d.sync += s1["valid"].eq(w_fire)
            with m.If(w_fire):
                m.d.sync += [s1["first"].eq(beat == 0), s1["last"].eq(last),
                             s1["mode"].eq(op.mode), s1["tag"].eq(op.tag),
                             s1["load"].eq(op.load_act), s1["beat"].eq(beat),
                             s1_x.eq(x_in), s1_w.eq(weights)]

        # -- stage 2: the lane sums of the beat, with the contract's fields
        def lane_sums(which):
            sums = []
            for t in range(T):
                row = []
                for n in range(C):
                    terms = []
                    for k in range(K):
                        fields = contract_fields(s1["mode"], s1_w[k][n],
                                                 p.augmented and not self.broken)
                        terms.append(s1_x[t][k] * fields[which])
                    row.append(sum(terms[1:], terms[0]))
                sums.append(row)
            return sums

        s2 = {key: Signal.like(sig, name=f"m2_{key}") for key, sig in s1.items()}
        grid = lambda name: [[Signal(_wide(), name=f"{name}_{t}_{n}") for n in range(C)]
                             for t in range(T)]
        s2_h, s2_l = grid("m2_sh"), grid("m2_sl")
        sums_h, sums_l = lane_sums(0), lane_sums(1)
        with m.If(advance):
            m.d.sync += [s2[key].eq(s1[key]) for key in s1]
            for t in range(T):
                for n in range(C):
                    m.d.sync += [s2_h[t][n].eq(sums_h[t][n]), s2_l[t][n].eq(sums_l[t][n])]

        # -- output: accumulate the operation's beats, combine per mode
        acc_h, acc_l = grid("m_acc_h"), grid("m_acc_l")
        out = [[Signal(_wide(), name=f"m_out_{t}_{s}") for s in range(2 * C)] for t in range(T)]
        out_tag = Signal(p.tag_width, name="m_out_tag")
        out_mode = Signal(MacMode, name="m_out_mode")
        out_load = Signal(name="m_out_load")
        acc_beats = Signal(range(beats + 1), name="m_acc_beats")   # beats in the accumulators
        with m.If(advance & s2["valid"]):
            m.d.sync += acc_beats.eq(s2["beat"] + 1)
            with m.If(s2["last"]):
                m.d.sync += [out_tag.eq(s2["tag"]), out_mode.eq(s2["mode"]),
                             out_load.eq(s2["load"])]
            for t in range(T):
                for n in range(C):
                    new_h = Mux(s2["first"], 0, acc_h[t][n]) + s2_h[t][n]
                    new_l = Mux(s2["first"], 0, acc_l[t][n]) + s2_l[t][n]
                    m.d.sync += [acc_h[t][n].eq(new_h), acc_l[t][n].eq(new_l)]
                    with m.If(s2["last"]), m.Switch(s2["mode"]):
                        with m.Case(MacMode.FULL):
                            m.d.sync += [out[t][n].eq(8 * new_h + new_l), out[t][C + n].eq(0)]
                        with m.Case(MacMode.LSB):
                            m.d.sync += [out[t][n].eq(new_h), out[t][C + n].eq(new_l)]
                        with m.Default():
                            m.d.sync += [out[t][n].eq(8 * new_h), out[t][C + n].eq(8 * new_l)]

        # -- the contract: a result offered is the reference of its operation
        sums = [[res.sums[t][s] for s in range(2 * C)] for t in range(T)]
        equal = lambda a, b: Cat(*(x == y for x, y in zip(sum(a, []), sum(b, [])))).all()
        with m.If(dut.results.valid):
            self.check(m, "assert", equal(sums, out),
                       "every result slot is the reference sum of its operation")
            self.check(m, "assert", (res.tag == out_tag) & (res.mode == out_mode),
                       "a result carries its operation's mode and tag")

        # -- the invariants: the array's pipeline registers hold the model's values
        view = lambda layout, name: data.View(layout, internal[name])
        slice_sums = data.ArrayLayout(data.ArrayLayout(signed(p.slice_sum_width), C), T)
        accs = data.ArrayLayout(data.ArrayLayout(signed(p.slice_acc_width), C), T)
        pairs = [(beat, internal["in_beat"]), (tile.as_value(), internal["s1_act_tile"]),
                 (s1_x.as_value(), internal["s1_act"]), (s1_w.as_value(), internal["s1_weights"])]
        for key in ("valid", "first", "last", "mode", "tag"):
            pairs += [(Value.cast(s1[key]), internal[f"s1_{key}"]),
                      (Value.cast(s2[key]), internal[f"s2_{key}"])]
        self.check(m, "assert", Cat(*(a == b for a, b in pairs)).all(),
                   "invariant: stage 1 and the control of stage 2 are the model's")
        sh, sl = view(slice_sums, "s2_sum_h"), view(slice_sums, "s2_sum_l")
        ah, al = view(accs, "out_acc_h"), view(accs, "out_acc_l")
        rows = lambda v: [[v[t][n] for n in range(C)] for t in range(T)]
        self.check(m, "assert", equal(rows(sh), s2_h) & equal(rows(sl), s2_l),
                   "invariant: stage 2's lane sums are the model's")
        self.check(m, "assert", equal(rows(ah), acc_h) & equal(rows(al), acc_l),
                   "invariant: the accumulators are the model's")
        self.check(m, "assert", equal(sums, out) & (res.tag == out_tag) & (res.mode == out_mode),
                   "invariant: the result register is the model's")

        # the beats in flight follow each other: the accumulators hold beats 0 .. acc_beats - 1
        # of their operation, so they stay within acc_beats beats' worth of lane products and
        # a narrower array accumulator would wrap where the model's does not
        step = lambda b: Mux(b == beats - 1, 0, b + 1)
        expect = Mux(acc_beats == beats, 0, acc_beats)
        order = []
        for stage in (s2, s1):
            order.append(~stage["valid"] | ((stage["beat"] == expect) &
                                            (stage["first"] == (stage["beat"] == 0)) &
                                            (stage["last"] == (stage["beat"] == beats - 1))))
            expect = Mux(stage["valid"], step(stage["beat"]), expect)
        order.append(beat == expect)
        self.check(m, "assert", Cat(*order).all(),
                   "invariant: the beats in flight follow the accumulated ones in order")
        lo, hi = p.lane_product_range
        bounded = []
        for grid_ in (acc_h, acc_l):
            for value in sum(grid_, []):
                for count in range(beats + 1):
                    bounded.append((acc_beats != count) |
                                   ((value >= lo * K * count) & (value <= hi * K * count)))
        for value in sum(s2_h, []) + sum(s2_l, []):
            bounded.append((value >= lo * K) & (value <= hi * K))
        self.check(m, "assert", Cat(*bounded).all(),
                   "invariant: stage 2 holds one beat's worth of lane products, the accumulators "
                   "acc_beats beats' worth")

        # -- covers: every mode with a negative sum in its first slot, and an operation that
        # reused the activations of an earlier one
        for mode in MacMode:
            self.check(m, "cover", dut.results.valid & (res.mode == mode) & (sums[0][0] < 0),
                       f"a {mode.name} result with a negative first slot")
        self.check(m, "cover", dut.results.valid & ~out_load & (sums[0][0] != 0),
                   "a nonzero result of an operation reusing earlier activations")
