"""``python build.py machine show|list [NAME|FILE]``: machine descriptions and their figures.

``show`` prints the resolved machine (a built-in name or a machine file, with ``--set``
overrides): every field, then every figure derived from it (peak TOPS per mode, bandwidth and
capacity per memory tier, the PE memories in bytes; :func:`hw.machines.machine_figures`), and
writes it as a complete TOML machine file to the results folder (``--write FILE``: also there).
``list`` names the built-in machines with one line each.
"""

from hw.machines import MACHINES, machine_figures, write_machine
from sim.commands.output import Result, Table

__all__ = ["NAME", "HELP", "MACHINE", "add_arguments", "run"]

NAME = "machine"
HELP = "show a machine description and its derived figures, or list the built-in machines"
#: ``machine show`` without a name shows this one.
MACHINE = "paper"


def add_arguments(p):
    p.add_argument("action", choices=("show", "list"), help="show one machine, or list them")
    p.add_argument("machine_name", nargs="?", default=None, metavar="NAME|FILE",
                   help=f"a built-in machine ({', '.join(MACHINES)}) or a machine file "
                        f"(default {MACHINE})")
    p.add_argument("--write", default=None, metavar="FILE",
                   help="also write the resolved machine to FILE (.toml or .json)")


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def run(args):
    if args.action == "list":
        rows = [[name, params.describe()] for name, params in MACHINES.items()]
        return Result([Table("Built-in machines (python build.py machine show NAME):",
                             ["machine", "description"], rows)],
                      {"machines": {n: p.to_dict() for n, p in MACHINES.items()}})
    params = args.params
    figures = machine_figures(params)
    fields = []
    for key, value in params.to_dict().items():
        if isinstance(value, dict):
            fields += [[f"{key}.{k}", _fmt(v)] for k, v in value.items()]
        else:
            fields.append([key, _fmt(value)])
    t8, t4 = figures["peak_tops"]["W8A8"], figures["peak_tops"]["W4A8"]
    hb, lp = figures["hb"], figures["lpddr"]
    derived = [
        ["peak compute W8A8 (FULL)", f"{t8:.0f} TOPS",
         f"{params.pes} PEs x {figures['macs_per_cycle_per_pe']['W8A8']} MACs/cycle x 2 ops x "
         f"{params.clock_mhz} MHz"],
        ["peak compute W4A8 (DRAFT, MSB, LSB)", f"{t4:.0f} TOPS",
         f"{params.pes} PEs x {figures['macs_per_cycle_per_pe']['W4A8']} MACs/cycle x 2 ops x "
         f"{params.clock_mhz} MHz"],
        ["HB bandwidth per channel", f"{hb['gbps_per_channel']:.1f} GB/s",
         f"{params.hb.data_width} bit x {params.hb.clock_mhz} MHz"],
        ["HB bandwidth in all", f"{hb['gbps']:.1f} GB/s", f"{hb['channels']} channels"],
        ["HB capacity", f"{hb['gib']:.4g} GiB",
         f"{hb['channels']} x {params.hb.words} words x {params.hb.bytes_per_word} B"],
        ["LPDDR bandwidth", f"{lp['gbps']:.1f} GB/s",
         f"{params.lpddr.data_width} bit x {params.lpddr.clock_mhz} MHz, {lp['clients']} "
         "clients"],
        ["LPDDR capacity", f"{lp['gib']:.4g} GiB",
         f"{params.lpddr.words} words x {params.lpddr.bytes_per_word} B"],
        ["access energy", f"HB {hb['pj_per_bit']} / LPDDR {lp['pj_per_bit']} pJ/bit",
         "hb_timing / lpddr_timing .pj_per_bit"],
        ["on-die links", f"gather {params.gather_gbps:g} GB/s per PE, stream "
         f"{params.stream_gbps:g} GB/s", "performance model only"],
    ]
    derived += [[f"{name} memory", f"{size / 1024:.4g} KiB", "per PE" if "shared" not in name
                 else "one for all PEs"] for name, size in figures["pe_memories_bytes"].items()]
    derived += [["memory words per weight beat", f"HB {params.hb_ratio}, LPDDR "
                 f"{params.lpddr_ratio}", f"weight beat {params.mac.weight_beat_bits} bits, "
                 "assembled in each PE"],
                ["expert cache", f"{params.cache.slots} slots of "
                 f"{figures['cache']['slot_bytes'] / 1024:.4g} KiB", params.cache.policy.name]]
    tables = [Table(f"Machine {args.run_name}: {params.describe()}", ["field", "value"], fields),
              Table("Derived from the fields above:", ["figure", "value", "from"], derived)]
    if args.write:
        path = write_machine(params, args.write, title=f"machine {args.run_name}")
        tables.append(f"\nwritten: {path}")
    return Result(tables, {"machine": args.run_name, "params": params.to_dict(),
                           "figures": figures})
