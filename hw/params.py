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


# -- expert-cache controller ------------------------------------------------------------------------

__all__ += ["CacheOp", "CacheStatus", "CachePolicy", "SelectScope", "CACHE_OP_BITS",
            "CACHE_STATUS_BITS", "ExpertCacheParams", "CACHE_DEFAULT", "CACHE_FREQUENCY",
            "CACHE_PAPER", "CACHE_PRESETS"]

class CacheOp(enum.IntEnum):
    """Request opcodes of the expert-cache controller (``CACHE_OP_BITS`` wide; codes 9-15 unused,
    answered with ``BAD_OPCODE``)."""
    LOOKUP = 0
    INSTALL = 1
    PIN = 2
    UNPIN = 3
    INVALIDATE = 4
    INVALIDATE_ALL = 5
    COUNT = 6
    SELECT = 7
    RESET_COUNTS = 8


class CacheStatus(enum.IntEnum):
    """Response status of the expert-cache controller (``CACHE_STATUS_BITS`` wide).

    ``OK``, ``HIT``, ``MISS`` and ``NO_ROOM`` are outcomes; the rest are errors, after which the
    controller's state is exactly as before the request.
    """
    OK = 0            # done (INSTALL placed, PIN/UNPIN/INVALIDATE/COUNT/...; SELECT installed a key)
    HIT = 1           # LOOKUP found the key; SELECT found a selected key already resident
    MISS = 2          # LOOKUP did not find the key
    NO_ROOM = 3       # SELECT: a selected key's set has no way left (all pinned or already chosen)
    BAD_OPCODE = 4    # opcode outside CacheOp
    BAD_RANGE = 5     # layer or expert index out of range
    ABSENT = 6        # PIN, UNPIN or INVALIDATE of a key that is not resident
    PRESENT = 7       # INSTALL of a key that is already resident
    PINNED = 8        # INSTALL with every way of the set pinned; INVALIDATE of a pinned entry

    @property
    def is_error(self):
        return self >= CacheStatus.BAD_OPCODE


class CachePolicy(enum.IntEnum):
    """Victim choice of INSTALL and SELECT (an elaboration-time parameter, not a code fork)."""
    LRU = 0           # least recently used (cached decoding)
    FREQUENCY = 1     # lowest routing count, then least recently used (Elastic-SD)


class SelectScope(enum.IntEnum):
    """What SELECT's capacity counts: keys per layer, or keys over all layers."""
    PER_LAYER = 0
    GLOBAL = 1


CACHE_OP_BITS = 4
CACHE_STATUS_BITS = 4
assert max(CacheOp) < (1 << CACHE_OP_BITS) and max(CacheStatus) < (1 << CACHE_STATUS_BITS)


def _parse_enum(owner, name, value, enum_type):
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str) and value.upper() in enum_type.__members__:
        return enum_type[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value in set(enum_type):
        return enum_type(value)
    raise ValueError(f"{owner}.{name} must be one of "
                     f"{', '.join(enum_type.__members__)}, not {value!r}")


@dataclass(frozen=True)
class ExpertCacheParams:
    """The expert-cache controller: a tag store mapping (layer, expert) to an HB slot.

    ``slots`` HB slots are organised as ``sets = slots // ways`` sets of ``ways`` ways (``ways ==
    slots`` is fully associative, ``ways == 1`` direct mapped). The key ``k = layer * experts +
    expert`` lives in set ``k % sets``, way ``w``, slot ``set * ways + w``. Every expert has a
    saturating routing counter of ``counter_width`` bits. SELECT keeps at most ``select_capacity``
    keys per layer (``select_scope = PER_LAYER``) or over all layers (``GLOBAL``).

    Request index fields are one value wider than the ranges (``layer_bits``, ``expert_bits``), so
    an out-of-range index reaches the controller and is rejected rather than wrapped.
    """
    slots: int = 8
    layers: int = 3
    experts: int = 12
    ways: int = 4
    counter_width: int = 3
    policy: CachePolicy = CachePolicy.LRU
    select_scope: SelectScope = SelectScope.PER_LAYER
    select_capacity: int = 2
    tag_width: int = 8

    def __post_init__(self):
        owner = type(self).__name__
        for name in ("slots", "layers", "experts", "ways", "counter_width", "select_capacity",
                     "tag_width"):
            _check_positive_int(owner, name, getattr(self, name))
        object.__setattr__(self, "policy", _parse_enum(owner, "policy", self.policy, CachePolicy))
        object.__setattr__(self, "select_scope",
                           _parse_enum(owner, "select_scope", self.select_scope, SelectScope))
        if self.slots % self.ways != 0:
            raise ValueError(f"{owner}.slots ({self.slots}) must be a multiple of ways "
                             f"({self.ways})")
        sets = self.slots // self.ways
        if sets & (sets - 1):
            raise ValueError(f"{owner}: slots // ways = {sets} sets must be a power of two "
                             f"(the set index is the low bits of the key)")
        if self.slots > self.layers * self.experts:
            raise ValueError(f"{owner}.slots ({self.slots}) exceeds the {self.layers * self.experts}"
                             f" keys (layers x experts) it could hold")
        limit = self.slots if self.select_scope is SelectScope.GLOBAL else self.experts
        if self.select_capacity > limit:
            raise ValueError(f"{owner}.select_capacity ({self.select_capacity}) exceeds "
                             f"{limit} ({'slots' if limit == self.slots else 'experts'})")
        if (self.select_scope is SelectScope.PER_LAYER
                and self.select_capacity * self.layers > self.slots):
            raise ValueError(f"{owner}.select_capacity ({self.select_capacity}) per layer x "
                             f"{self.layers} layers exceeds the {self.slots} slots")

    # -- derived sizes and widths ------------------------------------------------------------------
    @property
    def sets(self):
        return self.slots // self.ways

    @property
    def keys(self):
        """Counters (and possible keys): ``layers * experts``."""
        return self.layers * self.experts

    @property
    def layer_bits(self):
        """Request layer field: holds ``layers`` itself, the first out-of-range value."""
        return unsigned_width(self.layers)

    @property
    def expert_bits(self):
        return unsigned_width(self.experts)

    @property
    def slot_bits(self):
        return unsigned_width(self.slots - 1)

    @property
    def way_bits(self):
        return unsigned_width(self.ways - 1)

    @property
    def set_bits(self):
        """Bits of the set index (0 when fully associative)."""
        return (self.sets - 1).bit_length()

    @property
    def counter_max(self):
        return (1 << self.counter_width) - 1

    def key_index(self, layer, expert):
        return layer * self.experts + expert

    def set_of(self, layer, expert):
        return self.key_index(layer, expert) % self.sets

    # -- serialisation -----------------------------------------------------------------------------
    def to_dict(self):
        values = asdict(self)
        values["policy"] = self.policy.name
        values["select_scope"] = self.select_scope.name
        return values

    @classmethod
    def from_dict(cls, values):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} parameter(s): {', '.join(unknown)}")
        return cls(**values)

    def describe(self):
        return (f"{self.slots} slots x {self.ways} ways, {self.layers} layers x {self.experts} "
                f"experts, {self.counter_width}-bit counters, {self.policy.name}, select "
                f"{self.select_capacity} {self.select_scope.name.lower().replace('_', ' ')}")


#: Small enough that a Verilator build and 100,000 operations take about a minute.
CACHE_DEFAULT = ExpertCacheParams()
#: The frequency-set policy with a global SELECT capacity, fully associative.
CACHE_FREQUENCY = ExpertCacheParams(slots=8, layers=3, experts=12, ways=8, counter_width=4,
                                    policy=CachePolicy.FREQUENCY, select_scope="GLOBAL",
                                    select_capacity=6)
#: Paper-like: 64 experts per layer (Qwen3-30B-A3B has 128, DeepSeek-V2-Lite 64), 4 layers per
#: controller, a quarter of the experts resident, 8-way sets.
CACHE_PAPER = ExpertCacheParams(slots=64, layers=4, experts=64, ways=8, counter_width=8,
                                policy=CachePolicy.FREQUENCY, select_capacity=16)

CACHE_PRESETS = {"default": CACHE_DEFAULT, "paper": CACHE_PAPER}
