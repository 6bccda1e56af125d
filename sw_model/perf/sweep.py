"""``python build.py sweep``: explore ELMoE-3D's policy parameters on the analytic model.

Axes: draft length ``gamma``, the batch ``threshold`` of the mode switch, Elastic-SD's
``resident_policy`` and the HB size (``--hb-gb``; 4 PEs per GiB as in the paper's two
configurations). Every configuration is scored on the headline set (paper models, batch 1-16) by
its average speed-up over the LPDDR-only xPU, with energy efficiency and the speed-up over the
best prior accelerator alongside. Besides the best single configuration the sweep reports the
best *per-batch* policy (gamma and mode chosen per batch size, which a serving system knows),
each against the paper's own configuration (gamma 4, threshold 4, frequency set, 8 GB: the
defaults of :class:`sw_model.perf.methods.Settings`).

Configurations run locally in this process by default, or as Ray tasks (``--ray ADDRESS``: an
existing cluster; ``--ray local``: a local Ray instance with ``--workers`` CPUs).
"""

import itertools
import sys
import time

import numpy as np

from sw_model.perf.methods import Settings
from sw_model.perf.report import _float_list, _int_list, _models, add_common_arguments, \
    progress_bar, settings_from_args
from sw_model.perf.suite import HEADLINE_BATCHES, _score, evaluate_config
from sw_model.perf.zoo import PAPER_MODELS

__all__ = ["add_sweep_arguments", "run_sweep", "sweep", "evaluate_config", "PAPER_CONFIG"]

#: The paper's own configuration as this model states it (Settings defaults, 8 GB).
PAPER_CONFIG = {"gamma": Settings().gamma, "threshold": Settings().threshold,
                "resident_policy": Settings().resident_policy, "hb_gb": 8}


def add_sweep_arguments(p):
    add_common_arguments(p)
    p.set_defaults(models=",".join(PAPER_MODELS))
    p.add_argument("--gammas", default="1,2,3,4,5,6,8,10,12,16", help="draft lengths to try")
    p.add_argument("--thresholds", default="1,2,4,8,16,32",
                   help="mode-switch batch thresholds to try")
    p.add_argument("--policies", default="frequency,static,random",
                   help="Elastic-SD resident sets to try")
    p.add_argument("--hb-gb", default="8", help="HB sizes (GiB) to try; the paper's is 8")
    p.add_argument("--batches", default=",".join(map(str, HEADLINE_BATCHES)),
                   help="batch sizes scored (default the headline 1-16)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster at ADDRESS ('local': start a local instance)")
    p.add_argument("--workers", type=int, default=2, help="CPUs of a --ray local instance")


def _task(args):
    config, models, batches, settings, calibration = args
    return evaluate_config(config, models, batches, settings, calibration)


def sweep(configs, models, batches, settings=Settings(), calibration="paper", ray_address=None,
          workers=2, progress=None):
    """Evaluate every configuration; locally, or as Ray tasks when ``ray_address`` is given."""
    jobs = [(c, tuple(models), tuple(batches), settings, calibration) for c in configs]
    if not jobs:
        raise ValueError("the sweep has no configurations")
    results = []
    if ray_address is None:
        for i, job in enumerate(jobs):
            results.append(_task(job))
            if progress:
                progress(i + 1, len(jobs))
        return results
    import ray
    started = not ray.is_initialized()
    if started:
        if ray_address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=ray_address, log_to_driver=False)
    try:
        remote = ray.remote(_task)
        pending = [remote.remote(job) for job in jobs]
        order = {ref: i for i, ref in enumerate(pending)}
        out = [None] * len(jobs)
        done = 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                out[order[ref]] = ray.get(ref)
                done += 1
                if progress:
                    progress(done, len(jobs))
        return out
    finally:
        if started:
            ray.shutdown()


def per_batch_policy(results):
    """The best configuration for each batch size (over all models at that batch), scored as a
    whole: a lookup table policy."""
    batches = sorted({p["batch"] for p in results[0]["points"]})
    chosen, points = {}, []
    for b in batches:
        def score(r):
            ps = [p for p in r["points"] if p["batch"] == b]
            return np.mean([p["xpu"][0] / p["s"] for p in ps])
        best = max(results, key=score)
        chosen[b] = best["config"]
        points += [p for p in best["points"] if p["batch"] == b]
    return chosen, _score(points)


def per_point_policy(results):
    """The best configuration for each (model, batch): what a serving system that knows the model
    and the batch could pick (the mode switch and gamma set per model)."""
    keys = [(p["model"], p["batch"]) for p in results[0]["points"]]
    points = []
    for i, _ in enumerate(keys):
        points.append(max((r["points"][i] for r in results),
                          key=lambda p: p["xpu"][0] / p["s"]))
    return _score(points)


def _config_text(c):
    return (f"gamma {c['gamma']}, threshold {c['threshold']}, {c['resident_policy']} set, "
            f"{c['hb_gb']:g} GB")


def run_sweep(args, table, out=print, err=None):
    err = err or sys.stderr
    start = time.monotonic()
    settings, calibration = settings_from_args(args)
    models = _models(args.models)
    batches = _int_list(args.batches)
    gammas = _int_list(args.gammas)
    thresholds = _int_list(args.thresholds)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    for p in policies:
        if p not in ("frequency", "static", "random"):
            raise ValueError(f"unknown resident policy {p!r}; choose frequency, static, random")
    hb_gbs = [int(g) if g == int(g) else g for g in _float_list(args.hb_gb)]
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, not {args.workers}")
    configs = [{"gamma": g, "threshold": t, "resident_policy": p, "hb_gb": h}
               for h, g, t, p in itertools.product(hb_gbs, gammas, thresholds, policies)]
    if PAPER_CONFIG not in configs:
        configs.append(dict(PAPER_CONFIG))
    where = "locally" if args.ray is None else f"on Ray ({args.ray})"
    out(f"sweep: {len(configs)} configurations x {len(models)} models x {len(batches)} batch "
        f"sizes, {where}")
    results = sweep(configs, models, batches, settings, calibration, args.ray, args.workers,
                    progress=progress_bar("sweep", err))
    results.sort(key=lambda r: -r["avg_speedup_vs_xpu"])
    paper = next(r for r in results if r["config"] == PAPER_CONFIG)
    best = results[0]
    rows = [[i + 1, _config_text(r["config"]), f"{r['avg_speedup_vs_xpu']:.3f}",
             f"{r['avg_energy_vs_xpu']:.3f}", f"{r['avg_speedup_vs_best_prior']:.3f}",
             f"{r['avg_speedup_vs_xpu'] / paper['avg_speedup_vs_xpu']:.3f}"]
            for i, r in enumerate(results[:10])]
    out("\nBest configurations (score: average speed-up over the xPU on "
        f"{', '.join(models)} at batch {', '.join(map(str, batches))})")
    out(table(["rank", "configuration", "speed-up vs xPU", "energy vs xPU", "vs best prior",
               "gain over paper's"], rows))
    if settings.acceptance.mapping == "resident" and \
            max(gammas) > settings.acceptance.curve_gamma:
        out(f"(gamma above {settings.acceptance.curve_gamma} extends the measured acceptance "
            f"curves, measured up to gamma {settings.acceptance.curve_gamma}, at their fitted "
            "per-position rate)")
    chosen, per_batch = per_batch_policy(results)
    out(f"\npaper's own ({_config_text(PAPER_CONFIG)}): speed-up {paper['avg_speedup_vs_xpu']:.3f}"
        f", energy {paper['avg_energy_vs_xpu']:.3f}, vs best prior "
        f"{paper['avg_speedup_vs_best_prior']:.3f}")
    out("best per-batch policy: " + "; ".join(
        f"batch {b}: gamma {c['gamma']}, {'Elastic-SD' if b >= c['threshold'] else 'cache'}, "
        f"{c['resident_policy']}" for b, c in chosen.items())
        + f" -> speed-up {per_batch['avg_speedup_vs_xpu']:.3f} "
        f"({per_batch['avg_speedup_vs_xpu'] / paper['avg_speedup_vs_xpu']:.3f}x the paper's)")
    per_point = per_point_policy(results)
    out(f"best per-model-and-batch policy (gamma, mode and set chosen per point): speed-up "
        f"{per_point['avg_speedup_vs_xpu']:.3f} "
        f"({per_point['avg_speedup_vs_xpu'] / paper['avg_speedup_vs_xpu']:.3f}x the paper's), "
        f"energy {per_point['avg_energy_vs_xpu']:.3f}, vs best prior "
        f"{per_point['avg_speedup_vs_best_prior']:.3f}")
    return {"command": "sweep", "configurations": len(configs), "where": where,
            "best_config": best["config"],
            "best_avg_speedup_vs_xpu": round(best["avg_speedup_vs_xpu"], 4),
            "best_avg_energy_vs_xpu": round(best["avg_energy_vs_xpu"], 4),
            "paper_avg_speedup_vs_xpu": round(paper["avg_speedup_vs_xpu"], 4),
            "best_gain_over_paper": round(best["avg_speedup_vs_xpu"]
                                          / paper["avg_speedup_vs_xpu"], 4),
            "per_batch_policy": {str(b): c for b, c in chosen.items()},
            "per_batch_avg_speedup_vs_xpu": round(per_batch["avg_speedup_vs_xpu"], 4),
            "per_batch_gain_over_paper": round(per_batch["avg_speedup_vs_xpu"]
                                               / paper["avg_speedup_vs_xpu"], 4),
            "per_point_avg_speedup_vs_xpu": round(per_point["avg_speedup_vs_xpu"], 4),
            "per_point_gain_over_paper": round(per_point["avg_speedup_vs_xpu"]
                                               / paper["avg_speedup_vs_xpu"], 4),
            "runtime_s": round(time.monotonic() - start, 2)}
