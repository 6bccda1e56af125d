"""``python build.py train``: retrain the shipped byte-level MoE models from a seed.

Trains the ``standard`` and the ``elastic`` variant (:func:`sw_model.train.training.train`; CPU
PyTorch, the optional ``[train]`` extra) side by side, one process and one torch thread each, and
writes them as Hugging Face checkpoints: by default over the shipped models, or under ``--out``.
Prints one line per model and the JSON figures (final training loss, tokens, seconds).
"""

import importlib.util
import multiprocessing
from pathlib import Path

from sim.commands.output import Result, progress

NAME = "train"
HELP = "train the shipped byte-level MoE models (needs the [train] extra)"


def add_arguments(p):
    from sw_model.train.training import VARIANTS, TrainConfig
    p.add_argument("--variant", default="both", choices=(*VARIANTS, "both"),
                   help="which model to train (default both)")
    p.add_argument("--steps", type=int, default=TrainConfig.steps,
                   help=f"optimiser steps per variant (default {TrainConfig.steps})")
    p.add_argument("--models-dir", default=None, metavar="DIR",
                   help="directory to write <variant>/ into (default: the shipped models, "
                        "sw_model/models/elmoe-byte-<variant>)")


def _train_job(variant, out, settings):
    """One variant in a worker process, its progress on stdout."""
    from sw_model.train.training import train
    summary = train(variant, out, settings, progress=lambda m: progress("  " + m))
    summary["path"] = out
    return summary


def run(args):
    from sw_model.train.training import TRAINED_CONFIG, VARIANTS, TrainConfig, model_dir
    # the request first: a bad one is named whether or not PyTorch is installed
    if args.steps < 1:
        raise SystemExit(f"--steps must be a positive integer, not {args.steps}")
    if importlib.util.find_spec("torch") is None:
        raise SystemExit("training needs PyTorch: pip install -e '.[train]'")
    settings = TrainConfig(steps=args.steps, seed=args.seed)
    variants = VARIANTS if args.variant == "both" else (args.variant,)
    outs = [Path(args.models_dir) / v if args.models_dir else model_dir(v) for v in variants]
    for v, out in zip(variants, outs):
        progress(f"training {v} ({TRAINED_CONFIG.describe()}) -> {out}")
    # The variants train side by side, one process and one torch thread each: two cores busy
    # without the thread synchronisation of one two-thread process, and each result depends
    # only on its seed.
    with multiprocessing.get_context("spawn").Pool(len(variants)) as pool:
        results = pool.starmap(_train_job, [(v, str(out), settings) for v, out in
                                            zip(variants, outs)])
    lines = [f"{r['variant']:<9} {r['steps']} steps, {r['tokens']} tokens, final training loss "
             f"{r['final_train_loss']:.3f} nats/byte, {r['seconds']:.0f} s -> {r['path']}"
             for r in results]
    return Result(["\n" + "\n".join(lines)],
                  {"models": results, "seconds": round(sum(r["seconds"] for r in results), 1)})
