"""The performance and energy model: parameters, byte rules, phases, headline and crossover."""

from dataclasses import replace
import json

import numpy as np
import pytest

from hw.params import TOP_PAPER
from sw_model.perf import hardware as hwmod
from sw_model.perf.calibrate import anchor_rows, calibration_from_bench, fit_gpu_anchor
from sw_model.perf.methods import METHODS, PassCounts, Settings, plan_step, step_result
from sw_model.perf.phases import PhaseWork, evaluate
from sw_model.perf.suite import breakeven_acceptance, crossover, run_grid, summarise

#: The paper's two configurations: 32 PEs with 8 GiB of HB, and 16 PEs with 4 GiB.
P8 = TOP_PAPER
P4 = TOP_PAPER.with_pes(16)
from sw_model.perf.measured import ABLATE_GAMMA, TOKENS_PER_VERIFICATION
from sw_model.perf.workload import ASSUMED_LOCALITY, AcceptanceModel, alpha_for_length, \
    expected_length, routing_stats
from sw_model.perf.zoo import PAPER_MODELS, ZOO, get_model
from sw_model.model.routing_traces import generate_routing_trace
from sw_model.compiler.weight_layout import dense_bytes
from sw_model.model import zoo as model_zoo


# -- parameters and bad input --------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: hwmod.MemoryTier("HB", 8, 0, 0.97, 0.43, 0.43, 10), "peak_gbps"),
    (lambda: hwmod.MemoryTier("HB", 8, 51.2, 1.5, 0.43, 0.43, 10), "efficiency"),
    (lambda: replace(hwmod.elmoe3d(P8), near_holds="half"), "near_holds"),
    (lambda: replace(hwmod.xpu(), near_holds="msb"), "near tier"),
    (lambda: replace(hwmod.elmoe3d(P8), mac_utilization=0), "mac_utilization"),
    (lambda: hwmod.elmoe3d(P8, calibration="fast"), "calibration profile"),
    (lambda: Settings(gamma=0), "Settings.gamma"),
    (lambda: Settings(resident_policy="lru"), "resident_policy"),
    (lambda: AcceptanceModel(full=1.2), "AcceptanceModel.full"),
    (lambda: AcceptanceModel(measured={"elastic_sd": 2.0}), "elastic_sd"),
    (lambda: AcceptanceModel(mapping="magic"), "AcceptanceModel.mapping"),
    (lambda: AcceptanceModel(curves=(("frequency", ((0.5, (1.5,) * 6),)),), curve_gamma=5),
     "curves"),
    (lambda: AcceptanceModel().tokens_per_verification(1.5, 4), "resident fraction"),
    (lambda: AcceptanceModel().tokens_per_verification(0.5, 4, "mru"), "selection 'mru'"),
    (lambda: alpha_for_length(6.0, 4), "tokens per verification"),
    (lambda: Settings(cache_policy="mru"), "Settings.cache_policy"),
    (lambda: Settings(priors="fast"), "Settings.priors"),
    (lambda: hwmod.PriorAssumptions(hb_xpu_cache="fifo"), "hb_xpu_cache"),
    (lambda: hwmod.hb_xpu(P8, cache_policy="fifo"), "cache_policy"),
    (lambda: PhaseWork(far_read=-1), "PhaseWork.far_read"),
    (lambda: replace(ZOO["qwen3-30b-a3b"], top_k=500), "top_k"),
    (lambda: get_model("gpt-5"), "unknown model 'gpt-5'"),
    (lambda: plan_step(hwmod.elmoe3d(P8), "qwen3-30b-a3b", 0, "plain"), "batch"),
    (lambda: plan_step(hwmod.elmoe3d(P8), "qwen3-30b-a3b", 1, "magic"), "unknown method"),
    (lambda: plan_step(hwmod.xpu(), "qwen3-30b-a3b", 4, "eagle_sd"), "needs a near tier"),
    (lambda: plan_step(hwmod.hb_xpu(P8), "qwen3-30b-a3b", 4, "elastic_sd"), "bit-nested"),
    (lambda: expected_length(0.5, -1), "gamma"),
])
def test_bad_parameters_are_named(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_evaluate_refuses_work_the_machine_cannot_do():
    with pytest.raises(ValueError, match="no near tier"):
        evaluate(hwmod.xpu(), PhaseWork(near_read=1))
    with pytest.raises(ValueError, match="far-tier compute"):
        evaluate(hwmod.xpu(), PhaseWork(far_internal=1))


# -- byte rules and shapes -----------------------------------------------------------------------

def test_shapes_follow_the_zoo_and_the_number_format():
    q = ZOO["qwen3-30b-a3b"]
    w = 3 * 2048 * 768
    assert q.expert_weights == w
    assert q.expert_full_bytes == w + w // 32 * 2           # INT8 + FP16 scale per 32
    assert q.expert_msb_bytes == w // 2 + w // 32 * 2        # upper nibbles + scales in HB
    assert q.expert_lsb_bytes == w // 2
    assert q.kv_bytes == 2 * 2 * 4 * 128                     # K and V, 4 KV heads x 128, FP16
    for name in ("qwen3-30b-a3b", "mixtral-8x7b", "olmoe-1b-7b", "gpt-oss-20b"):
        assert ZOO[name].dense_bytes == dense_bytes(model_zoo.ZOO[name].config)
    d = ZOO["deepseek-v2-lite"]                              # MLA: latent 512 + rope key 64
    assert d.kv_bytes == 2 * (512 + 64) and d.dense_layers == 1 and d.shared == 1
    g = ZOO["gpt-oss-20b"]                                   # MXFP4 experts stay whole in HB
    assert not g.bit_nested and g.expert_lsb_bytes == 0
    assert g.expert_msb_bytes == g.expert_full_bytes == int(g.expert_weights * 4.25 / 8)
    assert set(PAPER_MODELS) <= set(ZOO) and get_model("QWEN3-30B-A3B") is q


def test_phase_time_is_the_busiest_resource_plus_latency_and_energy_adds_up():
    hw = replace(hwmod.elmoe3d(P8), static_w=0.0)
    work = PhaseWork(near_read=1.6e9, far_read=0.5e9, macs_w8=1e9, layers=10)
    cost = evaluate(hw, work)
    far = 0.5e9 / (102.4e9 * 0.99)
    near = 1.6e9 / (32 * 51.2e9 * 0.97)
    assert cost.bound == "far" and far > near
    latency = 10 * (94 / 1.6 + 73 / 1.6) * 1e-9
    assert cost.seconds == pytest.approx(far + latency, rel=1e-12)
    assert cost.energy["far"] == pytest.approx(0.5e9 * 8 * 3.88e-12)
    assert cost.energy["near"] == pytest.approx(1.6e9 * 8 * 0.43e-12)
    assert cost.energy["mac"] == pytest.approx(1e9 * hwmod.MAC_W8_PJ * 1e-12)
    assert cost.joules == pytest.approx(sum(cost.energy.values()))


def test_a_hit_reads_half_from_lpddr_a_miss_all_of_it():
    hw, q = hwmod.elmoe3d(P8), ZOO["qwen3-30b-a3b"]
    s = Settings()
    from sw_model.perf.methods import target_work
    base = target_work(hw, q, s, 1, PassCounts(1, 8, 0, 8))
    cached = target_work(hw, q, s, 1, PassCounts(1, 8, 8, 8))
    L = q.moe_layers
    assert base.far_read - cached.far_read == pytest.approx(
        L * 8 * (q.expert_full_bytes - q.expert_lsb_bytes))
    assert cached.near_read - base.near_read == pytest.approx(L * 8 * q.expert_msb_bytes)


def test_expected_length_and_measured_acceptance_plug_in():
    assert expected_length(0.0, 4) == 1.0
    assert expected_length(1.0, 4) == 5.0
    assert expected_length(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)
    a = AcceptanceModel(mapping="coverage")
    assert a.rate("m", "elastic_sd", 1.0) == pytest.approx(a.full)
    assert a.rate("m", "elastic_sd", 0.0) == pytest.approx(max(a.floor, a.full - a.slope))
    measured = AcceptanceModel(measured={("m", "elastic_sd"): 0.42, "eagle_sd": 0.3})
    assert measured.rate("m", "elastic_sd", 1.0) == 0.42
    assert measured.rate("other", "eagle_sd") == 0.3


def test_fast_trace_draws_follow_the_same_model():
    slow = generate_routing_trace(2, 64, 6, 60, 16, zipf=1.0, reuse=0.5, seed=3)
    fast = generate_routing_trace(2, 64, 6, 60, 16, zipf=1.0, reuse=0.5, seed=3, fast=True)
    assert fast.experts.shape == slow.experts.shape
    for tr in (slow, fast):                     # distinct experts per token (checked on build)
        assert (np.sort(tr.experts, -1)[..., 1:] != np.sort(tr.experts, -1)[..., :-1]).all()

    def reuse(tr):
        e = tr.experts[:, :, 0]
        return np.mean([len(set(e[t, s]) & set(e[t - 1, s])) for t in range(1, 60)
                        for s in range(16)]) / 6
    # same popularity (same seed), similar temporal reuse and head of the popularity
    assert reuse(fast) == pytest.approx(reuse(slow), abs=0.05)
    top = lambda tr: set(np.argsort(-np.bincount(tr.experts[:, :, 0].ravel(), minlength=64))[:8])
    assert len(top(fast) & top(slow)) >= 5


def test_routing_statistics_move_the_right_way():
    """On the earlier assumed locality (Zipf 1.0, reuse 0.5), as this test was written; the
    measured locality is flatter, so a chosen set's lead over a random one is smaller there
    (coverage 0.46 vs 0.30 at 40 of 128 experts, batch 16, against > 0.2 apart when assumed)."""
    small = routing_stats(128, 8, 1, ASSUMED_LOCALITY)
    large = routing_stats(128, 8, 16, ASSUMED_LOCALITY)
    assert small.touched(1) == 8 and large.touched(1) > 40
    assert large.touched(5) > large.touched(1)
    assert small.lru_hit_rate(64) > small.lru_hit_rate(16) > 0
    freq, rand = large.frequency(40, 5), large.random_set(40, 5)
    assert freq.coverage > rand.coverage + 0.2          # a chosen set beats a random one
    assert 0 < freq.draft_touched <= 40 and freq.installs_streamed <= freq.installs
    measured = routing_stats(128, 8, 16)
    freq, rand = measured.frequency(40, 5), measured.random_set(40, 5)
    assert freq.coverage > rand.coverage + 0.1
    assert measured.touched(5) > large.touched(5)       # less locality: more experts per window


# -- the model's answers ---------------------------------------------------------------------------

def test_more_hb_and_more_acceptance_are_never_slower():
    s = Settings()
    for batch in (1, 16):
        t = [step_result(hw, plan_step(hw, "qwen3-30b-a3b", batch, "elmoe3d", s)).s_per_token
             for hw in (hwmod.elmoe3d(P4), hwmod.elmoe3d(P8))]
        assert t[1] < t[0]
    high = Settings(acceptance=AcceptanceModel(mapping="coverage", slope=0.0))
    hw = hwmod.elmoe3d(P8)
    assert (step_result(hw, plan_step(hw, "qwen3-30b-a3b", 16, "elastic_sd", high)).s_per_token
            < step_result(hw, plan_step(hw, "qwen3-30b-a3b", 16, "elastic_sd", s)).s_per_token)


def test_every_method_runs_on_elmoe3d():
    hw = hwmod.elmoe3d(P8)
    for method in METHODS:
        r = step_result(hw, plan_step(hw, "deepseek-v2-lite", 8, method))
        assert r.s_per_token > 0 and r.j_per_token > 0 and r.plan.tokens >= 8


def test_measured_acceptance_maps_by_the_resident_share():
    a = AcceptanceModel()
    raw = lambda f, g, sel="frequency": a.tokens_per_verification(f, g, sel, clamp=False)
    # the measured points come back exactly at every gamma they were measured for
    for sel, by_share in TOKENS_PER_VERIFICATION.items():
        for share, lengths in by_share.items():
            for g in range(1, ABLATE_GAMMA + 1):
                assert raw(share, g, sel) == pytest.approx(lengths[g - 1], abs=1e-12)
    # the ablations' headline figures: mean accepted length 2.74 / 3.85 / 4.65 / 6.48 at gamma 6
    assert [round(raw(f, 6), 2) for f in (0.125, 0.25, 0.5, 1.0)] == [2.74, 3.85, 4.65, 6.48]
    # monotone in the share, for every selection and gamma (beyond 6: extended geometrically)
    shares = np.linspace(0.0, 1.0, 41)
    for sel in ("frequency", "random", "lru", "static"):
        for g in (1, 2, 4, 6, 8):
            e = [a.tokens_per_verification(f, g, sel) for f in shares]
            assert all(x <= y + 1e-12 for x, y in zip(e, e[1:])), (sel, g)
            rates = [(x - 1) / g for x in e]                # clamped to the paper's range
            assert min(rates) >= a.floor - 1e-12 and max(rates) <= a.full + 1e-12
    # between points: linear in log2(share); at the ends the paper's range clamps
    mid = 2 ** -1.5
    assert raw(mid, 6) == pytest.approx((3.8531 + 4.6514) / 2)
    assert a.tokens_per_verification(1.0, 6) == pytest.approx(1 + 6 * 0.91)     # 0.913 -> 0.91
    assert a.tokens_per_verification(0.125, 6) == pytest.approx(1 + 6 * 0.33)   # 0.290 -> 0.33
    assert a.tokens_per_verification(0.0, 4) == pytest.approx(1 + 4 * 0.33)
    # the per-position rate reproduces E(gamma), and a frequency set beats a random one
    alpha = a.rate("m", "elastic_sd", fraction=0.25, gamma=4)
    assert expected_length(alpha, 4) == pytest.approx(raw(0.25, 4), rel=1e-9)
    assert alpha > a.rate("m", "elastic_sd", fraction=0.25, gamma=4, selection="random")
    assert alpha_for_length(expected_length(0.7, 5), 5) == pytest.approx(0.7, abs=1e-9)


def test_the_crossover_on_each_paper_model():
    """Cached decoding against Elastic-SD with the measured acceptance at each model's resident
    share and the measured routing locality. Cached decoding wins at batch 1 on all four paper
    models (8 GB: Qwen3-30B-A3B 13.1 vs 15.5 ms per token, GLM-4.7-Flash 12.6 vs 16.0,
    DeepSeek-V2-Lite 7.75 vs 8.23, GPT-OSS-20B 2.56 vs 4.09), Elastic-SD at batch 16, and it gains
    on caching as the batch grows; the batch-1 winner is the one the break-even acceptance
    predicts. The batch-1 result hinges on the locality: under the earlier *assumed* one
    (Zipf 1.0, reuse 0.5: a verification of gamma+1 tokens touches few more experts than one
    token) Elastic-SD already wins at batch 1 on Qwen3-30B-A3B and DeepSeek-V2-Lite (whose 58 of
    64 resident experts give acceptance 0.90); without temporal reuse caching wins on Qwen3 too."""
    points = run_grid(PAPER_MODELS, (1, 16), (P8,))
    cross = crossover(points, P8)
    by = {(p.model, p.batch): p.methods for p in points}
    for model, c in cross.items():
        ratio = lambda b: by[model, b]["cache"] / by[model, b]["elastic_sd"]
        assert c["elastic_sd_wins_at_16"] and ratio(16) > 1.5 * ratio(1), model
        assert c["cache_wins_at_batch_1"], model
        acc = c["by_batch"][1]["acceptance"]
        assert 0.33 <= acc <= 0.91                     # the paper's range
        alpha = breakeven_acceptance(model, 1)
        # None: caching wins at every acceptance (GPT-OSS-20B's exact MXFP4 experts)
        assert alpha is None or c["elastic_sd_alpha_at_batch_1"] < alpha < 1, model
    assumed = Settings(locality=ASSUMED_LOCALITY)
    hw = hwmod.elmoe3d(P8)
    for model, cache_wins in (("qwen3-30b-a3b", False), ("deepseek-v2-lite", False),
                              ("glm-4.7-flash", True), ("gpt-oss-20b", True)):
        t = {m: step_result(hw, plan_step(hw, model, 1, m, assumed)).s_per_token
             for m in ("cache", "elastic_sd")}
        assert (t["cache"] <= t["elastic_sd"]) == cache_wins, model
    no_reuse = Settings(locality=replace(Settings().locality, reuse=0.0))
    t = {m: step_result(hw, plan_step(hw, "qwen3-30b-a3b", 1, m, no_reuse)).s_per_token
         for m in ("cache", "elastic_sd")}
    assert t["cache"] < t["elastic_sd"]


def test_headline_figures_stay_within_the_physical_bounds():
    s = summarise(run_grid(PAPER_MODELS, (1, 2, 4, 8, 16), (P8,)), P8)
    assert 1 < s["avg_speedup_vs_xpu"] < s["bandwidth_bound"]
    assert 1 < s["avg_energy_vs_xpu"] < s["energy_bound"]
    assert s["max_speedup_vs_xpu"] >= s["avg_speedup_vs_xpu"]


def test_hb_xpu_is_an_lru_cache_of_whole_int8_experts():
    q = get_model("qwen3-30b-a3b")
    s = Settings()
    hb, elmoe = hwmod.hb_xpu(P8), hwmod.elmoe3d(P8)
    assert hb.cache_policy == "lru" and hb.near == elmoe.near and hb.far == elmoe.far
    plan = plan_step(hb, q, 1, "cache", s)
    own = plan_step(elmoe, q, 1, "cache", s)
    # the same HB: whole INT8 experts, so about half as many as ELMoE-3D's upper nibbles
    assert plan.info["policy"] == "lru" and 0.45 < plan.info["slots"] / own.info["slots"] < 0.6
    w = plan.phases[0][2]
    touched, hits = 8, plan.info["hit_rate"] * 8
    # hits read HB only; misses read the whole expert from LPDDR (plus KV and dense: in HB)
    assert w.far_read == pytest.approx(q.moe_layers * (touched - hits) * q.expert_full_bytes)
    # the alternatives: no expert cache at all, or a pinned placement
    none = plan_step(hwmod.hb_xpu(P8, cache_policy="none"), q, 1, "cache", s)
    assert none.info["slots"] == 0 and none.phases[0][2].near_write == 0
    assert none.phases[0][2].far_read == pytest.approx(q.moe_layers * 8 * q.expert_full_bytes)
    pinned = plan_step(hwmod.hb_xpu(P8, cache_policy="static"), q, 1, "cache", s)
    assert pinned.info["policy"] == "static"
    # the prior assumptions reach the baselines through Settings
    fast = replace(s, priors=s.priors.with_bandwidth(8.0, 4.0, 4.0))
    pim = lambda st: step_result(hwmod.baselines(P8, priors=st.priors)["xPU-PIM"],
                                 plan_step(hwmod.baselines(P8, priors=st.priors)["xPU-PIM"], q, 1,
                                           "plain", st)).s_per_token
    assert pim(fast) < 0.6 * pim(s)


# -- calibration ---------------------------------------------------------------------------------

def test_gpu_anchor_fits_the_measured_table():
    fit = fit_gpu_anchor()
    assert 500 < fit["hbm_gbps"] < 2000 and fit["layer_overhead_us"] > 0
    rows = anchor_rows()
    assert len(rows) == 35
    big = [r for r in rows if r["bytes"] > 4e8]      # bandwidth-bound rows: within 15%
    assert max(abs(r["error"]) for r in big) < 0.15


def test_bench_json_becomes_a_calibration_profile(tmp_path):
    good = tmp_path / "hb.txt"
    good.write_text("table...\n" + json.dumps({"block": "hb", "hb_seq_read_efficiency": 0.95,
                                                "lpddr_seq_read_efficiency": 0.9}) + "\n")
    profile = calibration_from_bench([good])
    assert profile["hb_seq_read_efficiency"] == 0.95
    assert hwmod.elmoe3d(P8, profile).near.efficiency == 0.95
    bad = tmp_path / "bad.txt"
    bad.write_text("no json here\n")
    with pytest.raises(ValueError, match="not a bench's JSON figures"):
        calibration_from_bench([bad])
    # a bench's results folder, or its result.json
    folder = tmp_path / "bench-hb"
    folder.mkdir()
    (folder / "result.json").write_text(json.dumps({"hb_seq_read_efficiency": 0.93}, indent=1))
    assert calibration_from_bench([folder])["hb_seq_read_efficiency"] == 0.93
    assert calibration_from_bench([folder / "result.json"])["hb_seq_read_efficiency"] == 0.93
    with pytest.raises(ValueError, match="no/such: no such file"):
        calibration_from_bench(["no/such"])
    unrelated = tmp_path / "other.txt"
    unrelated.write_text(json.dumps({"block": "x"}) + "\n")
    with pytest.raises(ValueError, match="none of the calibration keys"):
        calibration_from_bench([unrelated])
