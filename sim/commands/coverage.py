"""``python build.py coverage``: line and toggle coverage of every block's generated Verilog, and
functional coverage of the stimulus, from the cocotb tests of each block and the top.

Runs the Verilator tests (``tests/sim``, marker ``verilator``; with ``--slow`` the slow ones too)
with :data:`sim.runner.COVERAGE_ENV` set, so every design is built with ``--coverage-line
--coverage-toggle`` (its own cached build) and every run leaves its data under
``build/coverage/raw``. Then merges the data (:mod:`sim.coverage`), prints a table per block
(lines and branches, toggles; of all points and of the reachable ones), writes annotated sources
to ``build/coverage/annotated/``, the uncovered points with their reasons to
``build/coverage/uncovered.txt``, and the functional bins (:mod:`sim.funcov`) with any bin never
hit. Exit status 1 if a test failed, a block is below ``--line``/``--toggle`` percent of its
reachable points, or a functional bin was missed.
"""

import json
import os
import shutil
import subprocess
import sys

from hw.flows.verilog import BUILD_ROOT, REPO_ROOT
from sim.commands.output import Result, Table, progress

NAME = "coverage"
HELP = "line, toggle and functional coverage from the cocotb tests of every block"

TESTS = ["tests/sim/test_mac_array.py", "tests/sim/test_expert_cache.py",
         "tests/sim/test_mem_channel.py", "tests/sim/test_top.py", "tests/sim/test_top_e2e.py"]


def add_arguments(p):
    p.add_argument("--jobs", type=int, default=1, help="pytest workers (default 1)")
    p.add_argument("--slow", action="store_true", help="include the slow Verilator tests")
    p.add_argument("--report-only", action="store_true",
                   help="report the data already under build/coverage/raw, run nothing")
    p.add_argument("--line", type=float, default=95.0,
                   help="required line coverage of reachable points, percent (default 95)")
    p.add_argument("--toggle", type=float, default=90.0,
                   help="required toggle coverage of reachable points, percent (default 90)")


def _check(args):
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, not {args.jobs}")
    for name in ("line", "toggle"):
        value = getattr(args, name)
        if not 0 <= value <= 100:
            raise SystemExit(f"--{name} must be a percentage in [0, 100], not {value}")


def collect(raw, jobs, slow):
    """Run the Verilator tests with coverage into ``raw``; returns pytest's exit status."""
    from sim.runner import COVERAGE_ENV
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    marker = "verilator" if slow else "verilator and not slow"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", str(jobs),
           "-m", marker, *TESTS]
    progress(f"running {' '.join(cmd[3:])} with coverage")
    env = {**os.environ, COVERAGE_ENV: str(raw)}
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env).returncode


def run(args):
    _check(args)
    from sim import coverage, funcov
    out = BUILD_ROOT / "coverage"
    raw = out / "raw"
    status = 0
    if not args.report_only:
        if collect(raw, args.jobs, args.slow) != 0:
            progress("some tests failed; the coverage below is of what ran")
            status = 1
    data = sorted(raw.glob("*.dat")) if raw.is_dir() else []
    if not data:
        raise SystemExit(f"no coverage data under {raw}: run without --report-only first")
    points = coverage.merge(data)
    blocks = coverage.summarise(points)
    annotated = coverage.annotate(points, out / "annotated")
    missed = coverage.uncovered_lines(points)
    toggles = coverage.uncovered_lines(points, kinds=("toggle",))
    _write_uncovered(out / "uncovered.txt", missed, toggles)

    rows, figures = [], {"blocks": {}, "data_files": len(data)}
    for name in sorted(blocks):
        b = blocks[name]
        line, toggle = b.percent("line", True), b.percent("toggle", True)
        ok = line >= args.line and toggle >= args.toggle
        embedded = "@" in name           # another block's instance inside the top: information
        status |= 0 if ok or embedded else 1
        rows.append([name, len(b.builds), f"{b.hit['line']}/{b.total['line']}",
                     f"{b.percent('line'):.1f}", b.unreachable["line"], f"{line:.1f}",
                     f"{b.hit['toggle']}/{b.total['toggle']}", f"{b.percent('toggle'):.1f}",
                     b.unreachable["toggle"], f"{toggle:.1f}",
                     "(inside the top)" if embedded else "yes" if ok else "NO"])
        figures["blocks"][name] = {
            "builds": sorted(b.builds), "line_hit": b.hit["line"], "line_total": b.total["line"],
            "line_unreachable": b.unreachable["line"], "line_percent": round(b.percent("line"), 2),
            "line_reachable_percent": round(line, 2), "toggle_hit": b.hit["toggle"],
            "toggle_total": b.total["toggle"], "toggle_unreachable": b.unreachable["toggle"],
            "toggle_percent": round(b.percent("toggle"), 2),
            "toggle_reachable_percent": round(toggle, 2)}
    reasons = sorted({r for *_, r in missed + toggles if r})
    note = "\n".join(
        ["<block>@top: that block's instance inside the top (the top's configuration), driven "
         "only through command streams; the block's own row is its standalone bench's; top: "
         "the top's own logic (command processor, PEs, input memory, glue)"]
        + [f"unreachable: {r}" for r in reasons]
        + [f"{sum(1 for *_, r in missed if not r)} line/branch and "
           f"{sum(1 for *_, r in toggles if not r)} toggle points not hit and not known "
           f"unreachable: {out / 'uncovered.txt'}", f"annotated sources: {out / 'annotated'}"])
    code_table = Table("Code coverage of each block's own logic (die models and wrappers left "
                       "out)", ["block", "builds", "lines hit", "%", "unreachable",
                                "% reachable", "toggles hit", "%", "unreachable", "% reachable",
                                f">= {args.line:g}/{args.toggle:g}"], rows, note)

    bins = funcov.report(funcov.collect(raw))
    fun_rows = []
    for group, r in bins.items():
        status |= 1 if r["missing"] or r["illegal"] else 0
        fun_rows.append([group, " x ".join(funcov.GROUPS[group][0]), r["bins"], r["hit"],
                         "; ".join("/".join(b) for b in r["missing"][:6])
                         + (" ..." if len(r["missing"]) > 6 else "") or "-"])
    figures["functional"] = bins
    figures["annotated"] = [str(p) for p in annotated]
    fun_table = Table("Functional coverage of the stimulus", ["group", "axes", "bins", "hit",
                                                              "missing"], fun_rows)
    (out / "summary.json").write_text(json.dumps(figures, indent=1))
    return Result([code_table, fun_table], figures, status)


def _write_uncovered(path, missed, toggles):
    lines = []
    for kind, items in (("line/branch", missed), ("toggle", toggles)):
        lines.append(f"# {kind} points never hit: {len(items)}")
        for block, point, text, reason in items:
            where = f"{point.file}:{point.line}"
            lines.append(f"{block}\t{where}\t{point.comment}\t{reason or 'not reached'}\t{text}")
    path.write_text("\n".join(lines) + "\n")
