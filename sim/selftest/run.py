"""The self-test design (:class:`hw.selftest.SelfTest`) on Verilator, and the board build that
runs it first: ``python build.py fpga --board``."""

import json
import tempfile
from pathlib import Path

from hw.flows.board import BOARDS, board_params, build_bitstream
from hw.flows.fpga import FpgaError
from hw.flows.verilog import generate_verilog
from hw.selftest import SelfTest
from sim.runner import PORTS_ONLY, CocotbFailure, run_cocotb
from sw_model.compiler.selftest_program import selftest_program

__all__ = ["run_selftest_verilator", "build_board"]


def run_selftest_verilator(program, seed=None, waves=False):
    """Build :class:`SelfTest` for ``program`` on Verilator and run ``sim.selftest.tb``; returns
    the two runs (clean and with ``corrupt``) as dicts. Raises
    :class:`sim.runner.CocotbFailure` if the self-test does not pass (or the corrupted one does not
    fail)."""
    verilog_text = generate_verilog(SelfTest(program), "selftest")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "runs.json"
        run_cocotb("selftest", verilog_text, "sim.selftest.tb", waves=waves, public=PORTS_ONLY,
                   env={"ELMOE_SELFTEST_OUT": str(out),
                        "ELMOE_SELFTEST_PROGRESS": str(program.progress)})
        return json.loads(out.read_text())


def build_board(board, build_root, seed=1, progress=None):
    """``python build.py fpga --board``: the self-test in Verilator, then the bitstream. Returns
    the figures (JSON-ready); raises :class:`FpgaError` if the self-test does not pass."""
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}; choose from {', '.join(BOARDS)}")
    say = progress or (lambda text: None)
    params = board_params()
    program = selftest_program(params, seed)
    say(f"self-test program: {len(program.words)} commands on {params.describe()}; "
        f"{len(program.expected)} output words to check")
    say("running the self-test design in Verilator ...")
    try:
        clean, corrupted = run_selftest_verilator(program)
    except CocotbFailure as exc:
        raise FpgaError(f"the self-test design does not pass in Verilator; no bitstream built\n"
                        f"{exc}") from None
    say(f"  passed: {clean['mismatches']} mismatches in {len(program.expected)} words, stream "
        f"done in {clean['cycles']} cycles; with the corrupt button: failed with "
        f"{corrupted['mismatches']} mismatch, as it must")
    say(f"building the {board} bitstream (amaranth-boards, YoWASP Yosys/nextpnr/packer) ...")
    result = build_bitstream(board, SelfTest(program), build_root)
    say(f"  {result['bitstream']}: {result['bytes']} bytes; fmax {result['fmax_mhz']} MHz at a "
        f"{result['clock_mhz']:g} MHz clock; used: " + ", ".join(
            f"{cell} {used}/{total}" for cell, (used, total) in sorted(result["utilisation"]
                                                                       .items())))
    if result["fmax_mhz"] is not None and result["fmax_mhz"] < result["clock_mhz"]:
        raise FpgaError(f"the {board} design reaches {result['fmax_mhz']} MHz, below the board's "
                        f"{result['clock_mhz']:g} MHz clock")
    return {"board": board, "params": params.to_dict(), "seed": seed,
            "commands": len(program.words), "checked_words": len(program.expected),
            "selftest_passed": bool(clean["passed"]), "selftest_cycles": clean["cycles"],
            "corrupted_fails": not corrupted["passed"], **result}
