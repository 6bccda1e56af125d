"""Parameters of every block, shared by the RTL, the golden model and the scheduler.

This module imports no Amaranth: the NumPy model reads the same numbers the hardware is built from,
so widths and sizes can never drift apart. One frozen dataclass per block; every derived width is a
property; ``__post_init__`` rejects impossible values with a sentence naming the parameter.
"""

from dataclasses import dataclass, field, fields, asdict
import enum

__all__ = [
    "MacMode", "MAC_MODE_BITS", "MacArrayParams", "AcceleratorParams",
    "MAC_DEFAULT", "MAC_PAPER_PE", "MAC_PRESETS",
    "signed_width", "unsigned_width",
    "WEIGHT_BITS", "SLICE_BITS", "FIELD_BITS", "ACT_BITS", "QUANT_GROUP",
]

#: Bits of a weight code (signed INT8, DESIGN.md section 2).
WEIGHT_BITS = 8
#: Bits of one slice of a weight code (upper ``h`` or lower ``l``).
SLICE_BITS = 4
#: Width of the signed field a slice is widened to inside a bit-sliced MAC lane.
FIELD_BITS = SLICE_BITS + 1
#: Bits of an activation code (signed INT8).
ACT_BITS = 8
#: Weights per FP16 scale along the reduction axis, fixed by the number format.
QUANT_GROUP = 32


class MacMode(enum.IntEnum):
    """What a MAC array operation computes per weight (2-bit field on the ``op`` stream).

    ``FULL``  the INT8 code ``q = 16h + l``; one weight per slice-lane pair.
    ``DRAFT`` ``16h + 8`` (augmentation bit set); two weights per slice-lane pair.
    ``MSB``   ``16h``, the upper partial of split verification; two weights per lane pair.
    ``LSB``   ``l``, the lower partial of split verification; two weights per lane pair.
    """
    FULL = 0
    DRAFT = 1
    MSB = 2
    LSB = 3

    @property
    def weights_per_lane_pair(self):
        """Weights one slice-lane pair consumes per beat: 1 for an 8-bit code, 2 for 4-bit slices."""
        return 1 if self is MacMode.FULL else 2


#: Width of the mode field on the MAC array's streams (the enum's explicit shape).
MAC_MODE_BITS = 2
assert max(MacMode) < (1 << MAC_MODE_BITS)


def signed_width(lo, hi):
    """Smallest two's-complement width holding every integer in ``[lo, hi]``."""
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


def unsigned_width(hi):
    """Smallest unsigned width holding every integer in ``[0, hi]`` (at least 1)."""
    if hi < 0:
        raise ValueError(f"unsigned range cannot end at {hi}")
    return max(1, int(hi).bit_length())


def _check_positive_int(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.{name} must be an int, not {value!r}")
    if value <= 0:
        raise ValueError(f"{owner}.{name} must be a positive integer, not {value}")


@dataclass(frozen=True)
class MacArrayParams:
    """The LSB-augmented bit-sliced MAC array.

    One operation computes, for ``tokens`` tokens and one weight group of ``group_size`` reduction
    positions, the group partial sums of ``out_channels`` output channels (FULL) or twice as many
    (the 4-bit modes). The array holds ``lanes`` reduction positions x ``out_channels`` slice-lane
    pairs per token, so one operation takes ``group_size // lanes`` beats; with ``lanes ==
    group_size`` a group result leaves every cycle.

    ``augmented=False`` builds the ablation without the augmentation bit: DRAFT then computes plain
    truncation ``16h`` (equal to MSB).
    """
    tokens: int = 2
    group_size: int = 32
    out_channels: int = 4
    lanes: int = 8
    tag_width: int = 8
    augmented: bool = True

    def __post_init__(self):
        owner = type(self).__name__
        for name in ("tokens", "group_size", "out_channels", "lanes", "tag_width"):
            _check_positive_int(owner, name, getattr(self, name))
        if not isinstance(self.augmented, bool):
            raise TypeError(f"{owner}.augmented must be a bool, not {self.augmented!r}")
        if self.group_size % self.lanes != 0:
            raise ValueError(
                f"{owner}.group_size ({self.group_size}) must be a multiple of lanes "
                f"({self.lanes}): the slice lanes cannot tile the group otherwise")

    # -- derived sizes -----------------------------------------------------------------------------
    @property
    def beats_per_group(self):
        """Weight beats (and activation beats, when loading) per group operation."""
        return self.group_size // self.lanes

    @property
    def result_channels(self):
        """Result slots per token: ``2 * out_channels`` (FULL fills the first half only)."""
        return 2 * self.out_channels

    def weights_per_beat(self, mode):
        """Weights one beat carries in ``mode``."""
        return self.lanes * self.out_channels * MacMode(mode).weights_per_lane_pair

    def channels(self, mode):
        """Output channels one operation produces in ``mode``."""
        return self.out_channels * MacMode(mode).weights_per_lane_pair

    @property
    def macs_per_cycle(self):
        """8-bit multiply-accumulates per cycle at full rate in FULL mode."""
        return self.tokens * self.lanes * self.out_channels

    # -- derived widths ----------------------------------------------------------------------------
    @property
    def act_range(self):
        return (-(1 << (ACT_BITS - 1)), (1 << (ACT_BITS - 1)) - 1)

    @property
    def field_range(self):
        """Range of a 5-bit signed lane field (upper ``2h + a`` or lower ``l``)."""
        return (-(1 << (FIELD_BITS - 1)), (1 << (FIELD_BITS - 1)) - 1)

    @property
    def lane_product_range(self):
        """Range of one lane product ``x * field``."""
        (alo, ahi), (flo, fhi) = self.act_range, self.field_range
        corners = [alo * flo, alo * fhi, ahi * flo, ahi * fhi]
        return (min(corners), max(corners))

    @property
    def slice_sum_width(self):
        """Width of a per-beat slice sum over ``lanes`` lane products."""
        lo, hi = self.lane_product_range
        return signed_width(lo * self.lanes, hi * self.lanes)

    @property
    def slice_acc_width(self):
        """Width of a slice accumulator over a whole group."""
        lo, hi = self.lane_product_range
        return signed_width(lo * self.group_size, hi * self.group_size)

    @property
    def result_width(self):
        """Width of a group result: holds ``8 * slice accumulator``, which bounds every mode."""
        lo, hi = self.lane_product_range
        return signed_width(8 * lo * self.group_size, 8 * hi * self.group_size)

    @property
    def weight_beat_bits(self):
        return self.lanes * self.out_channels * WEIGHT_BITS

    @property
    def act_beat_bits(self):
        return self.tokens * self.lanes * ACT_BITS

    # -- serialisation -----------------------------------------------------------------------------
    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} parameter(s): {', '.join(unknown)}")
        return cls(**values)

    def describe(self):
        return (f"{self.tokens}x{self.group_size}x{self.out_channels} "
                f"(tokens x group x channels), {self.lanes} lanes"
                + ("" if self.augmented else ", no augmentation bit"))


#: Small enough to simulate in seconds; several beats per group, so accumulation is exercised.
MAC_DEFAULT = MacArrayParams()
#: The paper's PE: 16 tokens x 32-weight group x 32 output channels, one group per cycle.
MAC_PAPER_PE = MacArrayParams(tokens=16, group_size=32, out_channels=32, lanes=32)

MAC_PRESETS = {"default": MAC_DEFAULT, "paper": MAC_PAPER_PE}


@dataclass(frozen=True)
class AcceleratorParams:
    """The whole accelerator; later blocks add their dataclasses here."""
    mac: MacArrayParams = field(default_factory=MacArrayParams)

    def __post_init__(self):
        if not isinstance(self.mac, MacArrayParams):
            raise TypeError(f"AcceleratorParams.mac must be a MacArrayParams, not {self.mac!r}")
