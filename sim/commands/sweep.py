"""``python build.py sweep``: explore ELMoE-3D's policy parameters on the performance model.

Every combination of draft length (``--gammas``), mode-switch batch threshold (``--thresholds``),
Elastic-SD resident set (``--policies``) and HB size (``--hb-gb``) is scored on the paper models
at the headline batch sizes by its average speed-up over the LPDDR-only xPU
(:func:`sw_model.perf.sweep.sweep`), locally or on a Ray cluster (``--ray ADDRESS``; ``local``
starts one with ``--workers`` CPUs). Prints the ten best configurations, the paper's own, and the
best policies chosen per batch and per model and batch; the last line is the JSON figures.
"""

import time

from sim.commands.output import Result, Table, progress, progress_bar
from sim.commands.perf import add_common_arguments, hb_sizes, int_list, model_list, \
    settings_from_args

NAME = "sweep"
HELP = "parameter sweep of the perf model"


def add_arguments(p):
    from sw_model.perf.suite import HEADLINE_BATCHES
    from sw_model.perf.zoo import PAPER_MODELS
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


def _config_text(c):
    return (f"gamma {c['gamma']}, threshold {c['threshold']}, {c['resident_policy']} set, "
            f"{c['hb_gb']:g} GB")


def _sweep(args):
    from sw_model.perf.sweep import PAPER_CONFIG, configurations, per_batch_policy, \
        per_point_policy, sweep
    start = time.monotonic()
    settings, calibration = settings_from_args(args)
    models = model_list(args.models)
    batches = int_list(args.batches)
    gammas = int_list(args.gammas)
    thresholds = int_list(args.thresholds)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    configs = configurations(gammas, thresholds, policies, hb_sizes(args.hb_gb))
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, not {args.workers}")
    where = "locally" if args.ray is None else f"on Ray ({args.ray})"
    progress(f"sweep: {len(configs)} configurations x {len(models)} models x {len(batches)} "
             f"batch sizes, {where}")
    results = sweep(configs, models, batches, settings, calibration, args.ray, args.workers,
                    progress=progress_bar("sweep"))
    results.sort(key=lambda r: -r["avg_speedup_vs_xpu"])
    paper = next(r for r in results if r["config"] == PAPER_CONFIG)
    best = results[0]
    gain = lambda r: r["avg_speedup_vs_xpu"] / paper["avg_speedup_vs_xpu"]
    rows = [[i + 1, _config_text(r["config"]), f"{r['avg_speedup_vs_xpu']:.3f}",
             f"{r['avg_energy_vs_xpu']:.3f}", f"{r['avg_speedup_vs_best_prior']:.3f}",
             f"{gain(r):.3f}"] for i, r in enumerate(results[:10])]
    note = None
    if settings.acceptance.mapping == "resident" and \
            max(gammas) > settings.acceptance.curve_gamma:
        note = (f"(gamma above {settings.acceptance.curve_gamma} extends the measured acceptance "
                f"curves, measured up to gamma {settings.acceptance.curve_gamma}, at their "
                "fitted per-position rate)")
    chosen, per_batch = per_batch_policy(results)
    per_point = per_point_policy(results)
    text = (
        f"\npaper's own ({_config_text(PAPER_CONFIG)}): speed-up "
        f"{paper['avg_speedup_vs_xpu']:.3f}, energy {paper['avg_energy_vs_xpu']:.3f}, vs best "
        f"prior {paper['avg_speedup_vs_best_prior']:.3f}\n"
        "best per-batch policy: " + "; ".join(
            f"batch {b}: gamma {c['gamma']}, {'Elastic-SD' if b >= c['threshold'] else 'cache'}, "
            f"{c['resident_policy']}" for b, c in chosen.items())
        + f" -> speed-up {per_batch['avg_speedup_vs_xpu']:.3f} ({gain(per_batch):.3f}x the "
        "paper's)\n"
        f"best per-model-and-batch policy (gamma, mode and set chosen per point): speed-up "
        f"{per_point['avg_speedup_vs_xpu']:.3f} ({gain(per_point):.3f}x the paper's), energy "
        f"{per_point['avg_energy_vs_xpu']:.3f}, vs best prior "
        f"{per_point['avg_speedup_vs_best_prior']:.3f}")
    figures = {"command": "sweep", "configurations": len(configs), "where": where,
               "best_config": best["config"],
               "best_avg_speedup_vs_xpu": round(best["avg_speedup_vs_xpu"], 4),
               "best_avg_energy_vs_xpu": round(best["avg_energy_vs_xpu"], 4),
               "paper_avg_speedup_vs_xpu": round(paper["avg_speedup_vs_xpu"], 4),
               "best_gain_over_paper": round(gain(best), 4),
               "per_batch_policy": {str(b): c for b, c in chosen.items()},
               "per_batch_avg_speedup_vs_xpu": round(per_batch["avg_speedup_vs_xpu"], 4),
               "per_batch_gain_over_paper": round(gain(per_batch), 4),
               "per_point_avg_speedup_vs_xpu": round(per_point["avg_speedup_vs_xpu"], 4),
               "per_point_gain_over_paper": round(gain(per_point), 4),
               "runtime_s": round(time.monotonic() - start, 2)}
    table = Table("Best configurations (score: average speed-up over the xPU on "
                  f"{', '.join(models)} at batch {', '.join(map(str, batches))})",
                  ["rank", "configuration", "speed-up vs xPU", "energy vs xPU", "vs best prior",
                   "gain over paper's"], rows, note)
    return Result([table, text], figures)


def run(args):
    try:
        return _sweep(args)
    except ValueError as exc:
        raise SystemExit(f"sweep: {exc}") from None
