"""ELMoE-3D against every baseline, per model and batch size, and the headline summary.

Baselines (each on the compute of the ELMoE-3D configuration it is compared with; assumptions in
:mod:`sw_model.perf.hardware` and :mod:`sw_model.perf.methods`):

============== ============================= ====================================================
name           machine                       decoding
============== ============================= ====================================================
xPU            LPDDR-only xPU                plain (everything from LPDDR)
HB-xPU         xPU + the same HB, plain tier LRU cache of whole INT8 experts (cached decoding)
xPU-PIM        xPU + bank-level LPDDR-PIM    plain, weight products in memory (GEMV units)
xPU-LogicPIM   xPU + logic-die PIM           plain, weight products beside memory (4 tok/read)
xPU-NMP        xPU + near-memory processing  plain, batched, 2x bandwidth
GPU+PCIe       H100, experts in host memory  the better of cached decoding and SpecMoE SD
cache only     ELMoE-3D                      cached decoding at every batch
EAGLE-SD       ELMoE-3D                      EAGLE head drafts, HB rest caches experts
SLM-SD         ELMoE-3D                      small draft LM in HB
Quant-SD       ELMoE-3D                      separate 4-bit copy drafts
SpecMoE-SD     ELMoE-3D                      pinned whole hot experts draft
============== ============================= ====================================================

*Best prior* is, per model and batch, the fastest (or most energy-efficient) of the four prior
accelerators HB-xPU, xPU-PIM, xPU-LogicPIM and xPU-NMP (the paper's list). ELMoE-3D itself runs
``elmoe3d``: cached decoding below the batch threshold, Elastic-SD at and above it.
"""

from dataclasses import dataclass, replace
import math

import numpy as np

from hw.params import TOP_PAPER, TopParams
from sw_model.perf import hardware as hwmod
from sw_model.perf.methods import Settings, check_verify_fits, plan_step, step_result
from sw_model.perf.zoo import PAPER_MODELS, get_model

__all__ = ["BASELINES", "PRIOR", "run_point", "run_grid", "summarise", "HEADLINE_BATCHES",
           "PAPER_TARGETS", "crossover", "evaluate_config"]

#: Batch sizes of the paper's headline averages.
HEADLINE_BATCHES = (1, 2, 4, 8, 16)
#: The ELMoE-3D paper's headline numbers and the relative band within which a reproduction counts
#: as agreeing with them.
PAPER_TARGETS = {"avg_speedup_vs_xpu": (6.6, 0.20), "avg_energy_vs_xpu": (4.4, 0.20),
                 "avg_speedup_vs_best_prior": (2.2, 0.25)}


#: name -> (machine factory (machine description, calibration, prior assumptions), methods; the
#: best of them is taken)
BASELINES = {
    "xPU": (lambda gb, cal, pr: hwmod.xpu(gb, cal), ("plain",)),
    "HB-xPU": (lambda gb, cal, pr: hwmod.hb_xpu(gb, cal, pr.hb_xpu_cache), ("cache",)),
    "xPU-PIM": (lambda gb, cal, pr: hwmod.xpu_pim(gb, cal, pr.pim), ("plain",)),
    "xPU-LogicPIM": (lambda gb, cal, pr: hwmod.xpu_logicpim(gb, cal, pr.logic_pim),
                     ("plain",)),
    "xPU-NMP": (lambda gb, cal, pr: hwmod.xpu_nmp(gb, cal, pr.nmp), ("plain",)),
    "GPU+PCIe": (lambda gb, cal, pr: hwmod.gpu_offload(), ("cache", "specmoe_sd")),
    "cache only": (lambda gb, cal, pr: hwmod.elmoe3d(gb, cal), ("cache",)),
    "EAGLE-SD": (lambda gb, cal, pr: hwmod.elmoe3d(gb, cal), ("eagle_sd",)),
    "SLM-SD": (lambda gb, cal, pr: hwmod.elmoe3d(gb, cal), ("slm_sd",)),
    "Quant-SD": (lambda gb, cal, pr: hwmod.elmoe3d(gb, cal), ("quant_sd",)),
    "SpecMoE-SD": (lambda gb, cal, pr: hwmod.elmoe3d(gb, cal), ("specmoe_sd",)),
}
PRIOR = ("HB-xPU", "xPU-PIM", "xPU-LogicPIM", "xPU-NMP")


@dataclass(frozen=True)
class Point:
    """Per-token seconds and joules of ELMoE-3D and every baseline at one (model, batch, machine).
    ``machine``: the ELMoE-3D machine description (a :class:`hw.params.TopParams`)."""
    model: str
    batch: int
    machine: TopParams
    mode: str
    s_per_token: float
    j_per_token: float
    info: dict
    baselines: dict      # name -> (s_per_token, j_per_token, method)
    methods: dict        # ELMoE-3D cache / elastic_sd s_per_token (the crossover)

    def speedup(self, name):
        return self.baselines[name][0] / self.s_per_token

    def energy(self, name):
        return self.baselines[name][1] / self.j_per_token

    def best_prior(self):
        return (min(self.baselines[n][0] for n in PRIOR) / self.s_per_token,
                min(self.baselines[n][1] for n in PRIOR) / self.j_per_token)


def _best(hw, model, batch, methods, settings):
    results = [step_result(hw, plan_step(hw, model, batch, m, settings)) for m in methods]
    best = min(results, key=lambda r: r.s_per_token)
    return best.s_per_token, best.j_per_token, best.plan.method


def run_point(model, batch, machine=TOP_PAPER, settings=Settings(), calibration="paper"):
    """ELMoE-3D (``elmoe3d`` method) and every baseline at one point."""
    model = get_model(model)
    check_verify_fits(settings.tree, machine, [model.name], [batch])
    hw = hwmod.elmoe3d(machine, calibration)
    main = step_result(hw, plan_step(hw, model, batch, "elmoe3d", settings))
    runs = {m: step_result(hw, plan_step(hw, model, batch, m, settings))
            for m in ("cache", "elastic_sd")}
    methods = {m: r.s_per_token for m, r in runs.items()}
    sd = runs["elastic_sd"].plan.info
    phases = {}
    for label, count, c in runs["elastic_sd"].costs:
        phases[label] = phases.get(label, 0.0) + count * c.seconds / runs["elastic_sd"].plan.tokens
    methods.update(elastic_sd_alpha=sd["alpha"], elastic_sd_acceptance=sd["acceptance"],
                   resident_fraction=sd["resident_fraction"],
                   elastic_sd_length=sd["accepted_length"],
                   cache_bound=runs["cache"].costs[0][2].bound, elastic_sd_phases=phases)
    baselines = {name: _best(make(machine, calibration, settings.priors), model, batch, ms,
                             settings)
                 for name, (make, ms) in BASELINES.items()}
    info = {k: v for k, v in main.plan.info.items()}
    info["bound"] = [f"{label}:{c.bound}" for label, _, c in main.costs]
    return Point(model.name, batch, machine, main.plan.info["mode"], main.s_per_token,
                 main.j_per_token, info, baselines, methods)


def run_grid(models, batches, machines=(TOP_PAPER,), settings=Settings(), calibration="paper",
             progress=None, skip=()):
    """Every point of the grid (models x batches x machines) but those in ``skip`` (``(model,
    batch, machine)`` triples); ``progress(done, total)`` after each."""
    skip = set(skip)
    keys = [(m, b, g) for g in machines for m in models for b in batches
            if (m, b, g) not in skip]
    points = []
    for i, (m, b, g) in enumerate(keys):
        points.append(run_point(m, b, g, settings, calibration))
        if progress:
            progress(i + 1, len(keys))
    return points


def summarise(points, machine=TOP_PAPER, models=PAPER_MODELS, batches=HEADLINE_BATCHES):
    """The headline figures over ``models`` x ``batches`` on ``machine`` (arithmetic means of
    the per-point ratios, as the paper's averages; geometric means alongside)."""
    sel = [p for p in points if p.machine == machine and p.model in models
           and p.batch in batches]
    if not sel:
        raise ValueError(f"no points on {hwmod.machine_label(machine)} for {models} x {batches}")
    sx = np.array([p.speedup("xPU") for p in sel])
    ex = np.array([p.energy("xPU") for p in sel])
    bp = np.array([p.best_prior() for p in sel])
    eagle = np.array([p.speedup("EAGLE-SD") for p in sel if p.batch >= 4])
    hb = hwmod.elmoe3d(machine)
    bw_bound = hb.near.peak_gbps / hb.far.peak_gbps
    e_bound = hb.far.read_pj_per_bit / hb.near.read_pj_per_bit
    out = {
        "machine": hwmod.machine_label(machine), "pes": machine.pes,
        "hb_gb": machine.hb_capacity_bytes / (1 << 30), "points": len(sel),
        "avg_speedup_vs_xpu": float(sx.mean()), "max_speedup_vs_xpu": float(sx.max()),
        "geomean_speedup_vs_xpu": float(np.exp(np.log(sx).mean())),
        "avg_energy_vs_xpu": float(ex.mean()), "max_energy_vs_xpu": float(ex.max()),
        "avg_speedup_vs_best_prior": float(bp[:, 0].mean()),
        "max_speedup_vs_best_prior": float(bp[:, 0].max()),
        "min_speedup_vs_best_prior": float(bp[:, 0].min()),
        "avg_energy_vs_best_prior": float(bp[:, 1].mean()),
        "max_energy_vs_best_prior": float(bp[:, 1].max()),
        "avg_speedup_vs_eagle_batch_ge4": float(eagle.mean()) if eagle.size else math.nan,
        "max_speedup_vs_eagle_batch_ge4": float(eagle.max()) if eagle.size else math.nan,
        "bandwidth_bound": bw_bound, "energy_bound": e_bound,
        "fraction_of_bandwidth_bound": float(sx.mean() / bw_bound),
        "fraction_of_energy_bound": float(ex.mean() / e_bound),
    }
    for key, (target, band) in PAPER_TARGETS.items():
        out[f"{key}_within_band"] = bool(abs(out[key] / target - 1) <= band)
    return out


def crossover(points, machine=TOP_PAPER, large=HEADLINE_BATCHES[-1]):
    """Per model: cached decoding vs Elastic-SD. ``cache_wins_at_batch_1``; ``elastic_sd_wins_at_16``
    (``large``: the paper's largest batch, where the crossover is judged); whether Elastic-SD
    wins at the largest batch run; the first batch it wins; and per batch the two times per
    token, the acceptance Elastic-SD used (accepted / proposed at the machine's gamma, and the
    per-position ``alpha``) and the resident share of the experts it came from."""
    out = {}
    for model in dict.fromkeys(p.model for p in points if p.machine == machine):
        rows = sorted((p for p in points if p.model == model and p.machine == machine),
                      key=lambda p: p.batch)
        sd_wins = [p.batch for p in rows if p.methods["elastic_sd"] < p.methods["cache"]]
        out[model] = {"cache_wins_at_batch_1": rows[0].batch == 1
                      and rows[0].methods["cache"] <= rows[0].methods["elastic_sd"],
                      "elastic_sd_wins_at_16": large in sd_wins,
                      "elastic_sd_wins_at_largest": rows[-1].batch in sd_wins,
                      "first_elastic_sd_batch": sd_wins[0] if sd_wins else None,
                      "elastic_sd_alpha_at_batch_1": rows[0].methods["elastic_sd_alpha"],
                      "largest_batch": rows[-1].batch,
                      "by_batch": {p.batch: {
                          "cache_ms": p.methods["cache"] * 1e3,
                          "elastic_sd_ms": p.methods["elastic_sd"] * 1e3,
                          "acceptance": p.methods["elastic_sd_acceptance"],
                          "alpha": p.methods["elastic_sd_alpha"],
                          "resident_fraction": p.methods["resident_fraction"]} for p in rows}}
    return out


def evaluate_config(config, models, batches, base_settings=Settings(), calibration="paper"):
    """Per-point seconds and joules per token of ELMoE-3D, the xPU and the best prior under one
    configuration (a dict of gamma, threshold, resident_policy and machine, a TopParams, and
    optionally tree: Elastic-SD's draft shape, None for the chain; without it, the base
    settings')."""
    settings = replace(base_settings, gamma=config["gamma"], threshold=config["threshold"],
                       resident_policy=config["resident_policy"],
                       tree=config.get("tree", base_settings.tree))
    machine = config["machine"]
    check_verify_fits(settings.tree, machine, models, batches)
    hw = hwmod.elmoe3d(machine, calibration)
    refs = {name: BASELINES[name][0](machine, calibration, settings.priors)
            for name in ("xPU",) + PRIOR}
    points = []
    for model in models:
        for batch in batches:
            own = step_result(hw, plan_step(hw, model, batch, "elmoe3d", settings))
            base = {}
            for name, machine in refs.items():
                r = step_result(machine, plan_step(machine, model, batch,
                                                   BASELINES[name][1][0], settings))
                base[name] = (r.s_per_token, r.j_per_token)
            prior = (min(base[n][0] for n in PRIOR), min(base[n][1] for n in PRIOR))
            points.append({"model": model, "batch": batch, "mode": own.plan.info["mode"],
                           "s": own.s_per_token, "j": own.j_per_token,
                           "xpu": base["xPU"], "prior": prior,
                           "fastest_prior": min(PRIOR, key=lambda n: base[n][0])})
    return {"config": config, "points": points, **_score(points)}


def _score(points):
    sx = np.array([p["xpu"][0] / p["s"] for p in points])
    ex = np.array([p["xpu"][1] / p["j"] for p in points])
    bp = np.array([p["prior"][0] / p["s"] for p in points])
    be = np.array([p["prior"][1] / p["j"] for p in points])
    fastest = [p["fastest_prior"] for p in points]
    return {"avg_speedup_vs_xpu": float(sx.mean()), "avg_energy_vs_xpu": float(ex.mean()),
            "avg_speedup_vs_best_prior": float(bp.mean()), "max_speedup_vs_xpu": float(sx.max()),
            "avg_energy_vs_best_prior": float(be.mean()),
            "fastest_prior_count": {n: fastest.count(n) for n in PRIOR if n in fastest}}


def breakeven_acceptance(model, batch, machine=TOP_PAPER, settings=Settings(),
                         calibration="paper"):
    """The acceptance rate at which Elastic-SD and cached decoding take the same time per token
    at ``batch`` (None when one of them wins at every rate in [0, 1])."""
    hw = hwmod.elmoe3d(machine, calibration)
    cache = step_result(hw, plan_step(hw, model, batch, "cache", settings)).s_per_token

    def sd(alpha):
        s = replace(settings, acceptance=replace(settings.acceptance,
                                                 measured={"elastic_sd": alpha}))
        return step_result(hw, plan_step(hw, model, batch, "elastic_sd", s)).s_per_token
    lo, hi = 0.0, 1.0
    if (sd(lo) - cache) * (sd(hi) - cache) > 0:
        return None
    for _ in range(30):
        mid = (lo + hi) / 2
        if sd(mid) > cache:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
