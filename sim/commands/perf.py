"""``python build.py perf``: the performance and energy model, ELMoE-3D against every baseline.

Per model and batch size, ELMoE-3D's speed-up and energy efficiency over each baseline (and the
best prior accelerator), the headline averages against the paper's, the crossover of cached
decoding and Elastic-SD, where the bytes go, the best prior under other assumptions and the
headline's sensitivity and the gap to the paper step by step (:mod:`sw_model.perf.report`), on the
machine ``--machine`` / ``--set`` describe (default the paper's) at its own PE count and half of it
(``--pes``). Tables as CSV, the JSON and the plots go to ``build/perf/<run>/``.

Draft shapes: the headline of the chain (the policy's ``gamma``) and of the token trees (the
policy's ``tree`` when it names one, else every shape the tree study measured) is printed side by
side against the paper's; the tables and the headline JSON keys (``avg_speedup_vs_xpu``,
``avg_energy_vs_xpu``, ``avg_speedup_vs_best_prior``) are for ``--draft`` (default ``best``: the
higher average speed-up over the xPU), the chain's and the best tree's also under ``chain`` and
``tree``, every tree's under ``trees``. A tree whose verification does not fit one part of the
machine at a requested batch stops the command, naming ``decoding.tree``; points the default
batches reach beyond that are left out and named. ``--streams``
also compares the stream-driven path with the analytic one; ``--measure-locality`` measures the
trained model's routing locality instead. The assumptions are listed by ``--help`` and under the
tables. The last line is the headline JSON.
"""

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from sim.commands.options import policy_from_flags
from sim.commands.output import Result, Table, progress, progress_bar, show
from sw_model.decode.policy import PolicyError

NAME = "perf"
#: Reads the decoding policy (``--decoding``, ``--set decoding.*``).
DECODING = True
HELP = "performance and energy model tables"
#: The machine ``perf`` evaluates unless ``--machine`` names another.
MACHINE = "paper"


# -- arguments shared with sweep ------------------------------------------------------------------

def int_list(text):
    """Comma-separated positive integers (ValueError naming the text otherwise)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"expected positive integers, not {text!r}")
    return values


def float_list(text):
    """Comma-separated positive numbers (ValueError naming the text otherwise)."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, not {text!r}") from None
    if not values or min(values) <= 0:
        raise ValueError(f"expected positive numbers, not {text!r}")
    return values


def model_list(text):
    """The model names of a comma-separated list (ValueError on an unknown one)."""
    from sw_model.perf.zoo import get_model
    return [get_model(m.strip()).name for m in text.split(",") if m.strip()]


def machines_at(params, text):
    """``params`` at each PE count of the comma-separated ``text`` (HB channels and LPDDR clients
    follow); ``text`` None: the machine's own count, then half of it when that is a whole number
    (the paper's two configurations, 8 and 4 GiB of HB). ValueError naming a bad count."""
    if text is None:
        counts = [params.pes] + ([params.pes // 2] if params.pes % 2 == 0 else [])
    else:
        counts = int_list(text)
        if max(counts) > 64:
            raise ValueError(f"--pes: at most 64 PEs (the ISA's pe field), not {max(counts)}")
    return [params.with_pes(n) for n in dict.fromkeys(counts)]


def add_common_arguments(p):
    """Options shared by ``perf`` and ``sweep``; the assumptions go under the help."""
    from sw_model.perf import hardware as hwmod
    from sw_model.perf.locality import GENERATOR_REUSE, MEASURED_TOP_SHARE
    from sw_model.perf.methods import Settings
    from sw_model.perf.report import assumptions
    from sw_model.perf.workload import ACCEPTANCE
    from sw_model.perf.zoo import ZOO
    p.epilog = "Assumptions:\n" + assumptions()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--models", default=",".join(ZOO),
                   help="comma-separated model names (default: the whole zoo)")
    p.add_argument("--calibration", default="paper", choices=("paper", "rtl"),
                   help="efficiency profile: the paper's (default) or the RTL benches'")
    p.add_argument("--bench-json", action="append", default=[], metavar="PATH",
                   help="the results of 'build.py bench hb|mac' (its folder under build/bench/, "
                        "its result.json, or its saved output): its figures override the RTL "
                        "profile (implies --calibration rtl; repeatable)")
    p.add_argument("--acceptance-json", default=None, metavar="FILE",
                   help="per-position acceptance rates overriding the mapping: "
                        "{\"method\": rate} or {\"model/method\": rate}")
    p.add_argument("--acceptance-mapping", default=None, choices=("resident", "coverage"),
                   help="self-draft acceptance: the ablations' measured curves at the resident "
                        "share of the experts or the assumed coverage rule (default: the "
                        f"decoding policy's, {ACCEPTANCE.mapping})")
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
    localities = (f"'measured' (the trained model's on the held-out text, top-quarter share "
                  f"{MEASURED_TOP_SHARE} scaled to each model's experts, reuse "
                  f"{GENERATOR_REUSE}), 'assumed' (the earlier zipf=1.0,reuse=0.5), or "
                  "zipf=X,reuse=R / top_share=S,reuse=R")
    p.add_argument("--locality", default=None, metavar="SPEC",
                   help=f"routing locality of generated traces: {localities} (default: the "
                        "decoding policy's)")
    p.add_argument("--zipf", type=float, default=None,
                   help="a fixed Zipf popularity exponent for every model (overrides --locality's)")
    p.add_argument("--reuse", type=float, default=None,
                   help="the generator's temporal reuse probability (overrides --locality's)")


def _acceptance(path, mapping="resident"):
    from sw_model.perf.workload import ACCEPTANCE, AcceptanceModel
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
    from sw_model.perf import hardware as hwmod
    from sw_model.perf.calibrate import calibration_from_bench
    from sw_model.perf.methods import Settings
    from sw_model.perf.workload import Locality
    if args.reuse is not None and not 0 <= args.reuse <= 1:
        raise ValueError(f"--reuse must be in [0, 1], not {args.reuse}")
    if args.zipf is not None and not 0 <= args.zipf <= 16:
        raise ValueError(f"--zipf must be in [0, 16], not {args.zipf}")
    flags = dict(acceptance="acceptance_mapping", locality="locality")
    for field, flag in (("gamma", "gamma"), ("threshold", "threshold"),
                        ("resident_set", "policy")):
        if hasattr(args, flag):
            flags[field] = flag
    try:
        policy_from_flags(args, **flags)
    except PolicyError as exc:
        raise ValueError(str(exc)) from None
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
        from sw_model.model.routing_traces import load_routing_trace
        kw["trace"] = load_routing_trace(args.trace)
    priors = replace(hwmod.PRIORS, hb_xpu_cache=args.hb_xpu_cache)
    if args.pim_bandwidth is not None:
        ratios = float_list(args.pim_bandwidth)
        if len(ratios) != 3:
            raise ValueError(f"--pim-bandwidth takes three ratios (PIM,LOGICPIM,NMP), not "
                             f"{args.pim_bandwidth!r}")
        priors = priors.with_bandwidth(*ratios)
    settings = Settings(locality=locality,
                        acceptance=_acceptance(args.acceptance_json, args.acceptance_mapping),
                        cache_policy=args.cache_policy, priors=priors, **kw)
    return settings, calibration


def draft_trees(args, settings):
    """``(shapes, chosen)``: the token-tree shapes ``perf`` and ``sweep`` evaluate beside the
    chain: the decoding policy's ``tree`` when it names one (``chosen`` True; it must have been
    measured, whichever acceptance mapping: its union growth is), else every shape the tree study
    measured. ValueError naming ``decoding.tree``."""
    from sw_model.decode.tree import parse_tree
    from sw_model.perf.workload import measured_tree_specs
    shape = parse_tree(args.decoding_policy.tree)
    if shape is not None:
        settings.acceptance.tree_entry(shape)      # its acceptance and union are measured
        return [shape], True
    return [parse_tree(spec) for spec in measured_tree_specs()], False


def fitting_trees(shapes, chosen, machine, models, batches):
    """``(shapes that fit, text naming the others)``: a tree whose verification does not fit one
    part of ``machine`` at ``batches`` (:func:`sw_model.perf.methods.check_verify_fits`) is an
    error when the policy chose it, else left out."""
    from sw_model.perf.methods import check_verify_fits
    keep, left = [], []
    for shape in shapes:
        try:
            check_verify_fits(shape, machine, models, batches)
        except ValueError:
            if chosen:
                raise
            left.append(shape.spec)
            continue
        keep.append(shape)
    return keep, (f"left out (their verification does not fit one part of the machine): "
                  f"{', '.join(left)}" if left else None)


# -- perf -----------------------------------------------------------------------------------------

def add_arguments(p):
    from sw_model.perf.methods import Settings
    from sw_model.perf.report import ALL_BATCHES
    add_common_arguments(p)
    p.add_argument("--batches", default=",".join(map(str, ALL_BATCHES)),
                   help="comma-separated batch sizes (default 1-256 in powers of two)")
    p.add_argument("--pes", default=None, metavar="LIST",
                   help="PE counts to evaluate the machine at, HB channels and LPDDR clients "
                        "following (default: the machine's own and half of it; the paper "
                        "machine: 32 and 16 PEs, its 8 and 4 GiB configurations)")
    p.add_argument("--gamma", type=int, default=None,
                   help="draft tokens per step (default: the decoding policy's, 4)")
    p.add_argument("--threshold", type=int, default=None,
                   help="batch at and above which ELMoE-3D runs Elastic-SD (default: the "
                        "decoding policy's, 4)")
    p.add_argument("--policy", default=None, choices=("frequency", "static", "random"),
                   help="Elastic-SD resident set (default: the decoding policy's, frequency)")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="a Hugging Face checkpoint directory as the model (its config.json), "
                        "instead of --models; its routing from --trace if given")
    p.add_argument("--draft", default="best", choices=("best", "chain", "tree"),
                   help="Elastic-SD's draft shape in the tables: best (default: whichever of the "
                        "chain and the tree gives the higher average speed-up over the xPU), "
                        "chain (gamma drafts) or tree (the decoding policy's tree, or the best "
                        "measured one when the policy says chain); both headlines are printed "
                        "either way")
    p.add_argument("--no-plots", action="store_true", help="skip the plots under build/perf")
    p.add_argument("--measure-locality", action="store_true",
                   help="measure the routing locality on the trained model over the held-out "
                        "text (minutes) and print it instead of the tables: the source of the "
                        "'measured' locality")
    p.add_argument("--streams", action="store_true",
                   help="also run the stream-driven path on the scheduler's streams and compare "
                        "it with the analytic path (about two minutes more)")


def _choose_draft(args, settings, trees, calibration, machine):
    """The draft shape ``machine``'s tables run (``--draft``; best: the higher average speed-up
    over the xPU on the headline set), with the headlines it was chosen from: ``{"settings",
    "heads", "chain", "tree", "best_tree"}``."""
    from sw_model.perf import report
    from sw_model.perf.hardware import machine_label
    from sw_model.perf.methods import draft_label
    # the headline set is the paper models' on generated routing, whatever --trace gives
    heads = report.draft_headlines(replace(settings, trace=None), trees, calibration, machine,
                                   progress=progress_bar(f"draft shapes, "
                                                         f"{machine_label(machine)}"))
    chain = heads[draft_label(settings)]
    best_tree = max(trees, key=lambda t: heads[t.spec]["avg_speedup_vs_xpu"]) if trees else None
    tree = heads[best_tree.spec] if best_tree is not None else None
    if args.draft == "tree" and best_tree is None:
        raise ValueError("--draft tree: no tree shape fits the machine")
    use_tree = best_tree is not None and (
        args.draft == "tree" or (args.draft == "best"
                                 and tree["avg_speedup_vs_xpu"] > chain["avg_speedup_vs_xpu"]))
    return {"settings": replace(settings, tree=best_tree if use_tree else None), "heads": heads,
            "chain": chain, "tree": tree, "best_tree": best_tree}


def _measure_locality(start):
    """The routing locality of the trained model over the held-out text, the fitted generator and
    how well it reproduces the recording (the source of :mod:`sw_model.perf.locality`'s
    constants)."""
    from sw_model.perf import locality as loc
    progress(f"routing locality: the built-in trained model teacher-forced over the held-out "
             f"code and prose in {loc.WINDOW}-byte windows (minutes)")
    routes = loc.record_heldout_routing()
    tokens = ", ".join(f"{d} {r.shape[0] * r.shape[1]} tokens" for d, r in routes.items())
    sys.stderr.write(f"recorded {tokens} in {time.monotonic() - start:.0f} s\n")
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
    both = m["both"]
    rec, gen = m["recorded_window_stats"], m["generated_window_stats"]
    tables = [
        Table(None, ["text", "tokens", "repeat t->t+1 per layer", "repeat", "top-quarter share "
                     "per layer", "top share", "Zipf (top share) per layer", "Zipf", "Zipf "
                     "(least squares) per layer"], rows,
              f"random routing repeats {m['random_repeat']:.3f}; a uniform popularity puts "
              f"{m['uniform_top_share']:.2f} on the top quarter\n"
              f"generator fitted on both texts: Zipf {both['zipf']:.3f} (32 experts), reuse "
              f"{both['generator_reuse']:.3f} (gives repeat {both['repeat']:.3f})"),
        Table(None, ["batch-1 figure (per layer)", "recorded", "fitted generator"],
              [[k, f"{rec[k]:.3f}", f"{gen[k]:.3f}"] for k in rec],
              f"shipped constants (sw_model/perf/locality.py): top share "
              f"{loc.MEASURED_TOP_SHARE}, repeat {loc.MEASURED_REPEAT}, Zipf at 32 experts "
              f"{loc.MEASURED_ZIPF_32}, generator reuse {loc.GENERATOR_REUSE}")]
    figures = {
        "command": "perf --measure-locality", "tokens": m["tokens"],
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
    return Result(tables, figures)


def _perf(args):
    from sw_model.perf import report
    from sw_model.perf.suite import BASELINES
    from sw_model.perf.hardware import machine_label
    from sw_model.perf.zoo import get_model
    start = time.monotonic()
    settings, calibration = settings_from_args(args)
    if args.measure_locality:
        return _measure_locality(start)
    from sw_model.perf.methods import check_verify_fits, draft_label
    from sw_model.perf.suite import HEADLINE_BATCHES
    from sw_model.perf.zoo import PAPER_MODELS
    models = model_list(args.checkpoint or args.models)
    batches = int_list(args.batches)
    machines = machines_at(args.params, args.pes)
    trees, chosen = draft_trees(args, settings)
    if chosen:          # the policy's tree must fit every point asked for
        for machine in machines:
            check_verify_fits(trees[0], machine, models, batches)
    left = []
    for machine in machines:        # every tree must fit each machine's headline set
        trees, text = fitting_trees(trees, chosen, machine, PAPER_MODELS, HEADLINE_BATCHES)
        left += [text] if text else []
    left_out = "; ".join(left) or None
    progress(f"performance model: {len(models)} models x {len(batches)} batch sizes x "
             f"{len(machines)} ELMoE-3D machines "
             f"({'; '.join(machine_label(m) for m in machines)}), {len(BASELINES)} baselines "
             "each; "
             "calibration "
             f"{args.calibration if not args.bench_json else 'from ' + ', '.join(args.bench_json)}")
    progress(f"draft shapes: the chain (gamma {settings.gamma}) and "
             + (f"the policy's tree {trees[0].spec}" if chosen else
                f"{len(trees)} measured trees") + " on the headline set of each machine")
    points, summaries, cross, choices = [], [], None, []
    for machine in machines:
        choice = _choose_draft(args, settings, trees, calibration, machine)
        choices.append(choice)
        s = choice["settings"]
        skip = report.unfit_points(s.tree, [machine], models, batches)
        progress(f"ELMoE-3D {machine_label(machine)} runs {draft_label(s)} in the tables"
                 + (" (the higher average speed-up over the xPU)" if args.draft == "best"
                    else "")
                 + (f"; points whose verification does not fit one part left out: "
                    f"{report.describe_points(skip)}" if skip else ""))
        p, sm, c = report.evaluate(models, batches, [machine], s, calibration,
                                   progress=progress_bar("perf"), skip=skip,
                                   with_crossover=cross is None)
        points += p
        summaries += sm
        cross = c if cross is None else cross
        if sm:
            sm[0]["draft"] = draft_label(s)
        choice["skip"] = skip
    main_choice = choices[0]
    main_settings, heads = main_choice["settings"], main_choice["heads"]
    chain_head, tree_head = main_choice["chain"], main_choice["tree"]
    best_tree = main_choice["best_tree"]
    # the main tables at once: the rest takes a while longer
    for table in report.perf_tables(points, summaries, cross):
        show(Table(*table))
    show(Table(*report.draft_table(heads, draft_label(main_settings), machines[0],
                                   left_out)))
    for machine, choice in zip(machines[1:], choices[1:]):
        show(f"{machine_label(machine)}: {draft_label(choice['settings'])} (speed-up vs xPU: "
             f"chain {choice['chain']['avg_speedup_vs_xpu']:.2f}"
             + (f", best tree {choice['best_tree'].spec} "
                f"{choice['tree']['avg_speedup_vs_xpu']:.2f})" if choice["best_tree"] else ")"))
    show(Table(*report.side_by_side(chain_head, tree_head, draft_label(settings),
                                    best_tree.spec if best_tree is not None else None,
                                    machines[0])))
    show("\n" + report.anchor_text())
    tables = []
    plots = [] if args.no_plots else [
        Path(args.out_dir) / p.name
        for p in report.write_plots(points, args.work_dir, args.calibration
                                    if not args.bench_json else "from bench figures")]
    if plots:
        tables.append(f"\nplots: {', '.join(str(p) for p in plots)}")
    main_machine = machines[0]
    here = machine_label(main_machine)
    settings = main_settings
    figures = {"command": "perf", "calibration": args.calibration}
    if summaries and settings.trace is None:
        tables += [
            Table(f"Where the bytes go ({here}; per kept token; the xPU reads everything from "
                  "LPDDR):",
                  ["model", "batch", "mode", "xPU LPDDR MB", "ELMoE LPDDR MB", "ELMoE HB MB",
                   "kept/seq/step", "speed-up", "bound per phase"],
                  report.gap_rows(settings, calibration, main_machine)),
            Table(f"Cached decoding vs Elastic-SD at batch 1 ({here}; per kept token; LPDDR is "
                  "the far tier, HB the near one):",
                  ["model", "cache ms", "cache bound", "cache hit rate", "cache LPDDR MB",
                   "SD ms", "SD draft ms", "SD verify ms", "SD verify LPDDR MB", "kept/step",
                   "winner"], report.batch1_rows(settings, calibration, main_machine)),
            Table(f"Best prior under other assumptions ({here}, paper models, batch 1-16; "
                  "ELMoE-3D unchanged):",
                  ["prior assumptions", "avg speed-up vs best prior", "avg energy vs best prior",
                   "fastest prior (points)"],
                  report.prior_rows(settings, calibration, main_machine)),
            Table(f"Sensitivity of the headline ({here}, paper models, batch 1-16):",
                  ["variant", "avg speed-up vs xPU", "max", "avg energy vs xPU",
                   "avg vs best prior"],
                  report.sensitivity_rows(settings, calibration, main_machine))]
        gap, steps = report.gap_ladder(settings, calibration, main_machine)
        tables.append(Table(
            f"Gap to the paper ({here}, {draft_label(settings)}, paper models, batch 1-16): "
            "each step adds an assumption to those above it",
            ["step", "avg speed-up vs xPU", "avg energy vs xPU", "avg speed-up vs best prior",
             "share of the bandwidth bound"], gap,
            report.gap_note(steps) + "\n(what no step changes: verification streams every "
            "touched expert's lower nibble from LPDDR, and the acceptance is measured on this "
            "project's small byte-level model, not on the paper's models)"))
        figures["gap_steps"] = [{"step": label, **{k: round(v, 4) for k, v in h.items()}}
                                for label, h in steps]
    if args.streams:
        # the scheduler's step records are chains
        rows, worst = report.stream_rows(settings=replace(settings, tree=None))
        tables.append(Table(
            "Stream-driven vs analytic path on the same step records (scheduler streams; time "
            "and energy per phase):",
            ["model", "PE", "mode", "batch", "HB experts/layer", "phase", "commands",
             "stream ms", "analytic ms", "time diff", "energy diff"], rows))
        figures["stream_max_relative_difference"] = worst
        rows, worst = report.fast_rows()
        tables.append(Table(
            "Fast path (statistics of the routing trace) vs the mean of the scheduled steps of "
            "the same trace:",
            ["model", "routing", "mode", "batch", "steps", "stream ms/step", "fast ms/step",
             "time diff", "energy diff"], rows))
        figures["fast_path_max_relative_difference"] = worst
    tables.append("\nAssumptions:\n" + report.assumptions())
    main = summaries[0] if summaries else None
    if main:
        figures.update({k: round(v, 4) if isinstance(v, float) else v for k, v in main.items()})
    rounded = lambda head: {k: round(v, 4) if isinstance(v, float) else v
                            for k, v in head.items() if not isinstance(v, dict) and k != "tree"}
    figures["draft"] = draft_label(main_settings)
    figures["chain"] = dict(rounded(chain_head), shape=draft_label(replace(main_settings,
                                                                       tree=None)))
    figures["tree"] = (dict(rounded(tree_head), shape=best_tree.spec)
                       if best_tree is not None else None)
    figures["trees"] = {t.spec: rounded(heads[t.spec]) for t in trees}
    if left_out:
        figures["trees_left_out"] = left_out
    skipped = [t for choice in choices for t in choice["skip"]]
    if skipped:
        figures["points_left_out"] = [[m, b, machine_label(g)] for m, b, g in skipped]
    figures["by_config"] = {f"{s['hb_gb']:g}GB": dict({k: round(v, 4) for k, v in s.items()
                                                        if isinstance(v, float)},
                                                       draft=s["draft"]) for s in summaries}
    figures["machine"] = args.run_name
    figures["machines"] = [machine_label(m) for m in machines]
    figures["crossover"] = cross
    figures["decoding"] = args.decoding_policy.to_dict()
    figures["settings"] = {"gamma": settings.gamma, "threshold": settings.threshold,
                           "tree": settings.tree.spec if settings.tree is not None else "chain",
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
    return Result(tables, figures)


def run(args):
    # A bad value (a list, a locality, a model name, a trace that does not fit) is a ValueError
    # naming it, whether the arguments or the model find it.
    try:
        return _perf(args)
    except ValueError as exc:
        raise SystemExit(f"perf: {exc}") from None
