"""``python build.py sd``: cached decoding and Elastic-SD on a checkpoint or the built-in default.

The built-in default is :func:`sw_model.model.checkpoints.default_model`, the trained byte-level
MoE shipped with the package; its prompts are slices of the held-out text
(:mod:`sw_model.model.corpus`: code and prose alternately) of different lengths, drawn from
``--seed``. A checkpoint gets random token ids (there is no tokenizer). Both modes run on the same
batch; the batch threshold says which one the accelerator would choose. Prints a table and, as the
last line, one JSON object whose top-level figures are Elastic-SD's (``mode`` "elastic_sd"), with
the cached run under ``"cached"``. ``--cache controller`` (default) plays the expert cache with the
cache controller's golden model (:mod:`sw_model.decode.cache_bridge`: LRU for cached decoding,
COUNT/SELECT with the FREQUENCY policy for Elastic-SD); ``--cache lru`` with the plain per-layer LRU
stand-in. Exit status 1 when greedy Elastic-SD's output differs from cached decoding's.
"""

import time

import numpy as np

from sim.commands.options import decoding_flags_or_exit
from sim.commands.output import Result, Table, progress, progress_bar
from sw_model.golden.mac_array import DRAFT_METHODS
from sw_model.decode.decoding import CACHE_MODELS
from sw_model.decode.draft_policies import POLICY_NAMES, make_policy

__all__ = ["NAME", "HELP", "add_arguments", "run"]

NAME = "sd"
#: Reads the decoding policy (``--decoding``, ``--set decoding.*``).
DECODING = True
HELP = "Elastic-SD and cached decoding on a checkpoint or the built-in MoE"


def add_arguments(p):
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="Hugging Face checkpoint directory (default: the built-in trained model)")
    p.add_argument("--batch", type=int, default=16, help="prompts in the batch (default 16)")
    p.add_argument("--gamma", type=int, default=None,
                   help="draft length (default: the decoding policy's, 4)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens per prompt (default 32)")
    p.add_argument("--prompt-len", type=int, nargs=2, default=(8, 24), metavar=("MIN", "MAX"),
                   help="prompt lengths are drawn from MIN..MAX (default 8 24)")
    p.add_argument("--capacity", type=int, default=None,
                   help="HB-resident experts per MoE layer (default: a quarter of the experts, "
                        "at least top-k)")
    p.add_argument("--policy", default=None, choices=POLICY_NAMES,
                   help="draft expert policy (default: the decoding policy's, resident)")
    p.add_argument("--k-draft", type=int, default=None, help="experts per token for elastic-k")
    p.add_argument("--draft-bits", default="augmented", choices=DRAFT_METHODS,
                   help="draft weight method (default augmented)")
    p.add_argument("--threshold", type=int, default=None,
                   help="batch size at and above which Elastic-SD runs (default 4)")
    p.add_argument("--temperature", type=float, default=None,
                   help="acceptance rule: 0 greedy, above 0 rejection sampling (default: the "
                        "decoding policy's, 0)")
    p.add_argument("--cache", default="controller", choices=CACHE_MODELS,
                   help="expert-cache model: the cache controller's golden model (default) or a "
                        "plain per-layer LRU")
    p.add_argument("--save-routing", default=None, metavar="PATH",
                   help="also write the target's routing under greedy decoding of the same prompts "
                        "as a routing trace (.npz; replay: python build.py bench cache --trace)")


def _fmt(v, digits=3):
    return "-" if v is None else f"{v:.{digits}f}"


def _cache_name(cache):
    describe = getattr(cache, "describe", None)
    return describe() if describe is not None else f"plain LRU, {cache.capacity} per layer"


def _check(args):
    decoding_flags_or_exit(args, "batch", "new_tokens", gamma="gamma", threshold="threshold",
                           draft_policy="policy", temperature="temperature")
    lo, hi = args.prompt_len
    if not 1 <= lo <= hi:
        raise SystemExit(f"--prompt-len must be 1 <= MIN <= MAX, not {lo} {hi}")
    if args.save_routing is not None and args.new_tokens < 2:
        raise SystemExit(f"--save-routing needs --new-tokens of at least 2 (a decode step after "
                         f"the first token), not {args.new_tokens}")


def _dequant_error(model, prompts, new_tokens=4):
    """The PE's binary32 dequantisation against float64 on every routed expert layer a short
    target-only decode of ``prompts`` runs (:class:`sw_model.golden.dequant.ErrorStats`)."""
    from sw_model.decode.decoding import cached_decode
    from sw_model.golden.dequant import ErrorStats
    from hw.params import MacMode
    stats = ErrorStats()

    def observe(call):
        for ec in call.experts:
            ffn = model.layers[call.layer]["experts"][ec.expert]
            for lin, x in ((ffn.gate, ec.x), (ffn.up, ec.x), (ffn.down, ec.hidden)):
                stats.add(lin.group_sums(x, MacMode.FULL), lin.quant.scales, x.scales)

    model.observer = observe
    try:
        cached_decode(model, prompts, new_tokens)
    finally:
        model.observer = None
    return stats.summary()


def run(args):
    # Imported here so that build.py's other commands do not need the checkpoint reader.
    from sw_model.model.checkpoints import CheckpointError, default_model, load_checkpoint
    from sw_model.decode.decoding import SDConfig, cached_decode, elastic_sd, make_cache
    _check(args)
    start = time.monotonic()
    if args.checkpoint:
        try:
            model, scheme = load_checkpoint(args.checkpoint, progress=progress_bar("loading"))
        except (CheckpointError, OSError) as exc:
            raise SystemExit(f"cannot load checkpoint {args.checkpoint}: {exc}") from None
        name = f"{args.checkpoint} ({scheme})"
    else:
        model, name = default_model()
    c = model.config
    capacity = args.capacity if args.capacity is not None else max(c.top_k, c.num_experts // 4)
    if capacity < c.top_k:
        raise SystemExit(f"--capacity: cache capacity ({capacity} experts per layer) must hold at "
                         f"least top_k ({c.top_k}) experts to draft from the resident set")
    try:
        sd = SDConfig(gamma=args.gamma, threshold=args.threshold, capacity=capacity,
                      temperature=args.temperature, draft_bits=args.draft_bits,
                      tree=args.decoding_policy.tree)
        policy = make_policy(args.policy, args.k_draft)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    rng = np.random.default_rng(args.seed)
    lo, hi = args.prompt_len
    if args.checkpoint:
        prompts = [rng.integers(0, c.vocab_size, rng.integers(lo, hi + 1))
                   for _ in range(args.batch)]
        source = "random token ids"
    else:
        from sw_model.model.corpus import heldout_prompts
        prompts = heldout_prompts(rng, args.batch, lo, hi)
        source = "held-out code and prose"
    selected = "elastic_sd" if args.batch >= args.threshold else "cached"
    progress(f"model: {name}\n  {c.describe()}")
    progress(f"batch {args.batch} prompts ({source}) of {lo}..{hi} tokens, {args.new_tokens} new "
             f"tokens each; HB holds {capacity} of {c.num_experts} experts per MoE layer; "
             f"threshold {args.threshold} -> {selected}")
    try:
        caches = {m: make_cache(args.cache, c, capacity, m) for m in ("cached", "elastic_sd")}
        progress(f"cached decoding, expert cache: {_cache_name(caches['cached'])} ...")
        cached = cached_decode(model, prompts, args.new_tokens, cache=caches["cached"],
                               temperature=args.temperature, rng=np.random.default_rng(args.seed))
        draft = (f"tree {sd.shape.spec}: {sd.shape.nodes} draft nodes, depth {sd.shape.depth}"
                 if sd.shape is not None else f"gamma {args.gamma}")
        progress(f"Elastic-SD ({draft}, policy {args.policy}, draft bits "
                 f"{args.draft_bits}), expert cache: {_cache_name(caches['elastic_sd'])} ...")
        spec = elastic_sd(model, prompts, args.new_tokens, policy, sd, cache=caches["elastic_sd"],
                          rng=np.random.default_rng(args.seed))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    error = _dequant_error(model, prompts)
    cs, ss = cached.summary(), spec.summary()
    touched = lambda s, p: (_fmt(float(np.mean(s["experts_touched_per_layer"][p])), 1)
                            if p in s["experts_touched_per_layer"] else "-")
    rows = [[m, s["tokens"], s["steps"], _fmt(s["acceptance_rate"]),
             _fmt(s["mean_accepted_length"], 2), touched(s, "draft"), touched(s, "target"),
             f"{s['hb_bytes_per_token']:.0f}", f"{s['hb_expert_bytes_per_token']:.0f}",
             f"{s['lpddr_bytes_per_token']:.0f}", _fmt(s["hit_rate"])]
            for m, s in (("cached", cs), ("elastic_sd", ss))]
    notes = ["(experts/layer: distinct experts per MoE layer and step, mean over layers and steps; "
             "bytes per generated token over the decode steps)"]
    same = sum(np.array_equal(a, b) for a, b in zip(cached.tokens, spec.tokens))
    if args.temperature == 0:
        notes.append(f"greedy Elastic-SD output equals target (cached) decoding for {same} of "
                     f"{len(prompts)} sequences")
    notes.append(f"binary32 dequantisation (the PE's) against float64 on the same sums, over "
                 f"{error['calls']} expert-layer calls of the target ({error['values']} values): "
                 f"largest error {error['max_error_of_peak']:.2e} of the call's largest output; "
                 f"relative error of outputs above 2^-10 of it: median "
                 f"{error['median_relative']:.1e}, largest {error['max_relative']:.1e}")
    requests = {m: len(getattr(cache, "trace", ())) for m, cache in caches.items()}
    if args.cache == "controller":
        notes.append(f"controller requests issued: {requests['cached']} (cached), "
                     f"{requests['elastic_sd']} (Elastic-SD)")
    if args.save_routing is not None:
        from sw_model.decode.decoding import record_routing
        trace = record_routing(model, prompts, args.new_tokens)
        try:
            trace.save(args.save_routing)
        except OSError as exc:
            raise SystemExit(f"--save-routing: cannot write {args.save_routing}: {exc}") from None
        notes.append(f"target routing ({trace.steps} steps x {trace.batch} sequences x "
                     f"{trace.layers} MoE layers x top-{trace.top_k}) written to "
                     f"{args.save_routing}")
    seconds = time.monotonic() - start
    notes.append(f"done in {seconds:.1f} s")
    table = Table(None, ["mode", "tokens", "steps", "acceptance", "mean accepted length",
                         "experts/layer draft", "experts/layer target", "HB B/token",
                         "  of which experts", "LPDDR B/token", "hit rate"], rows,
                  "\n".join(notes))
    figures = {
        "model": name, "mode": "elastic_sd", "selected_mode": selected, "batch": args.batch,
        "gamma": args.gamma, "tree": args.decoding_policy.tree, "policy": args.policy,
        "draft_bits": args.draft_bits,
        "capacity": capacity, "cache": args.cache, "temperature": args.temperature,
        "new_tokens": args.new_tokens, "threshold": args.threshold,
        "decoding": args.decoding_policy.to_dict(),
        "acceptance_rate": ss["acceptance_rate"],
        "mean_accepted_length": ss["mean_accepted_length"],
        "verified_tokens": ss["verified"], "tokens_per_verified": ss["tokens_per_verified"],
        "hb_bytes_per_token": ss["hb_bytes_per_token"],
        "hb_expert_bytes_per_token": ss["hb_expert_bytes_per_token"],
        "lpddr_bytes_per_token": ss["lpddr_bytes_per_token"],
        "hb_write_bytes_per_token": ss["hb_write_bytes_per_token"],
        "experts_touched_per_layer": ss["experts_touched_per_layer"],
        "hit_rate": ss["hit_rate"],
        "lossless_sequences": same if args.temperature == 0 else None,
        "dequant_error_vs_float64": error,
        "cached": {k: cs[k] for k in ("hb_bytes_per_token", "hb_expert_bytes_per_token",
                                      "lpddr_bytes_per_token", "experts_touched_per_layer",
                                      "hit_rate")},
        "cache_requests": requests if args.cache == "controller" else None,
        "routing_trace": args.save_routing,
        "seconds": round(seconds, 2),
    }
    return Result([table], figures,
                  status=0 if args.temperature > 0 or same == len(prompts) else 1)
