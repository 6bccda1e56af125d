"""``python build.py formal [BLOCK]``: the formal proofs of the block contracts, with SymbiYosys.

Runs every proof of :data:`hw.formal.PROOFS` (those of ``BLOCK`` only, when given; ``--fast``
leaves out the slow ones; ``--proof NAME`` picks one) through :func:`hw.flows.formal.run_proof`:
k-induction (unbounded) or bounded model checking to a stated depth, and a cover task that shows
no property holds vacuously. Prints the elapsed time at least every 10 s, then a table (block,
property, method, depth, result, covers, time) with the time per block below it, and the JSON
line. Reports, logs and waveforms (counterexamples and cover traces, VCD) go under
``build/formal/<block>-<proof>/``. ``--broken`` runs each harness's deliberately broken variant
instead, which must fail. Exit status 1 when a proof does not hold or a cover is not reached
(a proof marked with a known bug of its block is reported as such and does not count).
"""

import time

from sim.commands.output import Result, Table, progress

NAME = "formal"
HELP = "formal proofs of the block contracts (SymbiYosys, k-induction / BMC, covers)"


def add_arguments(p):
    p.add_argument("block", nargs="?", default=None, help="only this block's proofs")
    p.add_argument("--proof", default=None, help="only the proof of this name")
    p.add_argument("--fast", action="store_true", help="leave out the slow proofs")
    p.add_argument("--broken", action="store_true",
                   help="run the deliberately broken variants (each must fail)")
    p.add_argument("--timeout", type=float, default=None,
                   help="stop a proof after this many seconds (result: unknown)")


def run(args):
    from hw.flows.formal import FormalToolMissing, run_proof
    from hw.flows.verilog import BUILD_ROOT
    from hw.formal import BLOCKS, proofs_of
    if args.block is not None and args.block not in BLOCKS:
        raise SystemExit(f"formal: unknown block {args.block!r}; blocks with proofs: "
                         f"{', '.join(BLOCKS)}")
    proofs = proofs_of(args.block, slow=not args.fast)
    if args.proof is not None:
        proofs = [p for p in proofs if p.name == args.proof]
        if not proofs:
            raise SystemExit(f"formal: no proof named {args.proof!r}"
                             + (f" for {args.block}" if args.block else ""))
    if args.timeout is not None and not args.timeout > 0:
        raise SystemExit(f"formal: --timeout must be a positive number, not {args.timeout}")

    start = time.monotonic()
    results = []
    for i, proof in enumerate(proofs, 1):
        label = f"{proof.block}/{proof.name}" + (" (broken)" if args.broken else "")
        depth = proof.broken_depth if args.broken and proof.broken_depth else proof.depth
        progress(f"[{i}/{len(proofs)}] {label}: {proof.method}, depth {depth} ...")
        try:
            result = run_proof(proof, BUILD_ROOT, broken=args.broken, timeout=args.timeout,
                               progress=lambda text: progress("  " + text))
        except FormalToolMissing as exc:
            raise SystemExit(f"formal: {exc}") from None
        progress(f"  {result.result}, covers {result.covers_reached}/{result.covers_total}, "
                 f"{result.seconds:.1f} s")
        results.append((proof, result))

    rows, per_block, failures = [], {}, 0
    for proof, r in results:
        if args.broken:
            verdict = "fails as it must" if r.result == "FAILED" else "DID NOT FAIL"
            failures += r.result != "FAILED"
        elif proof.known_failure and r.result == "FAILED":
            verdict = "FAILED (known bug)"
        else:
            verdict = r.result if r.ok else f"{r.result} (covers missing)" \
                if r.result in ("proved", "passed") else r.result
            failures += not r.ok
        rows.append([proof.block, proof.name, proof.method, r.depth, verdict,
                     f"{r.covers_reached}/{r.covers_total}", f"{r.seconds:.1f}"])
        per_block[proof.block] = per_block.get(proof.block, 0.0) + r.seconds
    notes = [f"time per block: " + ", ".join(f"{b} {s:.0f} s" for b, s in per_block.items())]
    for proof, r in results:
        if r.failed:
            notes.append(f"{proof.block}/{proof.name}: failed: {'; '.join(r.failed)}"
                         + (f" (known bug: {proof.known_failure})" if proof.known_failure else ""))
            notes += [f"  counterexample: {t}" for t in r.traces if "_cover" not in t]
        if r.unreached and r.result in ("proved", "passed"):
            notes.append(f"{proof.block}/{proof.name}: covers not reached: "
                         f"{'; '.join(r.unreached)}")
    notes.append(f"reports and waveforms under {BUILD_ROOT / 'formal'}/")
    table = Table("formal proofs" + (" (deliberately broken variants)" if args.broken else ""),
                  ["block", "property", "method", "depth", "result", "covers", "time s"], rows,
                  "\n".join(notes))
    figures = {"broken": args.broken, "seconds": round(time.monotonic() - start, 1),
               "proofs": [{"block": p.block, "proof": p.name, "method": p.method,
                           "depth": r.depth, "result": r.result,
                           "covers_reached": r.covers_reached, "covers_total": r.covers_total,
                           "failed": r.failed, "known_failure": p.known_failure or None,
                           "seconds": round(r.seconds, 1), "workdir": str(r.workdir)}
                          for p, r in results],
               "seconds_per_block": {b: round(s, 1) for b, s in per_block.items()}}
    return Result([table], figures, status=1 if failures else 0)
