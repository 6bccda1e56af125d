"""``python build.py ablate``: the papers' ablations measured on the shipped trained models.

Elastic-SD runs (:func:`sw_model.decoding.elastic_sd`, greedy, so every run is lossless) on the
standard model with prompts from the held-out text (:func:`sw_model.corpus.heldout_prompts`, code and
prose alternately) and the plain per-layer expert cache (:class:`sw_model.decoding.LRUExpertCache`,
which makes exactly the set a policy selects resident, so selection rules compare like for like):

* draft bit policy: truncation, LSB augmentation, separate rounding, at 4, 3 and 2 draft bits,
  with every expert resident (so the draft differs from the target only in its expert weights'
  bits; the resident-set restriction is measured separately below);
* resident-set size (fraction of a layer's experts) x selection rule: frequency (the previous
  draft's most chosen experts), random (a fresh random set per step), LRU (the most recently chosen);
* draft policy: resident set (ELMoE-3D), SpecMoE-style substitution, elastic k' < k;
* held-out loss (code, prose; nats per byte, INT8 golden model) versus the inference k' (1 .. 3k)
  for both training variants, with the byte-unigram baseline of the training stream.

For each Elastic-SD configuration, ``gamma*``: the draft length maximising expected tokens per
unit time, ``E(g) / (1 + c*g)`` with ``E(g) = 1 + mean(min(n, g))`` over the accepted-draft counts
``n`` measured at the run's gamma (greedy verification accepts a prefix of the chain, so a shorter
chain would have accepted ``min(n, g)``; the resident sets would move slightly differently) and
``c`` the cost of a draft pass relative to a verification pass (``--draft-cost``). ``E(g)`` itself
(tokens per verification) only grows with ``g``.

Prints the tables and, as the last line, one JSON object; plots go to ``build/ablate/``.
"""

import json
import logging
import time
from pathlib import Path

import numpy as np

from sw_model.corpus import (DOMAINS, heldout_prompts, heldout_windows, training_bytes,
                             unigram_logprobs)
from sw_model.decoding import LRUExpertCache, SDConfig, elastic_sd
from sw_model.draft_policies import (SELECTION_POLICIES, ElasticKPolicy, ResidentSetPolicy,
                                     SpecMoEPolicy)
from sw_model.moe import PassPlan, softmax, top_k_route
from sw_model.training import VARIANTS, model_dir

__all__ = ["add_arguments", "run", "heldout_loss", "gamma_star", "BIT_METHODS", "BIT_WIDTHS"]

log = logging.getLogger(__name__)

BIT_METHODS = ("truncation", "augmented", "rounding")
BIT_WIDTHS = (4, 3, 2)
FRACTIONS = (0.125, 0.25, 0.5)
OUT_DIR = Path("build") / "ablate"


def add_arguments(p):
    p.add_argument("--batch", type=int, default=24, help="prompts per run (default 24)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens per prompt (default 32)")
    p.add_argument("--prompt-len", type=int, nargs=2, default=(24, 48), metavar=("MIN", "MAX"),
                   help="prompt lengths in bytes (default 24 48)")
    p.add_argument("--gamma", type=int, default=6, help="draft length of the runs (default 6)")
    p.add_argument("--draft-cost", type=float, default=0.1,
                   help="draft pass time / verification pass time for gamma* (default 0.1)")
    p.add_argument("--windows", type=int, default=16,
                   help="held-out windows per domain for the losses (default 16)")
    p.add_argument("--window-len", type=int, default=64, help="bytes per window (default 64)")
    p.add_argument("--k-max", type=int, default=None,
                   help="largest inference k' for the loss sweep (default 3x the trained k)")
    p.add_argument("--out", default=str(OUT_DIR), help="plot directory (default build/ablate)")
    p.add_argument("--models", default=None, metavar="DIR",
                   help="directory holding standard/ and elastic/ checkpoints (python build.py "
                        "train --out DIR; default: the shipped models)")


# -- measurements -----------------------------------------------------------------------------------

def heldout_loss(model, windows, k=None):
    """``{domain: loss}``: mean next-byte cross-entropy (nats) of ``model`` over each domain's
    windows ``[n, length]`` (one pass over all of them), every MoE layer routing the top-``k``
    experts (default: the trained k), all experts at INT8 (FULL)."""
    c = model.config
    plan = None
    if k is not None and k != c.top_k:
        plan = PassPlan(route=lambda layer, scores, select: top_k_route(c, scores, select, k=k))
    names = list(windows)
    both = np.concatenate([windows[d] for d in names])
    kv = model.new_cache(len(both), both.shape[1])
    res = model.forward(kv, list(both), plan)
    nll = np.array([float(np.mean(-np.log(softmax(l[:-1]))[np.arange(len(l) - 1), w[1:]]))
                    for l, w in zip(res.logits, both)])
    out, start = {}, 0
    for d in names:
        out[d] = float(nll[start:start + len(windows[d])].mean())
        start += len(windows[d])
    return out


def gamma_star(accept_counts, gamma, draft_cost):
    """``(gamma*, E(gamma*), {g: E(g)})`` from accepted-draft counts measured at ``gamma``."""
    n = np.asarray(accept_counts)
    expected = {g: 1.0 + float(np.mean(np.minimum(n, g))) for g in range(1, gamma + 1)}
    best = max(expected, key=lambda g: (expected[g] / (1 + draft_cost * g), -g))
    return best, expected[best], expected


def _sd(model, prompts, args, policy, capacity, bits="augmented"):
    sd = SDConfig(gamma=args.gamma, capacity=capacity, draft_bits=bits)
    res = elastic_sd(model, prompts, args.new_tokens, policy, sd, cache=LRUExpertCache(capacity))
    s = res.summary()
    counts = [n - 1 for st in res.steps for n in st.accept_lengths]
    g, e, curve = gamma_star(counts, args.gamma, args.draft_cost)
    return {"acceptance_rate": s["acceptance_rate"],
            "mean_accepted_length": s["mean_accepted_length"],
            "gamma_star": g, "tokens_per_verification_at_gamma_star": e,
            "tokens_per_verification": curve}


def _table(headers, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _row(label, r, gamma):
    g = r["gamma_star"]
    return [*label, f"{r['acceptance_rate']:.3f}", f"{r['mean_accepted_length']:.2f}",
            f"{g}+" if g == gamma else g, f"{r['tokens_per_verification_at_gamma_star']:.2f}"]


SD_HEAD = ["acceptance", "mean accepted length", "gamma*", "E(gamma*)"]
SD_NOTE = ("(gamma*: best draft length for tokens per unit time at the draft cost, 'g+' when it is the "
           "run's gamma, i.e. a longer draft might be better; E: tokens per verification)")


# -- plots ----------------------------------------------------------------------------------------

def _plots(out, bits, selection, policies, losses, unigram, k_trained):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m in BIT_METHODS:
        ax.plot(BIT_WIDTHS, [bits[f"{m}:{b}"]["mean_accepted_length"] for b in BIT_WIDTHS], "o-",
                label=m)
    ax.set(xlabel="draft bits", ylabel="mean accepted length", title="draft bit policy")
    ax.invert_xaxis()
    ax.legend()
    paths.append(out / "bit_policy.png")

    fig2, ax = plt.subplots(figsize=(5, 3.5))
    for name, rows in selection.items():
        ax.plot([100 * f for f in FRACTIONS], [rows[str(f)]["mean_accepted_length"]
                                               for f in FRACTIONS], "o-", label=name)
    ax.set(xlabel="resident experts (% of a layer)", ylabel="mean accepted length",
           title="resident-set selection")
    ax.legend()
    paths.append(out / "selection.png")

    fig3, ax = plt.subplots(figsize=(5, 3.5))
    names = list(policies)
    ax.bar(names, [policies[n]["mean_accepted_length"] for n in names])
    ax.set(ylabel="mean accepted length", title="draft policy")
    paths.append(out / "draft_policy.png")

    fig4, ax = plt.subplots(figsize=(5, 3.5))
    for variant, per_domain in losses.items():
        for domain, curve in per_domain.items():
            ks = sorted(int(k) for k in curve)
            ax.plot(ks, [curve[str(k)] for k in ks], "o-" if domain == "code" else "s--",
                    label=f"{variant}, {domain}")
    for domain, u in unigram.items():
        ax.axhline(u, color="grey", lw=0.8, ls=":" if domain == "code" else "-.")
    ax.axvline(k_trained, color="k", lw=0.8)
    ax.set(xlabel="inference k'", ylabel="held-out loss (nats/byte)", title="loss vs k'")
    ax.legend(fontsize=7)
    paths.append(out / "loss_by_k.png")

    for f, path in zip((fig, fig2, fig3, fig4), paths):
        f.tight_layout()
        f.savefig(path, dpi=100)
        plt.close(f)
    return [str(p) for p in paths]


# -- the command ---------------------------------------------------------------------------------

def _check(args):
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


def run(args):
    # Imported here so that build.py's other commands do not need the checkpoint reader.
    from sw_model.checkpoints import CheckpointError, load_checkpoint
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
    rng = np.random.default_rng(args.seed)
    lo, hi = args.prompt_len
    prompts = heldout_prompts(rng, args.batch, lo, hi)
    quarter = max(c.top_k, c.num_experts // 4)
    print(f"models: {', '.join(str(p) for p in dirs.values())}\n  {c.describe()}")
    print(f"Elastic-SD runs: {args.batch} held-out prompts of {lo}..{hi} bytes, {args.new_tokens} "
          f"new tokens, gamma {args.gamma}, greedy, plain expert cache; gamma* with draft cost "
          f"{args.draft_cost} of a verification pass", flush=True)

    bits = {}
    for b in BIT_WIDTHS:
        for m in BIT_METHODS:
            bits[f"{m}:{b}"] = _sd(model, prompts, args, ResidentSetPolicy(), c.num_experts,
                                   f"{m}:{b}")
    print(f"\ndraft bit policy (all {c.num_experts} experts resident: the draft is the target "
          f"with narrower expert weights)")
    print(_table(["bits", "method", *SD_HEAD],
                 [_row((b, m), bits[f"{m}:{b}"], args.gamma) for b in BIT_WIDTHS
                  for m in BIT_METHODS]))
    print(SD_NOTE, flush=True)

    selection = {name: {} for name in SELECTION_POLICIES}
    for f in FRACTIONS:
        cap = max(c.top_k, int(round(f * c.num_experts)))
        for name, cls in SELECTION_POLICIES.items():
            policy = cls(seed=args.seed) if name == "random" else cls()
            selection[name][str(f)] = dict(_sd(model, prompts, args, policy, cap), capacity=cap)
    print("\nresident-set size and selection (resident-set draft, 4-bit augmented)")
    print(_table(["resident", "selection", *SD_HEAD],
                 [_row((f"{selection[n][str(f)]['capacity']} ({100 * f:.1f}%)", n),
                       selection[n][str(f)], args.gamma) for f in FRACTIONS
                  for n in SELECTION_POLICIES]))
    print(SD_NOTE, flush=True)

    k_draft = max(1, c.top_k // 2)
    policies = {"resident": selection["frequency"][str(0.25)] if quarter == 8
                else _sd(model, prompts, args, ResidentSetPolicy(), quarter),
                "specmoe": _sd(model, prompts, args, SpecMoEPolicy(), quarter),
                f"elastic-k (k'={k_draft})": _sd(model, prompts, args, ElasticKPolicy(k_draft),
                                                 quarter)}
    print(f"\ndraft policy ({quarter} experts resident, 4-bit augmented)")
    print(_table(["policy", *SD_HEAD], [_row((n,), r, args.gamma) for n, r in policies.items()]))
    print(SD_NOTE, flush=True)

    windows = {d: heldout_windows(d, args.windows, args.window_len) for d in DOMAINS}
    uni = unigram_logprobs(training_bytes())
    unigram = {d: float(-uni[w[:, 1:]].mean()) for d, w in windows.items()}
    losses = {v: {d: {} for d in DOMAINS} for v in VARIANTS}
    for v in VARIANTS:
        for k in range(1, k_max + 1):
            for d, value in heldout_loss(models[v], windows, k).items():
                losses[v][d][str(k)] = value
    print(f"\nheld-out loss (nats/byte, INT8 golden model; {args.windows} windows x "
          f"{args.window_len} bytes per domain) vs inference k' (trained k = {c.top_k})")
    heads = ["k'"] + [f"{v} {d}" for v in VARIANTS for d in DOMAINS]
    rows = [[k] + [f"{losses[v][d][str(k)]:.3f}" for v in VARIANTS for d in DOMAINS]
            for k in range(1, k_max + 1)]
    rows.append(["unigram"] + [f"{unigram[d]:.3f}" for v in VARIANTS for d in DOMAINS])
    print(_table(heads, rows))
    best_k = {v: {d: int(min(losses[v][d], key=losses[v][d].get)) for d in DOMAINS}
              for v in VARIANTS}
    print("lowest loss at k' = " + ", ".join(f"{v} {d} {best_k[v][d]}" for v in VARIANTS
                                              for d in DOMAINS))

    plots = _plots(Path(args.out), bits, selection, policies, losses, unigram, c.top_k)
    seconds = time.monotonic() - start
    print(f"\nplots: {', '.join(plots)}\ndone in {seconds:.0f} s")
    figures = {
        "models": {v: str(p) for v, p in dirs.items()},
        "batch": args.batch, "new_tokens": args.new_tokens, "gamma": args.gamma,
        "draft_cost": args.draft_cost,
        "acceptance_by_bit_policy": {m: bits[f"{m}:4"]["acceptance_rate"] for m in BIT_METHODS},
        "acceptance_length_by_bit_policy": {m: bits[f"{m}:4"]["mean_accepted_length"]
                                            for m in BIT_METHODS},
        "bit_policies": bits,
        "acceptance_length_by_selection": {n: selection[n][str(0.25)]["mean_accepted_length"]
                                           for n in SELECTION_POLICIES},
        "selection": selection,
        "draft_policies": policies,
        "heldout_loss": {v: {d: losses[v][d][str(c.top_k)] for d in DOMAINS} for v in VARIANTS},
        "unigram_loss": unigram,
        "loss_by_k": losses,
        "best_k": best_k,
        "plots": plots,
        "seconds": round(seconds, 1),
    }
    print(json.dumps(figures))
    return 0

