"""Calibration: the GPU anchor fitted to the measured H100 table, and bench figures read back.

``xpu_moe_decode_h100.csv`` (measured: one MoE layer's decode step on
one H100, BF16, uniform random routing, batch 1-64, five model shapes) is the sanity anchor of the
GPU configuration: :func:`fit_gpu_anchor` fits ``ms = overhead + bytes / bandwidth`` to the grouped
runs (least squares), which gives the GPU model's effective HBM bandwidth and fixed cost per MoE
layer; :func:`anchor_rows` compares the fitted model with every row.

:func:`calibration_from_bench` reads the last-line JSON objects of ``python build.py bench hb`` /
``bench mac`` (saved to files) into a calibration profile for :mod:`sw_model.perf.hardware`.
"""

import csv
from functools import lru_cache
import json
from pathlib import Path

import numpy as np

__all__ = ["ANCHOR_CSV", "RTL_CALIBRATION", "PAPER_CALIBRATION", "load_anchor", "fit_gpu_anchor",
           "anchor_rows", "calibration_from_bench"]

#: Figures measured on this project's RTL (``python build.py bench hb`` and ``bench mac`` on the
#: default presets, on a 2-core machine). Replace them by passing ``--bench-json``.
RTL_CALIBRATION = {
    "hb_seq_read_efficiency": 0.9970,       # bench hb: 51.0 of 51.2 GB/s
    "hb_seq_write_efficiency": 0.9953,      # bench hb
    "lpddr_seq_read_efficiency": 0.9960,    # bench hb: 102.0 of 102.4 GB/s
    "hb_latency_cycles_median": 73,         # bench hb: single-word probes, 1.6 GHz clock
    "lpddr_latency_cycles_median": 94,      # bench hb
    "utilization_full": 0.99925,            # bench mac (default preset, fresh activations per op)
    "utilization_draft": 0.99925,           # bench mac
}

#: The paper's own efficiency assumptions (ELMoE-3D models HB efficiency ~3% below peak and
#: LPDDR within 1%); the MAC utilisation is not published, so the RTL figure is used.
PAPER_CALIBRATION = dict(RTL_CALIBRATION, hb_seq_read_efficiency=0.97,
                         hb_seq_write_efficiency=0.97, lpddr_seq_read_efficiency=0.99)

ANCHOR_CSV = Path(__file__).with_name("xpu_moe_decode_h100.csv")
#: H100 SXM peak HBM3 bandwidth, GB/s (data sheet); the fitted bandwidth is a share of it.
H100_PEAK_GBPS = 3350.0


def load_anchor(path=ANCHOR_CSV):
    """Rows of the anchor table as dicts of numbers (model name kept as text)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]
    if not rows:
        raise ValueError(f"{path}: no rows")
    out = []
    for i, r in enumerate(rows):
        try:
            out.append({"model": r["model"], "B": int(r["B"]), "touched": int(r["touched_experts"]),
                        "bytes": int(r["bytes"]), "ms_loop": float(r["ms_loop"]),
                        "ms_grouped": float(r["ms_grouped"])})
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}: row {i + 1}: {exc}") from None
    return out


@lru_cache(maxsize=4)
def fit_gpu_anchor(path=ANCHOR_CSV):
    """``{"hbm_gbps": effective bandwidth, "hbm_efficiency": share of H100_PEAK_GBPS,
    "layer_overhead_us": fixed cost per MoE layer}`` from the grouped runs."""
    rows = load_anchor(path)
    x = np.array([r["bytes"] for r in rows], dtype=float)
    y = np.array([r["ms_grouped"] for r in rows]) * 1e-3
    slope, intercept = np.polyfit(x, y, 1)
    gbps = 1 / slope / 1e9
    return {"hbm_gbps": float(gbps), "hbm_efficiency": float(gbps / H100_PEAK_GBPS),
            "layer_overhead_us": float(max(0.0, intercept) * 1e6)}


def anchor_rows(path=ANCHOR_CSV):
    """Every anchor row with the fitted model's prediction and its relative error."""
    fit = fit_gpu_anchor(path)
    out = []
    for r in load_anchor(path):
        model_ms = (fit["layer_overhead_us"] * 1e-3
                    + r["bytes"] / (fit["hbm_gbps"] * 1e9) * 1e3)
        out.append(dict(r, model_ms=model_ms, error=model_ms / r["ms_grouped"] - 1))
    return out


def calibration_from_bench(paths):
    """A calibration profile: :data:`RTL_CALIBRATION` updated with every known key found in the
    JSON of the bench results at ``paths``: a bench's results folder (``build/bench/<run>/``, its
    ``result.json``), that file, or a saved stdout (its last line). ValueError names a path that
    is missing, unreadable or holds no figures."""
    profile = dict(RTL_CALIBRATION)
    for path in paths:
        path = Path(path)
        if path.is_dir():
            path = path / "result.json"
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file (a bench's results folder, its result.json, "
                             "or its saved output)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot be read ({exc})") from None
        if not text:
            raise ValueError(f"{path}: empty")
        try:
            figures = json.loads(text if path.suffix == ".json" else text.splitlines()[-1])
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a bench's JSON figures ({exc})") from None
        if not isinstance(figures, dict):
            raise ValueError(f"{path}: the last line is not a JSON object")
        known = {k: v for k, v in figures.items() if k in profile}
        if not known:
            raise ValueError(f"{path}: none of the calibration keys "
                             f"({', '.join(sorted(profile))}) is in its JSON")
        for key, value in known.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{path}: {key} = {value!r} is not a positive number")
            profile[key] = float(value)
    return profile
