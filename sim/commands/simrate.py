"""``python build.py simrate``: simulated cycles per second of the long MAC, cache and
memory-channel runs on Verilator, driven cycle by cycle from Python (the cocotb stream drivers)
and free-running (stimulus and results in simulation memories, :mod:`sim.stream_memories`).

Both ways are measured the same way: the simulated cycles of the cocotb test (its simulated time
over the clock period, from cocotb's results) over its wall-clock seconds (also from cocotb's
results), and over the CPU seconds of the simulator process (immune to other work on the
machine). Stimulus generation, the golden model and the checks are inside both measurements.
Each design is built (and cached) by a warm-up run before the measured one (a short one for the
per-cycle benches, the same run for the free-running ones, whose memories are sized to it).
"""

import resource
import xml.etree.ElementTree as ET

from sim.commands.output import Result, Table, progress

NAME = "simrate"
HELP = "simulated cycles per second of the long runs, per-cycle Python vs free-running"


def add_arguments(p):
    p.add_argument("--dots", type=int, default=10000,
                   help="MAC: group dot products per mode (default 10000)")
    p.add_argument("--requests", type=int, default=20000,
                   help="cache: mixed requests (default 20000)")
    p.add_argument("--words", type=int, default=8192,
                   help="memory: words per channel (default 8192)")
    p.add_argument("--only", choices=("mac", "cache", "memory"), action="append",
                   help="measure only these runs (repeatable)")


def _figures(results_xml):
    """``(simulated cycles, wall seconds)`` summed over the test cases of a cocotb run."""
    from sim.cocotb_streams import CLOCK_PERIOD_NS
    cycles = seconds = 0.0
    for case in ET.parse(results_xml).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        cycles += float(props.get("sim_time_duration", 0)) / CLOCK_PERIOD_NS
        seconds += float(case.get("time", 0))
    return int(cycles), seconds


def _measure(run):
    """Run ``run()`` (returns ``(tests, results_xml)``); ``(cycles, wall s, CPU s)``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    _, results_xml = run()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cycles, wall = _figures(results_xml)
    return cycles, wall, cpu


def _runs(args):
    from hw.params import CACHE_DEFAULT, HB_DEFAULT, MAC_DEFAULT, HbBankTiming
    from sim.expert_cache.run import run_cache_batch, run_cache_bench
    from sim.mac_array.run import run_mac_batch, run_mac_bench
    from sim.mem_channel.run import run_mem_batch, run_mem_bench
    seed = args.seed
    t = HbBankTiming()
    return {
        "mac": (f"MAC array, {args.dots} dots per mode",
                lambda n: run_mac_bench(MAC_DEFAULT, testcase="random_each_mode", seed=seed,
                                        env={"ELMOE_MAC_DOTS": str(n)}),
                lambda n: run_mac_batch(MAC_DEFAULT, n, seed=seed), args.dots, 50),
        "cache": (f"expert cache, {args.requests} requests",
                  lambda n: run_cache_bench(CACHE_DEFAULT, testcase="mixed_traces", seed=seed,
                                            env={"ELMOE_CACHE_OPS": str(n)}),
                  lambda n: run_cache_batch(CACHE_DEFAULT, n, seed=seed), args.requests, 200),
        "memory": (f"HB interface, {args.words} words per channel",
                   lambda n: run_mem_bench("hb", HB_DEFAULT, t, testcase="integrity", seed=seed,
                                           env={"ELMOE_MEM_WORDS": str(n)}),
                   lambda n: run_mem_batch("hb", HB_DEFAULT, t, words=n, seed=seed),
                   args.words, 256),
    }


def run(args):
    for name in ("dots", "requests", "words"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be at least 1, not {getattr(args, name)}")
    if args.words > 1 << 15:
        raise SystemExit(f"--words must be at most {1 << 15} (a channel's words), "
                         f"not {args.words}")
    rows, figures = [], {}
    for key, (label, per_cycle, batch, size, warm) in _runs(args).items():
        if args.only and key not in args.only:
            continue
        figures[key] = {}
        # the warm-up builds the design: the per-cycle bench's build does not depend on the run's
        # size, the free-running bench's memories do
        for way, run_fn, warm_size in (("per-cycle Python", per_cycle, warm),
                                       ("free-running", batch, size)):
            progress(f"{label}: {way} (warm-up build, then the measured run)")
            run_fn(warm_size)
            cycles, wall, cpu = _measure(lambda: run_fn(size))
            figures[key][way] = {"cycles": cycles, "wall_s": round(wall, 3),
                                 "cpu_s": round(cpu, 3),
                                 "cycles_per_s": round(cycles / wall) if wall else None,
                                 "cycles_per_cpu_s": round(cycles / cpu) if cpu else None}
            f = figures[key][way]
            rows.append([label, way, cycles, f"{wall:.1f}", f"{cpu:.1f}", f["cycles_per_s"],
                         f["cycles_per_cpu_s"]])
    table = Table("Simulated cycles per second (stimulus, golden model and checks included)",
                  ["run", "driven", "cycles", "wall s", "CPU s", "cycles/s",
                   "cycles/CPU s"], rows)
    return Result([table], figures)
