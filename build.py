#!/usr/bin/env python3
"""ELMoE-3D: the one entry point that writes artefacts, all under ``build/``.

    python build.py                 the demo (same as `python build.py demo`): Verilog of every
                                    block and the top, Elastic-SD on the default model, one step
                                    scheduled and run on the Verilated accelerator, checked
                                    against the golden executor bit for bit
    python build.py machine show M  a machine description (tiny, demo, paper or a file) with
                                    every derived figure: peak TOPS, bandwidth, capacities
    python build.py check           Verilog of every block of a machine, lint, and a short
                                    golden-versus-RTL check of each block on Verilator
    python build.py verilog         Verilog of every block of a machine (default: of every
                                    built-in machine), each linted
    python build.py bench mac       MAC array throughput in RTL simulation and synthesis cells
    python build.py bench cache     expert-cache lookup rate and latency (RTL), policy hit rates
    python build.py bench hb        HB interface and LPDDR port bandwidth and latency (Verilator)
    python build.py bench fuzz      random command streams on the RTL top and the golden executor
                                    (--streams N): mismatches must be 0
    python build.py simrate         simulated cycles per second of the long MAC, cache and memory
                                    runs, Python per cycle vs free-running from memories
    python build.py coverage        line and toggle coverage of every block's Verilog and
                                    functional bins, from the cocotb tests (build/coverage)
    python build.py mutate          mutants of the RTL against each block's fast tests: killed /
                                    survived per block (build/mutate)
    python build.py synth           Yosys synthesis of every block at a ladder of sizes: generic
                                    cells, OSU 0.18 um area, augmentation overhead, paper PE fit
    python build.py fpga            place and route of every block on ECP5 and iCE40 (utilisation,
                                    fmax); --board ulx3s: the self-test bitstream
    python build.py formal [BLOCK]  formal proofs of the block contracts with SymbiYosys
                                    (k-induction / BMC, covers); reports, VCDs under build/formal
    python build.py sd              Elastic-SD and cached decoding on the built-in MoE or a
                                    checkpoint (--checkpoint DIR): acceptance, experts touched,
                                    bytes per memory tier
                                    (expert cache: the controller's golden model, or --cache lru)
    python build.py perf            performance and energy model: ELMoE-3D vs every baseline per
                                    model and batch, headline averages of the chain and the token
                                    trees beside the paper's, plots under build/perf
    python build.py sweep           explore gamma or tree shape, threshold, resident policy, PE
                                    count (progress bar; local, or on a Ray cluster with --ray
                                    ADDRESS)
    python build.py schedule        command streams of decode steps (--model default|zoo name,
                                    --checkpoint PATH): binary and text under build/schedule
    python build.py stream validate|disasm|run FILE
                                    check, disassemble or run (golden executor; --rtl also the
                                    Verilated top) a command stream file, text or binary
    python build.py ablate          the papers' ablations on the shipped trained models: draft bits,
                                    resident-set selection, draft policies, held-out loss vs k';
                                    --study trees: chains against token trees at equal budgets
    python build.py train           retrain the shipped MoE models (standard, Elastic-MoE) from seed
    python build.py clean           remove builds and results under build/ (--keep-sim keeps the
                                    Verilator builds)

Commands that use a machine take --machine NAME|FILE and --set key=value (python build.py
machine show paper lists the keys). Every command prints its tables and, as its last line, one
JSON object with the figures, and keeps them (tables as CSV, the JSON, plots, the machine) under
build/<command>/<run>/.
"""

import argparse
import logging
import sys

from hw.machines import MachineError
from sim.commands import COMMANDS, DEFAULT
from sim.commands.options import (add_decoding_arguments, add_machine_arguments,
                                  add_out_argument, add_set_argument, discard_partial,
                                  resolve_args, save_results)
from sw_model.decode.policy import PolicyError
from sim.commands.output import emit


def _common(suppress):
    """Options accepted before or after the subcommand (after it, they override only if given)."""
    default = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-v", "--verbose", action="store_true", default=default(False),
                         help="log progress details")
    options.add_argument("--seed", type=int, default=default(1),
                         help="random seed of the benches (default 1)")
    options.add_argument("--waves", action="store_true", default=default(False),
                         help="record FST waveforms of simulations under build/waves")
    return options


def main(argv=None):
    """Parse ``argv`` (default: the command line), run the command, print its result; returns
    the exit status. A bad request exits with its one-line message."""
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__, parents=[_common(False)],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)        # --mode is not --model
    sub = parser.add_subparsers(dest="command")
    handlers = {}
    for handler in COMMANDS:
        sp = sub.add_parser(handler.NAME, parents=[_common(True)], help=handler.HELP,
                            description=handler.HELP, allow_abbrev=False)
        handler.add_arguments(sp)
        machine, decoding = hasattr(handler, "MACHINE"), getattr(handler, "DECODING", False)
        if machine:
            add_machine_arguments(sp, handler.MACHINE)
        if decoding:
            add_decoding_arguments(sp)
        if machine or decoding:
            add_set_argument(sp, machine, decoding)
        add_out_argument(sp)
        handlers[handler.NAME] = handler
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")
    handler = handlers[args.command or DEFAULT]
    if args.command is None:
        args = parser.parse_args([DEFAULT] + list(sys.argv[1:] if argv is None else argv))
    try:
        resolve_args(handler, args)
    except (MachineError, PolicyError) as exc:
        print(f"build.py {handler.NAME}: {exc}", file=sys.stderr)
        return 2
    try:
        result = handler.run(args)
    except BaseException:
        discard_partial(args)
        raise
    if getattr(handler, "SAVES_RESULTS", True):
        folder = save_results(result, args)
        kept = ["tables as CSV", "result.json"] + [
            name for name, there in (("machine.toml", args.params is not None),
                                     ("decoding.toml", hasattr(args, "decoding_policy"))) if there]
        result.tables.append(f"\nresults: {folder}/ ({', '.join(kept)})")
    emit(result)
    return result.status


if __name__ == "__main__":
    sys.exit(main())
