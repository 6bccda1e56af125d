"""``python build.py check``: every block's Verilog and a short golden-versus-RTL check of each.

Writes and lints the Verilog of every block of the machine (default ``tiny``), then runs short cocotb
benches on Verilator against the golden models: the MAC array (``--dots`` random group dot
products per mode, plus edge cases), the expert-cache controller (``--dots`` mixed requests), and
the HB interface and the LPDDR port with their DRAM-die models (:data:`MAIN_JOB_MEM_WORDS` random
words per channel written and read back under back-pressure). Prints one row per block; exit
status 1 when any Verilog has lint errors (a failing bench stops with its error).
"""

import tempfile
import time
from pathlib import Path

from sim.commands.output import Result, Table, progress

NAME = "check"
HELP = "every block's Verilog and a golden-versus-RTL check of each"
#: The machine whose blocks ``check`` builds and checks unless ``--machine`` names another.
MACHINE = "tiny"

#: Words per memory channel `check` writes and reads back (the tests do the full 1 MiB).
MAIN_JOB_MEM_WORDS = 4096


def add_arguments(p):
    p.add_argument("--dots", type=int, default=1000,
                   help="random group dot products per mode (and cache requests)")


def run(args):
    from hw.blocks import BLOCKS
    from sim.commands.verilog import write_all
    from sim.expert_cache.bench import quick_check
    from sim.mac_array.harness import SUMMARY_ENV, read_summary
    from sim.mac_array.run import run_mac_bench
    from sim.mem_channel.run import run_mem_bench
    if args.dots < 1:
        raise SystemExit(f"--dots must be a positive integer, not {args.dots}")
    start = time.monotonic()
    machine = args.params
    progress(f"ELMoE-3D: writing Verilog of every block of {args.run_name} ...")
    rows = write_all({args.run_name: machine})
    progress("checking the Verilated MAC array against the golden model "
             f"({args.dots} random group dot products per mode, plus edge cases) ...")
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.jsonl"
        tests, results = run_mac_bench(machine.mac, seed=args.seed, waves=args.waves,
                                       env={"ELMOE_MAC_DOTS": str(args.dots),
                                            SUMMARY_ENV: str(summary)})
        checked = read_summary(summary)
    progress(f"checking the Verilated expert-cache controller against its golden model "
             f"({args.dots} mixed requests) ...")
    cache_tests, beats = quick_check(machine.cache, args.dots,
                                     seed=args.seed, waves=args.waves)
    checks = {"mac_array": f"{tests} cocotb tests passed, {checked} group dot products bit-exact",
              "expert_cache": f"{cache_tests} cocotb tests passed, {beats} response beats equal"}
    measured = {"mac_array": {"cocotb_tests": tests, "group_dot_products": checked},
                "expert_cache": {"cocotb_tests": cache_tests, "response_beats": beats}}
    for block, system, timing in (("hb_interface", "hb", machine.hb_timing),
                                  ("lpddr_port", "lpddr", machine.lpddr_timing)):
        params = BLOCKS[block].of_machine(machine)
        words = min(MAIN_JOB_MEM_WORDS, params.words)
        progress(f"checking the Verilated {block} with its DRAM-die model: {words} "
                 f"random words per channel written and read back under back-pressure ...")
        mem_tests, _ = run_mem_bench(system, params, timing, testcase="integrity", seed=args.seed,
                                     waves=args.waves, env={"ELMOE_MEM_WORDS": str(words)})
        kib = words * params.bytes_per_word >> 10
        checks[block] = (f"{mem_tests} cocotb test passed, {kib} KiB per channel written and "
                         "read back byte-exactly")
        measured[block] = {"cocotb_tests": mem_tests, "kib_per_channel": kib}
    table = Table(None, ["block", "params", "Verilog", "lint errors", "RTL vs golden model"],
                  [[r["block"], BLOCKS[r["block"]].of_machine(machine).describe(),
                    r["path"] or f"not built: {r['reason']}",
                    r.get("lint_errors", "-"), checks.get(r["block"], "python build.py demo runs it")]
                   for r in rows],
                  f"\ndone in {time.monotonic() - start:.0f} s; results in {results}")
    figures = {"verilog": rows, "checks": measured, "results": str(results),
               "seconds": round(time.monotonic() - start, 1)}
    return Result([table], figures, status=1 if any(r.get("lint_errors") for r in rows) else 0)
