"""The FPGA self-test: its program on the golden executor, and the self-test design (the logic of
the ULX3S bitstream) on Verilator: it passes, and fails when one compared word is corrupted."""

import pytest

from hw.flows.board import board_params
from hw.isa import ErrorCode, Opcode
from hw.params import MacMode, TOP_DEFAULT
from hw.selftest import SelfTest
from sim.selftest.run import run_selftest_verilator
from sw_model.golden.top import execute, validate
from sw_model.compiler.selftest_program import OUTPUT_WORDS, selftest_program


def test_selftest_program_covers_every_path_and_its_expectations_are_the_executors():
    p = TOP_DEFAULT
    program = selftest_program(p, seed=3)
    validate(program.stream, p)
    ops = {c.op for c in program.stream}
    assert {Opcode.CACHE, Opcode.LOAD_SLOT, Opcode.LOAD_LPDDR, Opcode.LOAD_HB, Opcode.LOAD_ACT,
            Opcode.MAC, Opcode.COMBINE, Opcode.BARRIER, Opcode.END} <= ops
    assert {c.mode for c in program.stream if c.op == Opcode.MAC} == set(MacMode)
    assert {c.pe for c in program.stream if c.op == Opcode.MAC} == set(range(p.pes))
    result = execute(program.stream, p, program.images)
    assert (program.error, program.progress) == (ErrorCode.NONE, result.progress)
    assert len(program.expected) == p.pes * OUTPUT_WORDS
    for pe, address, word in program.expected:
        assert result.images.omem[pe].get(address, 0) == word
    assert sum(word != 0 for _, _, word in program.expected) >= len(program.expected) - 1
    other = selftest_program(p, seed=4)
    assert [w for *_, w in other.expected] != [w for *_, w in program.expected]


def test_selftest_rejects_bad_programs():
    with pytest.raises(TypeError, match="params must be a TopParams"):
        selftest_program("default")
    program = selftest_program(TOP_DEFAULT)
    program.words = program.words * 20
    with pytest.raises(ValueError, match="440 commands do not fit in the 256 words"):
        SelfTest(program)


@pytest.mark.verilator
@pytest.mark.slow
def test_board_selftest_passes_in_verilator():
    """The design of ``build.py fpga --board ulx3s``, same configuration and seed."""
    clean, corrupted = run_selftest_verilator(selftest_program(board_params(), seed=1))
    assert (clean["done"], clean["passed"], clean["mismatches"], clean["error"]) == (1, 1, 0, 0)
    assert clean["progress"] == len(selftest_program(board_params(), seed=1).words) - 1
    assert (corrupted["done"], corrupted["passed"], corrupted["mismatches"]) == (1, 0, 1)


def test_host_top_rejects_what_does_not_fit():
    from hw.host_top import HostTop
    p = TOP_DEFAULT
    with pytest.raises(ValueError, match="257 commands do not fit in the 256 words"):
        HostTop(p, commands=[0] * 257)
    with pytest.raises(ValueError, match="input memory image has a word at 64, beyond its 64"):
        HostTop(p, inputs={64: 1})
    with pytest.raises(TypeError, match="params must be a TopParams"):
        HostTop(p.mac)
