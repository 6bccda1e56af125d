"""``python build.py demo`` (what plain ``python build.py`` runs): the project end to end, once.

1. Write the Verilog of every block and of the top of the simulated machine, each linted.
2. Run Elastic-SD on the built-in default model (:func:`sw_model.model.checkpoints.default_model`)
   in the golden model: a batch of :data:`DEMO_BATCH` random prompts (the batch threshold, so the
   accelerator chooses Elastic-SD), the decoding policy's draft (a chain of its draft length, 4,
   or its token tree: ``--set decoding.tree=static:3,2``), a quarter of the experts HB-resident.
3. Schedule its first decode step (draft phase, verify phase with MSB/LSB split, SELECT, fills).
4. Execute the stream on the Verilated accelerator and on the golden executor; the RTL's memories
   must equal the executor's bit for bit, and the host's float part on the RTL's output memory must
   reproduce the golden model's expert and MoE block outputs.
5. Print a short report and, last, a JSON line with ``match``, ``commands``, ``cycles``,
   ``acceptance_rate`` and the rest. Exit status 1 unless everything matched and linted clean.
"""

import sys
import time

from sim.commands.output import Result, Table, progress

__all__ = ["NAME", "HELP", "add_arguments", "run", "DEMO_BATCH", "DEMO_PES"]

NAME = "demo"
HELP = "the main job: one Elastic-SD step of the default model on the RTL"
#: The machine the demo simulates unless ``--machine`` names another: its expert cache, slots
#: and HB and LPDDR capacities are fitted to the model (:func:`sim.top.e2e.e2e_machine`).
MACHINE = "demo"
#: Reads the decoding policy (``--decoding``, ``--set decoding.*``): draft length and resident set.
DECODING = True

#: Sequences of the demo batch (the default batch threshold of Elastic-SD).
DEMO_BATCH = 4
#: PEs of the built-in demo machine.
DEMO_PES = 2


def add_arguments(p):
    """The demo takes only the common options."""


def run(args):
    from sim.commands.verilog import write_all
    from sim.top.e2e import e2e_machine, run_end_to_end
    from sw_model.compiler.scheduler import check_pass_fits
    from sw_model.compiler.weight_layout import WeightLayout
    from sw_model.decode.decoding import SDConfig
    from sw_model.model.checkpoints import default_model
    start = time.monotonic()
    clock = lambda: f"[{time.monotonic() - start:5.0f} s]"
    model, name = default_model()
    c = model.config
    capacity = max(c.top_k, c.num_experts // 4)
    try:
        params = e2e_machine(c, args.params.pes, capacity, base=args.params)
    except ValueError as exc:
        raise SystemExit(f"demo: the built-in model does not fit {args.run_name}: {exc}") from None
    policy = args.decoding_policy
    sd = SDConfig(gamma=policy.gamma, capacity=capacity, tree=policy.tree)
    try:
        check_pass_fits(WeightLayout(c, params), DEMO_BATCH, sd.verify_tokens,
                        "decoding.tree" if sd.shape is not None else "decoding.gamma")
    except ValueError as exc:
        print(f"build.py demo: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    progress(f"{clock()} writing the Verilog of every block and the top of {args.run_name} "
             "(expert cache, slots, HB and LPDDR fitted to the model), each linted ...")
    rows = write_all({args.run_name: params})
    progress(f"{clock()} model: {name}\n        {c.describe()}")
    report, params = run_end_to_end(model, [("elastic_sd", DEMO_BATCH, 1)], params.pes,
                                    capacity=capacity, gamma=args.decoding_policy.gamma,
                                    seed=args.seed, params=params,
                                    progress=lambda m: progress(f"{clock()} {m} ..."),
                                    tree=args.decoding_policy.tree)
    args.params = params
    step = report[0]
    accepted, proposed = sum(step["accepted"]), step["proposed"]
    lint_errors = sum(r.get("lint_errors", 0) for r in rows)
    rows = [r for r in rows if r["path"]]
    verdict = ("MATCH: the RTL's memories equal the golden executor's bit for bit"
               if step["match"] else "MISMATCH: " + "; ".join(step["differences"]))
    floats = (f"reproduces the golden model's outputs ({step['floats_checked']['jobs']} expert "
              f"jobs, {step['floats_checked']['layers']} MoE blocks, bit for bit)"
              if step["floats"] else f"DIFFERS: {step['floats_checked']}")
    seconds = time.monotonic() - start
    draft = (f"token trees ({args.decoding_policy.tree}: {sum(step['tree'].values())} draft "
             f"nodes, {step['target_rows']} tokens in one verification pass)"
             if step["tree"] is not None else
             f"chains of {args.decoding_policy.gamma} drafts")
    table = Table(
        f"Elastic-SD step 0 of {DEMO_BATCH} sequences on {params.describe()}\n"
        f"  draft: {draft}\n"
        f"  acceptance: {accepted} of {proposed} draft tokens ({accepted / proposed:.2f}); "
        f"accepted per sequence {step['accepted']}\n"
        f"  commands: {step['commands']} ({step['jobs']} expert jobs; {step['mac_dq']} MAC_DQ "
        f"through the dequantising units, {step['outputs']} binary32 block outputs)",
        ["phase", "commands", "HB read B", "LPDDR read B", "HB write B", "cycles"],
        [[phase, b["commands"], b["HB"], b["LPDDR"], b["HB writes"],
          step["phase_cycles"].get(phase, 0)] for phase, b in step["bytes"].items()],
        f"  cycles: {step['cycles']} in total (setup: the CACHE prologue that brings a reset "
        "controller to the step's starting state)\n"
        f"  {verdict}\n"
        f"  host float part on the RTL's dequantised outputs: {floats}\n"
        f"  Verilog: {len(rows)} files under build/verilog/{args.run_name}, {lint_errors} lint "
        "errors\n"
        f"done in {seconds:.0f} s")
    figures = {"match": step["match"] and step["floats"], "rtl_equals_executor": step["match"],
               "floats_reproduced": step["floats"], "commands": step["commands"],
               "mac_dq_commands": step["mac_dq"], "dequantised_outputs": step["outputs"],
               "cycles": step["cycles"], "phase_cycles": step["phase_cycles"],
               "acceptance_rate": accepted / proposed, "accepted": step["accepted"],
               "bytes": step["bytes"], "tree": args.decoding_policy.tree,
               "verified_tokens": step["target_rows"], "model": name, "batch": DEMO_BATCH, "pes": params.pes,
               "params": params.to_dict(), "verilog": [r["path"] for r in rows],
               "lint_errors": lint_errors, "decoding": args.decoding_policy.to_dict(),
               "seconds": round(seconds, 1)}
    return Result([table], figures, status=0 if figures["match"] and not lint_errors else 1)
