"""``python build.py perf``: tables, plots and the headline JSON of the performance model.

The CLI prints; this module formats. :func:`assumptions` lists every assumed constant with its
value (shown by ``perf --help`` and under the tables), so what the numbers rest on is never
hidden.
"""

import json
import logging
import math
import time
from dataclasses import replace
from pathlib import Path

from sw_model.perf import hardware as hwmod
from sw_model.perf.calibrate import anchor_rows, calibration_from_bench, fit_gpu_anchor
from sw_model.perf.methods import SLM_KV_BYTES, Settings
from sw_model.perf.suite import BASELINES, HEADLINE_BATCHES, PAPER_TARGETS, \
    breakeven_acceptance, crossover, run_grid, summarise
from sw_model.perf.measured import ABLATE_MODEL, ABLATE_SOURCE
from sw_model.perf.locality import GENERATOR_REUSE, LOCALITY_SOURCE, MEASURED_REPEAT, \
    MEASURED_TOP_SHARE
from sw_model.perf.workload import ACCEPTANCE, ASSUMED_LOCALITY, AcceptanceModel, Locality, \
    STAT_LAYERS, STAT_STEPS
from sw_model.perf.zoo import PAPER_MODELS, ZOO, get_model

__all__ = ["assumptions", "add_perf_arguments", "run_perf", "settings_from_args",
           "progress_bar"]

log = logging.getLogger(__name__)

ALL_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _exponents(locality, models=PAPER_MODELS):
    """The Zipf exponent ``locality`` gives each model, as text."""
    return ", ".join(f"{m} {locality.exponent(get_model(m).experts):.2f}" for m in models)


def assumptions():
    """Every assumed (not published, not measured) constant, one line each."""
    h, a, s = hwmod, ACCEPTANCE, Settings()
    return "\n".join([
        "Sources: paper = paper-facts.md; RTL = this project's benches (bench hb / bench mac);",
        "CSV = measured H100 table; assumed = stated here until a better source exists.",
        f"  paper: HB 51.2 GB/s + 256 MB per PE, 0.43 pJ/bit; LPDDR 102.4 GB/s, 64 GB, "
        f"3.88 pJ/bit; {h.TOPS_W8_PER_PE * 32:.0f}/{h.TOPS_W4_PER_PE * 32:.0f} TOPS "
        "W8A8/W4A8 at 32 PEs; links 32 GB/s gather, 128 GB/s stream; acceptance 0.33-0.91",
        f"  paper profile: HB efficiency {h.PAPER_CALIBRATION['hb_seq_read_efficiency']}, LPDDR "
        f"{h.PAPER_CALIBRATION['lpddr_seq_read_efficiency']}; RTL profile: HB "
        f"{h.RTL_CALIBRATION['hb_seq_read_efficiency']}, LPDDR "
        f"{h.RTL_CALIBRATION['lpddr_seq_read_efficiency']}; both: MAC utilisation "
        f"{h.RTL_CALIBRATION['utilization_full']} (RTL), latency HB "
        f"{h.RTL_CALIBRATION['hb_latency_cycles_median']} / LPDDR "
        f"{h.RTL_CALIBRATION['lpddr_latency_cycles_median']} cycles at 1.6 GHz (RTL)",
        f"  assumed energy: MAC {h.MAC_W8_PJ} pJ (W8) / {h.MAC_W4_PJ} pJ (W4), SRAM "
        f"{h.SRAM_PJ_PER_BIT} pJ/bit, links {h.LINK_PJ_PER_BIT} pJ/bit, static "
        f"{h.STATIC_W} W; gather {h.GATHER_BYTES_PER_HIDDEN} B per token, layer and hidden "
        "element (activation + two FP16 all-reduces); gather link per PE",
        f"  assumed workload: gamma {s.gamma}, threshold {s.threshold} (both unpublished), "
        f"context {s.context}, KV FP16 in HB (xPU: LPDDR)",
        f"  measured routing locality (default; --locality): {LOCALITY_SOURCE}: the top quarter "
        f"of a layer's experts takes {MEASURED_TOP_SHARE} of its choices (uniform 0.25) and "
        f"{MEASURED_REPEAT} of a token's experts are chosen again by the next token (random "
        f"0.125). Generated traces keep that top-quarter share over each model's experts (Zipf "
        f"{_exponents(s.locality)}) and the generator reuse {GENERATOR_REUSE} fitted to the "
        f"repeat rate; --locality assumed: the earlier Zipf 1.0 / reuse 0.5 for every model "
        f"({STAT_LAYERS} layers x {STAT_STEPS} steps per trace)",
        f"  measured acceptance (--acceptance-mapping resident, default): self-drafts take "
        f"E(gamma) of {ABLATE_MODEL} ({ABLATE_SOURCE}) at the share of the paper model's "
        f"experts resident in HB (after dense and KV), interpolated in log2(share) between "
        f"1/8, 1/4, 1/2, 1; acceptance (E-1)/gamma clamped to the paper's {a.floor}-{a.full}; "
        "Elastic-SD and SpecMoE-SD frequency curve (SpecMoE measured within 5%), static sets "
        "the random curve, Quant-SD every expert; --acceptance-mapping coverage: the earlier "
        f"assumed max({a.floor}, {a.full} - {a.slope} x (1 - coverage)); --acceptance-json "
        "overrides per method",
        f"  assumed separate drafts: EAGLE {a.eagle}; SLM {a.slm} ({a.slm_params / 1e9:g}B "
        f"params, {SLM_KV_BYTES} B KV/token)",
        f"  expert caches (ELMoE-3D cached decoding, GPU): {s.cache_policy} (paper: caches "
        "modelled with an LRU approximation; --cache-policy lru|static|best|none)",
        f"  prior accelerators (chosen; alternatives in the table 'Best prior under other "
        f"assumptions'): HB-xPU = xPU + the same HB as a plain tier: dense, KV and an "
        f"{h.PRIORS.hb_xpu_cache.upper()} cache of whole INT8 experts in the rest (half as "
        "many as ELMoE-3D's upper nibbles; hits read HB only, misses read LPDDR and install; "
        f"--hb-xpu-cache); xPU-PIM: bank-level LPDDR-PIM, {h.PIM.bandwidth_ratio}x internal "
        f"bandwidth, {h.PIM.tokens_per_read} token per weight read (GEMV), {h.PIM.pj_per_bit} "
        f"pJ/bit; xPU-LogicPIM: logic die under LPDDR, {h.LOGIC_PIM.bandwidth_ratio}x, "
        f"{h.LOGIC_PIM.tokens_per_read} tokens/read, {h.LOGIC_PIM.pj_per_bit} pJ/bit; xPU-NMP: "
        f"buffer-chip NMP, {h.NMP.bandwidth_ratio}x, batched, {h.NMP.pj_per_bit} pJ/bit "
        "(--pim-bandwidth PIM,LOGICPIM,NMP); all with the xPU's PEs and no HB",
        f"  GPU+PCIe: H100 BF16, HBM efficiency and per-layer cost fitted to the CSV, "
        f"{h.GPU_WEIGHT_BUDGET_GB} GiB weight budget, PCIe {h.PCIE_GBPS} GB/s x "
        f"{h.PCIE_EFFICIENCY}, {h.GPU_ACTIVE_W} W board power, host {h.HOST_PJ_PER_BIT} pJ/bit "
        "(assumed)",
    ])


# -- arguments ------------------------------------------------------------------------------------

def _int_list(text):
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"expected positive integers, not {text!r}")
    return values


def _float_list(text):
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, not {text!r}") from None
    if not values or min(values) <= 0:
        raise ValueError(f"expected positive numbers, not {text!r}")
    return values


def add_common_arguments(p):
    """Options shared by ``perf`` and ``sweep``."""
    p.add_argument("--models", default=",".join(ZOO),
                   help="comma-separated model names (default: the whole zoo)")
    p.add_argument("--calibration", default="paper", choices=("paper", "rtl"),
                   help="efficiency profile: the paper's (default) or the RTL benches'")
    p.add_argument("--bench-json", action="append", default=[], metavar="FILE",
                   help="saved output of 'build.py bench hb|mac': its JSON line overrides the "
                        "RTL profile (implies --calibration rtl)")
    p.add_argument("--acceptance-json", default=None, metavar="FILE",
                   help="per-position acceptance rates overriding the mapping: "
                        "{\"method\": rate} or {\"model/method\": rate}")
    p.add_argument("--acceptance-mapping", default=ACCEPTANCE.mapping,
                   choices=("resident", "coverage"),
                   help="self-draft acceptance: issue 7's measured curves at the resident share "
                        "of the experts (default) or the assumed coverage rule")
    p.add_argument("--cache-policy", default=Settings().cache_policy,
                   choices=hwmod.CACHE_POLICIES,
                   help="expert cache of cached decoding on ELMoE-3D and the GPU (default lru, "
                        "the paper's cache model)")
    p.add_argument("--hb-xpu-cache", default=hwmod.PRIORS.hb_xpu_cache,
                   choices=hwmod.CACHE_POLICIES,
                   help="HB-xPU's cache of whole INT8 experts (default lru; best/static: a "
                        "profiled pinned placement; none: HB holds dense weights and KV only)")
    p.add_argument("--pim-bandwidth", default=None, metavar="PIM,LOGICPIM,NMP",
                   help="internal-bandwidth ratios (x the LPDDR's) of xPU-PIM, xPU-LogicPIM and "
                        "xPU-NMP (default "
                        f"{hwmod.PIM.bandwidth_ratio:g},{hwmod.LOGIC_PIM.bandwidth_ratio:g},"
                        f"{hwmod.NMP.bandwidth_ratio:g})")
    p.add_argument("--trace", default=None, metavar="PATH",
                   help="routing from a recorded trace (python build.py sd --save-routing PATH; "
                        "for --models default) instead of generated traces")
    p.add_argument("--locality", default="measured", metavar="SPEC",
                   help="routing locality of generated traces: 'measured' (default: the trained "
                        f"model's on the held-out text, top-quarter share {MEASURED_TOP_SHARE} "
                        f"scaled to each model's experts, reuse {GENERATOR_REUSE}), 'assumed' "
                        "(the earlier zipf=1.0,reuse=0.5), or zipf=X,reuse=R / top_share=S,"
                        "reuse=R")
    p.add_argument("--zipf", type=float, default=None,
                   help="a fixed Zipf popularity exponent for every model (overrides --locality's)")
    p.add_argument("--reuse", type=float, default=None,
                   help="the generator's temporal reuse probability (overrides --locality's)")


def add_perf_arguments(p):
    add_common_arguments(p)
    p.add_argument("--batches", default=",".join(map(str, ALL_BATCHES)),
                   help="comma-separated batch sizes (default 1-256 in powers of two)")
    p.add_argument("--hb-gb", default="8,4",
                   help="ELMoE-3D configurations by HB GiB (default 8,4: 32 and 16 PEs)")
    p.add_argument("--gamma", type=int, default=Settings().gamma, help="draft tokens per step")
    p.add_argument("--threshold", type=int, default=Settings().threshold,
                   help="batch at and above which ELMoE-3D runs Elastic-SD")
    p.add_argument("--policy", default=Settings().resident_policy,
                   choices=("frequency", "static", "random"), help="Elastic-SD resident set")
    p.add_argument("--no-plots", action="store_true", help="skip the plots under build/perf")
    p.add_argument("--measure-locality", action="store_true",
                   help="measure the routing locality on the trained model over the held-out "
                        "text (minutes) and print it instead of the tables: the source of the "
                        "'measured' locality")
    p.add_argument("--streams", action="store_true",
                   help="also run the stream-driven path on the scheduler's streams and compare "
                        "it with the analytic path (about two minutes more)")


def _models(text):
    return [get_model(m.strip()).name for m in text.split(",") if m.strip()]


def _acceptance(path, mapping="resident"):
    if path is None:
        return replace(ACCEPTANCE, mapping=mapping)
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--acceptance-json {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"--acceptance-json {path}: expected an object of rates")
    measured = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"--acceptance-json {path}: {key!r} is not a number")
        measured[tuple(key.split("/", 1)) if "/" in key else key] = float(value)
    return AcceptanceModel(measured=measured, mapping=mapping)


def settings_from_args(args):
    """Settings and calibration named by the common arguments (ValueError on bad ones)."""
    if args.reuse is not None and not 0 <= args.reuse <= 1:
        raise ValueError(f"--reuse must be in [0, 1], not {args.reuse}")
    if args.zipf is not None and not 0 <= args.zipf <= 16:
        raise ValueError(f"--zipf must be in [0, 16], not {args.zipf}")
    locality = Locality.parse(args.locality)
    if args.zipf is not None:
        locality = replace(locality, zipf=args.zipf, top_share=None)
    if args.reuse is not None:
        locality = replace(locality, reuse=args.reuse)
    calibration = args.calibration
    if args.bench_json:
        calibration = calibration_from_bench(args.bench_json)
    kw = {}
    for name in ("gamma", "threshold"):
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    if getattr(args, "policy", None):
        kw["resident_policy"] = args.policy
    if getattr(args, "trace", None):
        from sw_model.routing_traces import load_routing_trace
        kw["trace"] = load_routing_trace(args.trace)
    priors = replace(hwmod.PRIORS, hb_xpu_cache=args.hb_xpu_cache)
    if args.pim_bandwidth is not None:
        ratios = _float_list(args.pim_bandwidth)
        if len(ratios) != 3:
            raise ValueError(f"--pim-bandwidth takes three ratios (PIM,LOGICPIM,NMP), not "
                             f"{args.pim_bandwidth!r}")
        priors = priors.with_bandwidth(*ratios)
    settings = Settings(locality=locality,
                        acceptance=_acceptance(args.acceptance_json, args.acceptance_mapping),
                        cache_policy=args.cache_policy, priors=priors, **kw)
    return settings, calibration


def progress_bar(label, stream):
    """A text progress bar on ``stream`` (the CLI's stderr): ``callback(done, total)``. On a
    terminal it redraws one line; otherwise it writes a line every tenth of the way."""
    start = time.monotonic()
    tty = getattr(stream, "isatty", lambda: False)()

    def callback(done, total):
        width = 30
        filled = width * done // total
        text = (f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                f"{time.monotonic() - start:5.1f} s")
        if tty:
            stream.write("\r" + text + ("\n" if done == total else ""))
        elif done == total or (10 * done) // total != (10 * (done - 1)) // total:
            stream.write(text + "\n")
        stream.flush()
    return callback


# -- tables ---------------------------------------------------------------------------------------

def _fmt(x):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _ratio_table(points, hb_gb, kind, table):
    names = list(BASELINES)
    headers = ["model", "batch", "mode", "ms/token" if kind == "speed" else "mJ/token"] + names \
        + ["best prior"]
    rows = []
    for p in points:
        if p.hb_gb != hb_gb:
            continue
        ratio = p.speedup if kind == "speed" else p.energy
        own = p.s_per_token * 1e3 if kind == "speed" else p.j_per_token * 1e3
        best = p.best_prior()[0 if kind == "speed" else 1]
        rows.append([p.model, p.batch, p.mode, f"{own:.3f}"] + [_fmt(ratio(n)) for n in names]
                    + [_fmt(best)])
    return table(headers, rows)


def _aggregate_rows(points, hb_gb, models, batches):
    rows = []
    sel = [p for p in points if p.hb_gb == hb_gb and p.model in models and p.batch in batches]
    if not sel:
        return rows
    for label, fn in (("speed-up", lambda p, n: p.speedup(n)),
                      ("energy eff.", lambda p, n: p.energy(n))):
        for stat, agg in (("avg", lambda v: sum(v) / len(v)), ("max", max)):
            vals = [agg([fn(p, n) for p in sel]) for n in BASELINES]
            best = agg([p.best_prior()[0 if label == "speed-up" else 1] for p in sel])
            rows.append([f"{stat} {label}"] + [_fmt(v) for v in vals] + [_fmt(best)])
    return rows


def print_perf(points, summaries, cross, anchor, table, out, breakeven=None):
    for hb_gb in sorted({p.hb_gb for p in points}, reverse=True):
        hw = hwmod.elmoe3d(hb_gb)
        out(f"\nELMoE-3D {hb_gb:g} GB / {hw.pes} PE: speed-up of ELMoE-3D over each baseline "
            "(baseline time / ELMoE-3D time per token)")
        out(_ratio_table(points, hb_gb, "speed", table))
        out(f"\nELMoE-3D {hb_gb:g} GB / {hw.pes} PE: energy efficiency over each baseline "
            "(baseline energy / ELMoE-3D energy per token)")
        out(_ratio_table(points, hb_gb, "energy", table))
        rows = _aggregate_rows(points, hb_gb, PAPER_MODELS, HEADLINE_BATCHES)
        if rows:
            out(f"\nHeadline set ({hb_gb:g} GB, paper models, batch "
                f"{HEADLINE_BATCHES[0]}-{HEADLINE_BATCHES[-1]}):")
            out(table(["statistic"] + list(BASELINES) + ["best prior"], rows))
    for s in summaries:
        out(f"\nSummary {s['hb_gb']:g} GB (paper models, batch 1-16), against the paper:")
        rows = []
        for key, (target, band) in PAPER_TARGETS.items():
            rows.append([key, f"{s[key]:.2f}", f"{target} +/- {band:.0%}",
                         "yes" if s[f"{key}_within_band"] else "NO"])
        rows += [["max_speedup_vs_xpu", f"{s['max_speedup_vs_xpu']:.2f}", "12.0", ""],
                 ["max_energy_vs_xpu", f"{s['max_energy_vs_xpu']:.2f}", "7.2", ""],
                 ["max_speedup_vs_best_prior", f"{s['max_speedup_vs_best_prior']:.2f}", "9.9",
                  ""],
                 ["avg_energy_vs_best_prior", f"{s['avg_energy_vs_best_prior']:.2f}", "1.4", ""],
                 ["avg_speedup_vs_eagle_batch_ge4",
                  f"{s['avg_speedup_vs_eagle_batch_ge4']:.2f}", "1.45", ""],
                 ["fraction_of_bandwidth_bound", f"{s['fraction_of_bandwidth_bound']:.3f}",
                  f"0.41 (bound {s['bandwidth_bound']:.1f}x)", ""],
                 ["fraction_of_energy_bound", f"{s['fraction_of_energy_bound']:.3f}",
                  f"0.49 (bound {s['energy_bound']:.2f}x)", ""]]
        out(table(["figure", "model", "paper", "in band"], rows))
    out("\nCrossover (8 GB): cached decoding vs Elastic-SD, ms per token; SD acceptance = "
        "accepted/proposed at gamma (per-position alpha), from the resident share of the experts")
    yes = lambda v: "yes" if v else "no"
    breakeven = breakeven or {}
    rows = []
    for m, c in cross.items():
        cells = []
        for b in (1, HEADLINE_BATCHES[-1]):
            r = c["by_batch"].get(b)
            cells += ([f"{r['cache_ms']:.2f}", f"{r['elastic_sd_ms']:.2f}",
                       f"{r['acceptance']:.3f} ({r['alpha']:.3f})",
                       f"{r['resident_fraction']:.2f}"] if r else ["-"] * 4)
        rows.append([m] + cells + [yes(c["cache_wins_at_batch_1"]),
                                   yes(c["elastic_sd_wins_at_16"]),
                                   _fmt(breakeven.get(m)), c["first_elastic_sd_batch"] or "-",
                                   f"{yes(c['elastic_sd_wins_at_largest'])} "
                                   f"({c['largest_batch']})"])
    out(table(["model", "b1 cache", "b1 SD", "b1 SD acceptance", "b1 resident",
               "b16 cache", "b16 SD", "b16 SD acceptance", "b16 resident",
               "cache wins at 1", "SD wins at 16", "break-even alpha at 1", "first SD batch",
               "SD wins at largest"], rows))
    fit = fit_gpu_anchor()
    errors = [abs(r["error"]) for r in anchor]
    out(f"\nGPU anchor (xpu_moe_decode_h100.csv, grouped): fitted {fit['hbm_gbps']:.0f} GB/s "
        f"({fit['hbm_efficiency']:.1%} of peak) + {fit['layer_overhead_us']:.0f} us per layer; "
        f"model vs measured over {len(anchor)} rows: mean |error| "
        f"{sum(errors) / len(errors):.1%}, max {max(errors):.1%}")


# -- the gap to the paper ------------------------------------------------------------------------

def gap_rows(settings, calibration, hb_gb=8, batches=(1, 16)):
    """Per paper model and batch: bytes per kept token on each tier for the xPU and ELMoE-3D,
    and what bounds ELMoE-3D's phases (the numbers behind the headline)."""
    from sw_model.perf.methods import plan_step, step_result
    hw, x = hwmod.elmoe3d(hb_gb, calibration), hwmod.xpu(hwmod.elmoe3d(hb_gb).pes, calibration)
    rows = []
    for model in PAPER_MODELS:
        for batch in batches:
            e = step_result(hw, plan_step(hw, model, batch, "elmoe3d", settings))
            b = step_result(x, plan_step(x, model, batch, "plain", settings))
            per = lambda r, f: sum(n * getattr(w, f) for _, n, w in r.plan.phases) / r.plan.tokens
            rows.append([model, batch, e.plan.info["mode"],
                         f"{per(b, 'far_read') / 1e6:.1f}",
                         f"{per(e, 'far_read') / 1e6:.1f}",
                         f"{(per(e, 'near_read') + per(e, 'near_write')) / 1e6:.1f}",
                         f"{e.plan.info.get('accepted_length', 1.0):.2f}",
                         f"{b.s_per_token / e.s_per_token:.2f}",
                         ", ".join(f"{label} {c.bound}" for label, _, c in e.costs)])
    return rows


#: What-if variants of the headline (label, settings change, acceptance change).
SENSITIVITY = (
    ("defaults (paper parameters, measured locality)", {}),
    ("per-position alpha 0.91 everywhere (coverage rule, slope 0)",
     {"mapping": "coverage", "slope": 0.0}),
    ("alpha 0.91 everywhere and gamma 8", {"mapping": "coverage", "slope": 0.0, "gamma": 8}),
    ("assumed coverage rule instead of measured curves", {"mapping": "coverage"}),
    ("every cache best of LRU and pinned", {"cache_policy": "best"}),
    ("routing as assumed before measuring (Zipf 1.0, reuse 0.5)", {"locality": ASSUMED_LOCALITY}),
    ("routing reuse 0.5 (more temporal locality than measured)", {"reuse": 0.5}),
    ("routing Zipf 1.0 (more skew than measured)", {"zipf": 1.0}),
    ("all three: routing as assumed, alpha 0.91 everywhere, gamma 8",
     {"locality": ASSUMED_LOCALITY, "mapping": "coverage", "slope": 0.0, "gamma": 8}),
)


#: The prior accelerators under other assumptions (label, HB-xPU cache, PIM bandwidth ratios).
PRIOR_VARIANTS = (
    ("chosen: HB-xPU LRU INT8 cache; PIM 4x / LogicPIM 2x / NMP 2x", {}),
    ("HB-xPU: best of LRU and a profiled pinned placement", {"hb_xpu_cache": "best"}),
    ("HB-xPU: pinned placement from a routing profile", {"hb_xpu_cache": "static"}),
    ("HB-xPU: no expert cache (dense + KV only)", {"hb_xpu_cache": "none"}),
    ("PIM family at half the bandwidth ratios (2x / 1x / 1x)", {"bandwidth": (2.0, 1.0, 1.0)}),
    ("PIM family at double the bandwidth ratios (8x / 4x / 4x)", {"bandwidth": (8.0, 4.0, 4.0)}),
)


def prior_rows(settings, calibration, hb_gb=8):
    """The headline against the best prior under each :data:`PRIOR_VARIANTS` entry, with how
    often each prior is the fastest."""
    from sw_model.perf.suite import evaluate_config
    rows = []
    for label, change in PRIOR_VARIANTS:
        priors = settings.priors
        if "hb_xpu_cache" in change:
            priors = replace(priors, hb_xpu_cache=change["hb_xpu_cache"])
        if "bandwidth" in change:
            priors = priors.with_bandwidth(*change["bandwidth"])
        config = {"gamma": settings.gamma, "threshold": settings.threshold,
                  "resident_policy": settings.resident_policy, "hb_gb": hb_gb}
        r = evaluate_config(config, PAPER_MODELS, HEADLINE_BATCHES,
                            replace(settings, priors=priors), calibration)
        rows.append([label, f"{r['avg_speedup_vs_best_prior']:.2f}",
                     f"{r['avg_energy_vs_best_prior']:.2f}",
                     ", ".join(f"{n} {k}" for n, k in r["fastest_prior_count"].items())])
    return rows


def batch1_rows(settings, calibration, hb_gb=8, batch=1):
    """Why cached decoding or Elastic-SD wins at ``batch`` on each paper model: per kept token,
    time and LPDDR bytes of each phase and what bounds it."""
    from sw_model.perf.methods import plan_step, step_result
    hw = hwmod.elmoe3d(hb_gb, calibration)
    rows = []
    for model in PAPER_MODELS:
        c = step_result(hw, plan_step(hw, model, batch, "cache", settings))
        e = step_result(hw, plan_step(hw, model, batch, "elastic_sd", settings))
        per = lambda r, i, f: r.plan.phases[i][1] * getattr(r.plan.phases[i][2], f) \
            / r.plan.tokens
        ms = lambda r, i: r.costs[i][1] * r.costs[i][2].seconds / r.plan.tokens * 1e3
        rows.append([model, f"{c.s_per_token * 1e3:.2f}", c.costs[0][2].bound,
                     f"{c.plan.info['hit_rate']:.2f}", f"{per(c, 0, 'far_read') / 1e6:.0f}",
                     f"{e.s_per_token * 1e3:.2f}", f"{ms(e, 0):.2f} ({e.costs[0][2].bound})",
                     f"{ms(e, 1):.2f} ({e.costs[1][2].bound})",
                     f"{per(e, 1, 'far_read') / 1e6:.0f}", f"{e.plan.tokens / batch:.2f}",
                     "cache" if c.s_per_token <= e.s_per_token else "Elastic-SD"])
    return rows


def sensitivity_rows(settings, calibration, hb_gb=8):
    """The headline averages under each :data:`SENSITIVITY` variant."""
    from sw_model.perf.suite import evaluate_config
    rows = []
    for label, change in SENSITIVITY:
        s = settings
        for key in ("slope", "mapping"):
            if key in change:
                s = replace(s, acceptance=replace(s.acceptance, **{key: change[key]}))
        for key in ("gamma", "cache_policy"):
            if key in change:
                s = replace(s, **{key: change[key]})
        for key in ("reuse", "zipf"):
            if key in change:
                # a fixed exponent replaces the top share
                extra = {"top_share": None} if key == "zipf" else {}
                s = replace(s, locality=replace(s.locality, **{key: change[key]}, **extra))
        if "locality" in change:
            s = replace(s, locality=change["locality"])
        config = {"gamma": s.gamma, "threshold": s.threshold,
                  "resident_policy": s.resident_policy, "hb_gb": hb_gb}
        r = evaluate_config(config, PAPER_MODELS, HEADLINE_BATCHES, s, calibration)
        rows.append([label, f"{r['avg_speedup_vs_xpu']:.2f}", f"{r['max_speedup_vs_xpu']:.2f}",
                     f"{r['avg_energy_vs_xpu']:.2f}", f"{r['avg_speedup_vs_best_prior']:.2f}"])
    return rows


# -- the stream-driven path ----------------------------------------------------------------------

#: (model, mode, batch, experts per layer in HB, PE preset) the stream comparison runs: the
#: built-in default model on the small machine, and a zoo model on the paper's PE.
STREAM_CASES = (("default", "cached", 1, 8, "default"), ("default", "cached", 4, 8, "default"),
                ("default", "elastic_sd", 1, 8, "default"),
                ("default", "elastic_sd", 4, 8, "default"),
                ("default", "elastic_sd", 16, 8, "default"),
                ("olmoe-1b-7b", "cached", 1, 16, "paper"),
                ("olmoe-1b-7b", "elastic_sd", 1, 16, "paper"))


#: (mode, batch) of the fast-path comparison on the built-in default model (HB 8 experts/layer).
FAST_CASES = (("cached", 1), ("cached", 4), ("elastic_sd", 1), ("elastic_sd", 4))


def fast_rows(steps=40):
    """The fast path's trace statistics against ``steps`` scheduled steps of the same trace, on
    the measured and on the earlier assumed routing locality."""
    from sw_model.moe import DEFAULT_CONFIG
    from sw_model.perf.streams import compare_fast_path
    rows, worst = [], 0.0
    for label, locality in (("measured", Locality()), ("assumed", ASSUMED_LOCALITY)):
        zipf = locality.exponent(DEFAULT_CONFIG.num_experts)
        for mode, batch in FAST_CASES:
            s, f, dt, de = compare_fast_path(DEFAULT_CONFIG, mode, batch, 8, "default",
                                             steps=steps, zipf=zipf, reuse=locality.reuse)
            worst = max(worst, abs(dt), abs(de))
            rows.append([DEFAULT_CONFIG.name, f"{label} (Zipf {zipf:.2f}, reuse "
                         f"{locality.reuse:g})", mode, batch, steps, f"{s * 1e3:.5f}",
                         f"{f * 1e3:.5f}", f"{dt:+.4f}", f"{de:+.4f}"])
    return rows, worst


def stream_rows(cases=STREAM_CASES, settings=None, steps=2, gamma=3):
    """The stream-driven and analytic paths on the same step records (per phase, relative
    difference in time and energy); returns (rows, worst |difference|)."""
    from sw_model.perf.streams import compare_record_paths
    rows, worst = [], 0.0
    for model, mode, batch, capacity, preset in cases:
        for phase, t_stream, t_analytic, dt, de, commands in compare_record_paths(
                model, mode, batch, capacity, preset, steps=steps, gamma=gamma,
                settings=settings):
            worst = max(worst, abs(dt), abs(de))
            rows.append([model, preset, mode, batch, capacity, phase, commands,
                         f"{t_stream * 1e3:.4f}", f"{t_analytic * 1e3:.4f}", f"{dt:+.2e}",
                         f"{de:+.2e}"])
    return rows, worst


# -- plots ----------------------------------------------------------------------------------------

def write_plots(points, directory):
    """Speed-up and energy efficiency vs batch per model, and the crossover; PNGs in
    ``directory``. Returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for hb_gb in sorted({p.hb_gb for p in points}):
        models = list(dict.fromkeys(p.model for p in points if p.hb_gb == hb_gb))
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        for model in models:
            rows = sorted((p for p in points if p.hb_gb == hb_gb and p.model == model),
                          key=lambda p: p.batch)
            b = [p.batch for p in rows]
            axes[0].plot(b, [p.speedup("xPU") for p in rows], marker="o", label=model)
            axes[1].plot(b, [p.best_prior()[0] for p in rows], marker="o", label=model)
            axes[2].plot(b, [p.energy("xPU") for p in rows], marker="o", label=model)
        for ax, title in zip(axes, ("speed-up vs LPDDR-only xPU", "speed-up vs best prior",
                                    "energy efficiency vs xPU")):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch")
            ax.set_title(title)
            ax.axhline(1.0, color="grey", lw=0.5)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"ELMoE-3D {hb_gb:g} GB")
        fig.tight_layout()
        path = directory / f"speedup_{hb_gb:g}gb.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for model in models:
            rows = sorted((p for p in points if p.hb_gb == hb_gb and p.model == model),
                          key=lambda p: p.batch)
            ratio = [p.methods["cache"] / p.methods["elastic_sd"] for p in rows]
            ax.plot([p.batch for p in rows], ratio, marker="o", label=model)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch")
        ax.set_ylabel("cached time / Elastic-SD time per token")
        ax.set_title(f"Crossover, {hb_gb:g} GB (above 1: Elastic-SD wins)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = directory / f"crossover_{hb_gb:g}gb.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


# -- measuring the locality ----------------------------------------------------------------------

def run_measure_locality(table, out, err, start):
    """``perf --measure-locality``: the routing locality of the trained model over the held-out
    text, the fitted generator and how well it reproduces the recording (the source of
    :mod:`sw_model.perf.locality`'s constants)."""
    from sw_model.perf import locality as loc
    out(f"routing locality: the built-in trained model teacher-forced over the held-out code "
        f"and prose in {loc.WINDOW}-byte windows (minutes)")
    routes = loc.record_heldout_routing()
    err.write(f"recorded {', '.join(f'{d} {r.shape[0] * r.shape[1]} tokens' for d, r in routes.items())} "
              f"in {time.monotonic() - start:.0f} s\n")
    m = loc.measure_locality(routes)
    rows = []
    for d in ("code", "prose", "both"):
        f = m[d]
        rows.append([d, m["tokens"][d], " / ".join(f"{x:.3f}" for x in f["repeat_per_layer"]),
                     f"{f['repeat']:.3f}",
                     " / ".join(f"{x:.3f}" for x in f["top_share_per_layer"]),
                     f"{f['top_share']:.3f}",
                     " / ".join(f"{x:.3f}" for x in f["zipf_top_share_per_layer"]),
                     f"{f['zipf']:.3f}",
                     " / ".join(f"{x:.3f}" for x in f["zipf_least_squares_per_layer"])])
    out(table(["text", "tokens", "repeat t->t+1 per layer", "repeat", "top-quarter share per "
               "layer", "top share", "Zipf (top share) per layer", "Zipf", "Zipf (least "
               "squares) per layer"], rows))
    both = m["both"]
    out(f"random routing repeats {m['random_repeat']:.3f}; a uniform popularity puts "
        f"{m['uniform_top_share']:.2f} on the top quarter")
    out(f"generator fitted on both texts: Zipf {both['zipf']:.3f} (32 experts), reuse "
        f"{both['generator_reuse']:.3f} (gives repeat {both['repeat']:.3f})")
    rec, gen = m["recorded_window_stats"], m["generated_window_stats"]
    out(table(["batch-1 figure (per layer)", "recorded", "fitted generator"],
              [[k, f"{rec[k]:.3f}", f"{gen[k]:.3f}"] for k in rec]))
    out(f"shipped constants (sw_model/perf/locality.py): top share {loc.MEASURED_TOP_SHARE}, "
        f"repeat {loc.MEASURED_REPEAT}, Zipf at 32 experts {loc.MEASURED_ZIPF_32}, generator "
        f"reuse {loc.GENERATOR_REUSE}")
    return {"command": "perf --measure-locality", "tokens": m["tokens"],
            "repeat": round(both["repeat"], 4), "random_repeat": m["random_repeat"],
            "repeat_per_layer": [round(x, 4) for x in both["repeat_per_layer"]],
            "top_share": round(both["top_share"], 4),
            "top_share_per_layer": [round(x, 4) for x in both["top_share_per_layer"]],
            "zipf_32": round(both["zipf"], 4),
            "zipf_per_layer": [round(x, 4) for x in both["zipf_top_share_per_layer"]],
            "zipf_least_squares_per_layer": [round(x, 4)
                                             for x in both["zipf_least_squares_per_layer"]],
            "generator_reuse": round(both["generator_reuse"], 4),
            "by_text": {d: {"repeat": round(m[d]["repeat"], 4),
                            "top_share": round(m[d]["top_share"], 4),
                            "zipf_32": round(m[d]["zipf"], 4)} for d in ("code", "prose")},
            "recorded_window_stats": rec, "generated_window_stats": gen,
            "runtime_s": round(time.monotonic() - start, 2)}


# -- the command ----------------------------------------------------------------------------------

def run_perf(args, table, out=print, err=None):
    """The ``perf`` command; returns the JSON figures (printed last)."""
    import sys
    err = err or sys.stderr
    start = time.monotonic()
    settings, calibration = settings_from_args(args)
    if args.measure_locality:
        return run_measure_locality(table, out, err, start)
    models = _models(args.models)
    batches = _int_list(args.batches)
    hb_gbs = _float_list(args.hb_gb)
    hb_gbs = [int(g) if g == int(g) else g for g in hb_gbs]
    out(f"performance model: {len(models)} models x {len(batches)} batch sizes x "
        f"{len(hb_gbs)} ELMoE-3D configurations, {len(BASELINES)} baselines each; calibration "
        f"{args.calibration if not args.bench_json else 'from ' + ', '.join(args.bench_json)}")
    points = run_grid(models, batches, hb_gbs, settings, calibration,
                      progress=progress_bar("perf", err))
    summaries = [summarise(points, g) for g in hb_gbs
                 if any(p.model in PAPER_MODELS and p.batch in HEADLINE_BATCHES
                        and p.hb_gb == g for p in points)]
    cross_gb = 8 if 8 in hb_gbs else hb_gbs[0]
    cross = crossover(points, cross_gb)
    breakeven = {m: breakeven_acceptance(m, 1, cross_gb, settings, calibration)
                 for m, c in cross.items() if c["elastic_sd_alpha_at_batch_1"] is not None
                 and any(p.model == m and p.batch == 1 for p in points)}
    for m, value in breakeven.items():
        cross[m]["breakeven_acceptance_at_batch_1"] = value
    anchor = anchor_rows()
    print_perf(points, summaries, cross, anchor, table, out, breakeven)
    plots = [] if args.no_plots else write_plots(points, Path("build") / "perf")
    if plots:
        out(f"\nplots: {', '.join(str(p) for p in plots)}")
    if summaries and settings.trace is None:
        out("\nWhere the bytes go (8 GB; per kept token; the xPU reads everything from LPDDR):")
        out(table(["model", "batch", "mode", "xPU LPDDR MB", "ELMoE LPDDR MB", "ELMoE HB MB",
                   "kept/seq/step", "speed-up", "bound per phase"],
                  gap_rows(settings, calibration)))
        out(f"\nCached decoding vs Elastic-SD at batch 1 (8 GB; per kept token; LPDDR is the "
            "far tier, HB the near one):")
        out(table(["model", "cache ms", "cache bound", "cache hit rate", "cache LPDDR MB",
                   "SD ms", "SD draft ms", "SD verify ms", "SD verify LPDDR MB",
                   "kept/step", "winner"], batch1_rows(settings, calibration)))
        out("\nBest prior under other assumptions (8 GB, paper models, batch 1-16; ELMoE-3D "
            "unchanged):")
        out(table(["prior assumptions", "avg speed-up vs best prior",
                   "avg energy vs best prior", "fastest prior (points)"],
                  prior_rows(settings, calibration)))
        out("\nSensitivity of the headline (8 GB, paper models, batch 1-16):")
        out(table(["variant", "avg speed-up vs xPU", "max", "avg energy vs xPU",
                   "avg vs best prior"], sensitivity_rows(settings, calibration)))
    figures = {"command": "perf", "calibration": args.calibration}
    if args.streams:
        rows, worst = stream_rows(settings=settings)
        out("\nStream-driven vs analytic path on the same step records (scheduler streams; "
            "time and energy per phase):")
        out(table(["model", "PE", "mode", "batch", "HB experts/layer", "phase", "commands",
                   "stream ms", "analytic ms", "time diff", "energy diff"], rows))
        figures["stream_max_relative_difference"] = worst
        rows, worst = fast_rows()
        out("\nFast path (statistics of the routing trace) vs the mean of the scheduled steps of "
            "the same trace:")
        out(table(["model", "routing", "mode", "batch", "steps", "stream ms/step", "fast ms/step",
                   "time diff", "energy diff"], rows))
        figures["fast_path_max_relative_difference"] = worst
    out("\nAssumptions:\n" + assumptions())
    main = next((s for s in summaries if s["hb_gb"] == 8), summaries[0] if summaries else None)
    if main:
        figures.update({k: round(v, 4) if isinstance(v, float) else v for k, v in main.items()})
    figures["by_config"] = {f"{s['hb_gb']:g}GB": {k: round(v, 4) for k, v in s.items()
                                                   if isinstance(v, float)} for s in summaries}
    figures["crossover"] = cross
    figures["settings"] = {"gamma": settings.gamma, "threshold": settings.threshold,
                           "resident_policy": settings.resident_policy,
                           "locality": settings.locality.describe(),
                           "zipf": {m: round(settings.locality.exponent(get_model(m).experts), 4)
                                    for m in models},
                           "reuse": settings.locality.reuse,
                           "acceptance_mapping": settings.acceptance.mapping,
                           "cache_policy": settings.cache_policy,
                           "hb_xpu_cache": settings.priors.hb_xpu_cache,
                           "pim_bandwidth": [settings.priors.pim.bandwidth_ratio,
                                             settings.priors.logic_pim.bandwidth_ratio,
                                             settings.priors.nmp.bandwidth_ratio]}
    figures["runtime_s"] = round(time.monotonic() - start, 2)
    figures["plots"] = [str(p) for p in plots]
    return figures
