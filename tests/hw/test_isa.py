"""The command set: binary and text forms round-trip; every validator error is raised by a stream
that triggers it, naming the command's index and field."""

import random

import pytest

from hw.isa import (Command, ErrorCode, FIELDS, Opcode, Slice, StreamError, assemble, decode,
                    decode_word, disassemble, encode, encode_word, COMMAND_BITS, OPCODE_BITS)
from hw.params import CacheOp, MacMode, TOP_DEFAULT, TOP_PAPER, TopParams
from sim.top.cases import error_cases
from sw_model.golden.top import validate

P = TOP_DEFAULT


def random_command(rng, op=None):
    op = Opcode(rng.choice(list(Opcode))) if op is None else op
    values = {f.name: rng.getrandbits(f.width) for f in FIELDS[op]}
    return Command(op, **values)


def test_every_opcode_fits_one_word_and_the_paper_machine():
    for op, fields in FIELDS.items():
        assert OPCODE_BITS + sum(f.width for f in fields) <= COMMAND_BITS
    # the paper's memories are reachable by the address fields
    widths = {f.name: f.width for fields in FIELDS.values() for f in fields}
    assert 1 << widths["hb"] >= TOP_PAPER.hb.words
    assert 1 << widths["lpddr"] >= TOP_PAPER.lpddr.words
    assert 1 << widths["pe"] >= TOP_PAPER.pes


def test_binary_and_text_round_trip(seed):
    rng = random.Random(seed)
    for op in Opcode:
        for _ in range(50):
            c = random_command(rng, op)
            assert decode_word(encode_word(c)) == c
            assert assemble(c.text()) == [c]
    stream = [random_command(rng) for _ in range(500)]
    data = encode(stream)
    assert len(data) == 16 * len(stream)
    assert decode(data) == stream
    text = disassemble(stream)
    assert assemble(text) == stream
    assert disassemble(assemble(text)) == text
    assert disassemble(data) == text


def test_text_form_reads_names_hex_and_comments():
    text = """
    # a comment line
    LOAD_HB pe=1 slice=msb wmem=0x10 count=2 hb=200   # trailing comment
    mac pe=0 mode=DRAFT reuse=1 count=3
    CACHE cop=COUNT layer=2 chunk=0 vector=0b101
    END
    """
    s = assemble(text)
    assert s[0] == Command(Opcode.LOAD_HB, pe=1, slice=Slice.MSB, wmem=16, count=2, hb=200)
    assert s[1] == Command(Opcode.MAC, pe=0, mode=MacMode.DRAFT, reuse=1, count=3)
    assert s[2].vector == 5 and s[2].cop == CacheOp.COUNT
    assert s[3].op is Opcode.END


@pytest.mark.parametrize("text, words", [
    ("FOO pe=1", "unknown command"),
    ("END pe=1", "no field 'pe'"),
    ("MAC pe=x", "not a number"),
    ("MAC pe=64", "does not fit in 6 bits"),
    ("MAC pe=1 pe=2", "given twice"),
    ("MAC pe", "expected name=value"),
])
def test_text_errors_name_the_line(text, words):
    with pytest.raises(ValueError, match=f"line 1: .*{words}"):
        assemble(text)


def test_binary_errors():
    with pytest.raises(ValueError, match="multiple of 16 bytes"):
        decode(b"\0" * 17)
    with pytest.raises(ValueError, match="does not fit"):
        Command(Opcode.LOAD_ACT, count=1 << 16)
    with pytest.raises(TypeError):
        Command(Opcode.LOAD_ACT, count=1.0)


#: One stream per validator error on the default machine: (name, stream, code, index, field).
ERROR_CASES = error_cases(P)


@pytest.mark.parametrize("name, stream, code, index, field", ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_validator_error(name, stream, code, index, field):
    with pytest.raises(StreamError) as info:
        validate(stream, P)
    err = info.value
    assert (err.code, err.index, err.field) == (code, index, field), str(err)
    assert f"command {index}" in str(err) and code.name in str(err)
    if field != "opcode" or code is not ErrorCode.NO_END:
        assert f"field {field}" in str(err)


def test_every_error_code_is_tested():
    assert {c[2] for c in ERROR_CASES} == set(ErrorCode) - {ErrorCode.NONE}


def test_a_legal_stream_validates():
    s = [Command(Opcode.CACHE, cop=CacheOp.INSTALL, layer=2, expert=11),
         Command(Opcode.LOAD_SLOT, pe=1, slice=Slice.MSB, count=P.slot_words, layer=2,
                 expert=11),
         Command(Opcode.LOAD_LPDDR, pe=0, slice=Slice.LSB, wmem=P.weight_words - 4, count=4,
                 lpddr=P.lpddr.words - 4),
         Command(Opcode.LOAD_HB, pe=1, count=1, hb=P.slot_region_words),
         Command(Opcode.LOAD_ACT, pe=1, amem=0, count=P.act_words, imem=0),
         Command(Opcode.MAC, pe=1, mode=MacMode.MSB, reuse=1, count=P.weight_words // 4,
                 omem=P.output_words - P.weight_words // 4),
         Command(Opcode.COMBINE, pe=1, a=0, b=1, dst=2, count=P.output_words - 2),
         Command(Opcode.WRITE_SLOT, pe=0, count=1, layer=2, expert=11, offset=P.slot_words - 1),
         Command(Opcode.BARRIER, phase=3),
         Command(Opcode.CACHE, cop=CacheOp.COUNT, layer=2, vector=(1 << P.cache.experts) - 1),
         Command(Opcode.CACHE, cop=CacheOp.SELECT),
         Command(Opcode.END),
         Command(Opcode.LOAD_ACT, pe=9)]          # after END: never looked at
    assert validate(s, P) == s[:-1]


def test_params_record_checks():
    assert TopParams.from_dict(P.to_dict()) == P
    with pytest.raises(ValueError, match="hb.channels"):
        TopParams(pes=3)
    with pytest.raises(ValueError, match="slot_words"):
        TopParams(slot_words=1 << 12)
    with pytest.raises(TypeError, match="TopParams.mac"):
        TopParams(mac="big")
