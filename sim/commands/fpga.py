"""``python build.py fpga``: place and route of every block on ECP5 and iCE40, or a bitstream.

Without ``--board``: every block in a small configuration inside a scan-chain I/O harness, placed
and routed with yowasp-nextpnr (:func:`hw.flows.fpga.run_blocks`) at ``--freq`` MHz; a table of
utilisation and fmax. With ``--machine`` (and ``--set``): every block of that machine instead
(large machines do not fit the parts; nextpnr then says so). With ``--board ulx3s``: the
self-test design, checked on Verilator, then its bitstream (:func:`sim.selftest.run.build_board`);
exit status 1 unless the self-test passes.
"""

from sim.commands.output import Result, Table, progress

NAME = "fpga"
HELP = "FPGA place and route of every block, or --board: a bitstream"
#: Without ``--machine``: every block in a small configuration that fits the parts.
MACHINE = None


def add_arguments(p):
    p.add_argument("--board", default=None, help="build the self-test bitstream for a board "
                   "(ulx3s)")
    p.add_argument("--freq", type=float, default=50, help="target clock in MHz (default 50)")


def _board(args):
    from hw.flows.board import BOARDS
    from hw.flows.fpga import FpgaError
    from hw.flows.verilog import BUILD_ROOT
    from sim.selftest.run import build_board
    if args.board not in BOARDS:
        raise SystemExit(f"unknown board {args.board!r}; choose from {', '.join(BOARDS)}")
    try:
        figures = build_board(args.board, BUILD_ROOT, seed=args.seed, progress=progress)
    except FpgaError as exc:
        raise SystemExit(f"fpga --board {args.board}: {exc}") from None
    return Result([], figures, status=0 if figures["selftest_passed"] else 1)


def run(args):
    from hw.blocks import BLOCKS
    from hw.flows.fpga import FpgaError, run_blocks
    from hw.flows.verilog import BUILD_ROOT
    if args.board:
        return _board(args)
    if not args.freq > 0:
        raise SystemExit(f"--freq must be a positive number of MHz, not {args.freq}")
    progress("placing and routing every block (small configurations, scan-chain I/O harness; "
             "yowasp-nextpnr) ...")
    try:
        rows = run_blocks(BUILD_ROOT, freq_mhz=args.freq,
                          progress=lambda text: progress("  " + text),
                          configs=None if args.params is None else {
                              name: block.of_machine(args.params)
                              for name, block in BLOCKS.items()
                              if block.buildable(args.params) is None})
    except FpgaError as exc:
        raise SystemExit(f"fpga: {exc}") from None
    table = Table(
        None, ["block", "params", "part", "port bits", "LUTs / logic cells", "FFs", "BRAMs",
               "DSPs", "fmax (MHz)"],
        [[r["block"], r["describe"], r["part"], r["port_bits"],
          f"{r['luts'][0]} / {r['luts'][1]} ({100 * r['luts'][0] / r['luts'][1]:.1f}%)",
          r["ffs"], f"{r['brams'][0]} / {r['brams'][1]}",
          f"{r['dsps'][0]} / {r['dsps'][1]}" if r["dsps"][1] else "-", r["fmax_mhz"]]
         for r in rows],
        "Each block sits in a scan-chain harness: one flip-flop per port bit (port bits) is the "
        "harness's, not the block's.")
    return Result([table], {"fpga": rows})
