"""The stream-driven path: a decode step's cost read from the scheduler's command stream.

The scheduler (:mod:`sw_model.compiler.scheduler`) turns a step record into ISA commands
(:mod:`hw.isa`). :func:`stream_work` reads, per phase (BARRIER ``phase``), the bytes every tier
moves (LOAD_SLOT / LOAD_HB: HB reads, WRITE_SLOT: HB writes, LOAD_LPDDR: LPDDR reads; each
``count`` weight words of ``hb_ratio`` / ``lpddr_ratio`` memory words: weight slices and the
experts' FP16 scale words alike) and the MAC work (MAC and MAC_DQ: ``count`` operations of
``tokens x group_size x channels(mode)`` multiply-accumulates, two per group for a split MAC_DQ;
FULL at 8-bit weights, the slice modes at 4-bit).

What the stream does not carry is added by the same analytic rules as the fast path, and said
so: everything outside the routed experts (dense weights, KV cache, attention, the gather
link: :func:`sw_model.perf.methods.target_work` with no experts).

:func:`record_counts` gives the analytic path the counts of the same step record, so the two paths
can be compared on identical routing (tests/sw_model/test_perf_streams.py: within 2% per phase).
"""

from dataclasses import replace

import numpy as np

from hw.isa import Command, Opcode, decode, decode_word
from hw.params import MacMode, TopParams
from sw_model.decode.cache_bridge import controller_params
from sw_model.perf.methods import PassCounts, StepPlan, _common, _finish, elastic_phases, \
    target_work
from sw_model.perf.phases import PhaseWork

__all__ = ["stream_work", "stream_plan", "record_counts", "analytic_plan", "stream_params",
           "PHASE_OF_BARRIER"]

#: BARRIER phase numbers of the scheduler (sw_model.compiler.scheduler.PHASES) to this model's
#: labels.
PHASE_OF_BARRIER = {0: "setup", 1: "draft", 2: "verify", 3: "decode"}


#: Memory sizes of :func:`stream_params` machines: the ISA's largest HB channel (24-bit address)
#: and 2^30 LPDDR words; only addresses depend on them, not the bytes a stream moves.
STREAM_HB_WORDS = 1 << 24
STREAM_LPDDR_WORDS = 1 << 30
#: Input (host-written activations) and activation memory words: large enough for a batch-256
#: verification's token tiles; they change command counts, not bytes or MAC work.
STREAM_INPUT_WORDS = 1 << 16
STREAM_ACT_WORDS = 1 << 12


def stream_params(config, capacity, base):
    """A :class:`TopParams` with ``base``'s PEs and MAC array whose cache and slots hold
    ``capacity`` experts per MoE layer of ``config`` (the presets' caches cover 3-4 layers), with
    memories as large as the ISA addresses and the schedules need, and a weight memory that holds
    the largest block's groups as one chunk (so every job reads its weights once, whatever its
    token tiles, as the analytic path assumes)."""
    from sw_model.compiler.weight_layout import WeightLayout
    cache = controller_params(config, capacity, "FREQUENCY")
    G = max(config.hidden_size, config.expert_ffn) // base.mac.group_size
    k = base.scale_slots
    chunk = G * base.mac.beats_per_group + -(-G // k) + 1
    big = replace(base, cache=cache, input_words=STREAM_INPUT_WORDS,
                  weight_words=min(1 << 16, max(base.weight_words, 2 * chunk)),
                  act_words=max(base.act_words, STREAM_ACT_WORDS),
                  hb=replace(base.hb, words=STREAM_HB_WORDS, address_width=24),
                  lpddr=replace(base.lpddr, words=STREAM_LPDDR_WORDS, address_width=30))
    need = WeightLayout(config, replace(big, slot_words=STREAM_HB_WORDS // cache.slots))
    return replace(big, slot_words=need.slot_hb_words)


def _commands(stream):
    """Commands of a stream given as commands, 128-bit words or the binary form."""
    if isinstance(stream, (bytes, bytearray, memoryview)):
        return decode(stream)
    out = []
    for i, item in enumerate(stream):
        if isinstance(item, Command):
            out.append(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(decode_word(item, i))
        else:
            raise TypeError(f"command {i}: expected a Command or a 128-bit word, not {item!r}")
    return out


def stream_work(commands, params):
    """``{phase label: PhaseWork}`` of the routed-expert work in ``commands`` (Commands, words
    or the binary form; undecodable words raise :class:`hw.isa.StreamError`) on ``params``."""
    if not isinstance(params, TopParams):
        raise TypeError(f"params must be a TopParams, not {params!r}")
    commands = _commands(commands)
    hb = params.hb_ratio * params.hb.bytes_per_word
    lp = params.lpddr_ratio * params.lpddr.bytes_per_word
    mac = params.mac
    per_op = {m: mac.tokens * mac.group_size * mac.channels(m) for m in MacMode}
    totals, phase = {}, "setup"
    for i, c in enumerate(commands):
        op = c.op
        if op is Opcode.BARRIER:
            if c.phase not in PHASE_OF_BARRIER:
                raise ValueError(f"command {i}: BARRIER phase {c.phase} is not one of "
                                 f"{sorted(PHASE_OF_BARRIER)}")
            phase = PHASE_OF_BARRIER[c.phase]
            continue
        t = totals.setdefault(phase, dict.fromkeys(("near_read", "near_write", "far_read",
                                                    "macs_w8", "macs_w4"), 0))
        if op in (Opcode.LOAD_SLOT, Opcode.LOAD_HB):
            t["near_read"] += c.count * hb
        elif op is Opcode.WRITE_SLOT:
            t["near_write"] += c.count * hb
        elif op is Opcode.LOAD_LPDDR:
            t["far_read"] += c.count * lp
        elif op is Opcode.MAC or (op is Opcode.MAC_DQ and not c.split):
            mode = MacMode(c.mode)
            t["macs_w8" if mode is MacMode.FULL else "macs_w4"] += c.count * per_op[mode]
        elif op is Opcode.MAC_DQ:          # split: an MSB and an LSB operation per group
            t["macs_w4"] += c.count * (per_op[MacMode.MSB] + per_op[MacMode.LSB])
    return {p: PhaseWork(**t) for p, t in totals.items()}


def stream_plan(record, schedule, hw, model, settings, dense_near=1.0, kv_near=1.0):
    """The step's :class:`StepPlan` from its schedule: routed experts (weights and scales) from
    the stream, the rest analytic. Phases: ``decode`` (cached) or ``draft`` + ``verify``."""
    experts = stream_work(schedule.commands, schedule.layout.params)
    seqs = len(record.sequences)
    if record.mode == "cached":
        rest = _common(hw, model, seqs, seqs, settings.context, dense_near, kv_near)
        work = rest + experts.get("decode", PhaseWork())
        return StepPlan("stream:cached", [("decode", 1, _finish(hw, work))], float(seqs), {})
    gamma = len(record.draft_routes)
    draft_rest = _common(hw, model, seqs, seqs, settings.context, dense_near,
                         kv_near).scaled(gamma)
    draft = draft_rest + experts.get("draft", PhaseWork())
    verify_rest = _common(hw, model, seqs * (gamma + 1), seqs, settings.context, dense_near,
                          kv_near)
    verify = verify_rest + experts.get("verify", PhaseWork())
    kept = float(sum(record.accepted) + seqs)
    return StepPlan("stream:elastic_sd", [("draft", 1, _finish(hw, draft)),
                                          ("verify", 1, _finish(hw, verify))], kept, {})


def _pass_counts(routes, resident, tile):
    """PassCounts of one pass's routes ``{layer: [rows, k]}`` (``-1`` pads), averaged over
    layers; ``resident(layer)`` the near-tier set."""
    touched, hits, tiles, tokens = [], [], [], 0
    for layer, r in routes.items():
        r = np.asarray(r)
        tokens = r.shape[0]
        used = r[r >= 0]
        rows = np.bincount(used, minlength=1)
        experts = set(int(e) for e in np.unique(used))
        touched.append(len(experts))
        hits.append(len(experts & resident(layer)))
        tiles.append(int(np.sum(-(-rows[rows > 0] // tile))))
    mean = lambda v: float(np.mean(v)) if v else 0.0
    return PassCounts(tokens, mean(touched), mean(hits), mean(tiles))


def record_counts(record, tile):
    """The analytic path's counts of one step record: ``(target, drafts, installs, streamed)``
    (PassCounts; per layer: experts installed, and those verification streams as misses)."""
    if record.mode == "cached":
        hit_keys = {}
        for entry in record.cache_requests.get("target", []):
            if entry.request.op.name == "LOOKUP" and entry.responses[-1].status.name == "HIT":
                hit_keys.setdefault(record.layers[entry.request.layer], set()).add(
                    entry.request.expert)
        target = _pass_counts(record.target_routes, lambda l: hit_keys.get(l, set()), tile)
        installs = target.touched - target.hits
        return target, [], installs, installs
    resident = lambda l: set(record.resident_before[l])
    target = _pass_counts(record.target_routes, resident, tile)
    drafts = [_pass_counts(r, resident, tile) for r in record.draft_routes]
    installs, streamed = [], []
    for layer in record.layers:
        new = set(record.installed.get(layer, ()))
        r = np.asarray(record.target_routes[layer])
        used = set(int(e) for e in np.unique(r[r >= 0]))
        installs.append(len(new))
        streamed.append(len(new & (used - resident(layer))))
    return target, drafts, float(np.mean(installs)), float(np.mean(streamed))


def analytic_plan(record, hw, model, settings, dense_near=1.0, kv_near=1.0):
    """The analytic path on the same record (its counts instead of trace statistics)."""
    target, drafts, installs, streamed = record_counts(record, hw.mac_tokens)
    seqs = len(record.sequences)
    if record.mode == "cached":
        w = target_work(hw, model, settings, seqs, target, installs, streamed, dense_near,
                        kv_near)
        return StepPlan("analytic:cached", [("decode", 1, w)], float(seqs), {})
    gamma = len(drafts)
    mean = PassCounts(seqs, *(float(np.mean([getattr(d, f) for d in drafts]))
                              for f in ("touched", "hits", "tiles")))
    phases = elastic_phases(hw, model, replace(settings, gamma=gamma), seqs, mean, target,
                            installs, streamed, dense_near, kv_near)
    kept = float(sum(record.accepted) + seqs)
    return StepPlan("analytic:elastic_sd", phases, kept, {})


def _config_and_base(model, preset):
    """``(MoEConfig, TopParams preset)``: ``model`` a config, a zoo name or ``default``."""
    from hw.params import TOP_PRESETS
    from sw_model.model.zoo import zoo_entry
    from sw_model.model.moe import DEFAULT_CONFIG
    if preset not in TOP_PRESETS:
        raise ValueError(f"unknown machine preset {preset!r}; choose from {', '.join(TOP_PRESETS)}")
    if not isinstance(model, str):
        return model, TOP_PRESETS[preset]
    config = DEFAULT_CONFIG if model == "default" else zoo_entry(model).config
    return config, TOP_PRESETS[preset]


def compare_record_paths(model, mode, batch, capacity, preset="default", steps=2, gamma=3,
                         acceptance=0.7, settings=None, seed=0):
    """Schedule ``steps`` trace-driven step records of ``model`` (a zoo name or ``default``, the
    golden model's built-in shape) on the ``preset`` PE with ``capacity`` HB experts per layer,
    and evaluate each step on both paths. Yields, per step and phase, ``(phase, stream seconds,
    analytic seconds, relative time difference, relative energy difference, commands)``."""
    from sw_model.perf.hardware import elmoe3d
    from sw_model.perf.methods import Settings, step_result
    from sw_model.perf.zoo import ZOO, shape_from_config
    from sw_model.compiler.scheduler import schedule_step
    from sw_model.compiler.trace_steps import trace_records
    from sw_model.compiler.weight_layout import WeightLayout
    config, base = _config_and_base(model, preset)
    params = stream_params(config, capacity, base)
    layout = WeightLayout(config, params)
    hw = replace(elmoe3d(), mac_tokens=params.mac.tokens)
    shape = ZOO[model] if model in ZOO else shape_from_config(config)
    settings = replace(settings or Settings(), slots=capacity, gamma=gamma)
    records, _ = trace_records(config, batch, steps, mode, capacity, gamma=gamma,
                               acceptance=acceptance, seed=seed)
    for record in records:
        schedule = schedule_step(record, layout)
        s = step_result(hw, stream_plan(record, schedule, hw, shape, settings))
        a = step_result(hw, analytic_plan(record, hw, shape, settings))
        for (label, ns, cs), (_, na, ca) in zip(s.costs, a.costs):
            ts, ta = ns * cs.seconds, na * ca.seconds
            yield (label, ts, ta, ta / ts - 1, (na * ca.joules) / (ns * cs.joules) - 1,
                   len(schedule.commands))


def compare_fast_path(model, mode, batch, capacity, preset="default", steps=40, gamma=3,
                      acceptance=0.7, zipf=1.0, reuse=0.5, seed=0):
    """The fast path (statistics of a routing trace, :func:`sw_model.perf.methods.plan_step`)
    against the mean over ``steps`` scheduled steps of the stream-driven path, on the same
    generated trace, the same capacity, gamma and acceptance. Returns ``(stream seconds per
    step, fast seconds per step, relative time difference, relative energy difference)``."""
    from sw_model.perf.hardware import elmoe3d
    from sw_model.perf.methods import Settings, plan_step, step_result
    from sw_model.perf.workload import AcceptanceModel
    from sw_model.perf.zoo import ZOO, shape_from_config
    from sw_model.model.routing_traces import generate_routing_trace
    from sw_model.compiler.scheduler import schedule_step
    from sw_model.compiler.trace_steps import PROMPT_POSITIONS, trace_records
    from sw_model.compiler.weight_layout import WeightLayout
    config, base = _config_and_base(model, preset)
    params = stream_params(config, capacity, base)
    layout = WeightLayout(config, params)
    hw = replace(elmoe3d(), mac_tokens=params.mac.tokens)
    shape = ZOO[model] if isinstance(model, str) and model in ZOO else shape_from_config(config)
    span = gamma + 1 if mode == "elastic_sd" else 1
    # the very trace trace_records draws (same arguments, same seed)
    trace = generate_routing_trace(len(config.moe_layers), config.num_experts, config.top_k,
                                   PROMPT_POSITIONS + steps * span, batch, zipf, reuse, seed)
    settings = Settings(slots=capacity, gamma=gamma, cache_policy="lru", trace=trace,
                        acceptance=AcceptanceModel(measured={"elastic_sd": acceptance}))
    records, _ = trace_records(config, batch, steps, mode, capacity, gamma=gamma,
                               acceptance=acceptance, zipf=zipf, reuse=reuse, seed=seed)
    runs = [step_result(hw, stream_plan(r, schedule_step(r, layout), hw, shape, settings))
            for r in records]
    fast = step_result(hw, plan_step(hw, shape, batch,
                                     "cache" if mode == "cached" else "elastic_sd", settings))
    seconds = float(np.mean([r.seconds for r in runs]))
    joules = float(np.mean([r.joules for r in runs]))
    return seconds, fast.seconds, fast.seconds / seconds - 1, fast.joules / joules - 1

