"""``python build.py sweep``: explore ELMoE-3D's policy parameters on the performance model.

Every combination of draft length (``--gammas``), mode-switch batch threshold (``--thresholds``),
Elastic-SD resident set (``--policies``) and PE count of the machine (``--pes``; HB channels follow)
is scored on the paper models
at the headline batch sizes by its average speed-up over the LPDDR-only xPU
(:func:`sw_model.perf.sweep.sweep`), locally or on a Ray cluster (``--ray ADDRESS``; ``local``
starts one with ``--workers`` CPUs). Prints the ten best configurations, the paper's own, and the
best policies chosen per batch and per model and batch, and plots the speed-up against the draft
length per resident set; tables (CSV), JSON and the plot go to ``build/sweep/<run>/``.
"""

import time

from sim.commands.output import Result, Table, progress, progress_bar
from sim.commands.perf import add_common_arguments, int_list, machines_at, model_list, \
    settings_from_args

NAME = "sweep"
#: Reads the decoding policy (``--decoding``, ``--set decoding.*``): the configuration the
#: sweep compares against, and its locality and acceptance mapping.
DECODING = True
HELP = "parameter sweep of the perf model"
#: The machine ``sweep`` explores unless ``--machine`` names another.
MACHINE = "paper"


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
    p.add_argument("--pes", default=None, metavar="LIST",
                   help="PE counts of the machine to try, HB channels and LPDDR clients "
                        "following (default: the machine's own)")
    p.add_argument("--batches", default=",".join(map(str, HEADLINE_BATCHES)),
                   help="batch sizes scored (default the headline 1-16)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster at ADDRESS ('local': start a local instance)")
    p.add_argument("--workers", type=int, default=2, help="CPUs of a --ray local instance")


def _config_text(c):
    from sw_model.perf.hardware import machine_label
    return (f"gamma {c['gamma']}, threshold {c['threshold']}, {c['resident_policy']} set, "
            f"{machine_label(c['machine'])}")


def _plain(c):
    from sw_model.perf.hardware import machine_label
    return dict(c, machine=machine_label(c["machine"]))


def _sweep(args):
    from sw_model.perf.sweep import configurations, paper_config, per_batch_policy, \
        per_point_policy, sweep, write_plot
    start = time.monotonic()
    settings, calibration = settings_from_args(args)
    models = model_list(args.models)
    batches = int_list(args.batches)
    gammas = int_list(args.gammas)
    thresholds = int_list(args.thresholds)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    machines = machines_at(args.params, args.pes or str(args.params.pes))
    configs = configurations(gammas, thresholds, policies, machines)
    reference = paper_config(machines[0])
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, not {args.workers}")
    where = "locally" if args.ray is None else f"on Ray ({args.ray})"
    progress(f"sweep: {len(configs)} configurations x {len(models)} models x {len(batches)} "
             f"batch sizes, {where}")
    results = sweep(configs, models, batches, settings, calibration, args.ray, args.workers,
                    progress=progress_bar("sweep"))
    results.sort(key=lambda r: -r["avg_speedup_vs_xpu"])
    paper = next(r for r in results if r["config"] == reference)
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
        f"\npaper's own ({_config_text(reference)}): speed-up "
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
               "best_config": _plain(best["config"]),
               "best_avg_speedup_vs_xpu": round(best["avg_speedup_vs_xpu"], 4),
               "best_avg_energy_vs_xpu": round(best["avg_energy_vs_xpu"], 4),
               "paper_avg_speedup_vs_xpu": round(paper["avg_speedup_vs_xpu"], 4),
               "best_gain_over_paper": round(gain(best), 4),
               "per_batch_policy": {str(b): _plain(c) for b, c in chosen.items()},
               "per_batch_avg_speedup_vs_xpu": round(per_batch["avg_speedup_vs_xpu"], 4),
               "per_batch_gain_over_paper": round(gain(per_batch), 4),
               "per_point_avg_speedup_vs_xpu": round(per_point["avg_speedup_vs_xpu"], 4),
               "per_point_gain_over_paper": round(gain(per_point), 4),
               "runtime_s": round(time.monotonic() - start, 2)}
    table = Table("Best configurations (score: average speed-up over the xPU on "
                  f"{', '.join(models)} at batch {', '.join(map(str, batches))})",
                  ["rank", "configuration", "speed-up vs xPU", "energy vs xPU", "vs best prior",
                   "gain over paper's"], rows, note)
    label = args.calibration if not args.bench_json else "from bench figures"
    plot = write_plot(results, args.work_dir,
                      f"sweep on {args.run_name} ({_config_text(reference).split(', ')[-1]}), "
                      f"calibration {label}; each set at its best threshold")
    figures["plots"] = [str(args.out_dir / plot.name)]
    figures["machine"] = args.run_name
    rows_all = [[_config_text(r["config"]), f"{r['avg_speedup_vs_xpu']:.4f}",
                 f"{r['avg_energy_vs_xpu']:.4f}", f"{r['avg_speedup_vs_best_prior']:.4f}"]
                for r in results]
    every = Table("Every configuration (best first):", ["configuration", "speed-up vs xPU",
                                                       "energy vs xPU", "vs best prior"],
                  rows_all)
    return Result([table, text + f"\nplot: {args.out_dir / plot.name}"], figures,
                  saved=[every])


def run(args):
    try:
        return _sweep(args)
    except ValueError as exc:
        raise SystemExit(f"sweep: {exc}") from None
