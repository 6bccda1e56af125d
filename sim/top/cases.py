"""Hand-made command streams for the top and its golden executor: one stream per error code, and a
split-verification job. Used by the tests of the ISA validator, the golden executor, the command
processor and the Verilated top, so every back end sees the same cases."""


from hw.isa import Command, ErrorCode, Opcode, assemble, encode_word
from hw.params import CacheOp, MacMode
from sw_model.golden.mac_array import SliceLevelMac
from sw_model.golden.top import Images, pack_act_beat, pack_weight_beat

__all__ = ["error_cases", "opcode_cases", "random_codes", "store_weights", "store_acts", "SPLIT",
           "split_verification_job"]


def _slot_stream(*middle):
    """Install key (0, 1) (it lands in a slot) and run ``middle``; returns commands."""
    return [Command(Opcode.CACHE, cop=CacheOp.INSTALL, layer=0, expert=1), *middle,
            Command(Opcode.END)]


def error_cases(params):
    """One stream per error the validator can raise on ``params`` (every :class:`hw.isa.ErrorCode`
    but NONE), each a tuple ``(name, stream, code, index, field)``: the error code, the index of
    the command that raises it and the field it names. The cases are built for machines like the
    built-in ones (at least two PEs and two layers of two experts, keys 0..slots-1 of layer 0
    filling every slot)."""
    P = params
    return [
        ("unknown opcode", [Command(Opcode.BARRIER), (31 << 0), Command(Opcode.END)],
         ErrorCode.BAD_OPCODE, 1, "opcode"),
        ("reserved bits set", [encode_word(Command(Opcode.END)) | (1 << 100)],
         ErrorCode.BAD_FIELD, 0, "reserved"),
        ("PE out of range", [Command(Opcode.LOAD_ACT, pe=P.pes, count=1), Command(Opcode.END)],
         ErrorCode.BAD_FIELD, 0, "pe"),
        ("split MAC_DQ in a 4-bit mode",
         [Command(Opcode.MAC_DQ, split=1, mode=MacMode.DRAFT, count=1), Command(Opcode.END)],
         ErrorCode.BAD_FIELD, 0, "split"),
        ("zero count", [Command(Opcode.COMBINE, count=0), Command(Opcode.END)],
         ErrorCode.BAD_FIELD, 0, "count"),
        ("layer out of range", [Command(Opcode.CACHE, cop=CacheOp.LOOKUP, layer=P.cache.layers),
                                Command(Opcode.END)], ErrorCode.BAD_FIELD, 0, "layer"),
        ("expert out of range", [Command(Opcode.CACHE, cop=CacheOp.PIN, expert=P.cache.experts),
                                 Command(Opcode.END)], ErrorCode.BAD_FIELD, 0, "expert"),
        ("cache op out of range", [Command(Opcode.CACHE, cop=15), Command(Opcode.END)],
         ErrorCode.BAD_FIELD, 0, "cop"),
        ("COUNT vector beyond the experts",
         [Command(Opcode.CACHE, cop=CacheOp.COUNT, vector=1 << P.cache.experts),
          Command(Opcode.END)],
         ErrorCode.BAD_FIELD, 0, "vector"),
        ("WMEM overrun", [Command(Opcode.LOAD_LPDDR, wmem=P.weight_words - 1, count=2),
                          Command(Opcode.END)], ErrorCode.BAD_ADDRESS, 0, "wmem"),
        ("LPDDR overrun", [Command(Opcode.LOAD_LPDDR, lpddr=P.lpddr.words - 1, count=2),
                           Command(Opcode.END)], ErrorCode.BAD_ADDRESS, 0, "lpddr"),
        ("HB beyond the channel", [Command(Opcode.LOAD_HB, hb=P.hb.words, count=1),
                                   Command(Opcode.END)], ErrorCode.BAD_ADDRESS, 0, "hb"),
        ("raw HB load in the slot region", [Command(Opcode.LOAD_HB, hb=0, count=1),
                                            Command(Opcode.END)], ErrorCode.BAD_ADDRESS, 0, "hb"),
        ("slot overrun", _slot_stream(Command(Opcode.LOAD_SLOT, expert=1, offset=P.slot_words - 1,
                                              count=2)), ErrorCode.BAD_ADDRESS, 1, "offset"),
        ("MAC AMEM overrun", [Command(Opcode.MAC, amem=P.act_words - 1, count=1),
                              Command(Opcode.END)], ErrorCode.BAD_ADDRESS, 0, "amem"),
        ("OMEM overrun", [Command(Opcode.COMBINE, dst=P.output_words - 1, count=2),
                          Command(Opcode.END)], ErrorCode.BAD_ADDRESS, 0, "dst"),
        ("dequantised result beyond OMEM",
         [Command(Opcode.MAC_DQ, omem=P.output_words - P.dq_words + 1, count=1),
          Command(Opcode.END)], ErrorCode.BAD_ADDRESS, 0, "omem"),
        ("split LSB plane beyond WMEM",
         [Command(Opcode.MAC_DQ, split=1, wmem=P.weight_words // 2, count=1),
          Command(Opcode.END)], ErrorCode.BAD_ADDRESS, 0, "wmem"),
        ("scale slots beyond WMEM",
         [Command(Opcode.MAC_DQ, scales=P.weight_words * P.scale_slots - 1, count=2),
          Command(Opcode.END)], ErrorCode.BAD_ADDRESS, 0, "scales"),
        ("token scales beyond AMEM",
         [Command(Opcode.MAC_DQ, tscale=P.act_words, count=1), Command(Opcode.END)],
         ErrorCode.BAD_ADDRESS, 0, "tscale"),
        ("IMEM overrun", [Command(Opcode.LOAD_ACT, imem=P.input_words, count=1),
                          Command(Opcode.END)], ErrorCode.BAD_ADDRESS, 0, "imem"),
        ("slot used before it is installed",
         [Command(Opcode.LOAD_SLOT, layer=1, expert=2, count=1), Command(Opcode.END)],
         ErrorCode.SLOT_NOT_INSTALLED, 0, "expert"),
        ("slot written before it is installed",
         _slot_stream(Command(Opcode.WRITE_SLOT, layer=1, expert=1, count=1)),
         ErrorCode.SLOT_NOT_INSTALLED, 1, "expert"),
        ("cache error: install of a resident key",
         _slot_stream(Command(Opcode.CACHE, cop=CacheOp.INSTALL, layer=0, expert=1)),
         ErrorCode.CACHE_ERROR, 1, "cop"),
        ("stream without an end", [Command(Opcode.BARRIER), Command(Opcode.LOAD_ACT, count=1)],
         ErrorCode.NO_END, 2, "opcode"),
        ("SELECT evicts a slot verification still reads", _hazard_stream(P),
         ErrorCode.SLOT_NOT_INSTALLED, P.cache.slots + 3, "expert"),
    ]


def opcode_cases(params):
    """One stream per (opcode, error code) pair a stream can stop with: every opcode run legally
    (the stream ends with END), every opcode with a reserved bit set (BAD_FIELD), every opcode
    with an address beyond its memory (BAD_ADDRESS), LOAD_SLOT and WRITE_SLOT of a key not
    installed, a cache request the controller refuses, an unknown opcode and a stream without
    END; as ``(opcode name, ErrorCode, stream)``."""
    P = params
    ok = {
        Opcode.END: [],
        Opcode.BARRIER: [Command(Opcode.BARRIER, phase=3)],
        Opcode.LOAD_HB: [Command(Opcode.LOAD_HB, pe=1, hb=P.slot_region_words, count=2)],
        Opcode.LOAD_LPDDR: [Command(Opcode.LOAD_LPDDR, lpddr=5, count=2)],
        Opcode.LOAD_SLOT: [Command(Opcode.CACHE, cop=CacheOp.INSTALL, expert=1),
                           Command(Opcode.LOAD_SLOT, expert=1, count=1)],
        Opcode.WRITE_SLOT: [Command(Opcode.CACHE, cop=CacheOp.INSTALL, expert=1),
                            Command(Opcode.WRITE_SLOT, pe=1, expert=1, count=1)],
        Opcode.LOAD_ACT: [Command(Opcode.LOAD_ACT, count=1)],
        Opcode.MAC: [Command(Opcode.MAC, mode=MacMode.LSB, count=1)],
        Opcode.COMBINE: [Command(Opcode.COMBINE, a=0, b=1, dst=2, count=1)],
        Opcode.CACHE: [Command(Opcode.CACHE, cop=CacheOp.COUNT, layer=1, vector=3)],
        Opcode.MAC_DQ: [Command(Opcode.MAC_DQ, pe=1, split=1, first=1, last=1, count=2,
                                scales=1, tscale=3, omem=4)],
    }
    beyond = {
        Opcode.LOAD_HB: Command(Opcode.LOAD_HB, hb=P.hb.words - 1, count=2),
        Opcode.LOAD_LPDDR: Command(Opcode.LOAD_LPDDR, lpddr=P.lpddr.words - 1, count=2),
        Opcode.LOAD_SLOT: Command(Opcode.LOAD_SLOT, expert=1, offset=P.slot_words, count=1),
        Opcode.WRITE_SLOT: Command(Opcode.WRITE_SLOT, wmem=P.weight_words - 1, count=2),
        Opcode.LOAD_ACT: Command(Opcode.LOAD_ACT, amem=P.act_words - 1, count=2),
        Opcode.MAC: Command(Opcode.MAC, omem=P.output_words - 1, count=2),
        Opcode.COMBINE: Command(Opcode.COMBINE, b=P.output_words - 1, count=2),
        Opcode.MAC_DQ: Command(Opcode.MAC_DQ, amem=P.act_words - 1, count=2),
    }
    end = Command(Opcode.END)
    cases = [(op.name, ErrorCode.NONE, stream + [end]) for op, stream in ok.items()]
    cases += [(op.name, ErrorCode.BAD_FIELD,
               stream[:-1] + [encode_word(stream[-1] if stream else end) | (1 << 127), end])
              for op, stream in ok.items()]
    cases += [(op.name, ErrorCode.BAD_ADDRESS, [command, end]) for op, command in beyond.items()]
    cases += [(op.name, ErrorCode.SLOT_NOT_INSTALLED, [Command(op, expert=2, count=1), end])
              for op in (Opcode.LOAD_SLOT, Opcode.WRITE_SLOT)]
    cases += [("CACHE", ErrorCode.CACHE_ERROR,
               [Command(Opcode.CACHE, cop=CacheOp.UNPIN, layer=1, expert=1), end]),
              ("unknown", ErrorCode.BAD_OPCODE, [Command(Opcode.BARRIER), 30, end]),
              ("past the end", ErrorCode.NO_END, [Command(Opcode.MAC, count=1)])]
    return cases


def _hazard_stream(P):
    """Elastic-SD hazard: SELECT gives away the slot of an expert that verification still reads.
    Every slot is filled with keys of layer 0, then counts make SELECT pick other experts; the next
    LOAD_SLOT of an evicted key must fail."""
    s = [Command(Opcode.CACHE, cop=CacheOp.INSTALL, layer=0, expert=e)
         for e in range(P.cache.slots)]
    s += [Command(Opcode.CACHE, cop=CacheOp.COUNT, layer=1, vector=(1 << P.cache.experts) - 1)]
    s += [Command(Opcode.LOAD_SLOT, layer=0, expert=0, count=1),     # still resident: fine
          Command(Opcode.CACHE, cop=CacheOp.SELECT),
          Command(Opcode.LOAD_SLOT, layer=0, expert=0, count=1), Command(Opcode.END)]
    return s


def random_codes(rng, mac):
    """Random INT8 codes ``[group_size, result_channels]`` for ``mac``, with the first row all -128
    and the second all 127."""
    q = rng.integers(-128, 128, (mac.group_size, mac.result_channels))
    q[0, :] = -128                       # extremes of the number format
    q[1, :] = 127
    return q


def store_weights(region, base, mode, q, mac):
    """Pack ``q`` for ``mode`` into weight words at ``region[base...]``; returns the word count."""
    beats = SliceLevelMac(mac).weight_beats(SliceLevelMac(mac).pack_weights(mode, q))
    for i, beat in enumerate(beats):
        region[base + i] = pack_weight_beat(mac, beat)
    return len(beats)


def store_acts(images, x, mac):
    """Pack activations ``x`` ``[tokens, group_size]`` into the input memory from word 0."""
    for i, beat in enumerate(SliceLevelMac(mac).act_beats(x)):
        images.imem[i] = pack_act_beat(mac, beat)


SPLIT = """
CACHE cop=INSTALL layer=1 expert=5
WRITE_SLOT pe=1 slice=MSB wmem=0 count=4 layer=1 expert=5 offset=0
LOAD_SLOT pe=1 slice=MSB wmem=8 count=4 layer=1 expert=5 offset=0
LOAD_LPDDR pe=1 slice=LSB wmem=12 count=4 lpddr=4
LOAD_ACT pe=1 amem=0 count=4 imem=0
BARRIER phase=2
MAC pe=1 mode=MSB reuse=1 wmem=8 amem=0 omem=0 count=1
MAC pe=1 mode=LSB reuse=1 wmem=12 amem=0 omem=1 count=1
COMBINE pe=1 a=0 b=1 dst=2 count=1
MAC pe=1 mode=DRAFT reuse=1 wmem=8 amem=0 omem=3 count=1
END
"""


def split_verification_job(rng, params):
    """MSB slices written to an HB slot and read back, LSB slices from LPDDR, partials combined,
    on a machine with 8 lanes (four beats per group): returns (stream, images, q, x)."""
    mac = params.mac
    q, x = random_codes(rng, mac), rng.integers(-128, 128, (mac.tokens, mac.group_size))
    x[0, :] = -128
    images = Images.empty(params)
    store_weights(images.wmem[1], 0, MacMode.MSB, q, mac)      # as if streamed from LPDDR
    store_weights(images.lpddr, 4, MacMode.LSB, q, mac)
    store_acts(images, x, mac)
    return assemble(SPLIT), images, q, x
