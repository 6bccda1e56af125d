"""Parameters of every block, shared by the RTL, the golden model and the scheduler.

This module imports no Amaranth: the NumPy model reads the same numbers the hardware is built from,
so widths and sizes can never drift apart. One frozen dataclass per block; every derived width is a
property; ``__post_init__`` rejects impossible values with a sentence naming the parameter.
"""

from dataclasses import dataclass, field, fields, asdict
import enum

__all__ = [
    "MacMode", "MAC_MODE_BITS", "ParamsRecord", "MacArrayParams",
    "MAC_DEFAULT", "MAC_PAPER_PE", "MAC_PRESETS",
    "signed_width", "unsigned_width",
    "WEIGHT_BITS", "SLICE_BITS", "FIELD_BITS", "ACT_BITS", "QUANT_GROUP",
]

#: Bits of a weight code (signed INT8; docs/number-format.md).
WEIGHT_BITS = 8
#: Bits of one slice of a weight code (upper ``h`` or lower ``l``).
SLICE_BITS = 4
#: Width of the signed field a slice is widened to inside a bit-sliced MAC lane.
FIELD_BITS = SLICE_BITS + 1
#: Bits of an activation code (signed INT8).
ACT_BITS = 8
#: Weights per FP16 scale along the reduction axis, fixed by the number format.
QUANT_GROUP = 32


class ParamsRecord:
    """Serialisation shared by the parameter dataclasses (and the golden model's configs): a dict
    of plain values (enums by name) for JSON, and back, rejecting names the class does not have."""

    def to_dict(self):
        return {name: value.name if isinstance(value, enum.Enum) else value
                for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values):
        if not isinstance(values, dict):
            raise TypeError(f"{cls.__name__}.from_dict takes a dict, not {values!r}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} parameter(s): {', '.join(unknown)}")
        return cls(**values)


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
class MacArrayParams(ParamsRecord):
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

    def macs_per_cycle_in(self, mode):
        """Multiply-accumulates per cycle at full rate in ``mode``: a 4-bit mode (DRAFT, MSB,
        LSB) does twice FULL's, one weight per slice instead of one per slice-lane pair."""
        return self.tokens * self.weights_per_beat(mode)

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
    def scale_slots(self):
        """Weight groups whose ``2 * out_channels`` FP16 scales (a *scale slot*) one weight beat
        holds: the largest power of two that fits (``lanes / 4`` rounded down)."""
        fit = self.weight_beat_bits // (16 * self.result_channels)
        return 1 << (fit.bit_length() - 1)

    @property
    def act_beat_bits(self):
        return self.tokens * self.lanes * ACT_BITS

    def describe(self):
        return (f"{self.tokens}x{self.group_size}x{self.out_channels} "
                f"(tokens x group x channels), {self.lanes} lanes"
                + ("" if self.augmented else ", no augmentation bit"))


#: Small enough to simulate in seconds; several beats per group, so accumulation is exercised.
MAC_DEFAULT = MacArrayParams()
#: The paper's PE, its "16x32x32 bit-sliced MAC array": 16 tokens x 32 lanes x 32 slice columns,
#: i.e. 16 slice-lane pairs per lane (16 INT8 output channels in FULL, 32 in the 4-bit modes), one
#: 32-weight group per cycle: 8192 W8A8 or 16384 W4A8 MACs per cycle, which at the paper's 1 GHz
#: and 2 operations per MAC are its 524 / 1049 TOPS for 32 PEs.
MAC_PAPER_PE = MacArrayParams(tokens=16, group_size=32, out_channels=16, lanes=32)

MAC_PRESETS = {"default": MAC_DEFAULT, "paper": MAC_PAPER_PE}


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
class ExpertCacheParams(ParamsRecord):
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


# == Memory: the HB interface, the LPDDR weight stream port and their DRAM-die models ==============

__all__ += [
    "ns_to_cycles", "MemPortParams", "HbInterfaceParams", "LpddrPortParams",
    "DramTiming", "HbBankTiming", "Lpddr5Timing", "MemOp", "MemStatus",
    "HB_DEFAULT", "HB_PAPER", "HB_PRESETS", "LPDDR_DEFAULT", "LPDDR_PAPER", "LPDDR_PRESETS",
]

#: The logic die's clock for both memories: HB 256 bit x 1.6 GHz = 51.2 GB/s per PE channel (paper),
#: LPDDR5-6400 x 8 channels x 16 bit = 102.4 GB/s = 512 bit x 1.6 GHz (paper).
MEM_CLOCK_MHZ = 1600


def ns_to_cycles(ns, clock_mhz=MEM_CLOCK_MHZ):
    """A DRAM timing in ns as whole cycles at ``clock_mhz``, rounded up (a DRAM timing is a
    minimum, so it may only be stretched)."""
    cycles = ns * clock_mhz / 1000
    return max(1, int(-(-round(cycles * 1000) // 1000)))


class MemOp(enum.IntEnum):
    """Request kind on a memory request stream (1-bit field)."""
    READ = 0
    WRITE = 1


class MemStatus(enum.IntEnum):
    """Status of a memory response beat (1-bit field)."""
    OK = 0
    ERROR = 1


@dataclass(frozen=True)
class MemPortParams(ParamsRecord):
    """A logic-die memory port: ``channels`` independent request/response channel pairs.

    Addresses and lengths count words of ``data_width`` bits. A channel holds ``words`` words, so
    valid requests satisfy ``1 <= length <= max_length`` and ``address + length <= words``; the
    address field is ``address_width`` bits wide and may name words beyond the device (those get an
    error response). ``die_burst`` words is the largest column-access command sent to the die; a
    request is cut at multiples of it. ``outstanding`` requests may be in flight per channel; the
    read buffer holds ``read_buffer`` words (reserved when a read command is issued to the die, so
    the die is never stalled by a slow consumer).
    """
    channels: int = 2
    data_width: int = 256
    words: int = 1 << 15
    address_width: int = 16
    max_length: int = 32
    die_burst: int = 8
    outstanding: int = 8
    read_buffer: int = 128
    write_buffer: int = 64
    tag_width: int = 8
    clock_mhz: int = MEM_CLOCK_MHZ

    def __post_init__(self):
        owner = type(self).__name__
        for name in ("channels", "data_width", "words", "address_width", "max_length",
                     "die_burst", "outstanding", "read_buffer", "write_buffer", "tag_width",
                     "clock_mhz"):
            _check_positive_int(owner, name, getattr(self, name))
        if self.data_width % 8:
            raise ValueError(f"{owner}.data_width ({self.data_width}) must be whole bytes")
        if self.words > (1 << self.address_width):
            raise ValueError(f"{owner}.words ({self.words}) do not fit in address_width "
                             f"({self.address_width}) bits")
        if self.die_burst & (self.die_burst - 1):
            raise ValueError(f"{owner}.die_burst ({self.die_burst}) must be a power of two")
        if self.read_buffer < self.die_burst:
            raise ValueError(f"{owner}.read_buffer ({self.read_buffer}) must hold at least one "
                             f"die burst ({self.die_burst})")
        if self.outstanding < 2:
            raise ValueError(f"{owner}.outstanding ({self.outstanding}) must be at least 2")

    @property
    def length_width(self):
        return unsigned_width(self.max_length)

    @property
    def bytes_per_word(self):
        return self.data_width // 8

    @property
    def capacity_bytes(self):
        return self.words * self.bytes_per_word

    @property
    def peak_gbps(self):
        """Peak bandwidth of one channel in GB/s: one word per cycle."""
        return self.bytes_per_word * self.clock_mhz / 1000

    def describe(self):
        return (f"{self.channels} ch x {self.data_width} bit, {self.capacity_bytes >> 10} KiB/ch, "
                f"{self.peak_gbps:.1f} GB/s/ch")


@dataclass(frozen=True)
class HbInterfaceParams(MemPortParams):
    """The hybrid-bonding interface: one channel per PE (paper: 51.2 GB/s, 256 MB per PE bank)."""


@dataclass(frozen=True)
class LpddrPortParams(MemPortParams):
    """The shared LPDDR5 weight stream port: ``clients`` requesters (PEs) share one channel of
    102.4 GB/s (paper); the client's index travels in the upper bits of the channel's tag."""
    channels: int = 1
    data_width: int = 512
    words: int = 1 << 14
    address_width: int = 15
    clients: int = 2

    def __post_init__(self):
        super().__post_init__()
        _check_positive_int(type(self).__name__, "clients", self.clients)
        if self.channels != 1:
            raise ValueError(f"LpddrPortParams.channels ({self.channels}) must be 1: the LPDDR "
                             "stream is one shared port")

    @property
    def client_width(self):
        return unsigned_width(self.clients - 1)

    @property
    def channel_tag_width(self):
        """Tag width inside the port: the client's index above the client's tag."""
        return self.tag_width + self.client_width

    def describe(self):
        return super().describe() + f", {self.clients} clients"


@dataclass(frozen=True)
class DramTiming(ParamsRecord):
    """Bank, row and timing model of one DRAM channel, in cycles of the logic-die clock.

    Address map (word address, low to high): column (``row_words``), bank (``banks``), row, so a
    sequential stream moves to the next bank at every row and can open it while the previous one
    still transfers. ``t_rcd`` activate to column access, ``t_rp`` precharge to activate,
    ``t_ras`` activate to precharge, ``t_cl`` read column access to data, ``t_wr`` last write to
    precharge, ``t_rrd`` activate to activate (any banks), ``t_rtw`` read/write bus turnaround.
    Refresh is per bank: every ``t_refi_pb`` cycles one more bank owes a refresh of ``t_rfc_pb``
    cycles; the die refreshes, in any order, a bank no queued command needs (first the bank
    before the one just accessed: in a sweep, the one needed last), each bank once per round, and may postpone up to ``refresh_postpone``
    refreshes before it must stall traffic to refresh. ``queue_depth`` die commands are
    visible to the row scheduler (the look-ahead that overlaps activates with transfers).
    ``pj_per_bit`` is the access energy the performance model charges per bit moved. The defaults
    here are :class:`HbBankTiming`'s; the sources are given there and in :class:`Lpddr5Timing`.
    """
    banks: int = 16
    row_words: int = 64
    t_rcd: int = 23
    t_rp: int = 23
    t_ras: int = 53
    t_cl: int = 23
    t_wr: int = 26
    t_rrd: int = 4
    t_rtw: int = 4
    t_refi_pb: int = 390
    t_rfc_pb: int = 256
    refresh_postpone: int = 8
    queue_depth: int = 8
    pj_per_bit: float = 0.43

    def __post_init__(self):
        owner = type(self).__name__
        for f in fields(self):
            if f.name != "pj_per_bit":
                _check_positive_int(owner, f.name, getattr(self, f.name))
        if (isinstance(self.pj_per_bit, bool) or not isinstance(self.pj_per_bit, (int, float))
                or not self.pj_per_bit > 0):
            raise ValueError(f"{owner}.pj_per_bit must be a positive number, not "
                             f"{self.pj_per_bit!r}")
        for name in ("banks", "row_words"):
            value = getattr(self, name)
            if value & (value - 1):
                raise ValueError(f"{owner}.{name} ({value}) must be a power of two")
        if self.t_cl < 2:
            raise ValueError(f"{owner}.t_cl ({self.t_cl}) must be at least 2 cycles")
        if self.queue_depth < 2:
            raise ValueError(f"{owner}.queue_depth ({self.queue_depth}) must be at least 2")

    def check_port(self, port):
        """Raise ValueError unless this die can serve channels of ``port`` (a MemPortParams)."""
        owner = type(self).__name__
        if self.row_words % port.die_burst:
            raise ValueError(f"{owner}.row_words ({self.row_words}) must be a multiple of the "
                             f"port's die_burst ({port.die_burst})")
        if port.words % (self.row_words * self.banks):
            raise ValueError(f"port words ({port.words}) must be a multiple of row_words x banks "
                             f"({self.row_words * self.banks})")


@dataclass(frozen=True)
class HbBankTiming(DramTiming):
    """One HB DRAM bank (per PE channel), HBM2/HBM3-like timings at the 1.6 GHz logic clock."""
    banks: int = 16                        # HBM2 pseudo-channel: 16 banks (JESD235)
    row_words: int = 64                    # 2 KB page (HBM2 channel) / 32 B words
    t_rcd: int = ns_to_cycles(14)          # HBM2 tRCD 14 ns (JESD235, typical data sheet)
    t_rp: int = ns_to_cycles(14)           # HBM2 tRP 14 ns
    t_ras: int = ns_to_cycles(33)          # HBM2 tRAS 33 ns
    t_cl: int = ns_to_cycles(14)           # HBM2 read latency (CL) 14 ns
    t_wr: int = ns_to_cycles(16)           # HBM2 tWR 16 ns
    t_rrd: int = ns_to_cycles(2)           # HBM2 tRRD 2 ns (tFAW not modelled: one ACT per row)
    t_rtw: int = ns_to_cycles(2)           # read/write bus turnaround, ~2 ns
    t_refi_pb: int = ns_to_cycles(3900 / 16)  # tREFI 3.9 us shared by 16 per-bank refreshes
    t_rfc_pb: int = ns_to_cycles(160)      # HBM2 tRFCSB (single-bank refresh) 160 ns, 8 Gb die
    pj_per_bit: float = 0.43               # HB read energy (paper)


@dataclass(frozen=True)
class Lpddr5Timing(DramTiming):
    """The LPDDR5-6400 channel group (8 x16 channels in lock step behind one 512-bit port)."""
    banks: int = 16                        # LPDDR5: 16 banks (JESD209-5, BG or 16B mode)
    row_words: int = 256                   # 8 channels x 2 KB page / 64 B words
    t_rcd: int = ns_to_cycles(18)          # LPDDR5 tRCD 18 ns (JESD209-5)
    t_rp: int = ns_to_cycles(18)           # LPDDR5 tRPpb 18 ns
    t_ras: int = ns_to_cycles(42)          # LPDDR5 tRAS 42 ns
    t_cl: int = ns_to_cycles(20)           # LPDDR5-6400 RL 17 nCK at 800 MHz CK + ~1 ns PHY
    t_wr: int = ns_to_cycles(34)           # LPDDR5 tWR 34 ns
    t_rrd: int = ns_to_cycles(5)           # LPDDR5 tRRD 5 ns
    t_rtw: int = ns_to_cycles(5)           # read/write turnaround ~5 ns
    t_refi_pb: int = ns_to_cycles(3906 / 8)   # tREFIpb = tREFI 3.906 us / 8 (JESD209-5)
    t_rfc_pb: int = ns_to_cycles(140)      # LPDDR5 tRFCpb 140 ns, 16 Gb die
    queue_depth: int = 16                  # look-ahead must cover tRP + tRCD (58 cycles)
    pj_per_bit: float = 3.88               # LPDDR5 access energy (paper)


#: Small enough to simulate: 2 channels of 1 MiB each.
HB_DEFAULT = HbInterfaceParams()
#: The paper's 8 GB configuration: 32 PE channels of 256 MB, 51.2 GB/s each.
HB_PAPER = HbInterfaceParams(channels=32, words=(256 << 20) // 32, address_width=23)
HB_PRESETS = {"default": HB_DEFAULT, "paper": HB_PAPER}

#: 1 MiB behind a 512-bit port shared by 2 clients.
LPDDR_DEFAULT = LpddrPortParams()
#: The paper's 64 GB LPDDR5, 102.4 GB/s, shared by 32 PEs.
LPDDR_PAPER = LpddrPortParams(words=(64 << 30) // 64, address_width=30, clients=32)
LPDDR_PRESETS = {"default": LPDDR_DEFAULT, "paper": LPDDR_PAPER}


# == The top level: PEs, command processor, memories around them ===================================

__all__ += ["TopParams", "TOP_DEFAULT", "TOP_PAPER", "TOP_PRESETS"]


def _top_hb(pes=2):
    return HbInterfaceParams(channels=pes, words=2048, address_width=12, max_length=16)


def _top_lpddr(pes=2):
    return LpddrPortParams(data_width=256, words=4096, address_width=13, max_length=16,
                           clients=pes)


@dataclass(frozen=True)
class TopParams(ParamsRecord):
    """The assembled accelerator: ``pes`` PEs behind one command processor (:mod:`hw.isa` defines
    what the memories below mean).

    Each PE has a MAC array (``mac``), a weight memory of ``weight_words`` weight beats, an
    activation memory of ``act_words`` activation beats, an output memory of ``output_words`` MAC
    results, and HB channel ``p`` of ``hb`` (so ``hb.channels == pes``). The PEs are the ``clients``
    of the one LPDDR port ``lpddr``. ``input_words`` activation beats of host-written input memory
    are shared; the command memory holds ``command_words`` commands. Each PE's dequantising unit
    keeps ``accumulators`` binary32 accumulators of ``tokens x 2*out_channels`` values (MAC_DQ's
    ``acc``), so the scheduler can run that many token tiles over weights loaded once. The expert cache ``cache``
    maps keys to HB slots of ``slot_words`` HB words each, at the bottom of every HB channel.
    A weight beat must be a whole number of HB words and of LPDDR words (``hb_ratio``,
    ``lpddr_ratio``).

    ``clock_mhz`` is the PEs' clock, the rate of the MAC arrays in :meth:`peak_tops` (the memory
    ports run at their own ``clock_mhz``; in simulation the design is one clock domain and every
    figure is in cycles). ``gather_gbps`` (per PE) and ``stream_gbps`` (in all) are the on-die
    links that gather partial sums and activations and stream LPDDR weights to the PEs; only the
    performance model reads them (the RTL moves data through the command processor and the LPDDR
    port).
    """
    pes: int = 2
    mac: MacArrayParams = field(default_factory=MacArrayParams)
    cache: ExpertCacheParams = field(default_factory=ExpertCacheParams)
    hb: HbInterfaceParams = field(default_factory=_top_hb)
    hb_timing: HbBankTiming = field(default_factory=HbBankTiming)
    lpddr: LpddrPortParams = field(default_factory=_top_lpddr)
    lpddr_timing: Lpddr5Timing = field(default_factory=Lpddr5Timing)
    weight_words: int = 64
    act_words: int = 32
    output_words: int = 32
    input_words: int = 64
    slot_words: int = 16
    command_words: int = 256
    accumulators: int = 4
    clock_mhz: int = 1000
    gather_gbps: float = 32.0
    stream_gbps: float = 128.0

    _BLOCKS = {"mac": MacArrayParams, "cache": ExpertCacheParams, "hb": HbInterfaceParams,
               "hb_timing": HbBankTiming, "lpddr": LpddrPortParams,
               "lpddr_timing": Lpddr5Timing}

    def __post_init__(self):
        owner = type(self).__name__
        for name in ("pes", "weight_words", "act_words", "output_words", "input_words",
                     "slot_words", "command_words", "accumulators", "clock_mhz"):
            _check_positive_int(owner, name, getattr(self, name))
        if self.accumulators > 4:
            raise ValueError(f"{owner}.accumulators ({self.accumulators}) is more than the ISA's "
                             f"2-bit acc field selects (4)")
        for name in ("gather_gbps", "stream_gbps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{owner}.{name} must be a positive number, not {value!r}")
        for name, kind in self._BLOCKS.items():
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"{owner}.{name} must be a {kind.__name__}, not "
                                f"{getattr(self, name)!r}")
        if self.pes > 64:
            raise ValueError(f"{owner}.pes ({self.pes}) is more than the ISA's 6-bit pe field")
        if self.hb.channels != self.pes:
            raise ValueError(f"{owner}.hb.channels ({self.hb.channels}) must equal pes "
                             f"({self.pes}): every PE has its own HB channel")
        if self.lpddr.clients != self.pes:
            raise ValueError(f"{owner}.lpddr.clients ({self.lpddr.clients}) must equal pes "
                             f"({self.pes}): every PE is a client of the LPDDR port")
        if self.mac.lanes < 4:
            raise ValueError(f"{owner}.mac.lanes ({self.mac.lanes}) must be at least 4: a weight "
                             f"word holds the FP16 scales of a weight group and an activation "
                             f"word the binary32 scales of its tokens (the dequantising unit)")
        beat = self.mac.weight_beat_bits
        for name in ("hb", "lpddr"):
            width = getattr(self, name).data_width
            if beat % width:
                raise ValueError(f"{owner}.{name}.data_width ({width}) must divide the weight "
                                 f"beat ({beat} bits): a weight word is a whole number of "
                                 f"{name} words")
        if self.slot_region_words > self.hb.words:
            raise ValueError(f"{owner}: {self.cache.slots} slots of slot_words "
                             f"({self.slot_words}) do not fit in an HB channel of "
                             f"{self.hb.words} words")
        if self.cache.layers > 256 or self.cache.experts > 256:
            raise ValueError(f"{owner}.cache: the ISA's 8-bit layer and expert fields hold at "
                             f"most 256 layers and 256 experts, not {self.cache.layers} and "
                             f"{self.cache.experts}")
        limits = {"weight_words": 1 << 16, "act_words": 1 << 16, "output_words": 1 << 16,
                  "input_words": 1 << 16, "slot_words": 1 << 24}
        for name, limit in limits.items():
            if getattr(self, name) > limit:
                raise ValueError(f"{owner}.{name} ({getattr(self, name)}) is more than the ISA's "
                                 f"address fields reach ({limit})")
        if self.hb.words > 1 << 24 or self.lpddr.words > 1 << 32:
            raise ValueError(f"{owner}: the memories are larger than the ISA's address fields")
        self.hb_timing.check_port(self.hb)
        self.lpddr_timing.check_port(self.lpddr)

    def with_pes(self, pes):
        """The same machine with ``pes`` PEs (HB channels and LPDDR clients follow)."""
        from dataclasses import replace
        return replace(self, pes=pes, hb=replace(self.hb, channels=pes),
                       lpddr=replace(self.lpddr, clients=pes))

    @property
    def hb_ratio(self):
        """HB words per weight word."""
        return self.mac.weight_beat_bits // self.hb.data_width

    @property
    def lpddr_ratio(self):
        """LPDDR words per weight word."""
        return self.mac.weight_beat_bits // self.lpddr.data_width

    @property
    def slot_region_words(self):
        """HB words at the bottom of every channel that hold the cache's slots."""
        return self.cache.slots * self.slot_words

    @property
    def scale_slots(self):
        """Weight groups whose FP16 scales one weight word holds (:attr:`MacArrayParams.scale_slots`);
        slot ``j`` of WMEM is word ``j // scale_slots``, bits ``[(j % scale_slots) * 32 *
        out_channels, ...)``."""
        return self.mac.scale_slots

    @property
    def dq_rows(self):
        """Token rows the dequantising unit takes a cycle: the fewest (dividing ``tokens``) that
        finish one MAC result's rows before the next result can come (``beats_per_group``
        cycles later), so the unit never holds the array up."""
        tokens, beats = self.mac.tokens, self.mac.beats_per_group
        return next(r for r in range(1, tokens + 1) if tokens % r == 0 and tokens <= r * beats)

    @property
    def dq_words(self):
        """OMEM words of one dequantised result (``MAC_DQ``): ``tokens x 2*out_channels``
        binary32 values, element ``(t, s)`` at bit ``32 * (t * 2*out_channels + s)`` of the words
        taken together, the lowest word first."""
        return -(-32 * self.mac.tokens * self.mac.result_channels // self.result_bits)

    @property
    def result_bits(self):
        """Bits of one output-memory word: ``tokens x 2*out_channels`` results."""
        return self.mac.tokens * self.mac.result_channels * self.mac.result_width

    def to_dict(self):
        values = {name: getattr(self, name).to_dict() for name in self._BLOCKS}
        values.update({f.name: getattr(self, f.name) for f in fields(self)
                       if f.name not in self._BLOCKS})
        return values

    @classmethod
    def from_dict(cls, values):
        if not isinstance(values, dict):
            raise TypeError(f"{cls.__name__}.from_dict takes a dict, not {values!r}")
        values = dict(values)
        for name, kind in cls._BLOCKS.items():
            if name in values and isinstance(values[name], dict):
                values[name] = kind.from_dict(values[name])
        return super().from_dict(values)

    def peak_tops(self, mode):
        """Peak tera-operations per second of all PEs in ``mode`` (a :class:`MacMode`; two
        operations per multiply-accumulate, at ``clock_mhz``)."""
        return 2 * self.pes * self.mac.macs_per_cycle_in(mode) * self.clock_mhz * 1e6 / 1e12

    @property
    def hb_capacity_bytes(self):
        """HB bytes in all: every PE's channel."""
        return self.hb.channels * self.hb.capacity_bytes

    @property
    def hb_peak_gbps(self):
        """Peak HB bandwidth of all channels, GB/s."""
        return self.hb.channels * self.hb.peak_gbps

    def describe(self):
        return (f"{self.pes} PEs, MAC {self.mac.describe()}, cache {self.cache.slots} slots, "
                f"WMEM/AMEM/OMEM {self.weight_words}/{self.act_words}/{self.output_words} words")


#: Small enough to simulate: 2 PEs, the default MAC array and cache, small memories.
TOP_DEFAULT = TopParams()
#: The paper's machine: 32 PEs, each as the paper's PE: a 16x32x32 MAC array (its 4096-bit weight
#: beat is 16 HB words and 8 LPDDR words), a 32 KB weight memory (64 weight words), a 32 KB
#: input/output memory split into 16 KB of activations (32 beats of 4096 bits) and 15.75 KB of
#: results (12 words of 1344 B), one 256-bit HB channel of 51.2 GB/s and 256 MB (8 GB in all),
#: and a client of the shared 512-bit, 102.4 GB/s, 64 GB LPDDR port; the paper cache.
TOP_PAPER = TopParams(pes=32, mac=MAC_PAPER_PE, cache=CACHE_PAPER, hb=HB_PAPER,
                      lpddr=LPDDR_PAPER, weight_words=64, act_words=32, output_words=12,
                      input_words=8192, slot_words=1 << 16, command_words=1 << 16)
TOP_PRESETS = {"default": TOP_DEFAULT, "paper": TOP_PAPER}
