"""``python build.py ablate``: the papers' ablations measured on the shipped trained models.

Greedy Elastic-SD runs on held-out prompts with the plain per-layer expert cache
(:mod:`sw_model.train.ablate`): the draft bit policy (truncation, LSB augmentation, rounding at 4,
3 and 2 bits, every expert resident), the resident-set size and selection rule, the draft policy
(resident set, SpecMoE substitution, elastic k'), each with gamma*, the best draft length at
``--draft-cost``; then the held-out loss of both trained variants against the inference k'. Each
table is printed as soon as it is measured; plots go to the results folder (``--out``); the last line is the JSON.

``--study trees`` measures chains against token trees instead
(:func:`sw_model.train.ablate.tree_study`): at verify budgets of 8, 16 and 32 draft nodes per sequence (``--budgets``) a chain of that many
drafts, static and dynamic tree shapes, each with 1/8, 1/4, 1/2 and all of a layer's experts
resident (``--shares``): tokens kept per verification and per verified token, the experts the
verification and the draft touch, and the best static and dynamic shape per budget (the source of
the tree tables in :mod:`sw_model.perf.measured`).
"""

import time
from pathlib import Path

from sw_model.perf.measured import ABLATE_GAMMA
from sim.commands.options import rename_run
from sim.commands.output import Result, Table, progress, show

NAME = "ablate"
#: Reads the decoding policy (``--decoding``, ``--set decoding.*``): its draft length must be a
#: point of the measured curves; the runs are greedy and compare every draft policy and set.
DECODING = True
HELP = ("the papers' ablations (draft bits, resident sets, draft policies, loss vs k') on the "
        "shipped trained models; --study trees: chains against token trees")

SD_HEAD = ["acceptance", "mean accepted length", "gamma*", "E(gamma*)"]
SD_NOTE = ("(gamma*: best draft length for tokens per unit time at the draft cost, 'g+' when it "
           "is the run's gamma, i.e. a longer draft might be better; E: tokens per verification)")


#: Prompts and new tokens per run of each study (``--batch``, ``--new-tokens``).
STUDY_DEFAULTS = {"paper": (24, 32), "trees": (24, 24)}


def add_arguments(p):
    p.add_argument("--study", default="paper", choices=tuple(STUDY_DEFAULTS),
                   help="paper: the papers' ablations (default); trees: chains against token "
                        "trees at equal verify budgets")
    p.add_argument("--batch", type=int, default=None,
                   help="prompts per run (default 24)")
    p.add_argument("--new-tokens", type=int, default=None,
                   help="tokens per prompt (default 32; --study trees: 24)")
    p.add_argument("--budgets", default=None, metavar="LIST",
                   help="--study trees: verify budgets, draft nodes per sequence (default "
                        "8,16,32)")
    p.add_argument("--shares", default=None, metavar="LIST",
                   help="--study trees: shares of a layer's experts resident (default "
                        "0.125,0.25,0.5,1)")
    p.add_argument("--variant", default="standard", choices=("standard", "elastic"),
                   help="--study trees: the trained model measured (default standard)")
    p.add_argument("--prompt-len", type=int, nargs=2, default=(24, 48), metavar=("MIN", "MAX"),
                   help="prompt lengths in bytes (default 24 48)")
    p.add_argument("--gamma", type=int, default=ABLATE_GAMMA,
                   help="the longest draft the runs measure acceptance at: every draft length "
                        f"up to it is a point of the curves (default {ABLATE_GAMMA}, the curves "
                        "the performance model reads; the decoding policy's draft length, 4, is "
                        "one of their points)")
    p.add_argument("--draft-cost", type=float, default=0.1,
                   help="draft pass time / verification pass time for gamma* (default 0.1)")
    p.add_argument("--windows", type=int, default=16,
                   help="held-out windows per domain for the losses (default 16)")
    p.add_argument("--window-len", type=int, default=64, help="bytes per window (default 64)")
    p.add_argument("--k-max", type=int, default=None,
                   help="largest inference k' for the loss sweep (default 3x the trained k)")
    p.add_argument("--models", default=None, metavar="DIR",
                   help="directory holding standard/ and elastic/ checkpoints (python build.py "
                        "train --models-dir DIR; default: the shipped models)")


def _numbers(text, flag, kind):
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"{flag} must be comma-separated numbers, not {text!r}") from None
    if not values:
        raise SystemExit(f"{flag} must list at least one value, not {text!r}")
    return values


def _check(args):
    batch, new = STUDY_DEFAULTS[args.study]
    args.batch = batch if args.batch is None else args.batch
    args.new_tokens = new if args.new_tokens is None else args.new_tokens
    if args.study == "trees":
        from sw_model.decode.tree import TREE_LIMIT
        from sw_model.train.ablate import TREE_BUDGETS, TREE_SHARES
        args.budgets = (list(TREE_BUDGETS) if args.budgets is None
                        else _numbers(args.budgets, "--budgets", int))
        for b in args.budgets:
            if not 1 <= b <= TREE_LIMIT:
                raise SystemExit(f"--budgets: a budget must be 1..{TREE_LIMIT} draft nodes, "
                                 f"not {b}")
        args.shares = (list(TREE_SHARES) if args.shares is None
                       else _numbers(args.shares, "--shares", float))
        for f in args.shares:
            if not 0 < f <= 1:
                raise SystemExit(f"--shares: a resident share must be in (0, 1], not {f:g}")
    elif args.budgets is not None or args.shares is not None:
        raise SystemExit("--budgets and --shares belong to --study trees")
    if args.decoding_policy.gamma > args.gamma:
        raise SystemExit(f"ablate: --gamma ({args.gamma}) must reach the decoding policy's draft "
                         f"length ({args.decoding_policy.gamma}), a point of the curves")
    for name in ("batch", "new_tokens", "gamma", "windows", "window_len"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be a positive integer, not "
                             f"{getattr(args, name)}")
    if args.window_len < 2:
        raise SystemExit(f"--window-len must be at least 2, not {args.window_len}")
    lo, hi = args.prompt_len
    if not 1 <= lo <= hi:
        raise SystemExit(f"--prompt-len must be 1 <= MIN <= MAX, not {lo} {hi}")
    if not args.draft_cost >= 0:
        raise SystemExit(f"--draft-cost must be >= 0, not {args.draft_cost}")


def _row(label, r, gamma):
    g = r["gamma_star"]
    return [*label, f"{r['acceptance_rate']:.3f}", f"{r['mean_accepted_length']:.2f}",
            f"{g}+" if g == gamma else g, f"{r['tokens_per_verification_at_gamma_star']:.2f}"]


def _mean_e(study, spec):
    """Tokens per verification of ``spec`` on average over the shares."""
    return sum(r["mean_accepted_length"] for r in study["runs"][spec].values()) \
        / len(study["runs"][spec])


def _best_cells(best, budget):
    spec, e = best.get(budget, ("-", None))
    return [spec, "-" if e is None else f"{e:.2f}"]


def _trees(args):
    """``--study trees``: chains against token trees at equal verify budgets."""
    import numpy as np
    from sw_model.model.checkpoints import CheckpointError, load_checkpoint
    from sw_model.model.corpus import heldout_prompts
    from sw_model.train import ablate
    from sw_model.train.training import model_dir
    start = time.monotonic()
    path = Path(args.models) / args.variant if args.models else model_dir(args.variant)
    try:
        model, _ = load_checkpoint(path)
    except (CheckpointError, OSError) as exc:
        raise SystemExit(f"cannot load the {args.variant} model {path}: {exc}") from None
    c = model.config
    lo, hi = args.prompt_len
    prompts = heldout_prompts(np.random.default_rng(args.seed), args.batch, lo, hi)
    shapes = {b: ablate.tree_shapes(b) for b in args.budgets}
    runs = sum(len(v) for v in shapes.values()) * len(args.shares)
    progress(f"model: {path}\n  {c.describe()}")
    progress(f"chains and trees: {args.batch} held-out prompts of {lo}..{hi} bytes, "
             f"{args.new_tokens} new tokens, greedy, 4-bit augmented draft, frequency set, plain "
             f"expert cache; budgets {', '.join(map(str, args.budgets))} draft nodes per "
             f"sequence; {runs} runs")
    study = ablate.tree_study(model, prompts, args.new_tokens, args.budgets, args.shares, shapes,
                              progress=progress)
    caps = study["capacities"]
    shares = [str(f) for f in args.shares]
    head = ["budget", "shape", "nodes", "depth"] + [f"{caps[f]}/{c.num_experts}" for f in shares]

    def rows(cell):
        out = []
        for b, specs in shapes.items():
            for spec in specs:
                runs_ = study["runs"][spec]
                r0 = runs_[shares[0]]
                out.append([b, spec, r0["nodes"], r0["depth"]]
                           + [cell(runs_[f]) for f in shares])
        return out

    statics, dynamics = ablate.best_shapes(study, "static"), ablate.best_shapes(study, "dynamic")
    summary = []
    for b, specs in shapes.items():
        for label, spec in (("chain", specs[0]), ("best static", statics.get(b, (None,))[0]),
                            ("best dynamic", dynamics.get(b, (None,))[0])):
            if spec is None:
                continue
            runs_ = study["runs"][spec]
            summary.append([b, f"{label} ({spec})"] + [
                f"{runs_[f]['mean_accepted_length']:.2f} / {runs_[f]['tokens_per_verified']:.3f}"
                f" / {runs_[f]['target_union_per_sequence']:.1f} / {runs_[f]['target_union']:.1f}"
                for f in shares])
    resident = ", ".join(f"{caps[f]} of {c.num_experts}" for f in shares)
    tables = [
        Table(f"Chains and trees at equal verify budgets ({args.variant} model; columns: "
              f"experts resident per layer, {resident}): E / tokens per verified token / "
              "experts one sequence's verification touches / the batch's verification touches "
              "(per layer)", ["budget", "draft"] + head[4:], summary,
              "(E: tokens a sequence keeps per verification, the mean accepted length; per "
              "verified token: E / tokens the verification carries; best: most E on average "
              "over the shares)"),
        Table("Tokens kept per verification E (mean accepted length)", head,
              rows(lambda r: f"{r['mean_accepted_length']:.2f}")),
        Table("Tokens kept per verified token", head,
              rows(lambda r: f"{r['tokens_per_verified']:.3f}")),
        Table("Experts touched per layer: one sequence's verification / the batch's "
              f"verification / the batch's draft ({args.batch} sequences)", head,
              rows(lambda r: f"{r['target_union_per_sequence']:.1f} / {r['target_union']:.1f}"
                   f" / {r['draft_union']:.1f}")),
        Table("Best shapes per budget (most E on average over the shares)",
              ["budget", "best static", "mean E", "best dynamic", "mean E", "chain mean E"],
              [[b, *_best_cells(statics, b), *_best_cells(dynamics, b),
                f"{_mean_e(study, shapes[b][0]):.2f}"] for b in shapes])]
    plot = ablate.write_tree_plot(Path(args.work_dir), study)
    seconds = time.monotonic() - start
    figures = {
        "study": "trees", "model": str(path), "variant": args.variant,
        "batch": args.batch, "new_tokens": args.new_tokens, "prompt_len": [lo, hi],
        "seed": args.seed, "budgets": args.budgets, "shares": args.shares,
        "capacities": caps, "shapes": {str(b): v for b, v in shapes.items()},
        "runs": study["runs"],
        "best_static": {str(b): v[0] for b, v in statics.items()},
        "best_dynamic": {str(b): v[0] for b, v in dynamics.items()},
        "plots": [str(Path(args.out_dir) / Path(plot).name)],
        "seconds": round(seconds, 1),
    }
    return Result(tables + [f"\nplot: {figures['plots'][0]}\ndone in {seconds:.0f} s"],
                  figures)


def run(args):
    _check(args)
    if args.study == "trees":
        if args.out is None:        # beside the papers' ablations, not over them
            rename_run(args, "trees" if args.variant == "standard" else f"trees-{args.variant}")
        return _trees(args)
    return _paper(args)


def _paper(args):
    import numpy as np
    # Imported here so that build.py's other commands do not need the checkpoint reader.
    from sw_model.model.checkpoints import CheckpointError, load_checkpoint
    from sw_model.model.corpus import DOMAINS, heldout_prompts, heldout_windows
    from sw_model.train import ablate
    from sw_model.train.training import VARIANTS, model_dir
    start = time.monotonic()
    dirs = {v: Path(args.models) / v if args.models else model_dir(v) for v in VARIANTS}
    models = {}
    for v, path in dirs.items():
        try:
            models[v], _ = load_checkpoint(path)
        except (CheckpointError, OSError) as exc:
            raise SystemExit(f"cannot load the {v} model {path}: {exc}") from None
    model = models["standard"]
    c = model.config
    k_max = args.k_max if args.k_max is not None else 3 * c.top_k
    if not 1 <= k_max <= c.num_experts:
        raise SystemExit(f"--k-max must be in 1..{c.num_experts}, not {k_max}")
    lo, hi = args.prompt_len
    runs = ablate.SDRuns(heldout_prompts(np.random.default_rng(args.seed), args.batch, lo, hi),
                         args.new_tokens, args.gamma, args.draft_cost)
    progress(f"models: {', '.join(str(p) for p in dirs.values())}\n  {c.describe()}")
    progress(f"Elastic-SD runs: {args.batch} held-out prompts of {lo}..{hi} bytes, "
             f"{args.new_tokens} new tokens, gamma {args.gamma}, greedy, plain expert cache; "
             f"gamma* with draft cost {args.draft_cost} of a verification pass")

    bits = ablate.bit_policies(model, runs)
    show(Table(f"draft bit policy (all {c.num_experts} experts resident: the draft is the target "
               f"with narrower expert weights)", ["bits", "method", *SD_HEAD],
               [_row((b, m), bits[f"{m}:{b}"], args.gamma) for b in ablate.BIT_WIDTHS
                for m in ablate.BIT_METHODS], SD_NOTE))
    selection = ablate.selection_policies(model, runs, args.seed)
    show(Table("resident-set size and selection (resident-set draft, 4-bit augmented)",
               ["resident", "selection", *SD_HEAD],
               [_row((f"{selection[n][str(f)]['capacity']} ({100 * f:.1f}%)", n),
                     selection[n][str(f)], args.gamma) for f in ablate.FRACTIONS
                for n in selection], SD_NOTE))
    quarter, policies = ablate.draft_policies(model, runs, selection)
    show(Table(f"draft policy ({quarter} experts resident, 4-bit augmented)",
               ["policy", *SD_HEAD], [_row((n,), r, args.gamma) for n, r in policies.items()],
               SD_NOTE))

    windows = {d: heldout_windows(d, args.windows, args.window_len) for d in DOMAINS}
    unigram = ablate.unigram_losses(windows)
    losses = ablate.losses_by_k(models, windows, k_max)
    rows = [[k] + [f"{losses[v][d][str(k)]:.3f}" for v in VARIANTS for d in DOMAINS]
            for k in range(1, k_max + 1)]
    rows.append(["unigram"] + [f"{unigram[d]:.3f}" for v in VARIANTS for d in DOMAINS])
    best_k = {v: {d: int(min(losses[v][d], key=losses[v][d].get)) for d in DOMAINS}
              for v in VARIANTS}
    losses_table = Table(
        f"held-out loss (nats/byte, INT8 golden model; {args.windows} windows x "
        f"{args.window_len} bytes per domain) vs inference k' (trained k = {c.top_k})",
        ["k'"] + [f"{v} {d}" for v in VARIANTS for d in DOMAINS], rows,
        "lowest loss at k' = " + ", ".join(f"{v} {d} {best_k[v][d]}" for v in VARIANTS
                                           for d in DOMAINS))

    plots = [str(Path(args.out_dir) / Path(p).name)
             for p in ablate.write_plots(Path(args.work_dir), bits, selection, policies, losses,
                                         unigram, c.top_k)]
    seconds = time.monotonic() - start
    figures = {
        "models": {v: str(p) for v, p in dirs.items()},
        "batch": args.batch, "new_tokens": args.new_tokens, "gamma": args.gamma,
        "decoding": args.decoding_policy.to_dict(),
        "draft_cost": args.draft_cost,
        "acceptance_by_bit_policy": {m: bits[f"{m}:4"]["acceptance_rate"]
                                     for m in ablate.BIT_METHODS},
        "acceptance_length_by_bit_policy": {m: bits[f"{m}:4"]["mean_accepted_length"]
                                            for m in ablate.BIT_METHODS},
        "bit_policies": bits,
        "acceptance_length_by_selection": {n: selection[n][str(0.25)]["mean_accepted_length"]
                                           for n in selection},
        "selection": selection,
        "draft_policies": policies,
        # at the trained k (None when --k-max stops below it)
        "heldout_loss": {v: {d: losses[v][d].get(str(c.top_k)) for d in DOMAINS}
                         for v in VARIANTS},
        "unigram_loss": unigram,
        "loss_by_k": losses,
        "best_k": best_k,
        "plots": plots,
        "seconds": round(seconds, 1),
    }
    return Result([losses_table, f"\nplots: {', '.join(plots)}\ndone in {seconds:.0f} s"],
                  figures)
