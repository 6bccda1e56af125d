"""The command set of the ELMoE-3D command processor: one definition for the scheduler, the golden
executor (:mod:`sw_model.golden.top`) and the RTL decoder (:mod:`hw.command_processor`).

This module imports no Amaranth. A command is one 128-bit word: the opcode in bits ``[0, 5)``, then
the opcode's fields, LSB first, in the order :data:`FIELDS` lists them (the RTL builds its
``lib.data.StructLayout`` from the same list, so the two cannot drift); unused bits must be zero.
A stream is a sequence of commands, stored as 16 little-endian bytes each (:func:`encode` /
:func:`decode`) or as text, one command a line (:func:`assemble` / :func:`disassemble`)::

    LOAD_SLOT pe=0 slice=MSB wmem=0 count=4 layer=1 expert=3 offset=0
    MAC pe=0 mode=MSB reuse=0 wmem=0 amem=0 omem=0 count=1
    END

The machine (sizes from a :class:`hw.params.TopParams` ``P``)
-------------------------------------------------------------
* ``P.pes`` PEs. PE ``p`` owns a weight memory WMEM (``P.weight_words`` words of one MAC weight beat,
  ``P.mac.weight_beat_bits``, in the MAC array's wire format: see
  :meth:`sw_model.golden.mac_array.SliceLevelMac.pack_weights`), an activation memory AMEM
  (``P.act_words`` words of one activation beat, ``P.mac.act_beat_bits``), an output memory OMEM
  (``P.output_words`` words of one MAC result: ``tokens x 2*out_channels`` signed
  ``P.mac.result_width``-bit group partial sums, token-major, element 0 in the low bits), a MAC
  array, and HB channel ``p`` (``P.hb.words`` words of ``P.hb.data_width`` bits).
* Per PE, the dequantising unit's ``P.accumulators`` accumulators of ``tokens x 2*out_channels``
  binary32 values each (+0.0 after reset), read and written only by ``MAC_DQ``.
* One shared LPDDR memory (``P.lpddr.words`` words of ``P.lpddr.data_width`` bits), read-only for
  the stream.
* One shared input memory IMEM (``P.input_words`` activation beats), written by the host: the
  quantised INT8 activations of the expert layers.
* One expert-cache controller (:mod:`hw.expert_cache`, rules in
  :mod:`sw_model.golden.expert_cache`): a key ``(layer, expert)`` lives in an HB *slot*. Slot ``s``
  is HB words ``[s * P.slot_words, (s + 1) * P.slot_words)`` of every PE's channel (each PE holds
  its shard of the expert there); the words from ``P.slot_region_words`` on are free for raw HB
  loads (dense layers and the like).
* A weight word is ``P.hb_ratio`` HB words (``P.lpddr_ratio`` LPDDR words), lowest bits first.

Semantics: commands take effect in stream order. (The RTL runs the PEs concurrently, but each PE's
commands in order, and nothing is shared between PEs except the read-only LPDDR and IMEM and the
cache, which the processor handles itself; so the result equals in-order execution.) Before a
command has any effect it is checked; an illegal command stops the stream with an
:class:`ErrorCode` and the index of that command, every memory and the cache exactly as after the
previous command. The checks, in this order (the first failing one gives the code):

1. ``BAD_OPCODE``: the opcode is not an :class:`Opcode`.
2. ``BAD_FIELD``: a bit outside the opcode's fields is set, or a field is out of its range (``pe``
   ``< P.pes``; ``slice`` a :class:`Slice`; ``count >= 1``; ``layer < P.cache.layers``; ``expert
   < P.cache.experts``; MAC_DQ's ``split`` only with mode FULL and ``acc < P.accumulators``; ``cop`` a :class:`hw.params.CacheOp`; COUNT's ``vector`` no bit at or
   beyond ``P.cache.experts`` after the shift by ``64 * chunk``).
3. ``BAD_ADDRESS``: an access reaches beyond its memory (each ``address + words`` against the
   memory's size), a raw ``LOAD_HB`` touches the slot region, or a slot access leaves its slot.
4. ``SLOT_NOT_INSTALLED``: ``LOAD_SLOT``/``WRITE_SLOT`` name a key that holds no slot right now
   (never installed, invalidated, or evicted by INSTALL or SELECT: this is how a SELECT that evicts
   an expert which verification still reads is caught).
5. ``CACHE_ERROR``: the cache controller answered an error status (``PRESENT``, ``ABSENT``,
   ``PINNED``); the controller's state is unchanged.

Running past the last command without ``END`` stops with ``NO_END`` at index ``len(stream)``.

Commands (fields: name, width in bits)
--------------------------------------
See each :class:`Opcode` member's documentation below.
"""

import enum
import re
from dataclasses import dataclass

from hw.params import CacheOp, MacMode

__all__ = ["Opcode", "Slice", "ErrorCode", "Field", "FIELDS", "OPCODE_BITS", "COMMAND_BITS",
           "COMMAND_BYTES", "COUNT_CHUNK_BITS", "Command", "StreamError", "encode_word",
           "decode_word", "encode", "decode", "assemble", "disassemble", "check_command",
           "as_words", "PHASES"]

#: Bits of the opcode field (at the bottom of every command).
OPCODE_BITS = 5
#: Bits of one command.
COMMAND_BITS = 128
COMMAND_BYTES = COMMAND_BITS // 8
#: Experts one COUNT command's ``vector`` covers; ``chunk`` selects which 64 of the layer.
COUNT_CHUNK_BITS = 64
#: Phase counters of the status register (BARRIER's ``phase`` field).
PHASES = 4


class Opcode(enum.IntEnum):
    """Command opcodes (``OPCODE_BITS`` wide; the other codes answer ``BAD_OPCODE``).

    ``END``        stop; the stream is done (status ``NONE``).
    ``BARRIER``    wait until every earlier command has finished on every PE; from then on the
                   cycles count towards phase ``phase`` (0 until the first BARRIER). No effect on
                   memories.
    ``LOAD_HB``    PE ``pe``: WMEM[``wmem`` + i] = the ``P.hb_ratio`` HB words at ``hb + i *
                   P.hb_ratio`` of its own channel, for i < ``count``. ``hb`` must lie outside the
                   slot region (dense weights). ``slice`` says what the words hold (WHOLE codes,
                   MSB or LSB slices, each already in the MAC's wire format for the mode that will
                   read them); the move is verbatim.
    ``LOAD_LPDDR`` PE ``pe``: WMEM[``wmem`` + i] = the ``P.lpddr_ratio`` LPDDR words at ``lpddr +
                   i * P.lpddr_ratio``, for i < ``count``; ``slice`` as for LOAD_HB.
    ``LOAD_SLOT``  PE ``pe``: as LOAD_HB from HB address ``slot * P.slot_words + offset``, where
                   ``slot`` holds the key (``layer``, ``expert``) now; the ``count * P.hb_ratio``
                   words must stay inside the slot.
    ``WRITE_SLOT`` PE ``pe``: the reverse of LOAD_SLOT: WMEM[``wmem`` + i] is written to the key's
                   slot at ``offset + i * P.hb_ratio``, for i < ``count`` (the next draft's MSB
                   slices written into HB while verification streams them from LPDDR).
    ``LOAD_ACT``   PE ``pe``: AMEM[``amem`` + i] = IMEM[``imem`` + i], for i < ``count``.
    ``MAC``        PE ``pe``: ``count`` MAC-array operations in ``mode`` (:class:`MacMode`). Op i
                   reads the ``B = P.mac.beats_per_group`` weight beats WMEM[``wmem`` + i*B ...],
                   the activation beats AMEM[``amem`` + j*B ...] (j = 0 if ``reuse`` else i) and
                   writes its result to OMEM[``omem`` + i]. The result is
                   :meth:`sw_model.golden.mac_array.SliceLevelMac.operate_packed` of those beats.
    ``COMBINE``    PE ``pe``: OMEM[``dst`` + i] = OMEM[``a`` + i] + OMEM[``b`` + i] element by
                   element (wrapping at ``P.mac.result_width`` bits), for i = 0, 1, ... in order
                   (overlapping ranges see earlier results): MSB partial + LSB partial = FULL.
    ``MAC_DQ``     PE ``pe``: ``count`` MAC operations whose integer results go through the PE's
                   dequantising unit instead of OMEM (the arithmetic:
                   :mod:`sw_model.golden.dequant`). Op i is group i of the command: as for MAC
                   (``mode``, ``reuse``, weights WMEM[``wmem`` + i*B ...], activations), or with
                   ``split`` (``mode`` must be FULL) the sum of an MSB operation on WMEM[``wmem``
                   + i*B ...] and an LSB operation on WMEM[``wmem`` + ``P.weight_words // 2`` +
                   i*B ...], the same activations: the INT8 target of ``2 * out_channels``
                   channels, MSB and LSB partials added as integers before any scaling. Each op's
                   sums ``S[t][s]`` (``tokens x 2*out_channels``) are scaled by FP16 scale slot
                   ``scales + i`` (``P.scale_slots`` slots per WMEM word, slot ``s`` of the group
                   at bits ``16 s``) and added to the PE's accumulator number ``acc`` (of
                   ``P.accumulators``), one binary32 value per token and slot: ``A = f32(A +
                   f32(f32(S) * f32(scale)))``, op 0 first. The accumulator starts at +0.0 with
                   ``first``, else continues from the previous MAC_DQ on it (+0.0 after reset).
                   With ``last``, ``f32(acc * ts[t])`` is
                   written to OMEM[``omem`` ... ``omem + P.dq_words - 1``] (token ``t``'s binary32
                   scale ``ts[t]`` at bits ``32 t`` of AMEM[``tscale``]; the values element
                   ``(t, s)`` at bit ``32 * (t * 2*out_channels + s)`` of the words taken
                   together, NaN as ``0x7FC00000``); without ``last`` nothing is written. Every
                   address is checked whether or not it is used.
    ``CACHE``      one request ``cop`` (:class:`hw.params.CacheOp`) to the expert-cache controller
                   with ``layer``, ``expert`` and, for COUNT, the k-hot ``vector`` of experts
                   ``64 * chunk ...``. LOOKUP updates recency; INSTALL and SELECT (re)assign slots;
                   MISS, HIT and NO_ROOM are outcomes, not errors.
    """
    END = 0
    BARRIER = 1
    LOAD_HB = 2
    LOAD_LPDDR = 3
    LOAD_SLOT = 4
    WRITE_SLOT = 5
    LOAD_ACT = 6
    MAC = 7
    COMBINE = 8
    CACHE = 9
    MAC_DQ = 10


assert max(Opcode) < (1 << OPCODE_BITS)


class Slice(enum.IntEnum):
    """What a weight load moves (2-bit field): INT8 codes, the upper or lower slices, or the
    FP16 scale words ``MAC_DQ`` reads. The move is verbatim whatever it says."""
    WHOLE = 0
    MSB = 1
    LSB = 2
    SCALES = 3


class ErrorCode(enum.IntEnum):
    """The status register's error code (4 bits); see the module docstring for the order."""
    NONE = 0
    BAD_OPCODE = 1
    BAD_FIELD = 2
    BAD_ADDRESS = 3
    SLOT_NOT_INSTALLED = 4
    CACHE_ERROR = 5
    NO_END = 6


ERROR_BITS = 4


@dataclass(frozen=True)
class Field:
    """One command field: ``name``, ``width`` in bits, and ``kind`` (an IntEnum shown by name in
    the text form, or None for a number)."""
    name: str
    width: int
    kind: type | None = None


def _f(name, width, kind=None):
    return Field(name, width, kind)


_PE, _COUNT = _f("pe", 6), _f("count", 16)
_WMEM, _AMEM, _OMEM = _f("wmem", 16), _f("amem", 16), _f("omem", 16)
_KEY = (_f("layer", 8), _f("expert", 8))

#: The fields of every opcode, LSB first after the opcode.
FIELDS = {
    Opcode.END: (),
    Opcode.BARRIER: (_f("phase", 2),),
    Opcode.LOAD_HB: (_PE, _f("slice", 2, Slice), _WMEM, _COUNT, _f("hb", 24)),
    Opcode.LOAD_LPDDR: (_PE, _f("slice", 2, Slice), _WMEM, _COUNT, _f("lpddr", 32)),
    Opcode.LOAD_SLOT: (_PE, _f("slice", 2, Slice), _WMEM, _COUNT, *_KEY, _f("offset", 24)),
    Opcode.WRITE_SLOT: (_PE, _f("slice", 2, Slice), _WMEM, _COUNT, *_KEY, _f("offset", 24)),
    Opcode.LOAD_ACT: (_PE, _AMEM, _COUNT, _f("imem", 16)),
    Opcode.MAC: (_PE, _f("mode", 2, MacMode), _f("reuse", 1), _WMEM, _AMEM, _OMEM, _COUNT),
    Opcode.COMBINE: (_PE, _f("a", 16), _f("b", 16), _f("dst", 16), _COUNT),
    Opcode.MAC_DQ: (_PE, _f("mode", 2, MacMode), _f("reuse", 1), _f("split", 1), _f("first", 1),
                    _f("last", 1), _f("acc", 2), _WMEM, _AMEM, _OMEM, _COUNT, _f("scales", 16),
                    _f("tscale", 16)),
    Opcode.CACHE: (_f("cop", 4, CacheOp), *_KEY, _f("chunk", 2),
                   _f("vector", COUNT_CHUNK_BITS)),
}
#: Per opcode: its field names, and (name, 2 ** width) in field order (Command's checks).
_SPECS = {op: (frozenset(f.name for f in fields), tuple((f.name, 1 << f.width) for f in fields))
          for op, fields in FIELDS.items()}
#: Per opcode: ``{name: position}`` of its fields (attribute reads).
_INDEX = {op: {f.name: i for i, f in enumerate(fields)} for op, fields in FIELDS.items()}
#: Per opcode: its fields' ``(shift, mask)`` in the word, in field order, and the first bit above
#: them (encoding and decoding).
_LAYOUT = {}
for _op, _fields in FIELDS.items():
    _shift, _layout = OPCODE_BITS, []
    for _field in _fields:
        _layout.append((_shift, (1 << _field.width) - 1))
        _shift += _field.width
    assert _shift <= COMMAND_BITS, _op
    _LAYOUT[_op] = (tuple(_layout), _shift)
#: Per opcode: ``{field name: kind}`` (the text form).
_KINDS = {op: {f.name: f.kind for f in fields} for op, fields in FIELDS.items()}
#: Per enum kind: ``{value: name}`` of its members and ``{name: value}`` (aliases too).
_ENUMS = {f.kind for fields in FIELDS.values() for f in fields if f.kind is not None}
_NAMES = {kind: {int(m): m.name for m in kind} for kind in _ENUMS}
_MEMBERS = {kind: {name: int(m) for name, m in kind.__members__.items()} for kind in _ENUMS}


class StreamError(ValueError):
    """An illegal command (or stream): ``code`` (:class:`ErrorCode`), ``index`` of the command,
    ``field`` it concerns (or None), and a sentence saying what was wrong."""

    def __init__(self, code, index, field, message):
        self.code, self.index, self.field = ErrorCode(code), index, field
        where = f"command {index}" + (f", field {field}" if field else "")
        super().__init__(f"{where}: {self.code.name}: {message}")


class Command:
    """One command: ``Command(Opcode.MAC, pe=0, mode=MacMode.FULL, ...)``; missing fields are 0.

    Values must fit their field's width (else ValueError naming the field); whether they are in
    range for a machine is :func:`check_command`'s business, so illegal commands can be built
    (the fuzzer needs them). Fields read as attributes; commands compare by value.
    """

    __slots__ = ("op", "values")

    def __init__(self, op, **values):
        if type(op) is not Opcode:
            try:
                op = Opcode(op)
            except ValueError:
                raise ValueError(f"unknown opcode {op!r}") from None
        names, limits = _SPECS[op]
        if not names.issuperset(values):
            unknown = ", ".join(sorted(set(values) - names))
            raise ValueError(f"{op.name} has no field(s) {unknown}; its fields are "
                             f"{', '.join(f.name for f in FIELDS[op]) or 'none'}")
        checked = []
        get = values.get
        for name, limit in limits:
            value = get(name, 0)
            if type(value) is not int:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"{op.name}.{name} must be an int, not {value!r}")
                value = int(value)
            if not 0 <= value < limit:
                raise ValueError(f"{op.name}.{name} = {value} does not fit in "
                                 f"{limit.bit_length() - 1} bits")
            checked.append(value)
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "values", tuple(checked))

    @classmethod
    def _of_fields(cls, op, values):
        """A command of values already known to fit their fields (a decoded word's)."""
        command = object.__new__(cls)
        object.__setattr__(command, "op", op)
        object.__setattr__(command, "values", values)
        return command

    def __getattr__(self, name):
        if name in Command.__slots__:        # not set yet (an object being copied or unpickled)
            raise AttributeError(name)
        try:
            return self.values[_INDEX[self.op][name]]
        except KeyError:
            raise AttributeError(f"{self.op.name} has no field {name!r}") from None

    def __setattr__(self, name, value):
        raise AttributeError("commands are immutable")

    def fields(self):
        """``{name: value}`` in field order."""
        return {f.name: v for f, v in zip(FIELDS[self.op], self.values)}

    def __eq__(self, other):
        return isinstance(other, Command) and (self.op, self.values) == (other.op, other.values)

    def __hash__(self):
        return hash((self.op, self.values))

    def __repr__(self):
        return f"Command({self.text()})"

    def text(self):
        """The command's line in the text form."""
        parts = [self.op.name]
        for f, value in zip(FIELDS[self.op], self.values):
            if f.kind is not None and value in _NAMES[f.kind]:
                shown = _NAMES[f.kind][value]
            elif f.name == "vector":
                shown = hex(value)
            else:
                shown = str(value)
            parts.append(f"{f.name}={shown}")
        return " ".join(parts)


# -- binary form ------------------------------------------------------------------------------------

def encode_word(command):
    """The 128-bit word of ``command``."""
    word = int(command.op)
    for (at, _), value in zip(_LAYOUT[command.op][0], command.values):
        word |= value << at
    return word


def decode_word(word, index=0):
    """The :class:`Command` of a 128-bit word; StreamError ``BAD_OPCODE`` for an unknown opcode,
    ``BAD_FIELD`` (field ``reserved``) when a bit outside the opcode's fields is set."""
    if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word < (1 << COMMAND_BITS):
        raise TypeError(f"command {index}: a command word is an int of {COMMAND_BITS} bits, not "
                        f"{word!r}")
    code = word & ((1 << OPCODE_BITS) - 1)
    try:
        op = Opcode(code)
    except ValueError:
        raise StreamError(ErrorCode.BAD_OPCODE, index, "opcode",
                          f"unknown opcode {code}") from None
    layout, shift = _LAYOUT[op]
    if word >> shift:
        raise StreamError(ErrorCode.BAD_FIELD, index, "reserved",
                          f"{op.name} sets bits above bit {shift - 1}, outside its fields")
    # each value is masked to its field's width, so it fits: no need for Command's checks
    return Command._of_fields(op, tuple((word >> at) & mask for at, mask in layout))


def as_words(stream):
    """A stream (commands, words, or the binary form) as a list of 128-bit ints."""
    if isinstance(stream, (bytes, bytearray, memoryview)):
        stream = bytes(stream)
        if len(stream) % COMMAND_BYTES:
            raise ValueError(f"a binary stream is a multiple of {COMMAND_BYTES} bytes, not "
                             f"{len(stream)}")
        return [int.from_bytes(stream[i:i + COMMAND_BYTES], "little")
                for i in range(0, len(stream), COMMAND_BYTES)]
    words = []
    for i, item in enumerate(stream):
        if isinstance(item, Command):
            words.append(encode_word(item))
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < (1 << 128):
            words.append(item)
        else:
            raise TypeError(f"command {i}: expected a Command or a 128-bit word, not {item!r}")
    return words


def encode(stream):
    """The binary form: 16 little-endian bytes per command."""
    return b"".join(w.to_bytes(COMMAND_BYTES, "little") for w in as_words(stream))


def decode(data):
    """Commands of a binary stream; StreamError at the first undecodable word."""
    return [decode_word(w, i) for i, w in enumerate(as_words(data))]


# -- text form --------------------------------------------------------------------------------------

def disassemble(stream):
    """The text form: one command a line, fields as ``name=value`` (enums by name)."""
    return "".join(c.text() + "\n" for c in
                   (c if isinstance(c, Command) else decode_word(c, i)
                    for i, c in enumerate(stream if not isinstance(stream, (bytes, bytearray))
                                          else as_words(stream))))


_TOKEN = re.compile(r"^([a-z_]+)=(\S+)$")
_MNEMONICS = dict(Opcode.__members__)


def assemble(text):
    """Commands of the text form. ``#`` starts a comment; blank lines are ignored; numbers may be
    decimal or ``0x`` hex. ValueError names the line and what was wrong."""
    commands = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        mnemonic, *tokens = line.split()
        op = _MNEMONICS.get(mnemonic.upper())
        if op is None:
            raise ValueError(f"line {number}: unknown command {mnemonic!r}")
        kinds = _KINDS[op]
        values = {}
        for token in tokens:
            match = _TOKEN.match(token)
            if not match:
                raise ValueError(f"line {number}: expected name=value, got {token!r}")
            name, raw = match.groups()
            if name not in kinds:
                raise ValueError(f"line {number}: {op.name} has no field {name!r}")
            if name in values:
                raise ValueError(f"line {number}: field {name!r} given twice")
            kind = kinds[name]
            if kind is not None and raw.upper() in _MEMBERS[kind]:
                values[name] = _MEMBERS[kind][raw.upper()]
            else:
                try:
                    values[name] = int(raw, 0)
                except ValueError:
                    choices = f" (or one of {', '.join(kind.__members__)})" if kind else ""
                    raise ValueError(f"line {number}: {name}={raw!r} is not a number"
                                     f"{choices}") from None
        try:
            commands.append(Command(op, **values))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"line {number}: {exc}") from None
    return commands


# -- validation -------------------------------------------------------------------------------------

def _fail(code, index, field, message):
    raise StreamError(code, index, field, message)


_SLICES, _CACHE_OPS = frozenset(Slice), frozenset(CacheOp)


def check_command(command, index, params):
    """The static checks of one command against ``params`` (a :class:`hw.params.TopParams`):
    ``BAD_FIELD`` then ``BAD_ADDRESS`` (see the module docstring). Raises StreamError."""
    c, p = command, params
    values = c.fields()
    op = c.op
    # -- BAD_FIELD, in field order
    for f in FIELDS[op]:
        v = values[f.name]
        bad = None
        if f.name == "pe" and v >= p.pes:
            bad = f"PE {v} does not exist (the machine has {p.pes})"
        elif f.name == "slice" and v not in _SLICES:
            bad = f"slice {v} is not one of {', '.join(Slice.__members__)}"
        elif f.name == "split" and v and values["mode"] != MacMode.FULL:
            bad = (f"split reads the MSB and LSB planes as the INT8 target and needs mode FULL, "
                   f"not {MacMode(values['mode']).name}")
        elif f.name == "acc" and v >= p.accumulators:
            bad = f"accumulator {v} does not exist (the PE has {p.accumulators})"
        elif f.name == "count" and v == 0:
            bad = "count must be at least 1"
        elif f.name == "layer" and v >= p.cache.layers:
            bad = f"layer {v} is beyond the cache's {p.cache.layers} layers"
        elif f.name == "expert" and v >= p.cache.experts:
            bad = f"expert {v} is beyond the cache's {p.cache.experts} experts"
        elif f.name == "cop" and v not in _CACHE_OPS:
            bad = f"cache operation {v} is not a CacheOp"
        elif f.name == "vector" and (v << (COUNT_CHUNK_BITS * values["chunk"])) >> p.cache.experts:
            bad = (f"vector sets experts at or beyond {p.cache.experts} (chunk "
                   f"{values['chunk']})")
        if bad:
            _fail(ErrorCode.BAD_FIELD, index, f.name, bad)
    # -- BAD_ADDRESS
    for field, start, words, size, memory in _accesses(c, p):
        if start + words > size:
            _fail(ErrorCode.BAD_ADDRESS, index, field,
                  f"{memory} words [{start}, {start + words}) reach beyond its {size} words")
    if op is Opcode.LOAD_HB and c.hb < p.slot_region_words:
        _fail(ErrorCode.BAD_ADDRESS, index, "hb",
              f"HB address {c.hb} lies in the slot region [0, {p.slot_region_words}); "
              "use LOAD_SLOT")


def _accesses(c, p):
    """``(field, start, words, memory size, memory name)`` of every memory range ``c`` touches."""
    op, B = c.op, p.mac.beats_per_group
    if op in (Opcode.LOAD_HB, Opcode.LOAD_LPDDR, Opcode.LOAD_SLOT, Opcode.WRITE_SLOT):
        yield "wmem", c.wmem, c.count, p.weight_words, "WMEM"
    if op is Opcode.LOAD_HB:
        yield "hb", c.hb, c.count * p.hb_ratio, p.hb.words, "HB"
    elif op is Opcode.LOAD_LPDDR:
        yield "lpddr", c.lpddr, c.count * p.lpddr_ratio, p.lpddr.words, "LPDDR"
    elif op in (Opcode.LOAD_SLOT, Opcode.WRITE_SLOT):
        yield "offset", c.offset, c.count * p.hb_ratio, p.slot_words, "slot"
    elif op is Opcode.LOAD_ACT:
        yield "amem", c.amem, c.count, p.act_words, "AMEM"
        yield "imem", c.imem, c.count, p.input_words, "IMEM"
    elif op is Opcode.MAC:
        yield "wmem", c.wmem, c.count * B, p.weight_words, "WMEM"
        yield "amem", c.amem, (1 if c.reuse else c.count) * B, p.act_words, "AMEM"
        yield "omem", c.omem, c.count, p.output_words, "OMEM"
    elif op is Opcode.COMBINE:
        for name in ("a", "b", "dst"):
            yield name, getattr(c, name), c.count, p.output_words, "OMEM"
    elif op is Opcode.MAC_DQ:
        W, k = p.weight_words, p.scale_slots
        yield "wmem", c.wmem, c.count * B, W, "WMEM"
        if c.split:
            yield "wmem", c.wmem + W // 2, c.count * B, W, "WMEM (LSB plane)"
        yield "amem", c.amem, (1 if c.reuse else c.count) * B, p.act_words, "AMEM"
        yield "omem", c.omem, p.dq_words, p.output_words, "OMEM"
        first, last = c.scales // k, (c.scales + c.count - 1) // k
        yield "scales", first, last - first + 1, W, "WMEM (scale words)"
        yield "tscale", c.tscale, 1, p.act_words, "AMEM"
