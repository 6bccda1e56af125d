"""Formal harnesses of the MAC array (:mod:`hw.mac_array`) at small configurations.

* :class:`MacStreams`: the four streams obey the stream rules (inputs assumed, ``results``
  asserted), and operations are neither lost nor duplicated: the operations accepted on ``op``
  minus the results given equal the operations held in the pipeline (stage 1, stage 2, output
  register), at most 3, and after 3 cycles of ``results.ready`` without a new operation none is
  left (the latency bound).
* :class:`MacModes`: every result equals the integer reference of its operation, for every input:
  per token and result slot, the sum over the group of ``x * w`` with ``w`` the signed INT8 code
  ``q = 16h + l`` (FULL; the second half of the slots 0), ``16h + 8`` (DRAFT, exactly the
  augmented draft), ``16h`` (MSB) or ``l`` (LSB), two weights per slice-lane pair in the 4-bit
  modes; its tag and mode are the operation's, in order, including activation reuse. The
  reference is the harness's own: it registers each weight beat and activation beat as they are
  taken and sums products of whole integers, independent of the array's slices and lane fields.
* :class:`MacSplit`: FULL = MSB + LSB on the hardware: three arrays run in lock step on the same
  activations and stalls, one in FULL on codes ``q``, one in MSB on their upper slices ``h``, one
  in LSB on their lower slices ``l``; every FULL result equals the sum of the other two.

The array's pipeline registers are read by name (stage 1, stage 2, accumulators) to state the
invariants that make the proofs inductive: each states that the array's internal state equals the
harness's record of what it was given.
"""

from amaranth import *
from amaranth.lib import data

from hw.formal.harness import FormalHarness
from hw.mac_array import MacArray, act_layout, weight_layout
from hw.params import MacArrayParams, MacMode

__all__ = ["SMALL", "LARGER", "MacStreams", "MacModes", "MacSplit", "MacLanes", "reference_weight",
           "lane_lemma"]

#: 1 token, 1 channel, 2 lanes, a group of 4 (2 beats per operation: accumulation is exercised).
SMALL = MacArrayParams(tokens=1, group_size=4, out_channels=1, lanes=2, tag_width=2)
#: 2 tokens, 2 channels, 4 lanes, a group of 8 (2 beats).
LARGER = MacArrayParams(tokens=2, group_size=8, out_channels=2, lanes=4, tag_width=2)

#: Cycles from the operation's last beat being taken to its result being valid, all stages moving.
LATENCY = 3


def reference_weight(pair, second):
    """``{mode: value}``: the integer weight that slot ``second`` (0: channel n, 1: channel
    n + out_channels) of the slice-lane byte ``pair`` stands for: the code ``q`` (FULL; 0 in the
    second slot), ``16h + 8`` (DRAFT), ``16h`` (MSB), ``l`` (LSB), with the nibble ``hi`` for the
    first slot and ``lo`` for the second."""
    nibble = pair.lo if second else pair.hi
    return {MacMode.FULL: C(0, 1) if second else Cat(pair.lo, pair.hi).as_signed(),
            MacMode.DRAFT: nibble.as_signed() * 16 + 8,
            MacMode.MSB: nibble.as_signed() * 16,
            MacMode.LSB: nibble}


def _reference(m, p, mode, act, weights, name):
    """The reference sums of one beat: ``[tokens][2*out_channels]`` of ``sum_k x[t][k] * w``."""
    width = p.result_width
    sums = Signal(data.ArrayLayout(data.ArrayLayout(signed(width), p.result_channels),
                                   p.tokens), name=name)
    for n in range(p.out_channels):
        for second in (0, 1):
            per_lane = []
            for k in range(p.lanes):
                weight = Signal(signed(10), name=f"{name}_w{k}_{second * p.out_channels + n}")
                with m.Switch(mode):
                    for case, value in reference_weight(weights[k][n], second).items():
                        with m.Case(case):
                            m.d.comb += weight.eq(value)
                per_lane.append(weight)
            for t in range(p.tokens):
                m.d.comb += sums[t][second * p.out_channels + n].eq(
                    sum(act[t][k] * per_lane[k] for k in range(p.lanes)))
    return sums


def lane_lemma(harness, m, p, kind, mode, act, weights, fields):
    """The lane lemma, asserted or assumed (``kind``): for every token, lane and channel, the two
    lane products ``x * U`` and ``x * L`` (``fields``: the array's ``s1_upper_<k>_<n>`` and
    ``s1_lower_<k>_<n>``) combine per ``mode`` to the reference products ``x * w``: FULL
    ``8 xU + xL = xq``; DRAFT and MSB ``8 xU = x w0``, ``8 xL = x w1``; LSB ``xU = x w0``,
    ``xL = x w1``."""
    name = "lane lemma: the lane products combine to the reference products"
    for k in range(p.lanes):
        for n in range(p.out_channels):
            refs = [reference_weight(weights[k][n], second) for second in (0, 1)]
            for t in range(p.tokens):
                x = act[t][k]
                pu, pl = x * fields[f"s1_upper_{k}_{n}"], x * fields[f"s1_lower_{k}_{n}"]
                with m.Switch(mode):
                    for case in MacMode:
                        w0, w1 = x * refs[0][case], x * refs[1][case]
                        with m.Case(case):
                            if case is MacMode.FULL:
                                harness.check(m, kind, pu * 8 + pl == w0, name)
                            elif case is MacMode.LSB:
                                harness.check(m, kind, (pu == w0) & (pl == w1), name)
                            else:
                                harness.check(m, kind, (pu * 8 == w0) & (pl * 8 == w1), name)


class MacLanes(FormalHarness):
    """The lane lemma for every activation, weight byte and mode, on the array's own lane-field
    logic (combinational: one cycle covers it); broken: the fields of the array built without the
    augmentation bit."""

    def __init__(self, params=SMALL, broken=False):
        super().__init__(broken)
        self.params = params

    def build(self, m, platform):
        p = self.params
        params = MacArrayParams(**{**p.to_dict(), "augmented": not self.broken})
        mode = Signal(MacMode, name="mode")
        m.d.comb += mode.eq(self.free(2, "mode_in"))
        act = act_layout(p)(self.free(act_layout(p).size, "act"))
        weights = weight_layout(p)(self.free(weight_layout(p).size, "weights"))
        # the array's own field logic (its method, on these signals)
        upper, lower = MacArray._lane_fields(_Params(params), m, mode, weights)
        fields = {}
        for k in range(p.lanes):
            for n in range(p.out_channels):
                fields[f"s1_upper_{k}_{n}"], fields[f"s1_lower_{k}_{n}"] = upper[k][n], lower[k][n]
        lane_lemma(self, m, p, "assert", mode, act, weights, fields)
        for case in MacMode:
            self.check(m, "cover", (mode == case) & (act.as_value() != 0) &
                       (weights.as_value() != 0), f"a {case.name} lane with nonzero operands")


class _Params:
    """Stands for the array when its lane-field method runs on the lemma's signals."""

    def __init__(self, params):
        self.params = params


class _MacHarness(FormalHarness):
    def __init__(self, params=SMALL, broken=False):
        super().__init__(broken)
        self.params = params

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
        self.check(m, "assert", in_flight <= LATENCY, "at most 3 operations in flight")
        # the latency bound: LATENCY cycles of ready without a new operation drain the pipeline
        quiet = dut.results.ready & ~op_fire
        window = self.history(m, quiet, LATENCY, "quiet")
        settled = self.history(m, self.settled, LATENCY - 1, "settled")
        with m.If(self.settled & Cat(*settled).all() & Cat(*window).all()):
            self.check(m, "assert", in_flight == 0,
                       "3 cycles of results.ready without a new operation leave none in flight")
        self.check(m, "cover", in_flight == LATENCY, "3 operations in flight")
        self.check(m, "cover", out_fire & (in_flight == 1) & op_fire,
                   "a result leaves as the next operation is taken")


class MacModes(_MacHarness):
    """Every result equals the integer reference, for operations in ``mode`` (every mode when
    None); broken: the array is built without the augmentation bit (the ablation), so DRAFT
    computes ``16h`` and misses ``16h + 8``."""

    def __init__(self, params=SMALL, mode=None, broken=False):
        super().__init__(params, broken)
        self.mode = mode

    def build(self, m, platform):
        p = self.params
        dut_params = MacArrayParams(**{**p.to_dict(), "augmented": not self.broken})
        dut, internal = self._dut(m, platform, params=dut_params)
        for name in ("op", "act", "weights"):
            self.stream_in(m, getattr(dut, name), name)
        self.stream_out(m, dut.results, "results")
        B = p.beats_per_group
        if self.mode is not None:
            self.check(m, "assume", dut.op.payload.mode == self.mode,
                       f"operations run in {self.mode.name}")
        view = lambda name, layout: data.View(layout, internal[name])
        following = lambda index: Mux(index == B - 1, 0, index + 1)

        # -- the record of the inputs, registered as they are taken
        advance = ~dut.results.valid | dut.results.ready
        fire = dut.weights.valid & dut.weights.ready
        op = dut.op.payload
        beat = Signal(range(max(B, 2)))       # the beat index the next weight beat has
        tile = Signal(data.ArrayLayout(act_layout(p), B))
        x = Signal(act_layout(p))
        m.d.comb += x.eq(Mux(op.load_act, dut.act.payload, tile[beat]))
        with m.If(fire):
            m.d.sync += beat.eq(following(beat))
            with m.If(op.load_act):
                m.d.sync += tile[beat].eq(dut.act.payload)

        def record(prefix):
            return {"valid": Signal(name=f"{prefix}_valid"),
                    "beat": Signal(range(max(B, 2)), name=f"{prefix}_beat"),
                    "tag": Signal(p.tag_width, name=f"{prefix}_tag"),
                    "mode": Signal(MacMode, name=f"{prefix}_mode")}
        r1, r2 = record("ref1"), record("ref2")
        r1_x = Signal(act_layout(p))
        r1_w = Signal(weight_layout(p))
        r1_sums = _reference(m, p, r1["mode"], r1_x, r1_w, "ref1_sums")
        r2_sums = Signal.like(r1_sums, name="ref2_sums")
        acc = Signal.like(r1_sums, name="ref_acc")
        acc_beats = Signal(range(max(B, 2)))    # beats of the current operation accumulated
        acc_mode = Signal(MacMode)
        result_valid = Signal()
        result = Signal.like(r1_sums, name="ref_result")
        result_tag = Signal(p.tag_width)
        result_mode = Signal(MacMode)
        r2_first, r2_last = r2["beat"] == 0, r2["beat"] == B - 1
        with m.If(advance):
            m.d.sync += [r1["valid"].eq(fire), r2["valid"].eq(r1["valid"]), r2_sums.eq(r1_sums),
                         result_valid.eq(r2["valid"] & r2_last)]
            with m.If(fire):
                m.d.sync += [r1["beat"].eq(beat), r1["tag"].eq(op.tag), r1["mode"].eq(op.mode),
                             r1_x.eq(x), r1_w.eq(dut.weights.payload)]
            for key in ("beat", "tag", "mode"):
                m.d.sync += r2[key].eq(r1[key])
            with m.If(r2["valid"]):
                for t in range(p.tokens):
                    for s in range(p.result_channels):
                        new = Mux(r2_first, 0, acc[t][s]) + r2_sums[t][s]
                        m.d.sync += acc[t][s].eq(new)
                        with m.If(r2_last):
                            m.d.sync += result[t][s].eq(new)
                m.d.sync += [acc_beats.eq(following(r2["beat"])), acc_mode.eq(r2["mode"])]
                with m.If(r2_last):
                    m.d.sync += [result_tag.eq(r2["tag"]), result_mode.eq(r2["mode"])]

        # -- the contract: every result is the reference's, with its operation's tag and mode
        res = dut.results.payload
        self.check(m, "assert", dut.results.valid == result_valid,
                   "one result per operation, in order")
        with m.If(dut.results.valid):
            self.check(m, "assert", (res.tag == result_tag) & (res.mode == result_mode),
                       "a result carries its operation's tag and mode")
            for t in range(p.tokens):
                for s in range(p.result_channels):
                    self.check(m, "assert", res.sums[t][s] == result[t][s],
                               "each result equals the integer reference (FULL q, DRAFT 16h+8, "
                               "MSB 16h, LSB l)")
        for mode in MacMode if self.mode is None else [self.mode]:
            self.check(m, "cover", dut.results.valid & dut.results.ready & (res.mode == mode)
                       & (res.sums.as_value() != 0), f"a nonzero {mode.name} result is taken")
        self.check(m, "cover", fire & ~op.load_act & self.past(m, fire & ~op.load_act),
                   "an operation reuses the last activations")

        # -- invariants: the array's registers hold what the record says
        self.check(m, "assert", internal["in_beat"] == beat, "invariant: input beat")
        self.check(m, "assert", internal["s1_act_tile"] == tile.as_value(),
                   "invariant: activation tile")
        self.check(m, "assert", internal["s1_valid"] == r1["valid"], "invariant: stage 1 valid")
        self.check(m, "assert", internal["s2_valid"] == r2["valid"], "invariant: stage 2 valid")
        with m.If(r1["valid"]):
            self.check(m, "assert", (internal["s1_weights"] == r1_w.as_value()) &
                       (internal["s1_act"] == r1_x.as_value()) &
                       (internal["s1_mode"] == r1["mode"]) & (internal["s1_tag"] == r1["tag"]) &
                       (internal["s1_beat"] == r1["beat"]) &
                       (internal["s1_first"] == (r1["beat"] == 0)) &
                       (internal["s1_last"] == (r1["beat"] == B - 1)), "invariant: stage 1")
        # the lane lemma (proved for every input by MacLanes) for the array's stage 1: with it,
        # stage 2's sums follow by adding; a solver does not find distributivity over a sum of
        # products by itself
        with m.If(r1["valid"]):
            fields = {name: internal[name] for name in internal if name.startswith("s1_upper_")
                      or name.startswith("s1_lower_")}
            lane_lemma(self, m, p, "assume", internal["s1_mode"],
                       data.View(act_layout(p), internal["s1_act"]),
                       data.View(weight_layout(p), internal["s1_weights"]), fields)
        slice_sums = data.ArrayLayout(data.ArrayLayout(signed(p.slice_sum_width),
                                                       p.out_channels), p.tokens)
        accs = data.ArrayLayout(data.ArrayLayout(signed(p.slice_acc_width), p.out_channels),
                                p.tokens)
        with m.If(r2["valid"]):
            self.check(m, "assert", (internal["s2_mode"] == r2["mode"]) &
                       (internal["s2_tag"] == r2["tag"]) & (internal["s2_first"] == r2_first) &
                       (internal["s2_last"] == r2_last), "invariant: stage 2")
            self._in_range(m, view("s2_sum_h", slice_sums), view("s2_sum_l", slice_sums), 1,
                           "invariant: stage 2 slice sums in range")
            self._combined(m, r2["mode"], view("s2_sum_h", slice_sums),
                           view("s2_sum_l", slice_sums), r2_sums, "invariant: stage 2 sums")
        with m.If(acc_beats != 0):
            self._in_range(m, view("out_acc_h", accs), view("out_acc_l", accs), B - 1,
                           "invariant: accumulators in range")
            self._combined(m, acc_mode, view("out_acc_h", accs), view("out_acc_l", accs), acc,
                           "invariant: accumulators")

        # the beats in flight are consecutive beats of their operations, one mode per operation
        name = "invariant: the beats in flight are consecutive, one mode per operation"
        cur_mode = Signal(MacMode)          # the mode of the last beat taken
        with m.If(fire):
            m.d.sync += cur_mode.eq(op.mode)
        v1, v2 = r1["valid"], r2["valid"]
        with m.If(v1):
            self.check(m, "assert", (following(r1["beat"]) == beat) & (r1["mode"] == cur_mode),
                       name)
            with m.If(v2):
                self.check(m, "assert", following(r2["beat"]) == r1["beat"], name)
                with m.If(r1["beat"] != 0):
                    self.check(m, "assert", r1["mode"] == r2["mode"], name)
            with m.Else():
                self.check(m, "assert", r1["beat"] == acc_beats, name)
                with m.If(r1["beat"] != 0):
                    self.check(m, "assert", r1["mode"] == acc_mode, name)
        with m.If(v2):
            self.check(m, "assert", r2["beat"] == acc_beats, name)
            with m.If(~r2_first):
                self.check(m, "assert", r2["mode"] == acc_mode, name)
            with m.If(~v1):
                self.check(m, "assert", (following(r2["beat"]) == beat) &
                           (r2["mode"] == cur_mode), name)
        with m.If(~v1 & ~v2):
            self.check(m, "assert", acc_beats == beat, name)
            with m.If(acc_beats != 0):
                self.check(m, "assert", acc_mode == cur_mode, name)
        with m.If(self.settled & (beat != 0)):
            self.check(m, "assert", dut.op.valid & (op.mode == cur_mode),
                       "invariant: an operation is held for all its beats")

    def _in_range(self, m, upper, lower, beats, name):
        """Assert that slice sums over ``beats`` beats lie in the range lane products reach."""
        p = self.params
        lo, hi = p.lane_product_range
        for sums in (upper, lower):
            for t in range(p.tokens):
                for n in range(p.out_channels):
                    self.check(m, "assert", (sums[t][n] >= lo * p.lanes * beats) &
                               (sums[t][n] <= hi * p.lanes * beats), name)

    def _combined(self, m, mode, upper, lower, expect, name):
        """Assert that slice sums ``upper``/``lower`` combine per ``mode`` to ``expect``."""
        p = self.params
        for t in range(p.tokens):
            for n in range(p.out_channels):
                h, l = upper[t][n], lower[t][n]
                first, second = expect[t][n], expect[t][p.out_channels + n]
                with m.Switch(mode):
                    with m.Case(MacMode.FULL):
                        self.check(m, "assert", (h * 8 + l == first) & (second == 0), name)
                    with m.Case(MacMode.LSB):
                        self.check(m, "assert", (h == first) & (l == second), name)
                    with m.Default():
                        self.check(m, "assert", (h * 8 == first) & (l * 8 == second), name)


class MacSplit(_MacHarness):
    """FULL = MSB + LSB on three arrays in lock step; broken: the LSB array is given the upper
    slices instead of the lower ones."""

    def build(self, m, platform):
        p = self.params
        arrays = {}
        for mode in (MacMode.FULL, MacMode.MSB, MacMode.LSB):
            arrays[mode] = self._dut(m, platform, name=f"dut_{mode.name.lower()}")
        full, msb, lsb = (arrays[k][0] for k in (MacMode.FULL, MacMode.MSB, MacMode.LSB))
        # one set of inputs: the FULL array's (free, rules assumed); the others follow
        for name in ("op", "act", "weights"):
            self.stream_in(m, getattr(full, name), name)
        self.stream_out(m, full.results, "results")
        codes = weight_layout(p)(full.weights.payload.as_value())
        spare = self.free(weight_layout(p).size, "spare_nibbles")
        spare = weight_layout(p)(spare)
        for mode, dut in ((MacMode.MSB, msb), (MacMode.LSB, lsb)):
            m.d.comb += [dut.op.valid.eq(full.op.valid), dut.act.valid.eq(full.act.valid),
                         dut.weights.valid.eq(full.weights.valid),
                         dut.results.ready.eq(full.results.ready),
                         dut.act.payload.eq(full.act.payload),
                         dut.op.payload.tag.eq(full.op.payload.tag),
                         dut.op.payload.load_act.eq(full.op.payload.load_act),
                         dut.op.payload.mode.eq(mode)]
            for k in range(p.lanes):
                for n in range(p.out_channels):
                    nibble = codes[k][n].hi if mode is MacMode.MSB or self.broken \
                        else codes[k][n].lo
                    m.d.comb += [dut.weights.payload[k][n].hi.eq(nibble),
                                 dut.weights.payload[k][n].lo.eq(spare[k][n].lo)]
        self.check(m, "assume", full.op.payload.mode == MacMode.FULL, "the first array runs FULL")

        for dut in (msb, lsb):
            self.check(m, "assert", (dut.results.valid == full.results.valid) &
                       (dut.op.ready == full.op.ready), "the arrays run in lock step")
        with m.If(full.results.valid):
            for t in range(p.tokens):
                for n in range(p.out_channels):
                    self.check(m, "assert", full.results.payload.sums[t][n] ==
                               msb.results.payload.sums[t][n] + lsb.results.payload.sums[t][n],
                               "FULL = MSB + LSB")
        self.check(m, "cover", full.results.valid & full.results.ready &
                   (msb.results.payload.sums[0][0] != 0) & (lsb.results.payload.sums[0][0] != 0),
                   "a FULL result with nonzero MSB and LSB parts is taken")

        # invariants: the FULL array's upper sums are the MSB array's, its lower the LSB array's
        fi, mi, li = (arrays[k][1] for k in (MacMode.FULL, MacMode.MSB, MacMode.LSB))
        for name in ("in_beat", "s1_valid", "s1_first", "s1_last", "s1_beat", "s1_act_tile",
                     "s2_valid", "s2_first", "s2_last", "s1_tag", "s2_tag"):
            self.check(m, "assert", (mi[name] == fi[name]) & (li[name] == fi[name]),
                       f"invariant: {name} in lock step")
        for stage in ("s1", "s2"):
            with m.If(fi[f"{stage}_valid"]):
                self.check(m, "assert", (fi[f"{stage}_mode"] == MacMode.FULL) &
                           (mi[f"{stage}_mode"] == MacMode.MSB) &
                           (li[f"{stage}_mode"] == MacMode.LSB), "invariant: modes")
        w = lambda i: weight_layout(p)(i["s1_weights"])
        for k in range(p.lanes):
            for n in range(p.out_channels):
                self.check(m, "assert", (w(mi)[k][n].hi == w(fi)[k][n].hi) &
                           (w(li)[k][n].hi == w(fi)[k][n].lo), "invariant: stage 1 weights")
        # stage 2 holds sums of the weights in stage 1 (only meaningful when valid); the
        # accumulators of all three start at 0 and add them in lock step
        with m.If(fi["s2_valid"]):
            self.check(m, "assert", (mi["s2_sum_h"] == fi["s2_sum_h"]) &
                       (li["s2_sum_h"] == fi["s2_sum_l"]), "invariant: stage 2 slice sums")
        self.check(m, "assert", (mi["out_acc_h"] == fi["out_acc_h"]) &
                   (li["out_acc_h"] == fi["out_acc_l"]), "invariant: accumulator slices")
