"""``python build.py bench mac|cache|hb|fuzz``: the benchmarks, each a table and a JSON line.

* ``mac``: the MAC array's throughput per mode on Verilator and its synthesis cells with and
  without the augmentation bit (:mod:`sim.mac_array.bench`; ``--preset``, ``--ops``).
* ``cache``: the expert-cache controller's lookup rate and latency on Verilator, and the hit rates
  of its policies in the golden model on generated routing traces, and on a recorded one with
  ``--trace`` (:mod:`sim.expert_cache.bench`; ``--preset``, ``--ops``).
* ``hb``: bandwidth efficiency and latency of the HB interface and the LPDDR port with their
  DRAM-die models on Verilator (:mod:`sim.mem_channel.bench`; ``--words``, ``--probes``).
* ``fuzz``: random command streams on the Verilated top and on the golden executor
  (:mod:`sim.top.fuzz`; ``--streams``, ``--pes``); exit status 1 on any mismatch.
"""

from sim.commands.output import Result, Table, progress

NAME = "bench"
HELP = "run a benchmark: mac, cache, hb, fuzz"


def add_arguments(p):
    p.add_argument("what", help="which bench: mac, cache, hb, fuzz")
    p.add_argument("--preset", default="default", help="parameter preset (default: default)")
    p.add_argument("--ops", type=int, default=1000,
                   help="operations per mode (mac), lookups (cache)")
    p.add_argument("--words", type=int, default=16384, help="hb: words per measured stream")
    p.add_argument("--probes", type=int, default=200, help="hb: single-read latency probes")
    p.add_argument("--streams", type=int, default=2000, help="fuzz: random command streams")
    p.add_argument("--pes", type=int, default=2, help="fuzz: PEs of the simulated top")
    from sim.expert_cache.bench import TRACE
    p.add_argument("--trace-steps", type=int, default=TRACE["steps"], metavar="N",
                   help="cache: decode steps of the generated traces of the hit-rate table "
                        f"(default {TRACE['steps']})")
    p.add_argument("--trace", default=None, metavar="PATH",
                   help="cache: also replay a recorded routing trace (python build.py sd "
                        "--save-routing PATH)")


def _positive(args, *names):
    for name in names:
        if getattr(args, name) < 1:
            raise SystemExit(f"bench {args.what}: --{name} must be at least 1, not "
                             f"{getattr(args, name)}")


def _preset(presets, name):
    if name not in presets:
        raise SystemExit(f"unknown preset {name!r}; choose from {', '.join(presets)}")
    return presets[name]


def _tables(tables):
    return [Table(title, headers, rows) for title, headers, rows in tables]


def bench_mac(args):
    from hw.params import MAC_PRESETS
    from sim.mac_array.bench import run_bench
    params = _preset(MAC_PRESETS, args.preset)
    _positive(args, "ops")
    progress(f"MAC array bench: {args.preset} preset, {params.describe()}; "
             f"{args.ops} operations per mode")
    tables, figures = run_bench(params, args.preset, args.ops, args.seed, args.waves,
                                progress=progress)
    return Result(_tables(tables), figures)


def bench_cache(args):
    from hw.params import CACHE_PRESETS
    from sim.expert_cache.bench import WARMUP, run_bench
    from sw_model.model.routing_traces import load_routing_trace
    params = _preset(CACHE_PRESETS, args.preset)
    _positive(args, "ops")
    if args.trace_steps <= WARMUP:
        raise SystemExit(f"bench cache: --trace-steps must be more than the {WARMUP} warm-up "
                         f"steps, not {args.trace_steps}")
    recorded = None
    if args.trace is not None:
        try:
            recorded = load_routing_trace(args.trace)
        except (ValueError, OSError) as exc:
            raise SystemExit(f"bench cache --trace: {exc}") from None
    progress(f"expert-cache bench: {args.preset} preset, {params.describe()}; {args.ops} lookups "
             "in RTL simulation, then hit rates of the golden model on generated traces")
    tables, figures = run_bench(params, args.preset, lookups=args.ops, seed=args.seed,
                                waves=args.waves, recorded=recorded, trace_path=args.trace,
                                trace_steps=args.trace_steps)
    return Result(_tables(tables) + ["\nLRU at large batch: when a step needs more experts than "
                                     "fit, LRU evicts each before its next use."], figures)


def bench_hb(args):
    from sim.mem_channel.bench import TABLE_HEADERS, run_hb_bench
    _positive(args, "words", "probes")
    progress("HB interface and LPDDR port with their DRAM-die models, on Verilator")
    rows, latency_rows, figures = run_hb_bench(seed=args.seed, words=args.words,
                                               probes=args.probes, waves=args.waves,
                                               progress=lambda text: progress("  " + text))
    return Result([Table(None, TABLE_HEADERS, rows),
                   Table(None, ["memory", "latency min", "median", "max (cycles)", "probes"],
                         latency_rows)], figures)


def bench_fuzz(args):
    from hw.params import TOP_DEFAULT
    from sim.top.fuzz import fuzz
    if args.streams < 1:
        raise SystemExit(f"bench fuzz: --streams must be at least 1, not {args.streams}")
    if not 1 <= args.pes <= 64:
        raise SystemExit(f"bench fuzz: --pes must be in 1..64, not {args.pes}")
    params = TOP_DEFAULT.with_pes(args.pes)
    progress(f"differential fuzzing: {args.streams} random streams (seed {args.seed}) on the "
             f"Verilated top ({params.describe()}) and the golden executor ...")
    figures = fuzz(params, args.streams, args.seed)
    rows = [[name, r["streams"], r["commands"], r["mismatches"]]
            for name, r in sorted(figures["by_target"].items())]
    rows.append(["all", figures["streams"], figures["commands_executed"], figures["mismatches"]])
    notes = [f"MISMATCH in stream {m['stream']} ({m['target']}): " + "; ".join(m["problems"])
             for m in figures["first_mismatches"]]
    notes.append(f"\n{figures['rtl_cycles']} RTL cycles in {figures['simulate_seconds']} s of "
                 f"simulation (with back-door loads and reads), {figures['seconds']} s in all")
    figures["pes"] = args.pes
    return Result([Table(None, ["stream ends with", "streams", "commands executed",
                                "mismatches"], rows, "\n".join(notes))],
                  figures, status=1 if figures["mismatches"] else 0)


BENCHES = {"mac": bench_mac, "cache": bench_cache, "hb": bench_hb, "fuzz": bench_fuzz}


def run(args):
    if args.what not in BENCHES:
        raise SystemExit(f"unknown bench {args.what!r}; choose from {', '.join(BENCHES)}")
    return BENCHES[args.what](args)
