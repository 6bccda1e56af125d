"""``python build.py verilog``: the Verilog of every block of a machine (or of every built-in one).

Writes ``build/verilog/<machine>/<block>.v`` (without ``--machine``:
``build/verilog/all/<machine>/<block>.v``) for the MAC array, the expert cache, the HB interface
and the LPDDR port at the machine's parameters, and the top, hierarchical: one PE module and one
HB channel module instantiated per PE (:func:`hw.flows.verilog.write_verilog`,
:func:`hw.flows.verilog.top_verilog`); runs ``verilator --lint-only`` on each and prints a table
of files, lint errors and warning counts (a block that cannot be built says why). Without
``--machine``: every built-in machine. The JSON figures are ``{"verilog": [one row per block]}``.
Exit status 1 when any file has lint errors.
"""

from pathlib import Path

from hw.machines import MACHINES
from sim.commands.output import Result, Table, progress

NAME = "verilog"
HELP = "write (and lint) the Verilog of every block of a machine"
#: Without ``--machine``: every built-in machine.
MACHINE = None


def add_arguments(p):
    p.add_argument("--no-lint", action="store_true", help="skip verilator --lint-only")


def write_all(machines, do_lint=True, root=None, flat=False):
    """Write (and lint) every block's Verilog for ``machines`` (name -> TopParams), printing
    progress and lint errors; returns the rows of :func:`hw.flows.verilog.write_verilog` without
    their error lines."""
    from hw.flows.verilog import write_verilog
    rows = write_verilog(machines, do_lint, progress=lambda text: progress("  " + text),
                         root=root, flat=flat)
    for row in rows:
        for line in row.pop("errors", ()):
            progress(f"    {row['block']} [{row['machine']}]: {line}")
    return rows


def _warnings(counts):
    if counts is None:
        return "-"
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"


def run(args):
    machines = dict(MACHINES) if args.params is None else {args.machine_label: args.params}
    # the Verilog is part of the results folder: written beside the tables, renamed with them
    rows = write_all(machines, do_lint=not args.no_lint, root=args.work_dir,
                     flat=args.params is not None)
    for row in rows:
        if row["path"]:
            row["path"] = str(Path(args.out_dir) / Path(row["path"]).relative_to(args.work_dir))
    table = Table(None, ["machine", "block", "file", "KiB", "lint errors", "lint warnings"],
                  [[r["machine"], r["block"], r["path"] or f"not built: {r['reason']}",
                    r["bytes"] // 1024, r.get("lint_errors", "-"),
                    _warnings(r.get("lint_warnings"))] for r in rows])
    return Result([table], {"verilog": rows},
                  status=1 if any(r.get("lint_errors") for r in rows) else 0)
