"""``python build.py demo`` (what plain ``python build.py`` runs): the project end to end, once.

1. Write the Verilog of every block and of the top (default parameters), each linted.
2. Run Elastic-SD on the built-in default model (:func:`sw_model.model.checkpoints.default_model`)
   in the golden model: a batch of :data:`DEMO_BATCH` random prompts (the batch threshold, so the
   accelerator chooses Elastic-SD), draft length 3, a quarter of the experts HB-resident.
3. Schedule its first decode step (draft phase, verify phase with MSB/LSB split, SELECT, fills).
4. Execute the stream on the Verilated accelerator and on the golden executor; the RTL's memories
   must equal the executor's bit for bit, and the host's float part on the RTL's output memory must
   reproduce the golden model's expert and MoE block outputs.
5. Print a short report and, last, a JSON line with ``match``, ``commands``, ``cycles``,
   ``acceptance_rate`` and the rest. Exit status 1 unless everything matched and linted clean.
"""

import time

from sim.commands.output import Result, Table, progress

__all__ = ["NAME", "HELP", "add_arguments", "run", "DEMO_BATCH", "DEMO_PES"]

NAME = "demo"
HELP = "the main job: one Elastic-SD step of the default model on the RTL"

#: Sequences of the demo batch (the default batch threshold of Elastic-SD).
DEMO_BATCH = 4
#: PEs of the demo machine.
DEMO_PES = 2


def add_arguments(p):
    """The demo takes only the common options."""


def run(args):
    from sim.commands.verilog import write_all
    from sim.top.e2e import run_end_to_end
    from sw_model.model.checkpoints import default_model
    start = time.monotonic()
    clock = lambda: f"[{time.monotonic() - start:5.0f} s]"
    progress(f"{clock()} writing the Verilog of every block and the top (default parameters), "
             "each linted ...")
    rows = write_all(presets=["default"])
    model, name = default_model()
    progress(f"{clock()} model: {name}\n        {model.config.describe()}")
    report, params = run_end_to_end(model, [("elastic_sd", DEMO_BATCH, 1)], DEMO_PES,
                                    seed=args.seed,
                                    progress=lambda m: progress(f"{clock()} {m} ..."))
    step = report[0]
    accepted, proposed = sum(step["accepted"]), step["proposed"]
    lint_errors = sum(r.get("lint_errors", 0) for r in rows)
    verdict = ("MATCH: the RTL's memories equal the golden executor's bit for bit"
               if step["match"] else "MISMATCH: " + "; ".join(step["differences"]))
    floats = (f"reproduces the golden model's outputs ({step['floats_checked']['jobs']} expert "
              f"jobs, {step['floats_checked']['layers']} MoE blocks, bit for bit)"
              if step["floats"] else f"DIFFERS: {step['floats_checked']}")
    seconds = time.monotonic() - start
    table = Table(
        f"Elastic-SD step 0 of {DEMO_BATCH} sequences on {params.describe()}\n"
        f"  acceptance: {accepted} of {proposed} draft tokens ({accepted / proposed:.2f}); "
        f"accepted per sequence {step['accepted']}\n"
        f"  commands: {step['commands']} ({step['jobs']} expert jobs)",
        ["phase", "commands", "HB read B", "LPDDR read B", "HB write B", "cycles"],
        [[phase, b["commands"], b["HB"], b["LPDDR"], b["HB writes"],
          step["phase_cycles"].get(phase, 0)] for phase, b in step["bytes"].items()],
        f"  cycles: {step['cycles']} in total (setup: the CACHE prologue that brings a reset "
        "controller to the step's starting state)\n"
        f"  {verdict}\n"
        f"  host float part on the RTL's sums: {floats}\n"
        f"  Verilog: {len(rows)} files under build/verilog, {lint_errors} lint errors\n"
        f"done in {seconds:.0f} s")
    figures = {"match": step["match"] and step["floats"], "rtl_equals_executor": step["match"],
               "floats_reproduced": step["floats"], "commands": step["commands"],
               "cycles": step["cycles"], "phase_cycles": step["phase_cycles"],
               "acceptance_rate": accepted / proposed, "accepted": step["accepted"],
               "bytes": step["bytes"], "model": name, "batch": DEMO_BATCH, "pes": params.pes,
               "params": params.to_dict(), "verilog": [r["path"] for r in rows],
               "lint_errors": lint_errors, "seconds": round(seconds, 1)}
    return Result([table], figures, status=0 if figures["match"] and not lint_errors else 1)
