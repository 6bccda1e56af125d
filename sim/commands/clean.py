"""``python build.py clean``: remove what the commands wrote under ``build/``.

Removes every results folder (``build/<command>/``), the written Verilog and its cache, waveforms,
simulation run folders, synthesis and place-and-route work; ``--keep-sim`` keeps the Verilator
builds (``build/sim/``: the compiled simulators, minutes to rebuild) and removes the rest. Prints
what it removed and how many bytes.
"""

import shutil

from hw.flows.verilog import BUILD_ROOT
from sim.commands.output import Result, Table

__all__ = ["NAME", "HELP", "SAVES_RESULTS", "add_arguments", "run"]

NAME = "clean"
HELP = "remove builds and results under build/ (--keep-sim keeps the Verilator builds)"
#: Writes no results folder of its own (it removes them).
SAVES_RESULTS = False


def add_arguments(p):
    p.add_argument("--keep-sim", action="store_true",
                   help="keep the Verilator builds under build/sim (minutes to rebuild)")


def _size(path):
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() or f.is_symlink())


def run(args):
    rows = []
    if BUILD_ROOT.is_dir():
        for entry in sorted(BUILD_ROOT.iterdir()):
            if args.keep_sim and entry.name == "sim":
                rows.append([str(entry), _size(entry), "kept"])
                continue
            size = _size(entry)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            rows.append([str(entry), size, "removed"])
    removed = sum(r[1] for r in rows if r[2] == "removed")
    return Result([Table(None, ["path", "bytes", ""], rows) if rows else f"{BUILD_ROOT}: empty",
                   f"\nremoved {removed} bytes"],
                  {"removed": [r[0] for r in rows if r[2] == "removed"],
                   "kept": [r[0] for r in rows if r[2] == "kept"], "bytes_removed": removed})
