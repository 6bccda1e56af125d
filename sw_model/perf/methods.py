"""Decoding methods as phases of work: the analytic path of the performance model.

A decode *step* of a batch of ``B`` sequences is a list of phases (:class:`StepPlan`) and the
tokens it keeps. Methods (``METHODS``):

``plain``       one target pass over the B tokens; no expert cache.
``cache``       one target pass with an expert cache in the near tier, LRU by default (the
                paper's cache model; ``Settings.cache_policy`` or the machine's own
                ``cache_policy`` pick another of ``hardware.CACHE_POLICIES``).
                On ELMoE-3D a hit reads the upper nibble (and scales) from HB and the lower nibble
                from LPDDR; on whole-expert machines a hit reads nothing from the far tier.
``elastic_sd``  ELMoE-3D: gamma draft passes on the HB-resident upper nibbles (dense layers at
                INT8 from HB), then one verification pass over B x (gamma+1) tokens; the next
                resident set (frequency set) is written into HB during verification, piggy-backed
                on experts verification streams in full. With a token tree (``Settings.tree``):
                one draft pass per depth carrying that depth's nodes (``TreeShape.levels``), one
                verification over B x (nodes+1) tokens touching the experts of
                ``AcceptanceModel.tree_window`` consecutive tokens (the measured growth of the
                union with the tree), and the tree's measured tokens per verification.
``eagle_sd``    gamma passes of an EAGLE head (one decoder layer with a dense FFN as wide as the
                active experts, plus the LM head) held in HB; verification as ``elastic_sd`` with
                the remaining HB as a frequency-set expert cache.
``slm_sd``      a small draft LM (``AcceptanceModel.slm_params``, Qwen3-0.6B-like KV) in HB.
``quant_sd``    a separately rounded 4-bit copy of the target drafts: HB holds the copies of the
                most used experts, others' copies stream from LPDDR; HB's copies cannot serve
                verification, which reads every expert in full from LPDDR.
``specmoe_sd``  SpecMoE's self-assisted SD: a pinned hot set of whole INT8 experts drafts (other
                choices substituted inside the set), then one verification pass.
``elmoe3d``     ELMoE-3D's mode switch: ``cache`` below ``Settings.threshold``, ``elastic_sd`` at
                and above it.

Near-tier placement, in priority order: dense weights, KV cache (``Settings.context`` tokens per
sequence; a machine with ``kv_near=False`` keeps it in the far tier), a separate draft model,
then resident experts (whole slots per MoE layer). What does not fit stays in the far tier.
Byte rules follow sw_model/decode/decoding.py (a pass reads each touched expert once); KV is read
once per sequence per pass. PIM-style machines run every weight product inside the far tier
(``FarCompute``), re-reading weights for every ``tokens_per_read`` tokens; attention runs on the PEs
with the KV read externally.
"""

from dataclasses import dataclass, field, replace
import math

from sw_model.decode.policy import DEFAULT_POLICY
from sw_model.decode.tree import parse_tree
from sw_model.perf.hardware import CACHE_POLICIES, GATHER_BYTES_PER_HIDDEN, PRIORS, \
    PriorAssumptions
from sw_model.perf.phases import PhaseWork, evaluate
from sw_model.perf.workload import ACCEPTANCE, AcceptanceModel, Locality, alpha_for_length, \
    expected_length, routing_stats, stat_steps, step_strides, trace_stats
from sw_model.perf.zoo import QUANT_GROUP, SCALE_BYTES, get_model

__all__ = ["Settings", "StepPlan", "METHODS", "plan_step", "step_result", "StepResult",
           "PassCounts", "target_work", "draft_work", "elastic_phases", "part_tokens",
           "check_verify_fits", "draft_label"]

METHODS = ("plain", "cache", "elastic_sd", "eagle_sd", "slm_sd", "quant_sd", "specmoe_sd",
           "elmoe3d")
#: Draft LM KV bytes per token (Qwen3-0.6B-like: 28 layers, 8 KV heads x 128, FP16). Assumed.
SLM_KV_BYTES = 28 * 2 * 8 * 128 * 2


@dataclass(frozen=True)
class Settings:
    """Workload and policy parameters shared by every method. ``gamma`` draft tokens per step
    (unpublished in the paper; assumed 4); ``threshold`` batch at and above which ELMoE-3D
    switches to Elastic-SD (unpublished; assumed 4, the golden model's default); ``context``
    tokens of KV per sequence (paper: 1k); ``resident_policy`` Elastic-SD's set: ``frequency``
    (paper), ``static`` or ``random``; ``slots``: resident experts per MoE layer instead of what
    fits (None), to compare with a scheduled stream of a given capacity; ``cache_policy`` of
    cached decoding on machines without their own (``hardware.CACHE_POLICIES``; default ``lru``,
    the paper's cache model); ``priors``: the prior accelerators' assumptions
    (:class:`~sw_model.perf.hardware.PriorAssumptions`); ``trace``: a
    :class:`sw_model.model.routing_traces.RoutingTrace` (e.g. recorded from the golden model) whose
    first ``batch`` sequences give the routing instead of generated traces; ``tree``: Elastic-SD's
    draft shape, None (or ``"chain"``) for a chain of ``gamma`` drafts, else a token tree
    (:func:`sw_model.decode.tree.parse_tree`; other methods keep their chains)."""
    gamma: int = DEFAULT_POLICY.gamma
    threshold: int = DEFAULT_POLICY.threshold
    context: int = 1024
    locality: Locality = field(default_factory=Locality)
    acceptance: AcceptanceModel = ACCEPTANCE
    resident_policy: str = DEFAULT_POLICY.resident_set
    slots: int = None
    cache_policy: str = "lru"
    trace: object = None
    priors: PriorAssumptions = PRIORS
    tree: object = None

    def __post_init__(self):
        object.__setattr__(self, "tree", parse_tree(self.tree))
        for name in ("gamma", "threshold", "context"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Settings.{name} must be a positive integer, not {value!r}")
        if self.slots is not None and (isinstance(self.slots, bool) or not isinstance(
                self.slots, int) or self.slots < 0):
            raise ValueError(f"Settings.slots must be None or an int >= 0, not {self.slots!r}")
        if self.cache_policy not in CACHE_POLICIES:
            raise ValueError(f"Settings.cache_policy must be one of {', '.join(CACHE_POLICIES)}, "
                             f"not {self.cache_policy!r}")
        if not isinstance(self.priors, PriorAssumptions):
            raise TypeError(f"Settings.priors must be a PriorAssumptions, not {self.priors!r}")
        if self.resident_policy not in ("frequency", "static", "random"):
            raise ValueError(f"Settings.resident_policy must be frequency, static or random, not "
                             f"{self.resident_policy!r}")


@dataclass
class StepPlan:
    """One decode step: ``phases`` as (label, count, PhaseWork), ``tokens`` kept per step, and
    what the method decided (``info``: acceptance, coverage, resident slots, mode)."""
    method: str
    phases: list
    tokens: float
    info: dict


@dataclass
class StepResult:
    """A step evaluated on a machine: per-token seconds and joules, plus the plan and costs."""
    plan: StepPlan
    seconds: float
    joules: float
    costs: list

    @property
    def s_per_token(self):
        return self.seconds / self.plan.tokens

    @property
    def j_per_token(self):
        return self.joules / self.plan.tokens


# -- placement ----------------------------------------------------------------------------------

def _weight_scale(hw, model):
    return hw.weight_bytes_scale


def _expert_bytes(hw, model):
    """(bytes of one resident expert in the near tier, full bytes in the far tier)."""
    scale = hw.weight_bytes_scale if model.bit_nested else 1.0
    full = model.expert_full_bytes * scale
    if hw.near_holds == "msb":
        return model.expert_msb_bytes, full
    return full, full


def _place(hw, model, seqs, ctx, draft_bytes=0.0, resident=None, slots=None):
    """Share of dense weights and KV in the near tier, and expert slots per MoE layer."""
    cap = hw.near_capacity_bytes
    dense = model.dense_bytes * _weight_scale(hw, model)
    kv = seqs * model.kv_bytes_per_sequence(ctx)
    dense_near = min(1.0, cap / dense) if dense else 1.0
    cap -= dense_near * dense
    kv_near = 0.0
    if hw.kv_near and hw.near is not None and kv:
        kv_near = min(1.0, cap / kv)
        cap -= kv_near * kv
    cap = max(0.0, cap - draft_bytes)
    per_expert = resident if resident is not None else _expert_bytes(hw, model)[0]
    if slots is None:
        slots = int(cap // (model.moe_layers * per_expert)) if hw.near is not None else 0
    return dense_near, kv_near, min(slots, model.experts)


# -- passes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PassCounts:
    """Routed experts of one pass, per MoE layer: ``touched`` distinct experts, ``hits`` of them
    resident in the near tier, ``tiles`` MAC token tiles (each expert runs its rows ``mac_tokens``
    at a time); ``tokens`` the pass's tokens."""
    tokens: float
    touched: float
    hits: float
    tiles: float


def _common(hw, model, tokens, seqs, ctx, dense_near, kv_near):
    """Dense weights, KV, attention and links of one pass over ``tokens`` tokens of ``seqs``
    sequences (everything but the routed experts)."""
    dense = model.dense_bytes * _weight_scale(hw, model)
    kv = seqs * model.kv_bytes_per_sequence(ctx)
    w = PhaseWork(layers=model.layers, tokens=tokens,
                  macs_w8=tokens * ctx * model.attn_macs_per_ctx * model.layers,
                  near_read=kv * kv_near, far_read=kv * (1 - kv_near))
    if hw.far_compute is not None:
        reads = _pim_reads(hw, tokens, 1)
        w += PhaseWork(near_read=dense * dense_near, far_internal=dense * (1 - dense_near) * reads,
                       far_macs=tokens * model.dense_weights)
    else:
        w += PhaseWork(near_read=dense * dense_near, far_read=dense * (1 - dense_near),
                       macs_w8=tokens * model.dense_weights)
    if hw.gather_gbps:
        w += PhaseWork(gather=tokens * model.hidden * GATHER_BYTES_PER_HIDDEN * model.layers)
    return w


def _pim_reads(hw, tokens, touched):
    """Internal weight reads of a far-tier compute unit for ``tokens`` spread over ``touched``
    weight sets (each set re-read every ``tokens_per_read`` tokens it serves)."""
    tpr = hw.far_compute.tokens_per_read
    return touched if tpr == 0 else max(touched, tokens / tpr)


def _experts(hw, model, c, precision):
    """Routed experts of one pass (:class:`PassCounts` ``c``) summed over the MoE layers.
    ``precision`` "target" (a resident expert's lower nibble still comes from the far tier) or
    "draft" (upper nibbles only)."""
    near_b, full_b = _expert_bytes(hw, model)
    L = model.moe_layers
    misses = max(0.0, c.touched - c.hits)
    macs = c.tiles * hw.mac_tokens * model.expert_weights * L
    four_bit = precision == "draft" or not model.bit_nested
    mac = PhaseWork(macs_w4=macs) if four_bit else PhaseWork(macs_w8=macs)
    if hw.far_compute is not None:
        reads = _pim_reads(hw, c.tokens * model.top_k, c.touched)
        return PhaseWork(far_internal=L * reads * full_b,
                         far_macs=c.tokens * model.top_k * model.expert_weights * L)
    if hw.near_holds == "msb":
        lsb = model.expert_lsb_bytes if precision == "target" else 0.0
        w = PhaseWork(near_read=L * c.hits * near_b,
                      far_read=L * (c.hits * lsb + misses * full_b))
    elif hw.near_holds == "whole":
        w = PhaseWork(near_read=L * c.hits * near_b, far_read=L * misses * full_b)
    else:
        w = PhaseWork(far_read=L * c.touched * full_b)
    return w + mac


def _finish(hw, w):
    """Links and SRAM follow from the bytes: far bytes cross the stream link, every weight byte
    passes a PE SRAM once."""
    extra = PhaseWork(sram=w.near_read + w.far_read)
    if hw.stream_gbps:
        extra += PhaseWork(stream=w.far_read)
    return w + extra


def _installs(hw, model, installs, streamed):
    """Writing ``installs`` experts per layer into the near tier during verification; the
    ``streamed`` ones ride on verification's full read (the fill piggy-backs), the others read
    their near-tier part from the far tier."""
    if installs <= 0:
        return PhaseWork()
    near_b, _ = _expert_bytes(hw, model)
    L = model.moe_layers
    return PhaseWork(near_write=L * installs * near_b,
                     far_read=L * max(0.0, installs - streamed) * near_b)


def target_work(hw, model, s, seqs, counts, installs=0.0, streamed=0.0, dense_near=1.0,
                kv_near=1.0):
    """A target pass (plain, cached or verification) of ``seqs`` sequences."""
    w = _common(hw, model, counts.tokens, seqs, s.context, dense_near, kv_near)
    w += _experts(hw, model, counts, "target")
    w += _installs(hw, model, installs, streamed)
    return _finish(hw, w)


def draft_work(hw, model, s, seqs, counts, dense_near=1.0, kv_near=1.0, precision="draft"):
    """One self-draft pass confined to resident experts (dense layers at INT8)."""
    w = _common(hw, model, counts.tokens, seqs, s.context, dense_near, kv_near)
    w += _experts(hw, model, counts, precision)
    return _finish(hw, w)


def elastic_phases(hw, model, s, seqs, draft, verify, installs, streamed, dense_near=1.0,
                   kv_near=1.0):
    """Elastic-SD's phases from counts: ``gamma`` draft passes (``draft`` counts each), one
    verification (``verify`` counts) writing ``installs`` experts of which ``streamed`` ride."""
    return [("draft", s.gamma, draft_work(hw, model, s, seqs, draft, dense_near, kv_near)),
            ("verify", 1, target_work(hw, model, s, seqs, verify, installs, streamed,
                                      dense_near, kv_near))]


# -- methods ------------------------------------------------------------------------------------

def _stats(model, seqs, s, span=None):
    """Routing statistics of ``seqs`` sequences; ``span``: the positions one step's windows
    reach (a token tree's), for which a generated trace is made long enough to hold several."""
    if s.trace is not None:
        return trace_stats(s.trace, model, seqs)
    steps = None
    if span is not None:
        steps = max(stat_steps(seqs), 16 * math.ceil((4 * span + 8) / 16))
    return routing_stats(model.experts, model.top_k, seqs, s.locality, steps)


def _plain(hw, model, seqs, s):
    dn, kn, _ = _place(hw, model, seqs, s.context)
    st = _stats(model, seqs, s)
    c = PassCounts(seqs, st.touched(1), 0.0, st.tiles(1, hw.mac_tokens))
    w = target_work(hw, model, s, seqs, c, dense_near=dn, kv_near=kn)
    return StepPlan("plain", [("decode", 1, w)], float(seqs), {"slots": 0})


def _cache(hw, model, seqs, s):
    if hw.near is None:
        return _plain(hw, model, seqs, s)
    policy = hw.cache_policy or s.cache_policy
    dn, kn, slots = _place(hw, model, seqs, s.context, slots=0 if policy == "none" else s.slots)
    st = _stats(model, seqs, s)
    touched = st.touched(1)
    lru = st.lru_hit_rate(slots) * touched
    pinned = st.static(slots, 1, hw.mac_tokens).hits
    use_lru = policy == "lru" or (policy == "best" and lru >= pinned)
    if slots == 0:
        hits, policy = 0.0, "none"
    else:
        hits, policy = (lru, "lru") if use_lru else (pinned, "static")
    # LRU installs every miss, riding on its full read
    installs = (touched - hits) if policy == "lru" else 0.0
    c = PassCounts(seqs, touched, hits, st.tiles(1, hw.mac_tokens))
    w = target_work(hw, model, s, seqs, c, installs, installs, dn, kn)
    return StepPlan("cache", [("decode", 1, w)], float(seqs),
                    {"slots": slots, "hit_rate": hits / touched, "policy": policy})


def _set(st, s, slots, window, tile, policy=None, stride=None, levels=None):
    policy = policy or s.resident_policy
    if policy == "frequency":
        return st.frequency(slots, window, tile, stride, levels)
    if policy == "static":
        return st.static(slots, window, tile, stride, levels)
    return st.random_set(slots, window, tile, stride, levels)


def _sd(hw, model, seqs, s, method, make_draft, draft_bytes=0.0, resident=None, policy=None,
        alpha=None, verify_hits=True, selection=None):
    """Shared skeleton: ``make_draft(slots, set_stats, dense_near, kv_near)`` gives one draft
    pass's work; verification is a target pass over ``seqs x (gamma+1)`` tokens. The resident
    set follows ``policy`` (default ``Settings.resident_policy``); acceptance is looked up as
    ``selection`` (default: the policy) with the resident share of the experts."""
    if hw.near is None:
        raise ValueError(f"{method} needs a near tier; {hw.name} has none")
    window = s.gamma + 1
    dn, kn, slots = _place(hw, model, seqs, s.context, draft_bytes, resident, s.slots)
    st = _stats(model, seqs, s)
    rs = _set(st, s, slots, window, hw.mac_tokens, policy)
    fixed = alpha
    fraction = slots / model.experts
    rate = lambda coverage: s.acceptance.rate(model.name, method, coverage, fraction, s.gamma,
                                              selection or policy or s.resident_policy)
    if alpha is None:
        alpha = rate(rs.coverage)
    # the next step starts after the tokens this one keeps: measure the set on those strides
    rs = _set(st, s, slots, window, hw.mac_tokens, policy, step_strides(alpha, s.gamma))
    if fixed is None:
        alpha = rate(rs.coverage)
    verify = PassCounts(seqs * window, st.touched(window), rs.hits if verify_hits else 0.0,
                        st.tiles(window, hw.mac_tokens))
    installs = rs.installs if verify_hits else 0.0
    vw = target_work(hw, model, s, seqs, verify, installs, rs.installs_streamed, dn, kn)
    length = expected_length(alpha, s.gamma)
    return StepPlan(method, [("draft", s.gamma, make_draft(slots, rs, dn, kn)), ("verify", 1, vw)],
                    seqs * length, {"slots": slots, "alpha": alpha, "coverage": rs.coverage,
                                    "resident_fraction": fraction, "accepted_length": length,
                                    "acceptance": (length - 1) / s.gamma})


def _tree_length(model, method, s, shape, fraction):
    """Tokens kept per verification with the tree ``shape`` (a measured override or the
    chain-coverage rule give ``alpha`` over its depth)."""
    a = s.acceptance
    for key in ((model.name, method), method):
        if key in a.measured:
            return expected_length(a.measured[key], shape.depth)
    if a.mapping == "coverage":
        return None
    return a.tree_length(shape, fraction)


def _tree_elastic(hw, model, seqs, s):
    """Elastic-SD with the token tree ``s.tree`` (module docstring)."""
    shape = s.tree
    dn, kn, slots = _place(hw, model, seqs, s.context, slots=s.slots)
    levels = shape.levels
    drafted, tokens, depth = levels[:-1], sum(levels), shape.depth
    fraction = slots / model.experts
    window = max(1, round(s.acceptance.tree_window(shape, fraction)))
    st = _stats(model, seqs, s, max(window, sum(drafted)))
    T = hw.mac_tokens
    length = _tree_length(model, "elastic_sd", s, shape, fraction)
    if length is None:              # the assumed coverage rule over the tree's depth
        rs = _set(st, s, slots, window, T, levels=drafted)
        alpha = s.acceptance.rate(model.name, "elastic_sd", rs.coverage, fraction, depth)
        length = expected_length(alpha, depth)
    alpha = alpha_for_length(length, depth)
    # steps advance by the tokens they keep: 1 .. depth + 1
    rs = _set(st, s, slots, window, T, stride=step_strides(alpha, depth), levels=drafted)
    verify = PassCounts(seqs * tokens, st.touched(window), rs.hits,
                        st.tiles_scaled(window, tokens, T))
    phases = []
    for width, (touched, tiles) in zip(drafted, rs.draft_passes):
        c = PassCounts(seqs * width, touched, touched, tiles)
        phases.append(("draft", 1, draft_work(hw, model, s, seqs, c, dn, kn)))
    phases.append(("verify", 1, target_work(hw, model, s, seqs, verify, rs.installs,
                                            rs.installs_streamed, dn, kn)))
    return StepPlan("elastic_sd", phases, seqs * length,
                    {"slots": slots, "alpha": alpha, "coverage": rs.coverage,
                     "resident_fraction": fraction, "accepted_length": length,
                     "acceptance": (length - 1) / shape.nodes, "draft": shape.spec,
                     "verify_tokens": tokens, "verify_window": window})


def _elastic(hw, model, seqs, s):
    if hw.near_holds != "msb":
        raise ValueError(f"elastic_sd needs bit-nested HB (near_holds 'msb'); {hw.name} holds "
                         f"{hw.near_holds!r}")
    if s.tree is not None:
        return _tree_elastic(hw, model, seqs, s)

    def draft(slots, rs, dn, kn):
        c = PassCounts(seqs, rs.draft_touched, rs.draft_touched, rs.draft_tiles)
        return draft_work(hw, model, s, seqs, c, dn, kn)
    return _sd(hw, model, seqs, s, "elastic_sd", draft)


def _eagle_weights(model):
    """EAGLE head: one decoder layer (attention, dense FFN as wide as the active experts) and a
    2h x h fusion layer; the target's LM head is shared (read from the dense weights)."""
    return (model.attn_params + 3 * model.hidden * model.top_k * model.expert_ffn
            + 2 * model.hidden * model.hidden)


def _separate_draft(hw, model, seqs, s, method, weights, kv_per_token, lm_head):
    wbytes = weights * (1 + SCALE_BYTES / QUANT_GROUP) * hw.weight_bytes_scale
    head = model.vocab * model.hidden * (1 + SCALE_BYTES / QUANT_GROUP) * hw.weight_bytes_scale

    def draft(slots, rs, dn, kn):
        kv = seqs * s.context * kv_per_token
        w = PhaseWork(near_read=wbytes + (head if lm_head else 0.0) + kv, layers=1, tokens=seqs,
                      macs_w8=seqs * (weights + (model.vocab * model.hidden if lm_head else 0)))
        if hw.gather_gbps:
            w += PhaseWork(gather=seqs * model.hidden * GATHER_BYTES_PER_HIDDEN)
        return _finish(hw, w)
    return _sd(hw, model, seqs, s, method, draft, draft_bytes=wbytes + seqs * s.context
               * kv_per_token, policy="frequency")


def _eagle(hw, model, seqs, s):
    return _separate_draft(hw, model, seqs, s, "eagle_sd", _eagle_weights(model),
                           model.kv_bytes, lm_head=True)


def _slm(hw, model, seqs, s):
    return _separate_draft(hw, model, seqs, s, "slm_sd", s.acceptance.slm_params, SLM_KV_BYTES,
                           lm_head=False)


def _quant(hw, model, seqs, s):
    st = _stats(model, seqs, s)
    copy = model.expert_msb_bytes     # 4-bit codes + scales, the size of an upper-nibble slot
    T = hw.mac_tokens

    def draft(slots, rs, dn, kn):
        t1 = st.touched(1)
        inside = min(slots, t1 * rs.coverage)
        w = _common(hw, model, seqs, seqs, s.context, dn, kn)
        w += PhaseWork(near_read=model.moe_layers * inside * copy,
                       far_read=model.moe_layers * (t1 - inside) * copy,
                       macs_w4=st.tiles(1, T) * T * model.expert_weights * model.moe_layers)
        return _finish(hw, w)
    hw_whole = replace(hw, near_holds="whole") if hw.near_holds == "msb" else hw
    return _sd(hw_whole, model, seqs, s, "quant_sd", draft, resident=copy, policy="static",
               alpha=s.acceptance.rate(model.name, "quant_sd", 1.0, 1.0, s.gamma),
               verify_hits=False)


def _specmoe(hw, model, seqs, s):
    hw_whole = replace(hw, near_holds="whole") if hw.near_holds == "msb" else hw

    def draft(slots, rs, dn, kn):
        c = PassCounts(seqs, rs.draft_touched, rs.draft_touched, rs.draft_tiles)
        return draft_work(hw_whole, model, s, seqs, c, dn, kn, precision="target")
    # acceptance: the frequency curve (the ablations measured SpecMoE's substitution draft within 5%
    # of the resident-set draft at 8/32 experts: mean accepted length 3.67 vs 3.85)
    return _sd(hw_whole, model, seqs, s, "specmoe_sd", draft, policy="static",
               selection="frequency")


_BUILDERS = {"plain": _plain, "cache": _cache, "elastic_sd": _elastic, "eagle_sd": _eagle,
             "slm_sd": _slm, "quant_sd": _quant, "specmoe_sd": _specmoe}


def plan_step(hw, model, batch, method, settings=Settings()):
    """The phases of one decode step of ``method`` for ``batch`` sequences of ``model``."""
    model = get_model(model)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, not {batch!r}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if method == "elmoe3d":
        chosen = "elastic_sd" if batch >= settings.threshold else "cache"
        plan = _BUILDERS[chosen](hw, model, batch, settings)
        plan.info["mode"] = chosen
        plan.method = "elmoe3d"
        return plan
    return _BUILDERS[method](hw, model, batch, settings)


def draft_label(settings):
    """The draft shape of ``settings`` as text: ``chain (gamma g)`` or the tree's spec."""
    return f"chain (gamma {settings.gamma})" if settings.tree is None else settings.tree.spec


def part_tokens(machine, model):
    """Tokens of one pass that one part of ``machine`` (a :class:`hw.params.TopParams`) holds for
    ``model``: the scheduler cuts a step into parts that each hold whole jobs (one expert's rows
    of one pass), and a job's inputs, for every token tile of ``mac.tokens`` tokens its ``x``
    (``hidden / group_size`` groups of ``beats_per_group`` words) and its ``hidden``
    (``expert_ffn / group_size`` groups) plus a scale word each, must fit the input memory
    (``input_words``). A pass may route every one of its tokens to one expert."""
    model = get_model(model)
    mac = machine.mac
    groups = (math.ceil(model.hidden / mac.group_size)
              + math.ceil(model.expert_ffn / mac.group_size))
    per_tile = groups * mac.beats_per_group + 2
    return (machine.input_words // per_tile) * mac.tokens


def check_verify_fits(tree, machine, models, batches):
    """ValueError naming ``decoding.tree`` when a verification pass of the token tree ``tree``
    (``nodes + 1`` tokens per sequence) at one of ``batches`` needs more tokens than one part of
    ``machine`` holds for one of ``models`` (:func:`part_tokens`); nothing for a chain."""
    shape = parse_tree(tree)
    if shape is None:
        return
    per = shape.nodes + 1
    for name in models:
        limit = part_tokens(machine, name)
        for batch in batches:
            if batch * per > limit:
                model = get_model(name)
                raise ValueError(
                    f"decoding.tree {shape.spec}: a verification pass carries {per} tokens per "
                    f"sequence, {batch * per} at batch {batch}, more than one part of the "
                    f"machine holds for {model.name} ({limit} tokens: a job's inputs take "
                    f"{limit // machine.mac.tokens} token tiles of input_words "
                    f"{machine.input_words}, and every token may route to one expert); the "
                    f"largest batch for this shape is {limit // per}: a smaller tree, fewer "
                    "--batches or a larger input_words")


def step_result(hw, plan):
    """Evaluate every phase of ``plan`` on ``hw``."""
    costs = [(label, count, evaluate(hw, work)) for label, count, work in plan.phases]
    seconds = sum(count * c.seconds for _, count, c in costs)
    joules = sum(count * c.joules for _, count, c in costs)
    return StepResult(plan, seconds, joules, costs)
