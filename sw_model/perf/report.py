"""Tables and plots of the performance model: what ``build.py perf`` shows.

Everything here returns plain data (tables as ``(title, headers, rows)``, rows of cells) and writes
no text; the command prints. :func:`assumptions` lists every assumed constant with its value (shown
by ``perf --help`` and under the tables), so what the numbers rest on is never hidden.
"""

import logging
import math
from dataclasses import replace
from pathlib import Path

from hw.params import MacMode, TOP_PAPER
from sw_model.perf import hardware as hwmod
from sw_model.perf.calibrate import anchor_rows, fit_gpu_anchor
from sw_model.perf.methods import SLM_KV_BYTES, Settings
from sw_model.perf.suite import BASELINES, HEADLINE_BATCHES, PAPER_TARGETS, \
    breakeven_acceptance, crossover, run_grid, summarise
from sw_model.perf.measured import ABLATE_MODEL, ABLATE_SOURCE, TREE_SOURCE
from sw_model.perf.locality import GENERATOR_REUSE, LOCALITY_SOURCE, MEASURED_REPEAT, \
    MEASURED_TOP_SHARE
from sw_model.perf.workload import ACCEPTANCE, ASSUMED_LOCALITY, Locality, STAT_LAYERS, \
    STAT_STEPS
from sw_model.perf.zoo import PAPER_MODELS, get_model

__all__ = ["ALL_BATCHES", "assumptions", "evaluate", "perf_tables", "anchor_text", "gap_rows",
           "prior_rows", "batch1_rows", "sensitivity_rows", "stream_rows", "fast_rows",
           "write_plots"]

log = logging.getLogger(__name__)

ALL_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _exponents(locality, models=PAPER_MODELS):
    """The Zipf exponent ``locality`` gives each model, as text."""
    return ", ".join(f"{m} {locality.exponent(get_model(m).experts):.2f}" for m in models)


def assumptions():
    """Every assumed (not published, not measured) constant, one line each."""
    h, a, s = hwmod, ACCEPTANCE, Settings()
    return "\n".join([
        "Sources: paper = the ELMoE-3D paper; RTL = this project's benches (bench hb / bench "
        "mac);",
        "CSV = measured H100 table; assumed = stated here until a better source exists.",
        f"  paper: HB 51.2 GB/s + 256 MB per PE, 0.43 pJ/bit; LPDDR 102.4 GB/s, 64 GB, "
        f"3.88 pJ/bit; {_paper_tops()} TOPS W8A8/W4A8 at 32 PEs (all from the machine "
        "description, python build.py machine show paper); links 32 GB/s gather, 128 GB/s "
        "stream; acceptance 0.33-0.91",
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
        f"  measured token trees (decoding.tree; perf --draft): tokens per verification of "
        f"each measured shape ({TREE_SOURCE}) interpolated in log2(share) like the chain's, "
        "below 1/8 linearly down to 1 at no resident expert, without the paper's chain range; "
        "one draft pass per depth carrying that depth's nodes; the verification carries nodes + 1 tokens per sequence and touches the "
        "experts of (nodes + 1) x the measured growth of one sequence's union over a chain's "
        "consecutive tokens of the paper model's routing; a tree must fit one part of the "
        "machine (input_words, every token of the pass routed to one expert); other methods "
        "keep their chains",
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


# -- tables ---------------------------------------------------------------------------------------

def _fmt(x):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _ratio_table(points, machine, kind):
    """``(headers, rows)``: ELMoE-3D's speed-up (``kind`` "speed") or energy efficiency over each
    baseline, per model and batch."""
    names = list(BASELINES)
    headers = ["model", "batch", "mode", "ms/token" if kind == "speed" else "mJ/token"] + names \
        + ["best prior"]
    rows = []
    for p in points:
        if p.machine != machine:
            continue
        ratio = p.speedup if kind == "speed" else p.energy
        own = p.s_per_token * 1e3 if kind == "speed" else p.j_per_token * 1e3
        best = p.best_prior()[0 if kind == "speed" else 1]
        rows.append([p.model, p.batch, p.mode, f"{own:.3f}"] + [_fmt(ratio(n)) for n in names]
                    + [_fmt(best)])
    return headers, rows


def _aggregate_rows(points, machine, models, batches):
    rows = []
    sel = [p for p in points if p.machine == machine and p.model in models and p.batch in batches]
    if not sel:
        return rows
    for label, fn in (("speed-up", lambda p, n: p.speedup(n)),
                      ("energy eff.", lambda p, n: p.energy(n))):
        for stat, agg in (("avg", lambda v: sum(v) / len(v)), ("max", max)):
            vals = [agg([fn(p, n) for p in sel]) for n in BASELINES]
            best = agg([p.best_prior()[0 if label == "speed-up" else 1] for p in sel])
            rows.append([f"{stat} {label}"] + [_fmt(v) for v in vals] + [_fmt(best)])
    return rows


def perf_tables(points, summaries, cross):
    """The main tables as ``(title, headers, rows)``: per HB size the speed-up and energy
    efficiency over every baseline and the headline set, the summaries against the paper, and the
    crossover of cached decoding and Elastic-SD (:func:`evaluate`'s)."""
    tables = []
    for machine in dict.fromkeys(p.machine for p in points):
        label = hwmod.machine_label(machine)
        tables.append((f"ELMoE-3D {label}: speed-up of ELMoE-3D over each "
                       "baseline (baseline time / ELMoE-3D time per token)",
                       *_ratio_table(points, machine, "speed")))
        tables.append((f"ELMoE-3D {label}: energy efficiency over each "
                       "baseline (baseline energy / ELMoE-3D energy per token)",
                       *_ratio_table(points, machine, "energy")))
        rows = _aggregate_rows(points, machine, PAPER_MODELS, HEADLINE_BATCHES)
        if rows:
            tables.append((f"Headline set ({label}, paper models, batch "
                           f"{HEADLINE_BATCHES[0]}-{HEADLINE_BATCHES[-1]}):",
                           ["statistic"] + list(BASELINES) + ["best prior"], rows))
    for s in summaries:
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
        tables.append((f"Summary {s['machine']} (paper models, batch 1-16), against the "
                       "paper:", ["figure", "model", "paper", "in band"], rows))
    yes = lambda v: "yes" if v else "no"
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
                                   _fmt(c.get("breakeven_acceptance_at_batch_1")),
                                   c["first_elastic_sd_batch"] or "-",
                                   f"{yes(c['elastic_sd_wins_at_largest'])} "
                                   f"({c['largest_batch']})"])
    tables.append((f"Crossover ({cross_label(cross)}): cached decoding vs Elastic-SD, ms per "
                   "token; SD "
                   "acceptance = accepted/proposed at gamma (per-position alpha), from the "
                   "resident share of the experts",
                   ["model", "b1 cache", "b1 SD", "b1 SD acceptance", "b1 resident",
                    "b16 cache", "b16 SD", "b16 SD acceptance", "b16 resident",
                    "cache wins at 1", "SD wins at 16", "break-even alpha at 1",
                    "first SD batch", "SD wins at largest"], rows))
    return tables


def _paper_tops():
    return (f"{TOP_PAPER.peak_tops(MacMode.FULL):.0f}/"
            f"{TOP_PAPER.peak_tops(MacMode.DRAFT):.0f}")


def cross_label(cross):
    """The machine the crossover table was computed on."""
    return next((c["machine"] for c in cross.values() if "machine" in c), "-")


def anchor_text():
    """One line: the GPU model fitted to the measured H100 table, and its error over the rows."""
    anchor = anchor_rows()
    fit = fit_gpu_anchor()
    errors = [abs(r["error"]) for r in anchor]
    return (f"GPU anchor (xpu_moe_decode_h100.csv, grouped): fitted {fit['hbm_gbps']:.0f} GB/s "
            f"({fit['hbm_efficiency']:.1%} of peak) + {fit['layer_overhead_us']:.0f} us per "
            f"layer; model vs measured over {len(anchor)} rows: mean |error| "
            f"{sum(errors) / len(errors):.1%}, max {max(errors):.1%}")


def evaluate(models, batches, machines, settings, calibration, progress=None, skip=(),
             with_crossover=True):
    """Every model x batch x machine (but the ``skip`` triples) against every baseline:
    ``(points, summaries, crossover)``, a summary per machine that has headline points, the
    crossover on the first machine with each model's break-even acceptance at batch 1
    (``breakeven_acceptance_at_batch_1``) where Elastic-SD runs there (None without
    ``with_crossover``). ``progress(done, total)`` hears of every point."""
    points = run_grid(models, batches, machines, settings, calibration, progress=progress,
                      skip=skip)
    summaries = [summarise(points, g) for g in machines
                 if any(p.model in PAPER_MODELS and p.batch in HEADLINE_BATCHES
                        and p.machine == g for p in points)]
    if not with_crossover:
        return points, summaries, None
    cross_gb = machines[0]
    cross = crossover(points, cross_gb)
    for c in cross.values():
        c["machine"] = hwmod.machine_label(cross_gb)
    for m, c in cross.items():
        if c["elastic_sd_alpha_at_batch_1"] is not None and \
                any(p.model == m and p.batch == 1 for p in points):
            c["breakeven_acceptance_at_batch_1"] = breakeven_acceptance(m, 1, cross_gb, settings,
                                                                        calibration)
    return points, summaries, cross


# -- chains and trees ----------------------------------------------------------------------------

def unfit_points(tree, machines, models, batches):
    """``(model, batch, machine)`` points at which the tree's verification does not fit one
    part (:func:`sw_model.perf.methods.check_verify_fits`); none for a chain."""
    from sw_model.perf.methods import check_verify_fits
    out = []
    for g in machines:
        for m in models:
            for b in batches:
                try:
                    check_verify_fits(tree, g, [m], [b])
                except ValueError:
                    out.append((m, b, g))
    return out


def describe_points(points):
    """``model batch >= b`` per model of ``(model, batch, machine)`` triples, as text."""
    low = {}
    for m, b, _ in points:
        low[m] = min(low.get(m, b), b)
    return ", ".join(f"{m} at batch >= {b}" for m, b in low.items())


def draft_headlines(settings, trees, calibration, machine=TOP_PAPER, progress=None):
    """The headline figures (:func:`sw_model.perf.suite.evaluate_config` on the paper models at
    batch 1-16) of the chain (``settings``' gamma) and of each tree shape in ``trees``, keyed
    by :func:`sw_model.perf.methods.draft_label`; each with its ``tree`` (spec or None)."""
    from sw_model.perf.methods import draft_label
    from sw_model.perf.suite import evaluate_config
    out = {}
    for i, tree in enumerate([None] + list(trees)):
        s = replace(settings, tree=tree)
        config = {"gamma": s.gamma, "threshold": s.threshold,
                  "resident_policy": s.resident_policy, "machine": machine, "tree": s.tree}
        r = evaluate_config(config, PAPER_MODELS, HEADLINE_BATCHES, s, calibration)
        out[draft_label(s)] = {k: v for k, v in r.items() if k not in ("config", "points")}
        out[draft_label(s)]["tree"] = s.tree.spec if s.tree is not None else None
        if progress:
            progress(i + 1, len(trees) + 1)
    return out


def draft_table(heads, default, machine=TOP_PAPER, note=None):
    """``(title, headers, rows, note)``: the headline of every draft shape, best first, the
    one the tables use marked."""
    from sw_model.decode.tree import parse_tree
    rows = []
    for label, h in sorted(heads.items(), key=lambda kv: -kv[1]["avg_speedup_vs_xpu"]):
        shape = parse_tree(h["tree"])
        nodes = "-" if shape is None else shape.nodes
        depth = "-" if shape is None else shape.depth
        rows.append([label + (" *" if label == default else ""), nodes, depth,
                     f"{h['avg_speedup_vs_xpu']:.2f}", f"{h['avg_energy_vs_xpu']:.2f}",
                     f"{h['avg_speedup_vs_best_prior']:.2f}"])
    return (f"Draft shapes ({hwmod.machine_label(machine)}, paper models, batch "
            f"{HEADLINE_BATCHES[0]}-{HEADLINE_BATCHES[-1]}; * the tables' own):",
            ["draft", "nodes", "depth", "avg speed-up vs xPU", "avg energy vs xPU",
             "avg speed-up vs best prior"], rows, note)


def side_by_side(chain, tree, chain_label, tree_label, machine=TOP_PAPER):
    """``(title, headers, rows)``: the chain's and the tree's headline beside the paper's."""
    rows = []
    for key, (target, band) in PAPER_TARGETS.items():
        within = lambda h: "yes" if abs(h[key] / target - 1) <= band else "NO"
        rows.append([key, f"{chain[key]:.2f} ({within(chain)})",
                     f"{tree[key]:.2f} ({within(tree)})" if tree else "-",
                     f"{target} +/- {band:.0%}"])
    return (f"Chain and tree against the paper ({hwmod.machine_label(machine)}, paper models, "
            "batch 1-16; in band?):",
            ["figure", f"chain: {chain_label}", f"tree: {tree_label or '-'}", "paper"], rows)


# -- the gap to the paper ------------------------------------------------------------------------

def _bounds(result):
    """``label bound`` per phase label of a step result (a tree's draft passes together)."""
    by = {}
    for label, _, c in result.costs:
        by.setdefault(label, []).append(c.bound)
    return ", ".join(f"{label} {'/'.join(dict.fromkeys(b))}" for label, b in by.items())


def gap_rows(settings, calibration, machine=TOP_PAPER, batches=(1, 16)):
    """Per paper model and batch: bytes per kept token on each tier for the xPU and ELMoE-3D,
    and what bounds ELMoE-3D's phases (the numbers behind the headline)."""
    from sw_model.perf.methods import plan_step, step_result
    hw, x = hwmod.elmoe3d(machine, calibration), hwmod.xpu(machine, calibration)
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
                         _bounds(e)])
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


def prior_rows(settings, calibration, machine=TOP_PAPER):
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
                  "resident_policy": settings.resident_policy, "machine": machine}
        r = evaluate_config(config, PAPER_MODELS, HEADLINE_BATCHES,
                            replace(settings, priors=priors), calibration)
        rows.append([label, f"{r['avg_speedup_vs_best_prior']:.2f}",
                     f"{r['avg_energy_vs_best_prior']:.2f}",
                     ", ".join(f"{n} {k}" for n, k in r["fastest_prior_count"].items())])
    return rows


def batch1_rows(settings, calibration, machine=TOP_PAPER, batch=1):
    """Why cached decoding or Elastic-SD wins at ``batch`` on each paper model: per kept token,
    time and LPDDR bytes of each phase and what bounds it."""
    from sw_model.perf.methods import plan_step, step_result
    hw = hwmod.elmoe3d(machine, calibration)
    rows = []
    for model in PAPER_MODELS:
        c = step_result(hw, plan_step(hw, model, batch, "cache", settings))
        e = step_result(hw, plan_step(hw, model, batch, "elastic_sd", settings))
        # a tree drafts in several passes of different widths: sum the phases by label
        per = lambda r, label, f: sum(n * getattr(w, f) for lab, n, w in r.plan.phases
                                      if lab == label) / r.plan.tokens
        ms = lambda r, label: sum(n * cost.seconds for lab, n, cost in r.costs
                                  if lab == label) / r.plan.tokens * 1e3
        bound = lambda r, label: "/".join(dict.fromkeys(cost.bound for lab, _, cost in r.costs
                                                        if lab == label))
        rows.append([model, f"{c.s_per_token * 1e3:.2f}", c.costs[0][2].bound,
                     f"{c.plan.info['hit_rate']:.2f}", f"{per(c, 'decode', 'far_read') / 1e6:.0f}",
                     f"{e.s_per_token * 1e3:.2f}", f"{ms(e, 'draft'):.2f} ({bound(e, 'draft')})",
                     f"{ms(e, 'verify'):.2f} ({bound(e, 'verify')})",
                     f"{per(e, 'verify', 'far_read') / 1e6:.0f}", f"{e.plan.tokens / batch:.2f}",
                     "cache" if c.s_per_token <= e.s_per_token else "Elastic-SD"])
    return rows


#: What-if variants of a token tree's headline (label, change), added when the tables run a tree.
TREE_SENSITIVITY = (
    ("the chain (the policy's gamma) instead of the tree", {"tree": None}),
    ("the tree's verification touching only a chain's experts (no measured growth)",
     {"tree_union": "chain"}),
)


def _apply(settings, change):
    """``settings`` with one :data:`SENSITIVITY` / :data:`GAP_STEPS` change."""
    s = settings
    for key in ("slope", "mapping", "tree_union", "share"):
        if key in change:
            s = replace(s, acceptance=replace(s.acceptance, **{key: change[key]}))
    for key in ("gamma", "cache_policy", "tree"):
        if key in change:
            s = replace(s, **{key: change[key]})
    for key in ("reuse", "zipf"):
        if key in change:
            # a fixed exponent replaces the top share
            extra = {"top_share": None} if key == "zipf" else {}
            s = replace(s, locality=replace(s.locality, **{key: change[key]}, **extra))
    if "locality" in change:
        s = replace(s, locality=change["locality"])
    return s


def _headline(s, calibration, machine):
    from sw_model.perf.suite import evaluate_config
    config = {"gamma": s.gamma, "threshold": s.threshold, "resident_policy": s.resident_policy,
              "machine": machine, "tree": s.tree}
    return evaluate_config(config, PAPER_MODELS, HEADLINE_BATCHES, s, calibration)


def sensitivity_rows(settings, calibration, machine=TOP_PAPER):
    """The headline averages under each :data:`SENSITIVITY` variant (and, for a tree, each
    :data:`TREE_SENSITIVITY` one)."""
    rows = []
    variants = SENSITIVITY + (TREE_SENSITIVITY if settings.tree is not None else ())
    for label, change in variants:
        r = _headline(_apply(settings, change), calibration, machine)
        rows.append([label, f"{r['avg_speedup_vs_xpu']:.2f}", f"{r['max_speedup_vs_xpu']:.2f}",
                     f"{r['avg_energy_vs_xpu']:.2f}", f"{r['avg_speedup_vs_best_prior']:.2f}"])
    return rows


#: The steps from this model's headline towards the paper's, each on top of the ones before
#: (label, change): what each assumption the paper's figures may rest on is worth.
GAP_STEPS = (
    ("this model (measured acceptance, union growth and routing)", {}),
    ("+ acceptance as measured with every expert resident", {"share": 1.0}),
    ("+ a tree's verification touching only a chain's experts", {"tree_union": "chain"}),
    ("+ routing as assumed before measuring (Zipf 1.0, reuse 0.5)",
     {"locality": ASSUMED_LOCALITY}),
    ("+ every expert cache the best of LRU and pinned (HB-xPU too)",
     {"cache_policy": "best", "hb_xpu_cache": "best"}),
)


def gap_ladder(settings, calibration, machine=TOP_PAPER):
    """``(rows, steps)``: the headline after each :data:`GAP_STEPS` step (cumulative; the tree
    step only when ``settings`` run a tree) with its share of the bandwidth bound, the paper's,
    and the gap (paper / this model) per figure; ``steps``: ``[(label, headline figures)]``."""
    hb = hwmod.elmoe3d(machine)
    bound = hb.near.peak_gbps / hb.far.peak_gbps
    rows, steps, s = [], [], settings
    for label, change in GAP_STEPS:
        if "tree_union" in change and settings.tree is None:
            continue
        s = _apply(s, change)
        if "hb_xpu_cache" in change:
            s = replace(s, priors=replace(s.priors, hb_xpu_cache=change["hb_xpu_cache"]))
        h = _headline(s, calibration, machine)
        steps.append((label, {k: h[k] for k in PAPER_TARGETS}))
        rows.append([label, f"{h['avg_speedup_vs_xpu']:.2f}", f"{h['avg_energy_vs_xpu']:.2f}",
                     f"{h['avg_speedup_vs_best_prior']:.2f}",
                     f"{h['avg_speedup_vs_xpu'] / bound:.3f}"])
    rows.append(["the paper"] + [f"{PAPER_TARGETS[k][0]}" for k in PAPER_TARGETS]
                + [f"{PAPER_TARGETS['avg_speedup_vs_xpu'][0] / bound:.3f}"])
    rows.append(["gap (paper / this model)"]
                + [f"{PAPER_TARGETS[k][0] / steps[0][1][k]:.2f}x" for k in PAPER_TARGETS] + ["-"])
    return rows, steps


def gap_note(steps):
    """Per headline figure: the gap and what each :func:`gap_ladder` step moves it by, and the
    factor left after them all (text)."""
    names = {"avg_speedup_vs_xpu": "speed-up vs xPU", "avg_energy_vs_xpu": "energy vs xPU",
             "avg_speedup_vs_best_prior": "speed-up vs best prior"}
    lines = []
    for key, (target, _) in PAPER_TARGETS.items():
        start, end = steps[0][1][key], steps[-1][1][key]
        moves = ", ".join(f"{label.lstrip('+ ').split(' (')[0]} {after[key] - before[key]:+.2f}"
                          for (_, before), (label, after) in zip(steps, steps[1:]))
        lines.append(f"{names[key]}: {start:.2f} against {target} ({target / start:.2f}x to go); "
                     f"{moves}; left after every step {target / end:.2f}x")
    return "\n".join(lines)


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
    from sw_model.model.moe import DEFAULT_CONFIG
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

def write_plots(points, directory, calibration="paper"):
    """Speed-up and energy efficiency vs batch per model, and the crossover, per machine; PNGs in
    ``directory`` named after the machine. Returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    cal = calibration if isinstance(calibration, str) else "from bench figures"
    for machine in dict.fromkeys(p.machine for p in points):
        label = hwmod.machine_label(machine)
        stem = f"{machine.hb_capacity_bytes / (1 << 30):g}gb_{machine.pes}pe"
        models = list(dict.fromkeys(p.model for p in points if p.machine == machine))
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        for model in models:
            rows = sorted((p for p in points if p.machine == machine and p.model == model),
                          key=lambda p: p.batch)
            b = [p.batch for p in rows]
            axes[0].plot(b, [p.speedup("xPU") for p in rows], marker="o", label=model)
            axes[1].plot(b, [p.best_prior()[0] for p in rows], marker="o", label=model)
            axes[2].plot(b, [p.energy("xPU") for p in rows], marker="o", label=model)
        for ax, title, unit in zip(
                axes, ("speed-up vs LPDDR-only xPU", "speed-up vs best prior",
                       "energy efficiency vs xPU"),
                ("xPU time / ELMoE-3D time per token (x)",
                 "fastest prior's time / ELMoE-3D time per token (x)",
                 "xPU energy / ELMoE-3D energy per token (x)")):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch (sequences)")
            ax.set_ylabel(unit)
            ax.set_title(title)
            ax.axhline(1.0, color="grey", lw=0.5)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"ELMoE-3D {label}, calibration {cal}; best prior: the fastest of "
                     "HB-xPU, xPU-PIM, xPU-LogicPIM and xPU-NMP at each point")
        fig.tight_layout()
        path = directory / f"speedup_{stem}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for model in models:
            rows = sorted((p for p in points if p.machine == machine and p.model == model),
                          key=lambda p: p.batch)
            ratio = [p.methods["cache"] / p.methods["elastic_sd"] for p in rows]
            ax.plot([p.batch for p in rows], ratio, marker="o", label=model)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch (sequences)")
        ax.set_ylabel("cached time / Elastic-SD time per token (x)")
        ax.set_title(f"Crossover, ELMoE-3D {label}, calibration {cal}\n(above 1: Elastic-SD "
                     "wins)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = directory / f"crossover_{stem}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
