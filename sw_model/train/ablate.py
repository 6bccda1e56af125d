"""The papers' ablations measured on the shipped trained models (what ``build.py ablate`` runs).

Elastic-SD runs (:func:`sw_model.decode.decoding.elastic_sd`, greedy, so every run is lossless) on
the standard model with prompts from the held-out text
(:func:`sw_model.model.corpus.heldout_prompts`, code and prose alternately) and the plain per-layer
expert cache (:class:`sw_model.decode.decoding.LRUExpertCache`, which makes exactly the set a policy
selects resident, so selection rules compare like for like):

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
``c`` the cost of a draft pass relative to a verification pass (``draft_cost``). ``E(g)`` itself
(tokens per verification) only grows with ``g``.

Each study returns plain data (dicts of figures); :func:`write_plots` draws them.

**Token trees** (:func:`tree_study`, ``build.py ablate --study trees``): chains and token trees
(:mod:`sw_model.decode.tree`) at equal verify budgets (:data:`TREE_BUDGETS` draft nodes per
sequence: a chain of that many drafts, static shapes of at most that many nodes, dynamic shapes
of exactly that budget; :func:`tree_shapes`) with :data:`TREE_SHARES` of a layer's experts
resident (frequency set, 4-bit augmented draft, the plain cache). Per run: the tokens a sequence
keeps per verification (``E``, the mean accepted length), tokens kept per verified token, the
verified tokens per sequence, and the experts the passes touch per layer: the batch's union
(``experts_touched_per_layer``) for verification and draft, and one sequence's union in the
verification pass (mean over sequences and steps; from the step records). A chain run also gives,
for every prefix of ``w`` verified positions, one sequence's union (``window_union``): the
curve a tree's union is compared with (a tree of ``n`` nodes touches as many experts as a chain
window of ``w`` positions).
"""

from dataclasses import dataclass
import logging
from pathlib import Path

import numpy as np

from sw_model.model.corpus import training_bytes, unigram_logprobs
from sw_model.decode.decoding import LRUExpertCache, SDConfig, elastic_sd
from sw_model.decode.step_record import StepRecorder
from sw_model.decode.tree import parse_tree
from sw_model.decode.draft_policies import (SELECTION_POLICIES, ElasticKPolicy, ResidentSetPolicy,
                                            SpecMoEPolicy)
from sw_model.model.moe import PassPlan, softmax, top_k_route

__all__ = ["SDRuns", "heldout_loss", "gamma_star", "bit_policies", "selection_policies",
           "draft_policies", "losses_by_k", "unigram_losses", "write_plots", "BIT_METHODS",
           "BIT_WIDTHS", "FRACTIONS", "TREE_BUDGETS", "TREE_SHARES", "STATIC_SHAPES",
           "tree_shapes", "tree_run", "tree_study", "best_shapes", "write_tree_plot"]

log = logging.getLogger(__name__)

BIT_METHODS = ("truncation", "augmented", "rounding")
BIT_WIDTHS = (4, 3, 2)
FRACTIONS = (0.125, 0.25, 0.5)


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


@dataclass(frozen=True)
class SDRuns:
    """The Elastic-SD runs of a study: ``prompts`` decoded for ``new_tokens`` at draft length
    ``gamma``, greedy; ``draft_cost`` prices a draft pass for gamma*."""
    prompts: list
    new_tokens: int
    gamma: int
    draft_cost: float

    def run(self, model, policy, capacity, bits="augmented"):
        """One run with the plain per-layer cache of ``capacity`` experts: acceptance, mean
        accepted length, gamma* and the tokens per verification ``E(g)``."""
        sd = SDConfig(gamma=self.gamma, capacity=capacity, draft_bits=bits)
        res = elastic_sd(model, self.prompts, self.new_tokens, policy, sd,
                         cache=LRUExpertCache(capacity))
        s = res.summary()
        counts = [n - 1 for st in res.steps for n in st.accept_lengths]
        g, e, curve = gamma_star(counts, self.gamma, self.draft_cost)
        return {"acceptance_rate": s["acceptance_rate"],
                "mean_accepted_length": s["mean_accepted_length"],
                "gamma_star": g, "tokens_per_verification_at_gamma_star": e,
                "tokens_per_verification": curve}


def bit_policies(model, runs):
    """``{"method:bits": run}`` over :data:`BIT_METHODS` x :data:`BIT_WIDTHS`, every expert
    resident (the draft is the target with narrower expert weights)."""
    n = model.config.num_experts
    return {f"{m}:{b}": runs.run(model, ResidentSetPolicy(), n, f"{m}:{b}")
            for b in BIT_WIDTHS for m in BIT_METHODS}


def selection_policies(model, runs, seed):
    """``{selection: {str(fraction): run with its "capacity"}}``: resident-set draft, 4-bit
    augmented, at each of :data:`FRACTIONS` of a layer's experts (at least top-k)."""
    c = model.config
    selection = {name: {} for name in SELECTION_POLICIES}
    for f in FRACTIONS:
        cap = max(c.top_k, int(round(f * c.num_experts)))
        for name, cls in SELECTION_POLICIES.items():
            policy = cls(seed=seed) if name == "random" else cls()
            selection[name][str(f)] = dict(runs.run(model, policy, cap), capacity=cap)
    return selection


def draft_policies(model, runs, selection):
    """``(capacity, {policy: run})``: the resident set, SpecMoE substitution and elastic k'
    (half the trained k) with a quarter of the experts resident (at least top-k);
    ``selection``'s frequency run at a quarter is the resident set's when the capacities agree."""
    c = model.config
    quarter = max(c.top_k, c.num_experts // 4)
    k_draft = max(1, c.top_k // 2)
    same = selection["frequency"].get(str(0.25))
    resident = (same if same is not None and same["capacity"] == quarter
                else runs.run(model, ResidentSetPolicy(), quarter))
    return quarter, {"resident": resident,
                     "specmoe": runs.run(model, SpecMoEPolicy(), quarter),
                     f"elastic-k (k'={k_draft})": runs.run(model, ElasticKPolicy(k_draft),
                                                           quarter)}


def losses_by_k(models, windows, k_max):
    """``{variant: {domain: {str(k): loss}}}`` for k' in 1..``k_max`` (:func:`heldout_loss`)."""
    losses = {v: {d: {} for d in windows} for v in models}
    for v, model in models.items():
        for k in range(1, k_max + 1):
            for d, value in heldout_loss(model, windows, k).items():
                losses[v][d][str(k)] = value
    return losses


def unigram_losses(windows):
    """``{domain: loss}`` of the byte-unigram model of the training stream on the windows."""
    uni = unigram_logprobs(training_bytes())
    return {d: float(-uni[w[:, 1:]].mean()) for d, w in windows.items()}


# -- token trees ------------------------------------------------------------------------------

#: Verify budgets of the tree study: draft nodes per sequence (a verification carries one more).
TREE_BUDGETS = (8, 16, 32)
#: Shares of a layer's experts resident in the tree study (the chain study's and all of them).
TREE_SHARES = (0.125, 0.25, 0.5, 1.0)
#: Static shapes per budget, as many nodes as the budget allows (or close below it), from wide and
#: shallow to narrow and deep.
STATIC_SHAPES = {
    8: ("static:4,1", "static:2,3", "static:2,1,1,1"),
    16: ("static:4,3", "static:4,1,1,1", "static:2,1,1,1,1,1,1,1"),
    32: ("static:8,1,1,1", "static:4,2,1,1", "static:4,1,1,1,1,1,1,1"),
}


def tree_shapes(budget):
    """The shapes measured at ``budget`` nodes: ``chain:<budget>`` (a chain of that many drafts),
    :data:`STATIC_SHAPES`' (or, for another budget, a chain-like and a two-wide static shape) and
    two dynamic shapes of that budget: four wide (k 4) and two wide (k 2), as deep as the budget
    lets them grow."""
    static = STATIC_SHAPES.get(budget)
    if static is None:
        static = tuple(dict.fromkeys(s for s in (
            "static:2" + ",1" * (budget // 2 - 1) if budget >= 2 else None,
            "static:4" + ",1" * (budget // 4 - 1) if budget >= 4 else None) if s))
    dynamic = tuple(dict.fromkeys(
        f"dynamic:nodes={budget},depth={max(1, budget // w)},k={w},width={w}"
        for w in (4, 2) if w <= budget))
    return (f"chain:{budget}",) + static + dynamic


def _shape_of(spec):
    """``(TreeShape or None, gamma)`` of a study spec (``chain:<gamma>`` or a tree)."""
    if spec.startswith("chain:"):
        return None, int(spec.partition(":")[2])
    shape = parse_tree(spec)
    return shape, shape.depth


def tree_run(model, prompts, new_tokens, spec, capacity, bits="augmented"):
    """One greedy Elastic-SD run with the draft shape ``spec`` (``chain:<gamma>`` or a tree
    spec) and ``capacity`` experts resident per layer (frequency set, plain cache): the figures of
    the module docstring."""
    shape, gamma = _shape_of(spec)
    sd = SDConfig(gamma=gamma, capacity=capacity, draft_bits=bits,
                  tree=shape if shape is not None else "chain")
    recorder = StepRecorder()
    res = elastic_sd(model, prompts, new_tokens, ResidentSetPolicy(), sd,
                     cache=LRUExpertCache(capacity), recorder=recorder)
    s = res.summary()
    lengths = [n for st in res.steps for n in st.accept_lengths]
    verified = sum(st.verified for st in res.steps)
    sequences = sum(st.sequences for st in res.steps)
    per_seq, windows = [], [[] for _ in range(gamma + 1)] if shape is None else None
    for rec in recorder.steps:
        sizes = ([len(rec.trees[b][0]) for b in rec.sequences] if rec.trees is not None
                 else [gamma + 1] * len(rec.sequences))
        starts = np.concatenate([[0], np.cumsum(sizes)])
        for layer in rec.layers:
            rows = rec.target_routes[layer]
            for i in range(len(sizes)):
                mine = rows[starts[i]:starts[i + 1]]
                per_seq.append(len(np.unique(mine[mine >= 0])))
                if windows is not None:
                    seen = set()
                    for w, row in enumerate(mine):
                        seen.update(int(e) for e in row if e >= 0)
                        windows[w].append(len(seen))
    mean_of = lambda v: float(np.mean(v)) if len(v) else 0.0
    out = {"spec": spec, "capacity": capacity,
           "nodes": gamma if shape is None else shape.nodes,
           "depth": gamma, "levels": list((1,) * (gamma + 1) if shape is None else shape.levels),
           "mean_accepted_length": s["mean_accepted_length"],
           "tokens_per_verified": float(sum(lengths) / verified) if verified else None,
           "verified_per_sequence": verified / sequences if sequences else None,
           "acceptance_rate": s["acceptance_rate"],
           "target_union": mean_of(s["experts_touched_per_layer"].get("target", [])),
           "draft_union": mean_of(s["experts_touched_per_layer"].get("draft", [])),
           "target_union_per_sequence": mean_of(per_seq),
           "steps": s["steps"]}
    if windows is not None:
        out["window_union"] = [mean_of(v) for v in windows]
    return out


def tree_study(model, prompts, new_tokens, budgets=TREE_BUDGETS, shares=TREE_SHARES,
               shapes=None, progress=None):
    """Every shape of :func:`tree_shapes` (or ``shapes``: ``{budget: specs}``) at every budget
    and resident share: ``{"runs": {spec: {str(share): run}}, "shapes": {budget: specs},
    "capacities": {str(share): experts}}`` (:func:`tree_run`'s runs; the capacity is
    ``share * num_experts``, at least top-k). ``progress(text)`` hears of every run."""
    c = model.config
    shapes = shapes or {b: tree_shapes(b) for b in budgets}
    caps = {str(f): max(c.top_k, int(round(f * c.num_experts))) for f in shares}
    runs = {}
    total, done = sum(len(v) for v in shapes.values()) * len(shares), 0
    for f in shares:
        for b, specs in shapes.items():
            for spec in specs:
                r = tree_run(model, prompts, new_tokens, spec, caps[str(f)])
                runs.setdefault(spec, {})[str(f)] = r
                done += 1
                if progress:
                    progress(f"  [{done}/{total}] share {f:g} ({caps[str(f)]} experts), {spec}: "
                             f"E {r['mean_accepted_length']:.2f}, per verified "
                             f"{r['tokens_per_verified']:.3f}")
    return {"runs": runs, "shapes": {b: list(v) for b, v in shapes.items()}, "capacities": caps}


def best_shapes(study, kind):
    """``{budget: (spec, mean E over the shares)}``: the ``kind`` ("static" or "dynamic") shape
    of each budget keeping the most tokens per verification on average over the shares."""
    out = {}
    for b, specs in study["shapes"].items():
        scored = [(float(np.mean([r["mean_accepted_length"]
                                  for r in study["runs"][s].values()])), s)
                  for s in specs if s.startswith(kind)]
        if scored:
            e, spec = max(scored, key=lambda t: (t[0], t[1]))
            out[b] = (spec, e)
    return out


def write_tree_plot(out, study):
    """Tokens per verification against the resident share, one line per budget's chain, best
    static and best dynamic shape; a PNG in ``out``. Returns its path (text)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    statics, dynamics = best_shapes(study, "static"), best_shapes(study, "dynamic")
    for i, (b, specs) in enumerate(study["shapes"].items()):
        picks = [specs[0]] + [d[b][0] for d in (statics, dynamics) if b in d]
        for spec, style in zip(picks, ("-", "--", ":")):
            runs = study["runs"][spec]
            shares = sorted(runs, key=float)
            ax.plot([100 * float(f) for f in shares],
                    [runs[f]["mean_accepted_length"] for f in shares], style, marker="o",
                    color=f"C{i}", label=spec)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="resident experts (% of a layer)", ylabel="tokens per verification (E)",
           title="chains and trees at equal verify budgets")
    ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / "trees.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


# -- plots ----------------------------------------------------------------------------------------

def write_plots(out, bits, selection, policies, losses, unigram, k_trained):
    """The four studies' plots as PNGs in ``out``; returns their paths (text)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = Path(out)
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
