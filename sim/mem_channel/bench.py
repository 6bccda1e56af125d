"""``build.py bench hb``: the HB interface and the LPDDR port, each with its DRAM-die model,
measured on Verilator by :mod:`sim.mem_channel.tb_bench`; returns the table rows and the JSON
figures."""

import json
import tempfile
from pathlib import Path

from hw.params import HB_DEFAULT, LPDDR_DEFAULT, HbBankTiming, Lpddr5Timing
from sim.mem_channel.run import run_mem_bench

__all__ = ["run_hb_bench", "TABLE_HEADERS"]

TABLE_HEADERS = ["memory", "stream", "efficiency", "GB/s", "peak GB/s"]

_STREAMS = ["seq_read", "seq_write", "random_read", "random_write", "shared_seq_read"]


def run_hb_bench(systems=None, seed=1, words=16384, probes=200, waves=False, progress=None):
    """Run the bench on both memories (``systems``: ``{"hb": (port params, timing), "lpddr":
    ...}``, default the blocks' default presets); returns ``(rows, latency_rows, figures)``: rows
    under :data:`TABLE_HEADERS`, latency rows (memory, min, median, max, probes).
    ``progress(text)`` hears of each memory before its run."""
    systems = systems or {"hb": (HB_DEFAULT, HbBankTiming()),
                          "lpddr": (LPDDR_DEFAULT, Lpddr5Timing())}
    results = {}
    for name, (params, timing) in systems.items():
        if progress:
            progress(f"{name}: {params.describe()}; {words} words per stream, {probes} latency "
                     "probes ...")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "figures.json"
            run_mem_bench(name, params, timing, module="sim.mem_channel.tb_bench", seed=seed,
                          waves=waves,
                          env={"ELMOE_BENCH_WORDS": str(words), "ELMOE_BENCH_PROBES": str(probes),
                               "ELMOE_BENCH_OUT": str(out)})
            results[name] = json.loads(out.read_text())
    rows, latency_rows = [], []
    figures = {"block": "hb_interface", "seed": seed, "words_per_stream": words}
    for name, (params, timing) in systems.items():
        r = results[name]
        for stream in _STREAMS:
            if stream not in r:
                continue
            e = r[stream]["efficiency"]
            rows.append([name, stream.replace("_", " "), f"{e:.4f}", f"{e * params.peak_gbps:.1f}",
                         f"{params.peak_gbps:.1f}"])
            figures[f"{name}_{stream}_efficiency"] = round(e, 5)
        lat = r["latency_cycles"]
        latency_rows.append([name, lat["min"], lat["median"], lat["max"], lat["probes"]])
        for key in ("min", "median", "max"):
            figures[f"{name}_latency_cycles_{key}"] = lat[key]
        figures[f"{name}_peak_gbps"] = params.peak_gbps
        figures[f"{name}_params"] = params.to_dict()
        figures[f"{name}_timing"] = timing.to_dict()
    figures["latency_cycles_median"] = results["hb"]["latency_cycles"]["median"]
    figures["latency_cycles_min"] = results["hb"]["latency_cycles"]["min"]
    figures["latency_cycles_max"] = results["hb"]["latency_cycles"]["max"]
    return rows, latency_rows, figures
