"""Exploring ELMoE-3D's policy parameters on the analytic model (what ``build.py sweep`` runs).

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

import numpy as np

from sw_model.perf.methods import Settings
from sw_model.perf.suite import _score, evaluate_config

__all__ = ["sweep", "configurations", "per_batch_policy", "per_point_policy", "evaluate_config",
           "PAPER_CONFIG", "RESIDENT_POLICIES"]

#: The paper's own configuration as this model states it (Settings defaults, 8 GB).
PAPER_CONFIG = {"gamma": Settings().gamma, "threshold": Settings().threshold,
                "resident_policy": Settings().resident_policy, "hb_gb": 8}

#: The resident sets Elastic-SD can keep.
RESIDENT_POLICIES = ("frequency", "static", "random")


def configurations(gammas, thresholds, policies, hb_gbs):
    """Every combination (HB size outermost), plus :data:`PAPER_CONFIG` if it is not among them;
    ValueError on an unknown resident policy."""
    for p in policies:
        if p not in RESIDENT_POLICIES:
            raise ValueError(f"unknown resident policy {p!r}; choose "
                             f"{', '.join(RESIDENT_POLICIES)}")
    configs = [{"gamma": g, "threshold": t, "resident_policy": p, "hb_gb": h}
               for h, g, t, p in itertools.product(hb_gbs, gammas, thresholds, policies)]
    if PAPER_CONFIG not in configs:
        configs.append(dict(PAPER_CONFIG))
    return configs


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
