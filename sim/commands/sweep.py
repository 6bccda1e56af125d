"""``python build.py sweep``: explore ELMoE-3D's policy parameters on the performance model.

Every combination of draft shape (a chain of ``--gammas`` drafts, or a token tree of ``--trees``:
by default every shape the tree study measured at the verify budgets ``--budgets``, or the
decoding policy's ``tree`` when it names one), mode-switch batch threshold (``--thresholds``),
Elastic-SD resident set (``--policies``; trees with the frequency set) and PE count of the machine
(``--pes``; HB channels follow) is scored on the paper models
at the headline batch sizes by its average speed-up over the LPDDR-only xPU
(:func:`sw_model.perf.sweep.sweep`), locally or on a Ray cluster (``--ray ADDRESS``; ``local``
starts one with ``--workers`` CPUs). Prints the ten best configurations, the paper's own, and the
best policies chosen per batch and per model and batch, the best chain and the best tree, and plots
the speed-up against the draft tokens per sequence per resident set and tree kind; tables (CSV),
JSON and the plot go to ``build/sweep/<run>/``.
"""

import time

from sim.commands.output import Result, Table, progress, progress_bar
from sim.commands.perf import add_common_arguments, draft_trees, fitting_trees, int_list, \
    machines_at, model_list, settings_from_args

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
                   help="Elastic-SD resident sets to try (the chain's; trees run with the "
                        "frequency set, the one their acceptance was measured with)")
    p.add_argument("--trees", default="measured", metavar="SPECS",
                   help="token-tree shapes to try, ';'-separated (static:4,1;dynamic:nodes=8), "
                        "'measured' (default: every shape the tree study measured at --budgets; "
                        "the decoding policy's tree instead when it names one) or 'none'")
    p.add_argument("--budgets", default=None, metavar="LIST",
                   help="verify budgets (draft nodes per sequence) whose measured shapes "
                        "--trees measured tries (default: every measured budget, 8,16,32)")
    p.add_argument("--pes", default=None, metavar="LIST",
                   help="PE counts of the machine to try, HB channels and LPDDR clients "
                        "following (default: the machine's own)")
    p.add_argument("--batches", default=",".join(map(str, HEADLINE_BATCHES)),
                   help="batch sizes scored (default the headline 1-16)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster at ADDRESS ('local': start a local instance)")
    p.add_argument("--workers", type=int, default=2, help="CPUs of a --ray local instance")


def _draft_text(c):
    return f"tree {c['tree']}" if c.get("tree") else f"gamma {c['gamma']}"


def _config_text(c):
    from sw_model.perf.hardware import machine_label
    return (f"{_draft_text(c)}, threshold {c['threshold']}, {c['resident_policy']} set, "
            f"{machine_label(c['machine'])}")


def _plain(c):
    from sw_model.perf.hardware import machine_label
    return dict(c, machine=machine_label(c["machine"]))


def _trees(args, settings):
    """The tree specs the sweep tries (``--trees``, ``--budgets``, the decoding policy) and the
    text naming those that do not fit."""
    from sw_model.decode.tree import parse_tree
    from sw_model.perf.measured import TREE_BUDGET_SHAPES
    shapes, chosen = draft_trees(args, settings)
    text = args.trees.strip()
    if text == "none":
        if args.budgets is not None:
            raise ValueError("--budgets selects measured shapes: not with --trees none")
        return [], None
    if text != "measured":
        if args.budgets is not None:
            raise ValueError("--budgets selects measured shapes: not with a --trees list")
        shapes = []
        for spec in (x for x in text.split(";") if x.strip()):
            try:
                shape = parse_tree(spec)
            except ValueError as exc:
                raise ValueError(f"--trees {spec!r}: {exc}") from None
            if shape is None:
                raise ValueError("--trees lists tree shapes; the chain is always swept "
                                 "(--gammas)")
            settings.acceptance.tree_entry(shape)  # its acceptance and union are measured
            shapes.append(shape)
        chosen = True
    elif not chosen:
        budgets = (int_list(args.budgets) if args.budgets is not None
                   else list(TREE_BUDGET_SHAPES))
        for b in budgets:
            if b not in TREE_BUDGET_SHAPES:
                raise ValueError(f"--budgets: no shapes were measured at budget {b}; measured: "
                                 f"{', '.join(map(str, TREE_BUDGET_SHAPES))}")
        wanted = {parse_tree(spec).spec for b in budgets for spec in TREE_BUDGET_SHAPES[b]
                  if not spec.startswith("chain:")}
        shapes = [shape for shape in shapes if shape.spec in wanted]
    models, batches = model_list(args.models), int_list(args.batches)
    keep, left = fitting_trees(shapes, chosen, args.params, models, batches)
    return [shape.spec for shape in keep], left


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
    trees, left_out = _trees(args, settings)
    configs = configurations(gammas, thresholds, policies, machines, trees)
    reference = paper_config(machines[0])
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, not {args.workers}")
    where = "locally" if args.ray is None else f"on Ray ({args.ray})"
    progress(f"sweep: {len(configs)} configurations ({len(trees)} tree shapes) x {len(models)} "
             f"models x {len(batches)} batch sizes, {where}"
             + (f"; trees {left_out}" if left_out else ""))
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
    chains = [r for r in results if r["config"]["tree"] is None]
    tree_results = [r for r in results if r["config"]["tree"] is not None]
    best_tree = tree_results[0] if tree_results else None
    text = (
        f"\npaper's own ({_config_text(reference)}): speed-up "
        f"{paper['avg_speedup_vs_xpu']:.3f}, energy {paper['avg_energy_vs_xpu']:.3f}, vs best "
        f"prior {paper['avg_speedup_vs_best_prior']:.3f}\n"
        "best per-batch policy: " + "; ".join(
            f"batch {b}: {_draft_text(c)}, {'Elastic-SD' if b >= c['threshold'] else 'cache'}, "
            f"{c['resident_policy']}" for b, c in chosen.items())
        + f" -> speed-up {per_batch['avg_speedup_vs_xpu']:.3f} ({gain(per_batch):.3f}x the "
        "paper's)\n"
        f"best per-model-and-batch policy (gamma, mode and set chosen per point): speed-up "
        f"{per_point['avg_speedup_vs_xpu']:.3f} ({gain(per_point):.3f}x the paper's), energy "
        f"{per_point['avg_energy_vs_xpu']:.3f}, vs best prior "
        f"{per_point['avg_speedup_vs_best_prior']:.3f}\n"
        f"best chain: {_config_text(chains[0]['config'])}: speed-up "
        f"{chains[0]['avg_speedup_vs_xpu']:.3f}"
        + (f"; best tree: {_config_text(best_tree['config'])}: speed-up "
           f"{best_tree['avg_speedup_vs_xpu']:.3f}" if best_tree else "; no tree swept"))
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
               "trees": trees,
               "best_chain_config": _plain(chains[0]["config"]),
               "best_chain_avg_speedup_vs_xpu": round(chains[0]["avg_speedup_vs_xpu"], 4),
               "best_tree_config": _plain(best_tree["config"]) if best_tree else None,
               "best_tree_avg_speedup_vs_xpu": (round(best_tree["avg_speedup_vs_xpu"], 4)
                                                if best_tree else None),
               "by_tree": _by_tree(tree_results),
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


def _by_tree(results):
    """``{spec: best average speed-up over the xPU}`` (over the thresholds and machines)."""
    out = {}
    for r in results:
        spec = r["config"]["tree"]
        out[spec] = max(out.get(spec, 0.0), round(r["avg_speedup_vs_xpu"], 4))
    return out


def run(args):
    try:
        return _sweep(args)
    except ValueError as exc:
        raise SystemExit(f"sweep: {exc}") from None
