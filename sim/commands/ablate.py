"""``python build.py ablate``: the papers' ablations measured on the shipped trained models.

Greedy Elastic-SD runs on held-out prompts with the plain per-layer expert cache
(:mod:`sw_model.train.ablate`): the draft bit policy (truncation, LSB augmentation, rounding at 4,
3 and 2 bits, every expert resident), the resident-set size and selection rule, the draft policy
(resident set, SpecMoE substitution, elastic k'), each with gamma*, the best draft length at
``--draft-cost``; then the held-out loss of both trained variants against the inference k'. Each
table is printed as soon as it is measured; plots go to the results folder (``--out``); the last line is the JSON.
"""

import time
from pathlib import Path

from sw_model.perf.measured import ABLATE_GAMMA
from sim.commands.output import Result, Table, progress, show

NAME = "ablate"
#: Reads the decoding policy (``--decoding``, ``--set decoding.*``): its draft length must be a
#: point of the measured curves; the runs are greedy and compare every draft policy and set.
DECODING = True
HELP = ("the papers' ablations (draft bits, resident sets, draft policies, loss vs k') on the "
        "shipped trained models")

SD_HEAD = ["acceptance", "mean accepted length", "gamma*", "E(gamma*)"]
SD_NOTE = ("(gamma*: best draft length for tokens per unit time at the draft cost, 'g+' when it "
           "is the run's gamma, i.e. a longer draft might be better; E: tokens per verification)")


def add_arguments(p):
    p.add_argument("--batch", type=int, default=24, help="prompts per run (default 24)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens per prompt (default 32)")
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


def _check(args):
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


def run(args):
    import numpy as np
    # Imported here so that build.py's other commands do not need the checkpoint reader.
    from sw_model.model.checkpoints import CheckpointError, load_checkpoint
    from sw_model.model.corpus import DOMAINS, heldout_prompts, heldout_windows
    from sw_model.train import ablate
    from sw_model.train.training import VARIANTS, model_dir
    _check(args)
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
