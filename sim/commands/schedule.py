"""``python build.py schedule``: command streams of decode steps, for any model.

Models: ``--model default`` (the built-in default,
:func:`sw_model.model.checkpoints.default_model`) or ``--checkpoint PATH`` run the golden model
(random prompts from ``--seed``), and the scheduler turns its per-step records into streams
(:mod:`sw_model.compiler.step_streams`); a model-zoo name (:mod:`sw_model.model.zoo`) has no
weights, so its steps come from a generated routing trace (:mod:`sw_model.compiler.trace_steps`:
the stated locality and acceptance models). The batch threshold chooses cached decoding or
Elastic-SD.

Machines (``--machine``, ``--set``; :mod:`hw.machines`): the expert cache is sized to what HB holds
next to the dense weights, and the slots to one expert shard; on the ``demo`` machine (the small
one the demo and the end-to-end tests simulate) HB and LPDDR grow to the model instead. Default:
``paper`` for zoo models, ``demo`` otherwise. A step is cut into parts where the output, input or
command memory would overflow (the host drains and refills them between parts).

Writes, under ``build/schedule/<model>-<machine>/``: ``step<i>.bin`` and ``step<i>.txt`` (binary
and text forms of step i's stream, each self-contained: the CACHE commands that bring a reset
controller to the step's starting state, then the step; the text re-assembles to the binary,
checked here), ``prologue.*`` (those CACHE commands for step 0 alone), ``plan.json`` (layout and
byte plan) and ``machine.toml`` (the machine the streams were scheduled for, the expert cache and
slots fitted to the model: ``python build.py stream validate FILE --machine <it>`` reads it).
A ``--set`` of a field the fit decides (``cache.*``; on the demo machine also the HB and LPDDR
sizes) is refused rather than silently replaced. Every stream is checked with the ISA's validator
from its step's cache state. Prints a table of commands and bytes per memory tier per phase, and a
last-line JSON object.
"""

from dataclasses import replace
import json
import time
from pathlib import Path

from hw.isa import Command, Opcode, assemble, disassemble, encode
from sim.commands.options import decoding_flags_or_exit, rename_run
from sim.commands.output import Result, Table, progress, progress_bar

__all__ = ["NAME", "HELP", "MACHINE", "add_arguments", "run"]

NAME = "schedule"
#: Reads the decoding policy (``--decoding``, ``--set decoding.*``).
DECODING = True
HELP = "command streams of decode steps for a model (zoo, default, checkpoint)"

#: The machine for zoo models unless ``--machine`` names another (the built-in model and
#: checkpoints: ``demo``).
MACHINE = "paper"


def add_arguments(p):
    p.add_argument("--model", default="default",
                   help="'default' (the built-in model) or a model-zoo name")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="a Hugging Face checkpoint directory instead of --model")
    p.add_argument("--batch", type=int, default=16, help="sequences in the batch (default 16)")
    p.add_argument("--steps", type=int, default=2, help="decode steps to schedule (default 2)")
    p.add_argument("--gamma", type=int, default=None,
                   help="draft length (default: the decoding policy's, 4)")
    p.add_argument("--threshold", type=int, default=None,
                   help="batch at and above which Elastic-SD runs (default: the decoding "
                        "policy's, 4)")
    p.add_argument("--capacity", type=int, default=None,
                   help="HB-resident experts per MoE layer (default: what HB holds on the paper "
                        "machine, a quarter of the experts on the default machine)")
    zoo = {"acceptance": "probability that a draft token is accepted (default: the performance "
                         "model's, from the decoding policy's acceptance mapping at the resident "
                         "share of the experts)",
           "zipf": "Zipf exponent of expert popularity (default: the decoding policy's locality)",
           "reuse": "probability a sequence keeps an expert from its previous token (default: "
                    "the decoding policy's locality)"}
    for name, text in zoo.items():
        p.add_argument(f"--{name}", type=float, default=None, help=f"zoo models: {text}")


#: Machine fields ``schedule`` sets itself from the model (``machine_for``): the expert cache (LRU for
#: cached decoding, FREQUENCY for Elastic-SD, sized by ``--capacity``) and, on the demo machine, the
#: HB and LPDDR sizes. An override of one would be silently replaced, so it is refused.
FITTED = ("cache.",)
FITTED_ON_DEMO = ("hb.words", "hb.address_width", "lpddr.words", "lpddr.address_width")


def machine_default(args):
    """The machine without ``--machine``: the paper machine for a zoo model (only its shape is
    scheduled), the demo machine for the built-in model or a checkpoint (simulated)."""
    zoo = not args.checkpoint and args.model.lower() != "default"
    return "paper" if zoo else "demo"


def _check(args):
    decoding_flags_or_exit(args, "batch", "steps", gamma="gamma", threshold="threshold")
    demo = (args.machine or machine_default(args)) == "demo"
    for item in args.set or []:
        key = item.split("=", 1)[0].strip()
        if key.startswith(FITTED) or (demo and key in FITTED_ON_DEMO):
            raise SystemExit(f"--set {item}: schedule fits {key} to the model itself (the expert "
                             f"cache: LRU for cached decoding, FREQUENCY for Elastic-SD, "
                             f"--capacity experts per layer; on the demo machine also the HB and "
                             f"LPDDR sizes), so it cannot be overridden here")
    if args.acceptance is not None and not 0 <= args.acceptance <= 1:
        raise SystemExit(f"--acceptance must be a probability in [0, 1], not {args.acceptance}")
    if args.reuse is not None and not 0 <= args.reuse <= 1:
        raise SystemExit(f"--reuse must be a probability in [0, 1], not {args.reuse}")
    if args.zipf is not None and not args.zipf >= 0:
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
    machine = args.machine or machine_default(args)
    base = args.params
    try:
        params = machine_for(config, mode, base, args.capacity, base.pes,
                             grow=machine == "demo")
        layout = WeightLayout(config, params)
    except ValueError as exc:
        raise SystemExit(f"{name} does not fit the {machine} machine: {exc}") from None
    capacity = params.cache.select_capacity
    policy = args.decoding_policy
    if model is None:
        from sw_model.perf.workload import ACCEPTANCE, Locality
        locality = Locality.parse(policy.locality)
        if args.zipf is None:
            args.zipf = round(locality.exponent(config.num_experts), 4)
        if args.reuse is None:
            args.reuse = locality.reuse
        fraction = capacity / config.num_experts
        if args.acceptance is None:
            rule = replace(ACCEPTANCE, mapping=policy.acceptance)
            args.acceptance = round(rule.rate(name, "elastic_sd", coverage=fraction,
                                              fraction=fraction, gamma=policy.gamma,
                                              selection=policy.resident_set), 4)
        source = (f"generated routing trace (zipf {args.zipf}, reuse {args.reuse}), acceptance "
                  f"model {args.acceptance} per draft token")
    progress(f"model: {name}\n  {config.describe()}")
    progress(f"machine: {machine}, {params.describe()}\n  layout: {layout.describe()}")
    progress(f"batch {args.batch} -> {mode} (threshold {args.threshold}); HB holds {capacity} "
             f"of {config.num_experts} experts per MoE layer; steps from the {source}")
    if policy.tree != "chain" and mode == "elastic_sd":
        if model is None:
            raise SystemExit(f"decoding.tree {policy.tree}: trace-driven steps (--model) draft "
                             f"chains; schedule a token tree from a golden model (the default "
                             f"model or --checkpoint)")
        from sw_model.compiler.scheduler import check_pass_fits
        from sw_model.decode.decoding import SDConfig
        try:
            check_pass_fits(layout, args.batch, SDConfig(tree=policy.tree).verify_tokens)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    try:
        if model is not None:
            records = golden_records(model, args.batch, args.steps, mode, capacity, args.gamma,
                                     args.seed, tree=policy.tree)
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
    if args.out is None:
        rename_run(args, f"{slug}-{args.run_name if args.machine else machine}")
    args.params = params          # the fitted machine the streams run on, saved beside them
    out_dir, work = Path(args.out_dir), Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    files = []
    first = (prologue(records[0], layout) if records else []) + [Command(Opcode.END)]
    for stem, commands in [("prologue", first)] + [
            (f"step{r.index}", prologue(r, layout) + s.commands) for r, s, _ in scheduled]:
        binary = encode(commands)
        text = disassemble(commands)
        if encode(assemble(text)) != binary:
            raise SystemExit(f"{stem}: the text form does not re-assemble to the binary form")
        (work / f"{stem}.bin").write_bytes(binary)
        (work / f"{stem}.txt").write_text(text)
        files += [str(out_dir / f"{stem}.bin"), str(out_dir / f"{stem}.txt")]
    plan = layout.plan(capacity)
    (work / "plan.json").write_text(json.dumps({"params": params.to_dict(), "plan": plan},
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
    proposed = sum(r.proposed for r in records)
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
        + (f"acceptance over the scheduled steps: {acceptance:.3f} of the draft tokens "
           "(acceptance_rate)"
           + (f"; the trace's acceptance model: {args.acceptance} per draft token "
              "(acceptance_model)" if model is None else "") + "\n"
           if acceptance is not None else "")
        + f"streams (text form re-assembles to the binary) in {out_dir}; "
        f"done in {time.monotonic() - start:.1f} s")
    figures = {
        "model": name, "mode": mode, "machine": machine, "pes": params.pes, "batch": args.batch,
        "steps": len(records), "capacity": capacity, "source": source,
        "acceptance_rate": acceptance, "acceptance_model": args.acceptance if model is None
        else None, "zipf": args.zipf, "reuse": args.reuse, "gamma": args.gamma,
        "threshold": args.threshold, "decoding": policy.to_dict(),
        "commands": sum(len(s.commands) for _, s, _ in scheduled),
        "prologue_commands": len(first) - 1, "bytes": totals, "per_step": steps_json,
        "phases": PHASES, "valid": True, "round_trip": True, "plan": plan, "files": files,
        "out_dir": str(out_dir), "seconds": round(time.monotonic() - start, 2)}
    return Result([table], figures)
