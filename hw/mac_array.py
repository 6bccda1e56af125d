"""The LSB-augmented bit-sliced MAC array.

Every INT8 weight occupies a pair of slice lanes. Each lane multiplies an INT8 activation by a
signed 5-bit field made from one 4-bit nibble:

* upper lane ``H5 = {hi, a}`` = ``2h + a`` (or ``{0, hi}``, an unsigned ``l``, in LSB mode);
* lower lane ``L5 = {0, lo}`` = ``l`` (or ``{lo, a}``, a second weight's ``2h + a``, in DRAFT/MSB).

Each token and lane pair keeps two slice sums ``SH`` and ``SL`` over a group; the result is
``8*SH + SL`` = ``sum x*q`` in FULL, and the two sums as two channels (scaled by 8 for DRAFT/MSB) in
the 4-bit modes, which therefore process twice the weights per cycle. The augmentation bit ``a`` is
set only in DRAFT, which turns ``16h`` into ``16h + 8``.

Streams (``lib.stream``, ``valid``/``ready``; ready may depend on valid, never the reverse):

* ``op`` (in): one beat per group operation: ``mode``, ``tag`` (returned with the result) and
  ``load_act``. Held for the ``beats_per_group`` weight beats of the operation, accepted with the
  last. ``load_act = 1``: the operation takes its activations from ``act``; ``load_act = 0``: it
  reuses the activations of the most recent operation that loaded them, or, if none has since
  reset, all-zero activations (every sum of such an operation is 0).
* ``act`` (in): ``[tokens][lanes]`` signed INT8 activations, one beat per weight beat of an
  operation with ``load_act``; beat ``b`` holds reduction positions ``b*lanes ... b*lanes +
  lanes - 1``.
* ``weights`` (in): ``[lanes][out_channels]`` slice-lane bytes ``{lo, hi}``, beat ``b`` lane
  ``k`` for reduction position ``b*lanes + k``. FULL: pair ``n`` holds the INT8 code of channel
  ``n`` (``hi`` its upper nibble, ``lo`` its lower). DRAFT, MSB (upper nibbles) and LSB (lower
  nibbles): pair ``n`` holds two weights' nibbles, channel ``n`` in ``hi`` and channel
  ``out_channels + n`` in ``lo`` (:meth:`sw_model.golden.mac_array.SliceLevelMac.pack_weights`
  packs exactly this).
* ``results`` (out): one beat per operation, in operation order: ``tag`` and ``mode`` of its
  ``op`` beat, and ``sums[tokens][2*out_channels]`` (``result_width``-bit two's complement; every
  slot defined in every mode). With ``SH``/``SL`` the sums over the group of activation times the
  upper / lower lane field of pair ``n``: FULL: slot ``n`` = ``8*SH + SL`` (channel ``n``'s dot
  product) and slots ``out_channels ... 2*out_channels - 1`` are 0; DRAFT and MSB: slot ``n`` =
  ``8*SH`` (channel ``n``, from ``hi``) and slot ``out_channels + n`` = ``8*SL`` (channel
  ``out_channels + n``, from ``lo``); LSB: slot ``n`` = ``SH`` and slot ``out_channels + n`` =
  ``SL``. So in every mode slot ``s`` is the operation's channel ``s``.

Pipeline: input join -> stage 1 (weights and the activation tile registered) -> stage 2 (lane products
summed per beat) -> output (accumulate over the group, combine per mode). All stages advance
together whenever the output register is empty or being read, so at full rate one weight beat
enters per cycle.
"""

from amaranth import *
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from hw.component_args import ParamsComponent
from hw.params import MacArrayParams, MacMode, ACT_BITS, SLICE_BITS, FIELD_BITS

__all__ = ["MacArray", "SlicePair", "op_layout", "act_layout", "weight_layout", "result_layout"]


#: One byte of the weight stream: the two nibbles feeding a slice-lane pair.
SlicePair = data.StructLayout({"lo": unsigned(SLICE_BITS), "hi": unsigned(SLICE_BITS)})


def op_layout(params):
    return data.StructLayout({
        "mode": MacMode,
        "load_act": unsigned(1),
        "tag": unsigned(params.tag_width),
    })


def act_layout(params):
    return data.ArrayLayout(data.ArrayLayout(signed(ACT_BITS), params.lanes), params.tokens)


def weight_layout(params):
    return data.ArrayLayout(data.ArrayLayout(SlicePair, params.out_channels), params.lanes)


def result_layout(params):
    return data.StructLayout({
        "tag": unsigned(params.tag_width),
        "mode": MacMode,
        "sums": data.ArrayLayout(
            data.ArrayLayout(signed(params.result_width), params.result_channels), params.tokens),
    })


def _tree_sum(values):
    """Balanced adder tree (log depth) over a list of values."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


class MacArray(ParamsComponent):
    """The bit-sliced MAC array for ``params`` (:data:`hw.params.MAC_DEFAULT` when omitted); the
    module docstring states its stream contract."""

    PARAMS = MacArrayParams

    def members(self, params):
        return {
            "op": In(stream.Signature(op_layout(params))),
            "act": In(stream.Signature(act_layout(params))),
            "weights": In(stream.Signature(weight_layout(params))),
            "results": Out(stream.Signature(result_layout(params))),
        }

    def elaborate(self, platform):
        p = self.params
        m = Module()

        advance = Signal()
        m.d.comb += advance.eq(~self.results.valid | self.results.ready)

        # -- input join: one op beat per group, one weight beat (and act beat if loading) per beat
        # at least one bit: a zero-width counter comes out of Amaranth as `wire [-1:0]`
        beat_shape = range(max(p.beats_per_group, 2))
        in_beat = Signal(beat_shape)
        in_last = Signal()
        need_act = self.op.payload.load_act
        fire = Signal()
        m.d.comb += [
            in_last.eq(in_beat == p.beats_per_group - 1),
            fire.eq(advance & self.op.valid & self.weights.valid & (self.act.valid | ~need_act)),
            self.weights.ready.eq(fire),
            self.act.ready.eq(fire & need_act),
            self.op.ready.eq(fire & in_last),
        ]
        with m.If(fire):
            m.d.sync += in_beat.eq(Mux(in_last, 0, in_beat + 1))

        # -- stage 1: weights of this beat; the activation tile of the whole group
        s1_valid = Signal()
        s1_first = Signal()
        s1_last = Signal()
        s1_beat = Signal(beat_shape)
        s1_mode = Signal(MacMode)
        s1_tag = Signal(p.tag_width)
        s1_weights = Signal(weight_layout(p))
        s1_act_tile = Signal(data.ArrayLayout(act_layout(p), p.beats_per_group))
        with m.If(advance):
            m.d.sync += s1_valid.eq(fire)
            with m.If(fire):
                m.d.sync += [
                    s1_first.eq(in_beat == 0),
                    s1_last.eq(in_last),
                    s1_beat.eq(in_beat),
                    s1_mode.eq(self.op.payload.mode),
                    s1_tag.eq(self.op.payload.tag),
                    s1_weights.eq(self.weights.payload),
                ]
                with m.If(need_act):
                    m.d.sync += s1_act_tile[in_beat].eq(self.act.payload)

        # -- stage 2: lane fields, lane products, per-beat slice sums
        # One named copy of this beat's activations: every lane reads it, and indexing the tile
        # dynamically at each use would replicate the whole selector per lane.
        s1_act = Signal(act_layout(p))
        m.d.comb += s1_act.eq(s1_act_tile[s1_beat])
        upper_fields, lower_fields = self._lane_fields(m, s1_mode, s1_weights)

        slice_sums = data.ArrayLayout(
            data.ArrayLayout(signed(p.slice_sum_width), p.out_channels), p.tokens)
        s2_valid = Signal()
        s2_first = Signal()
        s2_last = Signal()
        s2_mode = Signal(MacMode)
        s2_tag = Signal(p.tag_width)
        s2_sum_h = Signal(slice_sums)
        s2_sum_l = Signal(slice_sums)
        with m.If(advance):
            m.d.sync += [
                s2_valid.eq(s1_valid),
                s2_first.eq(s1_first),
                s2_last.eq(s1_last),
                s2_mode.eq(s1_mode),
                s2_tag.eq(s1_tag),
            ]
            for t in range(p.tokens):
                for n in range(p.out_channels):
                    m.d.sync += [
                        s2_sum_h[t][n].eq(_tree_sum(
                            s1_act[t][k] * upper_fields[k][n] for k in range(p.lanes))),
                        s2_sum_l[t][n].eq(_tree_sum(
                            s1_act[t][k] * lower_fields[k][n] for k in range(p.lanes))),
                    ]

        # -- output: accumulate the group, combine the two slice sums per mode
        accs = data.ArrayLayout(
            data.ArrayLayout(signed(p.slice_acc_width), p.out_channels), p.tokens)
        out_acc_h = Signal(accs)
        out_acc_l = Signal(accs)
        with m.If(advance):
            m.d.sync += self.results.valid.eq(s2_valid & s2_last)
            with m.If(s2_valid & s2_last):
                m.d.sync += [
                    self.results.payload.tag.eq(s2_tag),
                    self.results.payload.mode.eq(s2_mode),
                ]
            with m.If(s2_valid):
                for t in range(p.tokens):
                    for n in range(p.out_channels):
                        new_h = Mux(s2_first, 0, out_acc_h[t][n]) + s2_sum_h[t][n]
                        new_l = Mux(s2_first, 0, out_acc_l[t][n]) + s2_sum_l[t][n]
                        first_slot = self.results.payload.sums[t][n]
                        second_slot = self.results.payload.sums[t][p.out_channels + n]
                        m.d.sync += [out_acc_h[t][n].eq(new_h), out_acc_l[t][n].eq(new_l)]
                        with m.If(s2_last), m.Switch(s2_mode):
                            with m.Case(MacMode.FULL):
                                m.d.sync += [first_slot.eq((new_h << 3) + new_l),
                                             second_slot.eq(0)]
                            with m.Case(MacMode.LSB):
                                m.d.sync += [first_slot.eq(new_h), second_slot.eq(new_l)]
                            with m.Default():
                                m.d.sync += [first_slot.eq(new_h << 3),
                                             second_slot.eq(new_l << 3)]
        return m

    def _lane_fields(self, m, s1_mode, s1_weights):
        """The signed 5-bit field of every upper and lower slice lane, as ``[lanes][channels]``
        grids: upper ``{hi, a}`` (``{0, hi}`` in LSB), lower ``{0, lo}`` (``{lo, a}`` in DRAFT and
        MSB, where it carries a second weight's upper slice). ``a`` is the augmentation bit."""
        p = self.params
        s1_lsb = Signal()
        s1_packed = Signal()      # lower lane holds a second weight's upper slice
        s1_aug = Signal()         # the augmentation bit
        m.d.comb += [
            s1_lsb.eq(s1_mode == MacMode.LSB),
            s1_packed.eq((s1_mode == MacMode.DRAFT) | (s1_mode == MacMode.MSB)),
            s1_aug.eq((s1_mode == MacMode.DRAFT) if p.augmented else 0),
        ]
        upper_fields, lower_fields = [], []
        for k in range(p.lanes):
            upper_row, lower_row = [], []
            for n in range(p.out_channels):
                pair = s1_weights[k][n]
                upper = Signal(signed(FIELD_BITS), name=f"s1_upper_{k}_{n}")
                lower = Signal(signed(FIELD_BITS), name=f"s1_lower_{k}_{n}")
                m.d.comb += [
                    upper.eq(Mux(s1_lsb, Cat(pair.hi, C(0, 1)), Cat(s1_aug, pair.hi))),
                    lower.eq(Mux(s1_packed, Cat(s1_aug, pair.lo), Cat(pair.lo, C(0, 1)))),
                ]
                upper_row.append(upper)
                lower_row.append(lower)
            upper_fields.append(upper_row)
            lower_fields.append(lower_row)
        return upper_fields, lower_fields
