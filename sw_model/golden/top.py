"""The golden executor: runs a command stream (:mod:`hw.isa`) on plain memory images, the golden
MAC model (:class:`sw_model.golden.mac_array.SliceLevelMac`) and the golden cache model
(:class:`sw_model.golden.expert_cache.ExpertCacheModel`). Naive on purpose: one command at a time,
in stream order, exactly as the ISA's docstring says. The RTL (run by :mod:`sim.top.run`) must
produce the same final images, outputs, cache state and error code.

API::

    images = Images.empty(params)                  # or build one and fill its dicts
    images.lpddr[addr] = word                      # words are non-negative ints
    result = execute(stream, params, images)       # the input images are not modified
    result.error, result.error_index, result.progress, result.images, result.cache
    result.outputs(pe)                             # OMEM of a PE as int64 [words, tokens, 2*n]

Word formats (the RTL's ``lib.data`` layouts, element 0 in the low bits): a weight word is
``[lanes][out_channels]`` bytes ``(hi << 4) | lo`` (:func:`pack_weight_beat`), an activation word
``[tokens][lanes]`` signed INT8 (:func:`pack_act_beat`), an output word ``[tokens][2 *
out_channels]`` signed ``result_width``-bit sums (:func:`pack_result`). A weight word of a machine
whose weight beat is wider than an HB (LPDDR) word is ``hb_ratio`` (``lpddr_ratio``) memory words,
the lowest first.
"""

import copy
from dataclasses import dataclass, field

import numpy as np

from hw.isa import (COUNT_CHUNK_BITS, ErrorCode, Opcode, StreamError, as_words, check_command,
                    decode_word)
from hw.params import CacheOp, MacMode, TopParams
from sw_model.golden import dequant
from sw_model.golden.expert_cache import ExpertCacheModel, Request, apply_request
from sw_model.golden.mac_array import SliceLevelMac

__all__ = ["Images", "ExecResult", "execute", "validate", "check_dynamic", "pack_weight_beat",
           "unpack_weight_beat", "pack_act_beat", "unpack_act_beat", "pack_result", "unpack_result"]


# -- word formats ------------------------------------------------------------------------------------

def _pack(values, width):
    values = np.asarray(values, dtype=np.int64).ravel()
    if width == 8:          # bytes, element 0 the least significant (the common case, fast)
        return int.from_bytes((values & 0xFF).astype(np.uint8).tobytes(), "little")
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << width) - 1)) << (i * width)
    return word


def _unpack(word, count, width, signed):
    if width == 8 and 0 <= word < 1 << (8 * count):
        out = np.frombuffer(word.to_bytes(count, "little"), dtype=np.int8 if signed else np.uint8)
        return out.astype(np.int64)
    mask = (1 << width) - 1
    out = np.array([(word >> (i * width)) & mask for i in range(count)], dtype=np.int64)
    if signed:
        out = np.where(out >= 1 << (width - 1), out - (1 << width), out)
    return out


def pack_weight_beat(mac, wbytes):
    """One weight word from bytes ``[lanes, out_channels]``."""
    return _pack(np.asarray(wbytes).reshape(mac.lanes, mac.out_channels), 8)


def unpack_weight_beat(mac, word):
    return _unpack(word, mac.lanes * mac.out_channels, 8, False).reshape(mac.lanes,
                                                                          mac.out_channels)


def pack_act_beat(mac, x):
    """One activation word from INT8 codes ``[tokens, lanes]``."""
    return _pack(np.asarray(x).reshape(mac.tokens, mac.lanes), 8)


def unpack_act_beat(mac, word):
    return _unpack(word, mac.tokens * mac.lanes, 8, True).reshape(mac.tokens, mac.lanes)


def pack_result(mac, sums):
    """One output word from sums ``[tokens, 2 * out_channels]`` (wrapped to ``result_width``)."""
    return _pack(np.asarray(sums).reshape(mac.tokens, mac.result_channels), mac.result_width)


def unpack_result(mac, word):
    return _unpack(word, mac.tokens * mac.result_channels, mac.result_width, True).reshape(
        mac.tokens, mac.result_channels)


# -- memory images -----------------------------------------------------------------------------------

@dataclass
class Images:
    """Every memory of the machine as sparse dicts ``{address: word}`` (a missing word is 0):
    per HB channel ``hb[p]``, ``lpddr``, ``imem``, and per PE ``wmem[p]``, ``amem[p]``,
    ``omem[p]``. Two images are equal when their non-zero words are."""
    hb: list = field(default_factory=list)
    lpddr: dict = field(default_factory=dict)
    imem: dict = field(default_factory=dict)
    wmem: list = field(default_factory=list)
    amem: list = field(default_factory=list)
    omem: list = field(default_factory=list)

    PER_PE = ("hb", "wmem", "amem", "omem")

    @classmethod
    def empty(cls, params):
        n = params.pes
        return cls(hb=[{} for _ in range(n)], wmem=[{} for _ in range(n)],
                   amem=[{} for _ in range(n)], omem=[{} for _ in range(n)])

    def copy(self):
        return copy.deepcopy(self)

    def normalized(self):
        """``{memory name: {address: word}}`` without zero words (per-PE names get ``[p]``)."""
        out = {}
        for name in ("lpddr", "imem"):
            out[name] = {a: w for a, w in getattr(self, name).items() if w}
        for name in self.PER_PE:
            for p, mem in enumerate(getattr(self, name)):
                out[f"{name}[{p}]"] = {a: w for a, w in mem.items() if w}
        return out

    def __eq__(self, other):
        return isinstance(other, Images) and self.normalized() == other.normalized()

    def differences(self, other, limit=5):
        """Sentences naming the first differing words of each memory (empty when equal)."""
        mine, theirs = self.normalized(), other.normalized()
        lines = []
        for name in sorted(set(mine) | set(theirs)):
            a, b = mine.get(name, {}), theirs.get(name, {})
            bad = sorted(addr for addr in set(a) | set(b) if a.get(addr, 0) != b.get(addr, 0))
            if bad:
                lines.append(f"{name}: {len(bad)} word(s) differ, first at "
                             + ", ".join(f"{x} ({a.get(x, 0):#x} vs {b.get(x, 0):#x})"
                                         for x in bad[:limit]))
        return lines

    def check(self, params):
        """ValueError naming the memory and address of any word outside the machine."""
        p = params
        sizes = {"lpddr": (p.lpddr.words, p.lpddr.data_width),
                 "imem": (p.input_words, p.mac.act_beat_bits)}
        per_pe = {"hb": (p.hb.words, p.hb.data_width), "wmem": (p.weight_words,
                                                                p.mac.weight_beat_bits),
                  "amem": (p.act_words, p.mac.act_beat_bits),
                  "omem": (p.output_words, p.result_bits)}
        mems = [(name, getattr(self, name)) + sizes[name] for name in sizes]
        for name, (words, width) in per_pe.items():
            lst = getattr(self, name)
            if len(lst) != p.pes:
                raise ValueError(f"images.{name} has {len(lst)} entries for {p.pes} PEs")
            mems += [(f"{name}[{i}]", m, words, width) for i, m in enumerate(lst)]
        for name, mem, words, width in mems:
            for addr, word in mem.items():
                if not (isinstance(addr, int) and 0 <= addr < words):
                    raise ValueError(f"images.{name}: address {addr!r} outside [0, {words})")
                if not (isinstance(word, int) and 0 <= word < (1 << width)):
                    raise ValueError(f"images.{name}[{addr}]: {word!r} is not a {width}-bit word")


# -- execution ---------------------------------------------------------------------------------------

@dataclass
class ExecResult:
    """What a stream did: ``error`` (:class:`hw.isa.ErrorCode`, NONE after END), ``error_index``
    (the illegal command, None if none), ``message``, ``progress`` (commands completed before END
    or the error), the final ``images`` and ``cache`` (an ExpertCacheModel)."""
    params: TopParams
    error: ErrorCode
    error_index: int | None
    message: str
    progress: int
    images: Images
    cache: ExpertCacheModel

    def outputs(self, pe):
        """OMEM of PE ``pe`` as int64 ``[output_words, tokens, 2 * out_channels]``."""
        p = self.params
        return np.stack([unpack_result(p.mac, self.images.omem[pe].get(a, 0))
                         for a in range(p.output_words)])

    def slot_table(self):
        """``{slot: (layer, expert, pinned)}`` of the cache now (the RTL mirrors this)."""
        return {s: (key[0], key[1], pinned)
                for s, (key, pinned) in enumerate(self.cache.snapshot().entries)
                if key is not None}


def execute(stream, params, images=None, cache=None):
    """Run ``stream`` (Commands, 128-bit words or the binary form) on ``params``; returns an
    :class:`ExecResult`. ``images`` (default: all zero) and ``cache`` (default: a fresh cache) are
    not modified."""
    if not isinstance(params, TopParams):
        raise TypeError(f"params must be a TopParams, not {params!r}")
    images = Images.empty(params) if images is None else images
    images.check(params)
    machine = _Machine(params, images.copy(),
                       ExpertCacheModel(params.cache) if cache is None else copy.deepcopy(cache))
    words = as_words(stream)
    for index, word in enumerate(words):
        try:
            command = decode_word(word, index)
            check_command(command, index, params)
            if command.op is Opcode.END:
                return machine.result(ErrorCode.NONE, None, "done", index)
            slot = check_dynamic(command, index, machine.cache)
        except StreamError as err:
            return machine.result(err.code, index, str(err), index)
        machine.run(command, slot)
    return machine.result(ErrorCode.NO_END, len(words),
                          f"command {len(words)}: NO_END: the stream ends without END",
                          len(words))


def validate(stream, params, cache=None):
    """Check a whole stream against ``params`` as the machine would run it; raise the first
    :class:`StreamError` (module docstring: order of checks, ``NO_END``), or return the commands.

    Slots and cache errors depend on the cache's state, so the stream's cache requests are applied
    to ``cache`` (an :class:`sw_model.golden.expert_cache.ExpertCacheModel`, default: a fresh one
    for ``params.cache``; it is left as after the last legal command).
    """
    if cache is None:
        cache = ExpertCacheModel(params.cache)
    commands = []
    for index, word in enumerate(as_words(stream)):
        command = decode_word(word, index)
        check_command(command, index, params)
        if command.op is Opcode.END:
            return commands + [command]
        check_dynamic(command, index, cache)
        commands.append(command)
    raise StreamError(ErrorCode.NO_END, len(commands), "opcode",
                      f"the stream ends after {len(commands)} commands without END")


def check_dynamic(command, index, cache):
    """The state-dependent checks of one statically legal command against ``cache`` (an
    ExpertCacheModel), applying its cache request: ``SLOT_NOT_INSTALLED``, ``CACHE_ERROR``.
    Returns the slot a LOAD_SLOT/WRITE_SLOT uses (else None). On error the cache is unchanged."""
    if command.op in (Opcode.LOAD_SLOT, Opcode.WRITE_SLOT):
        slot = cache.slot_of(command.layer, command.expert)
        if slot is None:
            raise StreamError(
                ErrorCode.SLOT_NOT_INSTALLED, index, "expert",
                f"key (layer {command.layer}, expert {command.expert}) holds no HB slot")
        return slot
    if command.op is Opcode.CACHE:
        vector = (command.vector << (COUNT_CHUNK_BITS * command.chunk))
        beats = apply_request(cache, Request(command.cop, 0, command.layer, command.expert,
                                             vector))
        status = beats[-1].status
        if status.is_error:
            raise StreamError(ErrorCode.CACHE_ERROR, index, "cop",
                              f"the cache answered {status.name} to {CacheOp(command.cop).name} "
                              f"of (layer {command.layer}, expert {command.expert})")
    return None


class _Machine:
    def __init__(self, params, images, cache):
        self.p, self.images, self.cache = params, images, cache
        self.mac = SliceLevelMac(params.mac)
        # the dequantising unit's accumulator of every PE (+0.0 after reset)
        self.acc = [[np.zeros((params.mac.tokens, params.mac.result_channels), np.float32)
                     for _ in range(params.accumulators)] for _ in range(params.pes)]

    def result(self, error, index, message, progress):
        return ExecResult(self.p, ErrorCode(error), index, message, progress, self.images,
                          self.cache)

    def run(self, c, slot):
        """Apply one checked command (cache requests were applied by check_dynamic)."""
        p, im = self.p, self.images
        op = c.op
        if op is Opcode.LOAD_HB:
            self._load(c, im.hb[c.pe], c.hb, p.hb_ratio, p.hb.data_width)
        elif op is Opcode.LOAD_LPDDR:
            self._load(c, im.lpddr, c.lpddr, p.lpddr_ratio, p.lpddr.data_width)
        elif op is Opcode.LOAD_SLOT:
            self._load(c, im.hb[c.pe], slot * p.slot_words + c.offset, p.hb_ratio,
                       p.hb.data_width)
        elif op is Opcode.WRITE_SLOT:
            base, r, w = slot * p.slot_words + c.offset, p.hb_ratio, p.hb.data_width
            for i in range(c.count):
                word = im.wmem[c.pe].get(c.wmem + i, 0)
                for j in range(r):
                    im.hb[c.pe][base + i * r + j] = (word >> (j * w)) & ((1 << w) - 1)
        elif op is Opcode.LOAD_ACT:
            for i in range(c.count):
                im.amem[c.pe][c.amem + i] = im.imem.get(c.imem + i, 0)
        elif op is Opcode.MAC:
            self._mac(c)
        elif op is Opcode.MAC_DQ:
            self._mac_dq(c)
        elif op is Opcode.COMBINE:
            omem, mac = im.omem[c.pe], p.mac
            for i in range(c.count):
                total = (unpack_result(mac, omem.get(c.a + i, 0))
                         + unpack_result(mac, omem.get(c.b + i, 0)))
                omem[c.dst + i] = pack_result(mac, total)
        # BARRIER and CACHE leave the memories alone (the cache was updated by check_dynamic)

    def _load(self, c, source, start, ratio, width):
        for i in range(c.count):
            word = 0
            for j in range(ratio):
                word |= source.get(start + i * ratio + j, 0) << (j * width)
            self.images.wmem[c.pe][c.wmem + i] = word

    def _sums(self, c, mode, wmem):
        """The integer results ``[count, tokens, 2*out_channels]`` of ``c``'s operations in
        ``mode`` on the weights at ``wmem`` (every operation at once: the same arithmetic and
        width checks as one at a time, SliceLevelMac.operate_packed_many)."""
        p, im = self.p, self.images
        mac, B = p.mac, p.mac.beats_per_group
        wbytes = np.stack([np.concatenate([
            unpack_weight_beat(mac, im.wmem[c.pe].get(wmem + i * B + b, 0)) for b in range(B)])
            for i in range(c.count)])
        x = np.stack([np.concatenate([
            unpack_act_beat(mac, im.amem[c.pe].get(c.amem + (0 if c.reuse else i * B) + b, 0))
            for b in range(B)], axis=1) for i in range(c.count)])
        return self.mac.operate_packed_many(mode, x, wbytes)

    def _mac(self, c):
        omem = self.images.omem[c.pe]
        for i, sums in enumerate(self._sums(c, c.mode, c.wmem)):
            omem[c.omem + i] = pack_result(self.p.mac, sums)

    def _mac_dq(self, c):
        p, im = self.p, self.images
        rc, k = p.mac.result_channels, p.scale_slots
        if c.split:
            sums = (self._sums(c, MacMode.MSB, c.wmem)
                    + self._sums(c, MacMode.LSB, c.wmem + p.weight_words // 2))
        else:
            sums = self._sums(c, c.mode, c.wmem)
        mask = (1 << (16 * rc)) - 1
        slots = [(im.wmem[c.pe].get(j // k, 0) >> (16 * rc * (j % k))) & mask
                 for j in range(c.scales, c.scales + c.count)]
        scales = np.frombuffer(b"".join(s.to_bytes(2 * rc, "little") for s in slots),
                               dtype="<u2").view(np.float16).reshape(c.count, rc)
        acc = dequant.accumulate(sums, scales, None if c.first else self.acc[c.pe][c.acc])
        self.acc[c.pe][c.acc] = acc
        if c.last:
            word = im.amem[c.pe].get(c.tscale, 0)
            ts = np.frombuffer(word.to_bytes(p.mac.act_beat_bits // 8, "little")[:4 * p.mac.tokens],
                               dtype="<u4").view(np.float32)
            flat = int.from_bytes(dequant.bits(dequant.finish(acc, ts)).astype("<u4").tobytes(),
                                  "little")
            width = p.result_bits
            for j in range(p.dq_words):
                im.omem[c.pe][c.omem + j] = (flat >> (j * width)) & ((1 << width) - 1)
