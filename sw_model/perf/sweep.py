"""Exploring ELMoE-3D's policy parameters on the analytic model (what ``build.py sweep`` runs).

Axes: draft length ``gamma`` of a chain or a token-tree shape (``tree``: the measured shapes of
:mod:`sw_model.perf.measured`, by verify budget; a tree runs with the frequency set, the only
one its acceptance was measured with), the batch ``threshold`` of the mode switch, Elastic-SD's
``resident_policy`` and the machine (a :class:`hw.params.TopParams`; ``build.py sweep --pes`` tries
PE counts of one machine, HB channels following). Every configuration is scored on the headline set (paper models, batch 1-16) by
its average speed-up over the LPDDR-only xPU, with energy efficiency and the speed-up over the
best prior accelerator alongside. Besides the best single configuration the sweep reports the
best *per-batch* policy (gamma and mode chosen per batch size, which a serving system knows),
each against the paper's own configuration (gamma 4, threshold 4, frequency set on the same
machine: the defaults of :class:`sw_model.perf.methods.Settings`).

Configurations run locally in this process by default, or as Ray tasks (``--ray ADDRESS``: an
existing cluster; ``--ray local``: a local Ray instance with ``--workers`` CPUs).
"""

import itertools

import numpy as np

from hw.params import TOP_PAPER
from sw_model.perf.methods import Settings
from sw_model.perf.suite import _score, evaluate_config

__all__ = ["sweep", "configurations", "per_batch_policy", "per_point_policy", "evaluate_config",
           "PAPER_CONFIG", "RESIDENT_POLICIES", "paper_config", "write_plot"]

#: The paper's own configuration as this model states it (Settings defaults, the paper machine).
PAPER_CONFIG = {"gamma": Settings().gamma, "threshold": Settings().threshold,
                "resident_policy": Settings().resident_policy, "machine": TOP_PAPER, "tree": None}

#: The resident sets Elastic-SD can keep.
RESIDENT_POLICIES = ("frequency", "static", "random")


def configurations(gammas, thresholds, policies, machines, trees=()):
    """Every combination (machine outermost) of the chain's ``gammas`` and of the tree shapes
    ``trees`` (specs; each with the frequency set only) with the thresholds and policies, plus
    :data:`PAPER_CONFIG` if it is not among them; ValueError on an unknown resident policy."""
    for p in policies:
        if p not in RESIDENT_POLICIES:
            raise ValueError(f"unknown resident policy {p!r}; choose "
                             f"{', '.join(RESIDENT_POLICIES)}")
    configs = [{"gamma": g, "threshold": t, "resident_policy": p, "machine": h, "tree": None}
               for h, g, t, p in itertools.product(machines, gammas, thresholds, policies)]
    configs += [{"gamma": PAPER_CONFIG["gamma"], "threshold": t, "resident_policy": "frequency",
                 "machine": h, "tree": tree}
                for h, tree, t in itertools.product(machines, trees, thresholds)]
    paper = paper_config(machines[0])
    if paper not in configs:
        configs.append(paper)
    return configs


def paper_config(machine):
    """:data:`PAPER_CONFIG`'s policy on ``machine``."""
    return dict(PAPER_CONFIG, machine=machine)


def write_plot(results, directory, title):
    """Average speed-up over the xPU against the draft tokens per sequence (a chain's gamma, a
    tree's nodes), one line per resident set's chain and per tree kind (each point at its best
    threshold and, for trees, its best shape of that many nodes); a PNG in ``directory``. Returns
    its path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pathlib import Path
    from sw_model.decode.tree import parse_tree
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines = {}
    for r in results:
        c = r["config"]
        shape = parse_tree(c.get("tree"))
        if shape is None:
            key, x = f"chain, {c['resident_policy']} resident set", c["gamma"]
        else:
            key, x = f"{shape.kind} trees, frequency set", shape.nodes
        best = lines.setdefault(key, {})
        best[x] = max(best.get(x, 0), r["avg_speedup_vs_xpu"])
    for key, best in lines.items():
        xs = sorted(best)
        ax.plot(xs, [best[x] for x in xs], marker="o" if key.startswith("chain") else "s",
                ls="-" if key.startswith("chain") else "--", label=key)
    ax.set_xlabel("draft tokens per sequence (chain: gamma; tree: nodes)")
    ax.set_ylabel("average speed-up over the LPDDR-only xPU (x)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = directory / "speedup_vs_gamma.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
