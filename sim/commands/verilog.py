"""``python build.py verilog``: the Verilog of every block at every preset (or one), each linted.

Writes ``build/verilog/<block>_<preset>.v`` (:func:`hw.flows.verilog.write_verilog`), runs
``verilator --lint-only`` on each, and prints a table of files, lint errors and warning counts; the
JSON figures are ``{"verilog": [one row per file]}``. Exit status 1 when any file has lint errors.
"""

from hw.blocks import BLOCKS
from sim.commands.output import Result, Table, progress

NAME = "verilog"
HELP = "write (and lint) the Verilog of every block"


def add_arguments(p):
    p.add_argument("--preset", default="all", help="one preset name, or 'all' (default)")
    p.add_argument("--no-lint", action="store_true", help="skip verilator --lint-only")


def write_all(presets=None, do_lint=True):
    """Write (and lint) every block's Verilog, printing progress and lint errors; returns the rows
    of :func:`hw.flows.verilog.write_verilog` without their error lines."""
    from hw.flows.verilog import write_verilog
    rows = write_verilog(presets, do_lint, progress=lambda text: progress("  " + text))
    for row in rows:
        for line in row.pop("errors", ()):
            progress(f"    {row['block']} [{row['preset']}]: {line}")
    return rows


def _warnings(counts):
    if counts is None:
        return "-"
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"


def run(args):
    known = sorted({p for block in BLOCKS.values() for p in block.presets})
    if args.preset != "all" and args.preset not in known:
        raise SystemExit(f"unknown preset {args.preset!r}; choose from all, {', '.join(known)}")
    rows = write_all(None if args.preset == "all" else [args.preset], do_lint=not args.no_lint)
    table = Table(None, ["block", "preset", "file", "KiB", "lint errors", "lint warnings"],
                  [[r["block"], r["preset"], r["path"], r["bytes"] // 1024,
                    r.get("lint_errors", "-"), _warnings(r.get("lint_warnings"))] for r in rows])
    return Result([table], {"verilog": rows},
                  status=1 if any(r.get("lint_errors") for r in rows) else 0)
