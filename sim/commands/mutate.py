"""``python build.py mutate``: mutation testing of the RTL (:mod:`sim.mutate`).

Generates the mutants of every block (or ``--block``), picks ``--count`` of each block spread
over the operators (seeded by ``--seed``), runs each against the block's fast tests, ``--jobs`` at
a time, and prints killed / survived per block and every survivor with its edit. Results, one per
mutant, go to ``build/mutate/results.json``; the mutant sources of survivors to
``build/mutate/survivors/``. Exit status 1 if fewer than ``--target`` percent are killed.
"""

import json
from concurrent.futures import ThreadPoolExecutor, as_completed

from hw.flows.verilog import BUILD_ROOT, REPO_ROOT
from sim.commands.output import Result, Table, progress_bar

NAME = "mutate"
HELP = "mutation testing of the RTL: mutants killed / survived per block"

#: Mutants per block by default (at least 100 in all).
DEFAULT_COUNTS = {"mac_array": 25, "expert_cache": 30, "mem_channel": 25, "lpddr_port": 10,
                  "command_processor": 20}


def add_arguments(p):
    p.add_argument("--block", action="append", help="a block to mutate (repeatable; default all)")
    p.add_argument("--count", type=int, help="mutants per block (default: per block, 110 in all)")
    p.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    p.add_argument("--target", type=float, default=90.0,
                   help="required percentage of killed mutants (default 90)")
    p.add_argument("--rerun-survivors", action="store_true",
                   help="run only the survivors of the last run (build/mutate/results.json) "
                        "again, after tests were added, and update the results")
    p.add_argument("--timeout", type=int, default=None,
                   help="seconds per mutant before it counts as a hang (default: per block)")


def run(args):
    from sim.mutate import BLOCKS, mutants, run_mutant, same_verilog, select
    blocks = args.block or list(BLOCKS)
    for name in blocks:
        if name not in BLOCKS:
            raise SystemExit(f"unknown block {name!r}; choose from {', '.join(BLOCKS)}")
    if args.count is not None and args.count < 1:
        raise SystemExit(f"--count must be at least 1, not {args.count}")
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, not {args.jobs}")
    if args.timeout is not None and args.timeout < 1:
        raise SystemExit(f"--timeout must be at least 1 second, not {args.timeout}")
    seed = args.seed if args.seed is not None else 1
    chosen = []
    for name in blocks:
        count = args.count or DEFAULT_COUNTS[name]
        chosen += select(mutants(name, REPO_ROOT), count, seed)
    out = BUILD_ROOT / "mutate"
    (out / "survivors").mkdir(parents=True, exist_ok=True)
    results = {}
    if args.rerun_survivors:
        previous = _previous(out / "results.json", chosen)
        results = {k: v for k, v in previous.items() if v[0]}
        for path in (out / "survivors").glob("*.py"):
            path.unlink()
    to_run = [m for m in chosen if m.key not in results]
    (out / "progress.jsonl").unlink(missing_ok=True)
    bar = progress_bar("mutants")
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_mutant, REPO_ROOT, m, args.timeout): m for m in to_run}
        for done, future in enumerate(as_completed(futures), 1):
            mutant = futures[future]
            results[mutant.key] = future.result()
            bar(done, len(to_run))
            with open(out / "progress.jsonl", "a") as f:      # readable while the run goes on
                f.write(json.dumps({"key": mutant.key, "result": results[mutant.key]}) + "\n")
    rows, survivors, figures = [], [], {"blocks": {}, "mutants": []}
    for name in blocks:
        mine = [m for m in chosen if m.block == name]
        killed = sum(results[m.key][0] for m in mine)
        hangs = sum(results[m.key][2].startswith("hang") for m in mine)
        rows.append([name, len(mine), killed, hangs, len(mine) - killed,
                     f"{100.0 * killed / len(mine):.1f}" if mine else "-"])
        figures["blocks"][name] = {"mutants": len(mine), "killed": killed,
                                   "survived": len(mine) - killed}
        for m in mine:
            killed_m, seconds, detail = results[m.key]
            figures["mutants"].append({"block": m.block, "operator": m.operator, "line": m.line,
                                       "edit": m.description, "killed": killed_m,
                                       "seconds": round(seconds, 1), "detail": detail})
            if not killed_m:
                verdict = ("equivalent: the same Verilog at the default parameters"
                           if same_verilog(REPO_ROOT, m) else "examine (see the report)")
                figures["mutants"][-1]["verdict"] = verdict
                survivors.append([m.block, m.line, m.operator, m.description, verdict])
                (out / "survivors" / f"{m.block}-{m.line}-{m.operator}.py").write_text(m.source)
    total = len(chosen)
    killed = sum(r[0] for r in results.values())
    percent = 100.0 * killed / total if total else 0.0
    hangs = sum(r[2].startswith("hang") for r in results.values())
    rows.append(["all", total, killed, hangs, total - killed, f"{percent:.1f}"])
    figures.update(total=total, killed=killed, survived=total - killed,
                   killed_percent=round(percent, 2), seed=seed)
    (out / "results.json").write_text(json.dumps(figures, indent=1))
    tables = [Table("Mutants per block", ["block", "mutants", "killed", "of them by a hang", "survived",
                                            "% killed"],
                    rows, f"results: {out / 'results.json'}")]
    if survivors:
        tables.append(Table("Survivors (mutated sources in build/mutate/survivors/)",
                            ["block", "line", "operator", "edit", "verdict"], survivors))
    return Result(tables, figures, status=0 if percent >= args.target else 1)


def _previous(path, chosen):
    """``{mutant key: (killed, seconds, detail)}`` of the last run for the ``chosen`` mutants;
    a clear error if there is none or it was of other mutants."""
    if not path.exists():
        raise SystemExit(f"no previous run at {path}: run without --rerun-survivors first")
    figures = json.loads(path.read_text())
    by_key = {f"{m['block']}:{m['line']}:{m['operator']}:{m['edit']}":
              (m["killed"], m["seconds"], m["detail"]) for m in figures["mutants"]}
    missing = [m.key for m in chosen if m.key not in by_key]
    if missing:
        raise SystemExit(f"the last run at {path} had other mutants ({len(missing)} of these "
                         f"missing, e.g. {missing[0]}): run without --rerun-survivors")
    return {m.key: by_key[m.key] for m in chosen}
