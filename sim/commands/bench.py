"""``python build.py bench mac|cache|hb|fuzz|paper-layer``: the benchmarks, each a table and a JSON
line.

Every bench runs the blocks of a machine (``--machine``, ``--set``; default ``tiny``, for ``hb``
``paper``).

* ``mac``: the MAC array's throughput per mode on Verilator and its synthesis cells with and
  without the augmentation bit (:mod:`sim.mac_array.bench`; ``--ops``).
* ``cache``: the expert-cache controller's lookup rate and latency on Verilator, and the hit rates
  of its policies in the golden model on generated routing traces, and on a recorded one with
  ``--trace`` (:mod:`sim.expert_cache.bench`; ``--ops``).
* ``hb``: bandwidth efficiency and latency of the HB interface and the LPDDR port with their
  DRAM-die models on Verilator (:mod:`sim.mem_channel.bench`; ``--words``, ``--probes``). The
  machine's ports are simulated with at most two channels (clients) of at most
  :data:`SIMULATED_WORDS` words each: bandwidth and latency per channel come from the widths,
  timings and bank map, not from the channel count or the capacity.
* ``fuzz``: random command streams on the Verilated top and on the golden executor
  (:mod:`sim.top.fuzz`; ``--streams``); exit status 1 on any mismatch.
* ``paper-layer``: one MoE layer of a paper model's real shape (``--model``, default
  qwen3-30b-a3b) on a top of the paper's PE (``--pes`` 1 or 2, ``--batch``) on Verilator, against the
  golden executor bit for bit, with MAC utilisation and memory shares
  (:mod:`sim.top.paper_layer`; its machine is derived from ``paper``, not ``--machine``); exit
  status 1 on any mismatch.
"""

from sim.commands.output import Result, Table, progress

NAME = "bench"
HELP = "run a benchmark: mac, cache, hb, fuzz, paper-layer"
#: The machine of every bench but ``hb`` unless ``--machine`` names another.
MACHINE = "tiny"
#: Words per channel the ``hb`` bench simulates at most (the DRAM-die models hold them all).
SIMULATED_WORDS = {"hb": 1 << 15, "lpddr": 1 << 14}


def machine_default(args):
    """``hb`` measures the paper machine's memory ports; the other benches ``tiny``."""
    return "paper" if args.what == "hb" else MACHINE


def add_arguments(p):
    p.add_argument("what", help="which bench: mac, cache, hb, fuzz, paper-layer")
    p.add_argument("--model", default="qwen3-30b-a3b", help="paper-layer: the zoo model")
    p.add_argument("--pes", type=int, default=1, help="paper-layer: PEs of the top (1 or 2)")
    p.add_argument("--batch", type=int, default=1, help="paper-layer: sequences per step")
    p.add_argument("--ops", type=int, default=1000,
                   help="operations per mode (mac), lookups (cache)")
    p.add_argument("--words", type=int, default=16384, help="hb: words per measured stream")
    p.add_argument("--probes", type=int, default=200, help="hb: single-read latency probes")
    p.add_argument("--streams", type=int, default=2000, help="fuzz: random command streams")
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


def _tables(tables):
    return [Table(title, headers, rows) for title, headers, rows in tables]


def bench_mac(args):
    from sim.mac_array.bench import run_bench
    params = args.params.mac
    _positive(args, "ops")
    progress(f"MAC array bench: {args.run_name}, {params.describe()}; "
             f"{args.ops} operations per mode")
    tables, figures = run_bench(params, args.run_name, args.ops, args.seed, args.waves,
                                progress=progress)
    return Result(_tables(tables), figures)


def bench_cache(args):
    from sim.expert_cache.bench import WARMUP, run_bench
    from sw_model.model.routing_traces import load_routing_trace
    params = args.params.cache
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
    progress(f"expert-cache bench: {args.run_name}, {params.describe()}; {args.ops} lookups "
             "in RTL simulation, then hit rates of the golden model on generated traces")
    tables, figures = run_bench(params, args.run_name, lookups=args.ops, seed=args.seed,
                                waves=args.waves, recorded=recorded, trace_path=args.trace,
                                trace_steps=args.trace_steps)
    return Result(_tables(tables) + ["\nLRU at large batch: when a step needs more experts than "
                                     "fit, LRU evicts each before its next use."], figures)


def bench_hb(args):
    from sim.mem_channel.bench import TABLE_HEADERS, run_hb_bench
    _positive(args, "words", "probes")
    from dataclasses import replace
    from hw.params import unsigned_width
    m = args.params

    def simulated(port, kind, **count):
        words = min(port.words, SIMULATED_WORDS[kind])
        return replace(port, words=words, address_width=unsigned_width(words), **count)
    systems = {"hb": (simulated(m.hb, "hb", channels=min(m.hb.channels, 2)), m.hb_timing),
               "lpddr": (simulated(m.lpddr, "lpddr", clients=min(m.lpddr.clients, 2)),
                         m.lpddr_timing)}
    progress(f"HB interface and LPDDR port of {args.run_name} with their DRAM-die models, on "
             "Verilator")
    rows, latency_rows, figures = run_hb_bench(systems, seed=args.seed, words=args.words,
                                               probes=args.probes, waves=args.waves,
                                               progress=lambda text: progress("  " + text))
    return Result([Table(None, TABLE_HEADERS, rows),
                   Table(None, ["memory", "latency min", "median", "max (cycles)", "probes"],
                         latency_rows)], figures)


def bench_fuzz(args):
    from sim.top.fuzz import fuzz
    if args.streams < 1:
        raise SystemExit(f"bench fuzz: --streams must be at least 1, not {args.streams}")
    from sim.top.run import check_simulable
    params = args.params
    try:
        check_simulable(params)
    except ValueError as exc:
        raise SystemExit(f"bench fuzz: {args.machine_label}: {exc}") from None
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
    figures["pes"] = params.pes
    return Result([Table(None, ["stream ends with", "streams", "commands executed",
                                "mismatches"], rows, "\n".join(notes))],
                  figures, status=1 if figures["mismatches"] else 0)


def bench_paper_layer(args):
    from sim.top.paper_layer import run_paper_layer
    if args.pes not in (1, 2):
        raise SystemExit(f"bench paper-layer: --pes must be 1 or 2, not {args.pes}")
    _positive(args, "batch")
    from sw_model.model.zoo import ZOO
    if args.model not in ZOO:
        raise SystemExit(f"bench paper-layer: unknown model {args.model!r}; choose from "
                         f"{', '.join(sorted(ZOO))}")
    f = run_paper_layer(args.model, args.pes, args.batch, seed=args.seed, progress=progress)
    rows = [[s["name"], s["commands"], s["mac_dq"], s["outputs"], s["cycles"],
             "match" if s["match"] else "MISMATCH"] for s in f["streams"]]
    notes = [f"{s['name']}: " + "; ".join(s["differences"]) for s in f["streams"]
             if not s["match"]]
    notes += [
        f"MAC utilisation during MAC commands: {f['mac_utilisation']:.3f} ({f['mac_beats']} weight "
        f"beats in {f['mac_cycles']} cycles, the MAC_DQ commands back to back)",
        f"HB share of peak during loads: {f['hb_share']:.3f} ({f['hb_bytes']} B in "
        f"{f['hb_cycles']} cycles); LPDDR: {f['lpddr_share']:.3f} ({f['lpddr_bytes']} B in "
        f"{f['lpddr_cycles']} cycles)",
        f"Verilator build and run: {f['run_seconds']} s, {f['cycles']} cycles, "
        f"{f['cycles_per_second']} cycles/s"]
    ok = all(s["match"] for s in f["streams"]) and f["measure_done"]
    return Result([Table(f"{f['model']}: one MoE layer on {f['machine']}, batch {f['batch']}",
                         ["stream", "commands", "MAC_DQ", "outputs", "cycles", "memories"], rows,
                         "\n".join(notes))], f, status=0 if ok else 1)


BENCHES = {"mac": bench_mac, "cache": bench_cache, "hb": bench_hb, "fuzz": bench_fuzz,
           "paper-layer": bench_paper_layer}


def run(args):
    if args.what not in BENCHES:
        raise SystemExit(f"unknown bench {args.what!r}; choose from {', '.join(BENCHES)}")
    return BENCHES[args.what](args)
