"""``python build.py bench fuzz``: differential fuzzing of the RTL against the golden executor
(:mod:`sim.fuzz`), as a table per target error and a last-line JSON object."""

import json

from hw.params import TOP_DEFAULT

__all__ = ["run"]


def _table(headers, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def run(args):
    from sim.fuzz import fuzz
    if args.streams < 1:
        raise SystemExit(f"bench fuzz: --streams must be at least 1, not {args.streams}")
    if not 1 <= args.pes <= 64:
        raise SystemExit(f"bench fuzz: --pes must be in 1..64, not {args.pes}")
    params = TOP_DEFAULT.with_pes(args.pes)
    print(f"differential fuzzing: {args.streams} random streams (seed {args.seed}) on the "
          f"Verilated top ({params.describe()}) and the golden executor ...", flush=True)
    figures = fuzz(params, args.streams, args.seed)
    rows = [[name, r["streams"], r["commands"], r["mismatches"]]
            for name, r in sorted(figures["by_target"].items())]
    rows.append(["all", figures["streams"], figures["commands_executed"], figures["mismatches"]])
    print()
    print(_table(["stream ends with", "streams", "commands executed", "mismatches"], rows))
    for m in figures["first_mismatches"]:
        print(f"MISMATCH in stream {m['stream']} ({m['target']}): " + "; ".join(m["problems"]))
    print(f"\n{figures['rtl_cycles']} RTL cycles in {figures['simulate_seconds']} s of simulation "
          f"(with back-door loads and reads), {figures['seconds']} s in all")
    figures["pes"] = args.pes
    print(json.dumps(figures))
    return 1 if figures["mismatches"] else 0
