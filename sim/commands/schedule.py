"""``python build.py schedule``: command streams of decode steps, for any model.

Models: ``--model default`` (the built-in default,
:func:`sw_model.model.checkpoints.default_model`) or ``--checkpoint PATH`` run the golden model
(random prompts from ``--seed``), and the scheduler turns its per-step records into streams
(:mod:`sw_model.compiler.step_streams`); a model-zoo name (:mod:`sw_model.model.zoo`) has no
weights, so its steps come from a generated routing trace (:mod:`sw_model.compiler.trace_steps`:
the stated locality and acceptance models). The batch threshold chooses cached decoding or
Elastic-SD.

Machines: ``paper`` (the paper's 32 PEs of 16x32x32 with their HB and LPDDR, the expert cache
sized to what HB holds next to the dense weights) or ``default`` (the small machine the demo and the
end-to-end tests simulate, :data:`sim.top.e2e.E2E_BASE`, HB and LPDDR grown to the model). Default:
``paper`` for zoo models, ``default`` otherwise. A step is cut into parts where the output, input or
command memory would overflow (the host drains and refills them between parts).

Writes, under ``build/schedule/<model>/``: ``step<i>.bin`` and ``step<i>.txt`` (binary and text
forms of step i's stream; the text re-assembles to the binary, checked here), ``prologue.*`` (the
CACHE commands bringing a reset controller to step 0's state) and ``plan.json`` (layout and byte
plan). Every stream is checked with the ISA's validator from its step's cache state. Prints a table
of commands and bytes per memory tier per phase, and a last-line JSON object.
"""

import json
import time
from pathlib import Path

from hw.isa import Command, Opcode, assemble, disassemble, encode
from sim.commands.output import Result, Table, progress, progress_bar

__all__ = ["NAME", "HELP", "add_arguments", "run", "MACHINES"]

NAME = "schedule"
HELP = "command streams of decode steps for a model (zoo, default, checkpoint)"

#: The machines ``--machine`` names.
MACHINES = ("default", "paper")


def _machines():
    from hw.params import TOP_PAPER
    from sim.top.e2e import E2E_BASE
    return {"paper": TOP_PAPER, "default": E2E_BASE}


def add_arguments(p):
    p.add_argument("--model", default="default",
                   help="'default' (the built-in model) or a model-zoo name")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="a Hugging Face checkpoint directory instead of --model")
    p.add_argument("--batch", type=int, default=16, help="sequences in the batch (default 16)")
    p.add_argument("--steps", type=int, default=2, help="decode steps to schedule (default 2)")
    p.add_argument("--gamma", type=int, default=3, help="draft length (default 3)")
    p.add_argument("--threshold", type=int, default=4,
                   help="batch at and above which Elastic-SD runs (default 4)")
    p.add_argument("--capacity", type=int, default=None,
                   help="HB-resident experts per MoE layer (default: what HB holds on the paper "
                        "machine, a quarter of the experts on the default machine)")
    p.add_argument("--machine", default=None, choices=MACHINES,
                   help="paper (32 PEs) or default (small); default: paper for zoo models")
    p.add_argument("--pes", type=int, default=None, help="PEs (default: the machine's)")
    p.add_argument("--acceptance", type=float, default=0.7,
                   help="zoo models: probability that a draft token is accepted (default 0.7)")
    p.add_argument("--zipf", type=float, default=1.0,
                   help="zoo models: Zipf exponent of expert popularity (default 1.0)")
    p.add_argument("--reuse", type=float, default=0.5,
                   help="zoo models: probability a sequence keeps an expert from its previous "
                        "token (default 0.5)")


def _check(args):
    for name in ("batch", "steps", "gamma", "threshold"):
        v = getattr(args, name)
        if v < 1:
            raise SystemExit(f"--{name} must be a positive integer, not {v}")
    if args.pes is not None and not 1 <= args.pes <= 64:
        raise SystemExit(f"--pes must be in 1..64 (the ISA's pe field), not {args.pes}")
    if not 0 <= args.acceptance <= 1:
        raise SystemExit(f"--acceptance must be a probability in [0, 1], not {args.acceptance}")
    if not 0 <= args.reuse <= 1:
        raise SystemExit(f"--reuse must be a probability in [0, 1], not {args.reuse}")
    if not args.zipf >= 0:
        raise SystemExit(f"--zipf must be at least 0, not {args.zipf}")


def run(args):
    from hw.flows.verilog import BUILD_ROOT
    from sw_model.compiler.scheduler import PHASES
    from sw_model.compiler.step_check import prologue
    from sw_model.compiler.step_streams import golden_records, schedule_records
    from sw_model.compiler.weight_layout import WeightLayout, machine_for
    from sw_model.model.zoo import zoo_entry
    _check(args)
    start = time.monotonic()
    mode = "elastic_sd" if args.batch >= args.threshold else "cached"
    if args.checkpoint:
        from sw_model.model.checkpoints import CheckpointError, load_checkpoint
        try:
            model, scheme = load_checkpoint(args.checkpoint, progress=progress_bar("loading"))
        except (CheckpointError, OSError) as exc:
            raise SystemExit(f"cannot load checkpoint {args.checkpoint}: {exc}") from None
        config, name, source = model.config, f"{args.checkpoint} ({scheme})", "golden model"
    elif args.model.lower() == "default":
        from sw_model.model.checkpoints import default_model
        model, name = default_model()
        config, source = model.config, "golden model"
    else:
        try:
            entry = zoo_entry(args.model)
        except ValueError as exc:
            raise SystemExit(f"--model: {exc}") from None
        model, config, name = None, entry.config, entry.name
        source = (f"generated routing trace (zipf {args.zipf}, reuse {args.reuse}), acceptance "
                  f"{args.acceptance} per draft token")
    machine = args.machine or ("paper" if model is None else "default")
    try:
        # the default machine is the one the demo and the end-to-end tests simulate
        from sim.top.e2e import E2E_SIZES
        sizes = E2E_SIZES if machine == "default" else {}
        params = machine_for(config, mode, _machines()[machine], args.capacity, args.pes,
                             grow=machine == "default", **sizes)
        layout = WeightLayout(config, params)
    except ValueError as exc:
        raise SystemExit(f"{name} does not fit the {machine} machine: {exc}") from None
    capacity = params.cache.select_capacity
    progress(f"model: {name}\n  {config.describe()}")
    progress(f"machine: {machine}, {params.describe()}\n  layout: {layout.describe()}")
    progress(f"batch {args.batch} -> {mode} (threshold {args.threshold}); HB holds {capacity} "
             f"of {config.num_experts} experts per MoE layer; steps from the {source}")
    try:
        if model is not None:
            records = golden_records(model, args.batch, args.steps, mode, capacity, args.gamma,
                                     args.seed)
        else:
            from sw_model.compiler.trace_steps import trace_records
            records, _ = trace_records(config, args.batch, args.steps, mode, capacity,
                                       args.gamma, args.acceptance, args.zipf, args.reuse,
                                       args.seed)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    progress(f"scheduling and validating {len(records)} step(s) ...")
    scheduled = schedule_records(records, layout)
    slug = (Path(args.checkpoint).resolve().name if args.checkpoint
            else "default" if model is not None else name)
    out_dir = BUILD_ROOT / "schedule" / slug
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    first = (prologue(records[0], layout) if records else []) + [Command(Opcode.END)]
    for stem, commands in [("prologue", first)] + [(f"step{r.index}", s.commands)
                                                     for r, s, _ in scheduled]:
        binary = encode(commands)
        text = disassemble(commands)
        if encode(assemble(text)) != binary:
            raise SystemExit(f"{stem}: the text form does not re-assemble to the binary form")
        (out_dir / f"{stem}.bin").write_bytes(binary)
        (out_dir / f"{stem}.txt").write_text(text)
        files += [str(out_dir / f"{stem}.bin"), str(out_dir / f"{stem}.txt")]
    plan = layout.plan(capacity)
    (out_dir / "plan.json").write_text(json.dumps({"params": params.to_dict(), "plan": plan},
                                                  indent=1))
    rows, totals, steps_json = [], {}, []
    for record, sched, moved in scheduled:
        for phase, tiers in moved.items():
            rows.append([record.index, record.mode, phase, tiers["commands"], tiers["HB"],
                         tiers["LPDDR"], tiers["HB writes"]])
            t = totals.setdefault(phase, {"commands": 0, "HB": 0, "LPDDR": 0, "HB writes": 0})
            for k in t:
                t[k] += tiers[k]
        steps_json.append({"step": record.index, "commands": len(sched.commands),
                           "parts": len(sched.parts),
                           "accepted": list(record.accepted), "bytes": moved,
                           "by_opcode": sched.counts()})
    proposed = sum(r.gamma * len(r.sequences) for r in records)
    acceptance = sum(sum(r.accepted) for r in records) / proposed if proposed else None
    table = Table(
        None, ["step", "mode", "phase", "commands", "HB read B", "LPDDR read B", "HB write B"],
        rows,
        "(expert weights the stream moves; per pass the dense weights add "
        f"{layout.dense_bytes} B and every expert read its FP16 scales, {layout.scale_bytes} B "
        "per expert, from HB: the vector unit's, not in the stream)\n"
        f"HB: {plan['HB used'] / 2**20:.1f} of {plan['HB capacity'] / 2**20:.1f} MiB used; "
        f"LPDDR: {plan['LPDDR used'] / 2**20:.1f} of {plan['LPDDR capacity'] / 2**20:.1f} MiB "
        f"({'fits' if all(plan['fits'].values()) else 'DOES NOT FIT'})\n"
        f"streams (text form re-assembles to the binary) in {out_dir}; "
        f"done in {time.monotonic() - start:.1f} s")
    figures = {
        "model": name, "mode": mode, "machine": machine, "pes": params.pes, "batch": args.batch,
        "steps": len(records), "capacity": capacity, "source": source,
        "acceptance_rate": acceptance,
        "commands": sum(len(s.commands) for _, s, _ in scheduled),
        "prologue_commands": len(first) - 1, "bytes": totals, "per_step": steps_json,
        "phases": PHASES, "valid": True, "round_trip": True, "plan": plan, "files": files,
        "out_dir": str(out_dir), "seconds": round(time.monotonic() - start, 2)}
    return Result([table], figures)
