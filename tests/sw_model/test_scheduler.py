"""The scheduler and what it stands on: step records, model-zoo shapes, the weight layout, streams
that validate, run on the golden executor and let the host reproduce the golden model's floats,
byte accounting, the HB-slot hazard, and the trace-driven records of zoo models."""

import numpy as np
import pytest

from hw.isa import ErrorCode, Opcode, StreamError, assemble, disassemble, encode
from hw.params import TOP_DEFAULT, TOP_PAPER
from sim.top.e2e import e2e_machine, golden_parts, record_steps
from sw_model.decode.cache_bridge import ControllerExpertCache
from sw_model.decode.decoding import SDConfig, cached_decode, elastic_sd
from sw_model.decode.draft_policies import make_policy
from sw_model.golden.top import unpack_weight_beat, validate
from sw_model.golden.expert_cache import ExpertCacheModel, replay
from sw_model.model.zoo import ZOO, zoo_entry
from sw_model.model.moe import DEFAULT_CONFIG, TINY_CONFIG, MoEConfig
from sw_model.compiler.scheduler import schedule_step, stream_bytes
from sw_model.compiler.step_check import check_floats, expert_quant
from sw_model.decode.step_record import StepRecorder
from sw_model.compiler.trace_steps import trace_records
from sw_model.compiler.weight_layout import LINEARS, WeightLayout, machine_for, tile_shards

TINY_SEED = 3

CAPACITY = 4


@pytest.fixture(scope="module")
def runs(tiny):
    """Recorded steps of both modes and the machine they fit."""
    out = {"elastic_sd": record_steps(tiny, "elastic_sd", 4, 3, CAPACITY, seed=2),
           "cached": record_steps(tiny, "cached", 2, 2, CAPACITY, seed=2)}
    return out, e2e_machine(TINY_CONFIG, 2, CAPACITY)


# -- step records ---------------------------------------------------------------------------------

def test_recording_changes_nothing_and_records_each_step(tiny):
    rng = np.random.default_rng(5)
    prompts = [rng.integers(0, 64, rng.integers(3, 9)) for _ in range(4)]
    sd = SDConfig(gamma=3, capacity=CAPACITY)
    plain = elastic_sd(tiny, prompts, 7, make_policy("resident"), sd)
    recorder = StepRecorder(detail=True)
    recorded = elastic_sd(tiny, prompts, 7, make_policy("resident"), sd, recorder=recorder)
    assert all(np.array_equal(a, b) for a, b in zip(plain.tokens, recorded.tokens))
    assert tiny.observer is None
    assert len(recorder.steps) == len(recorded.steps)
    for record, stats in zip(recorder.steps, recorded.steps):
        assert record.mode == "elastic_sd" and record.gamma == 3
        assert sum(record.accepted) == stats.accepted
        assert [p.phase for p in record.passes] == ["draft"] * 3 + ["target"]
        active = len(record.sequences)
        for layer in TINY_CONFIG.moe_layers:
            assert record.target_routes[layer].shape == (4 * active, TINY_CONFIG.top_k)
            assert set(record.next_sets[layer]) <= set(record.resident_after[layer])
            # the resident-set draft only uses resident experts
            for routes in record.draft_routes:
                used = routes[layer][routes[layer] >= 0]
                assert set(used.tolist()) <= set(record.resident_before[layer])
            call = record.target_pass.calls[layer]
            assert [e.expert for e in call.experts] == sorted(
                set(record.target_routes[layer][record.target_routes[layer] >= 0].tolist()))
        assert {"select"} <= set(record.cache_requests)


def test_cached_decoding_on_the_frequency_controller_is_lru(tiny):
    """The end-to-end machine has one controller (FREQUENCY); with no COUNT every count is zero,
    so its victims are LRU's: the same requests get the same answers, slot for slot."""
    rng = np.random.default_rng(6)
    prompts = [rng.integers(0, 64, rng.integers(3, 9)) for _ in range(2)]
    traces = []
    for policy in ("LRU", "FREQUENCY"):
        cache = ControllerExpertCache(TINY_CONFIG, CAPACITY, policy)
        cached_decode(tiny, prompts, 6, cache=cache)
        traces.append([(t.request, t.responses) for t in cache.trace])
    assert traces[0] == traces[1] and len(traces[0]) > 20


# -- model zoo --------------------------------------------------------------------------------------

def test_zoo_has_every_table_entry_with_published_sizes():
    assert set(ZOO) == {"qwen3-30b-a3b", "glm-4.7-flash", "deepseek-v2-lite", "gpt-oss-20b",
                        "mixtral-8x7b", "olmoe-1b-7b", "qwen1.5-moe-a2.7b", "phi-3.5-moe"}
    for entry in ZOO.values():
        if entry.total_params is not None:
            assert abs(entry.weight_count() / entry.total_params - 1) < 0.02, entry.name
    assert zoo_entry("Mixtral-8x7B").config.expert_ffn == 14336
    assert ZOO["gpt-oss-20b"].expert_format == "mxfp4"
    assert ZOO["deepseek-v2-lite"].attention == "mla"
    with pytest.raises(ValueError, match="unknown model 'llama'.*qwen3-30b-a3b"):
        zoo_entry("llama")


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_models_fit_the_paper_machine(name):
    config = ZOO[name].config
    params = machine_for(config, "elastic_sd", TOP_PAPER)
    layout = WeightLayout(config, params)
    plan = layout.plan(params.cache.select_capacity)
    assert plan["fits"] == {"HB": True, "LPDDR": True}
    assert config.top_k <= params.cache.select_capacity <= config.num_experts


# -- layout -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [TINY_CONFIG, DEFAULT_CONFIG, ZOO["gpt-oss-20b"].config],
                         ids=lambda c: c.name)
@pytest.mark.parametrize("pes", [1, 2, 3, 32])
def test_shards_hold_every_block_once_and_balanced(config, pes):
    """Whole column blocks (a block's outputs leave one PE), each once, in contiguous runs whose
    weight groups are within one block's of an equal share."""
    mac = TOP_PAPER.mac if config.hidden_size > 1000 else TOP_DEFAULT.mac
    _, groups, blocks, shards = tile_shards(config, mac, pes)
    k = mac.scale_slots
    order = []
    for p, shard in enumerate(shards):
        offset = scale_offset = 0
        for u in shard:
            assert u.pe == p and u.offset == offset and u.scale_offset == scale_offset
            assert u.groups == groups[LINEARS[u.linear]]
            offset += u.groups * mac.beats_per_group
            scale_offset += -(-u.groups // k)
            order.append((u.linear, u.block))
    assert order == [(li, b) for li, n in enumerate(LINEARS) for b in range(blocks[n])]
    sizes = np.array([sum(u.groups for u in s) for s in shards])
    assert (abs(sizes - sizes.sum() / pes) <= max(groups.values())).all()


def test_planes_hold_the_codes_and_scales_and_lpddr_regions_are_disjoint(tiny, runs):
    _, params = runs
    layout = WeightLayout(TINY_CONFIG, params)
    mac, B, k = params.mac, layout.B, params.scale_slots
    quant = expert_quant(tiny, 1, 5)
    planes = layout.expert_planes(quant)
    R = mac.result_channels
    for pe, shard in enumerate(layout.shards):
        assert len(planes["SCALE"][pe]) == layout.scale_words[pe]
        for u in shard:
            q = layout.unit_codes(quant[u.name].codes, u)
            scales = layout.unit_scales(quant[u.name].scales, u)
            for g in range(u.groups):
                rows = q[g * 32:(g + 1) * 32].astype(np.int64)
                at = u.offset + g * B
                got = {p: np.concatenate([unpack_weight_beat(mac, w)
                                          for w in planes[p][pe][at:at + B]])
                       for p in ("MSB", "LSB")}
                h, l = rows >> 4, rows & 0xF
                C = mac.out_channels
                assert np.array_equal(got["MSB"], ((h[:, :C] & 0xF) << 4) | (h[:, C:] & 0xF))
                assert np.array_equal(got["LSB"], (l[:, :C] << 4) | l[:, C:])
                word = planes["SCALE"][pe][u.scale_offset + g // k]
                slot = (word >> (16 * R * (g % k))) & ((1 << (16 * R)) - 1)
                got_scales = np.frombuffer(slot.to_bytes(2 * R, "little"), "<u2")
                assert np.array_equal(got_scales, scales[g].view(np.uint16))
    spans = []
    for layer in TINY_CONFIG.moe_layers:
        for e in range(TINY_CONFIG.num_experts):
            for pe in range(params.pes):
                for plane, words in (("MSB", layout.plane_words[pe]),
                                     ("LSB", layout.plane_words[pe]),
                                     ("SCALE", layout.scale_words[pe])):
                    start = layout.lpddr_plane(layer, e, pe, plane)
                    spans.append((start, start + words * params.lpddr_ratio))
    spans.sort()
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert spans[-1][1] <= params.lpddr.words
    with pytest.raises(ValueError, match="plane must be one of MSB, LSB, SCALE, not 'WHOLE'"):
        layout.lpddr_plane(TINY_CONFIG.moe_layers[0], 0, 0, "WHOLE")


@pytest.mark.parametrize("name, pes, grow", [("qwen3-30b-a3b", 1, True), ("qwen3-30b-a3b", 32, False),
                                             ("gpt-oss-20b", 32, False)])
def test_lpddr_planes_of_a_shard_lie_half_a_bank_sweep_apart(name, pes, grow):
    """Each PE's LSB plane starts half a bank sweep (banks x row_words / 2 LPDDR words) after its
    MSB plane, modulo a sweep, and its SCALE plane half a sweep after the LSB plane, with less than
    a sweep of padding before each: a word of one plane and the word of the next plane at the
    same offset then lie banks / 2 banks apart, never in two rows of one bank (``grow``: one MoE
    layer, the machine sized to it, as the paper-layer bench)."""
    config = ZOO[name].config
    if grow:
        import dataclasses
        config = dataclasses.replace(config, num_layers=1, dense_layers=(), vocab_size=256)
    params = machine_for(config, "elastic_sd", TOP_PAPER, pes=pes, grow=grow)
    layout = WeightLayout(config, params)
    t, lp = params.lpddr_timing, params.lpddr_ratio
    sweep = t.banks * t.row_words
    layer = config.moe_layers[0]
    bank = lambda a: (a // t.row_words) % t.banks
    for pe in range(pes):
        starts = [layout.lpddr_plane(layer, 3, pe, plane) for plane in ("MSB", "LSB", "SCALE")]
        ends = [starts[0] + layout.plane_words[pe] * lp, starts[1] + layout.plane_words[pe] * lp]
        for start, end, nxt in zip(starts, ends, starts[1:]):
            assert (nxt - start) % sweep == sweep // 2
            assert 0 <= nxt - end < sweep
            assert all((bank(start + i) - bank(nxt + i)) % t.banks == t.banks // 2
                       for i in range(0, 2 * sweep, 97))
    assert layout.plan(params.cache.select_capacity)["fits"]["LPDDR"]


def test_a_scale_the_format_cannot_hold_is_named(tiny, runs):
    _, params = runs
    layout = WeightLayout(TINY_CONFIG, params)
    import dataclasses
    quant = dict(expert_quant(tiny, 1, 5))
    scales = quant["up"].scales.copy()
    scales[1, 3] = np.inf
    quant["up"] = dataclasses.replace(quant["up"], scales=scales)
    with pytest.raises(ValueError, match=r"up block 0 scale\[1, 3\] = inf is not a finite FP16"):
        layout.expert_planes(quant)


# -- streams on the golden executor ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["elastic_sd", "cached"])
def test_streams_validate_and_reproduce_the_golden_model(tiny, runs, mode):
    """Every step: the stream validates from the step's cache state, as a whole and in parts;
    the golden executor runs each part (prologue + part) to END; the cache ends as the golden
    model's did; the host's float part on the output memories reproduces every expert output and
    MoE block output bit for bit."""
    (records, result), params = runs[0][mode], runs[1]
    layout = WeightLayout(TINY_CONFIG, params)
    for record in records:
        sched, parts = golden_parts(tiny, record, layout)
        assert not sched.wrapped and len(parts) == len(sched.parts) >= 1
        for stream, _, gold in parts:
            assert validate(stream, params)[-1].op is Opcode.END
            assert gold.error is ErrorCode.NONE, gold.message
        slots = tuple(k for k, _ in parts[-1][2].cache.snapshot().entries)
        assert slots == record.slots_after
        omem = [gold.images.omem for _, _, gold in parts]
        checked = check_floats(tiny, record, sched, omem)
        assert checked["jobs"] == sum(j.kind != "install" for j in sched.jobs) > 0
        # a wrong bit of any output is caught
        r = sched.results[len(sched.results) // 2]
        omem = [[dict(m) for m in part] for part in omem]
        omem[r.part][r.pe][r.omem] = omem[r.part][r.pe].get(r.omem, 0) ^ (1 << 3)
        with pytest.raises(AssertionError, match="outputs differ from the reference"):
            check_floats(tiny, record, sched, omem)


def test_a_step_too_big_for_the_memories_runs_in_parts(tiny, runs):
    """Small output and input memories: the step is cut into parts, each a valid stream; the
    parts together give the same sums as one stream on a machine where everything fits."""
    import dataclasses
    (records, _), params = runs[0]["elastic_sd"], runs[1]
    small = dataclasses.replace(params, output_words=128, input_words=256)
    record = records[0]
    sched, parts = golden_parts(tiny, record, WeightLayout(TINY_CONFIG, small))
    assert len(parts) > 3
    assert all(sched.commands[start].op is Opcode.BARRIER for start, _ in sched.parts)
    assert len({r.part for r in sched.results}) == len(parts)
    assert check_floats(tiny, record, sched, [g.images.omem for _, _, g in parts])["jobs"] > 0


def test_stream_bytes_are_the_golden_accounting(tiny, runs):
    """Weight slices the stream moves per tier equal the golden decoder's byte accounting of the
    same step without the FP16 scales; the scale words it moves are each job's shards' scale
    words, once (every block of the tiny model fits one chunk)."""
    params = runs[1]
    layout = WeightLayout(TINY_CONFIG, params)
    S = layout.scale_bytes
    word = params.mac.weight_beat_bits // 8
    shard_scales = sum(layout.scale_words) * word
    for mode in ("elastic_sd", "cached"):
        records, result = runs[0][mode]
        for record in records:
            stats = result.steps[record.index]
            sched = schedule_step(record, layout)
            moved = stream_bytes(sched.commands, params)
            total = {t: sum(p[t] for p in moved.values())
                     for t in ("HB", "LPDDR", "HB writes", "HB scales", "LPDDR scales")}
            kinds = [j.kind for j in sched.jobs]
            from_hb = kinds.count("draft") + kinds.count("hit")
            from_lpddr = len(kinds) - from_hb
            fills = sum(j.kind == "install" or (j.kind == "miss" and j.install)
                        for j in sched.jobs)
            assert total["HB scales"] == shard_scales * from_hb
            assert total["LPDDR scales"] == shard_scales * from_lpddr
            assert total["HB"] - total["HB scales"] + S * from_hb == stats.hb_expert_bytes
            assert total["LPDDR"] - total["LPDDR scales"] + S * (
                kinds.count("miss") + kinds.count("install")) == stats.lpddr_bytes
            assert total["HB writes"] - shard_scales * fills + S * fills == stats.hb_write_bytes


def test_text_form_reassembles_to_the_binary(tiny, runs):
    (records, _), params = runs[0]["elastic_sd"], runs[1]
    sched = schedule_step(records[0], WeightLayout(TINY_CONFIG, params))
    binary = encode(sched.commands)
    assert encode(assemble(disassemble(sched.commands))) == binary


def test_select_before_the_resident_reads_is_caught(tiny, runs):
    """The HB-slot hazard: SELECT evicts experts the verify phase still reads from HB. The
    scheduler orders every such read before SELECT; moving the CACHE commands ahead of them makes
    the validator stop the stream with SLOT_NOT_INSTALLED at the first read of an evicted slot."""
    (records, _), params = runs[0]["elastic_sd"], runs[1]
    layout = WeightLayout(TINY_CONFIG, params)
    hazards = 0
    for record in records:
        evicted = {l: set(record.resident_before[l]) - set(record.resident_after[l])
                   for l in record.layers}
        sched = schedule_step(record, layout)
        hits = [j for j in sched.jobs if j.kind == "hit" and j.expert in evicted[j.layer]]
        if not hits:
            continue
        hazards += 1
        cmds = sched.commands
        verify = [i for i, c in enumerate(cmds) if c.op is Opcode.BARRIER][1]
        select = [i for i, c in enumerate(cmds) if c.op is Opcode.CACHE]
        moved = (cmds[:verify + 1] + [cmds[i] for i in select]
                 + [c for i, c in enumerate(cmds[verify + 1:], verify + 1) if i not in select])
        cache = ExpertCacheModel(params.cache)
        replay(cache, record.prior_requests)
        with pytest.raises(StreamError) as err:
            validate(moved, params, cache)
        assert err.value.code is ErrorCode.SLOT_NOT_INSTALLED
        bad = moved[err.value.index]
        assert bad.op is Opcode.LOAD_SLOT and bad.expert in evicted[layout.moe_layers[bad.layer]]
    assert hazards > 0


# -- zoo models: steps from routing traces -----------------------------------------------------------

SMALL = MoEConfig(vocab_size=64, hidden_size=64, num_layers=3, num_heads=2, num_kv_heads=1,
                  head_dim=32, num_experts=16, top_k=2, expert_ffn=64, dense_layers=(0,),
                  dense_ffn=128, shared_ffn=64, name="small")


@pytest.mark.parametrize("mode", ["elastic_sd", "cached"])
def test_trace_records_are_deterministic_and_schedule(mode):
    a, _ = trace_records(SMALL, 4, 3, mode, 4, seed=7)
    b, _ = trace_records(SMALL, 4, 3, mode, 4, seed=7)
    c, _ = trace_records(SMALL, 4, 3, mode, 4, seed=8)
    params = machine_for(SMALL, mode, TOP_DEFAULT, 4, grow=True, act_words=256,
                         input_words=1 << 16, output_words=1 << 16)
    layout = WeightLayout(SMALL, params)
    streams = [[schedule_step(r, layout).commands for r in recs] for recs in (a, b, c)]
    assert streams[0] == streams[1] and streams[0] != streams[2]
    for record, commands in zip(a, streams[0]):
        assert record.layers == (1, 2)
        cache = ExpertCacheModel(params.cache)
        replay(cache, record.prior_requests)
        validate(commands, params, cache)
        if mode == "elastic_sd":
            assert len(record.draft_routes) == 3 and 0 <= sum(record.accepted) <= 12


def test_bad_step_records_are_named(runs):
    (records, _), params = runs[0]["cached"], runs[1]
    layout = WeightLayout(TINY_CONFIG, params)
    import dataclasses
    with pytest.raises(ValueError, match="mode must be 'cached' or 'elastic_sd', not 'greedy'"):
        schedule_step(dataclasses.replace(records[0], mode="greedy"), layout)
    with pytest.raises(ValueError, match="layer 7 is not an MoE layer"):
        layout.lpddr_plane(7, 0, 0, "MSB")
    with pytest.raises(ValueError, match="slot_words"):
        WeightLayout(DEFAULT_CONFIG, params)
