"""The MAC array in Amaranth's simulator: small configurations, every mode, with and without
random idle cycles and back-pressure, checked against the slice-level golden model."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.mac_array import MacArray
from hw.params import MacArrayParams, MacMode
from sim.amaranth_streams import stream_send, stream_recv
from sim.mac_array.jobs import (random_jobs, edge_jobs, encode_job, decode_result, check_results,
                                job_for)

CONFIGS = {
    "one-beat": MacArrayParams(tokens=1, group_size=4, out_channels=1, lanes=4),
    "two-beats": MacArrayParams(tokens=2, group_size=8, out_channels=2, lanes=4),
    "one-lane": MacArrayParams(tokens=1, group_size=4, out_channels=2, lanes=1, tag_width=3),
    "no-augmentation": MacArrayParams(tokens=2, group_size=8, out_channels=1, lanes=8,
                                      augmented=False),
}


def simulate(params, jobs, seed, idle, stall):
    dut = MacArray(params)
    encoded = [encode_job(params, job) for job in jobs]
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    rng = random.Random(seed)
    received = []

    def sender(port, beats):
        async def process(ctx):
            await stream_send(ctx, port, beats, rng, idle)
        return process

    sim.add_process(sender(dut.op, [op for op, _, _ in encoded]))
    sim.add_process(sender(dut.act, [a for _, acts, _ in encoded for a in acts]))
    sim.add_process(sender(dut.weights, [w for _, _, ws in encoded for w in ws]))

    async def receiver(ctx):
        received.extend(await stream_recv(ctx, dut.results, len(jobs), rng, stall))
        # nothing more may come out
        ctx.set(dut.results.ready, 1)
        for _ in range(3 * params.beats_per_group + 4):
            _, _, valid = await ctx.tick().sample(dut.results.valid)
            assert not valid, "a result beyond the expected ones"

    async def watchdog(ctx):
        deadline = 20 * len(jobs) * params.beats_per_group + 100
        for _ in range(deadline):
            await ctx.tick()
        raise AssertionError(f"{len(received)} of {len(jobs)} results within {deadline} cycles")

    sim.add_testbench(receiver)
    sim.add_testbench(watchdog, background=True)
    sim.run()
    return check_results(params, jobs, [decode_result(params, r) for r in received])


@pytest.mark.parametrize("pressure", [(0.0, 0.0), (0.3, 0.4)], ids=["free", "pressure"])
@pytest.mark.parametrize("config", CONFIGS)
def test_random_mixed_modes(config, pressure, seed):
    params = CONFIGS[config]
    rng = np.random.default_rng(seed)
    jobs = random_jobs(params, rng, 80, reuse=0.4)
    assert {job.mode for job in jobs} == set(MacMode)
    assert simulate(params, jobs, seed, *pressure) > 0


@pytest.mark.parametrize("config", ["one-beat", "no-augmentation"])
def test_edge_cases(config, seed):
    params = CONFIGS[config]
    jobs = edge_jobs(params, np.random.default_rng(seed))
    assert simulate(params, jobs, seed, 0.2, 0.2) > 0


#: Effective weight of the code 0x35 (upper nibble 3, lower nibble 5) and of code 0, per mode.
EFFECTIVE = {MacMode.FULL: (0x35, 0), MacMode.DRAFT: (16 * 3 + 8, 8), MacMode.MSB: (16 * 3, 0),
             MacMode.LSB: (5, 0)}


@pytest.mark.parametrize("mode", list(MacMode), ids=lambda m: m.name)
def test_slot_s_is_channel_s_and_full_zeroes_its_upper_half(mode, seed):
    """One channel at a time carries the code 0x35, the others 0: the result has that channel's
    effective weight times the activation sum in slot ``s`` (channel ``s``; in the 4-bit modes
    channels ``n`` and ``out_channels + n`` share lane pair ``n``, ``hi`` and ``lo``), the zero
    weights' value elsewhere, and FULL's upper half is 0."""
    params = CONFIGS["two-beats"]
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(params.tokens, params.group_size))
    c, n = params.channels(mode), params.out_channels
    jobs = []
    for s in range(c):
        q = np.zeros((params.group_size, c), dtype=np.int64)
        q[:, s] = 0x35
        job = job_for(params, mode, s, x, q)
        one, zero = EFFECTIVE[mode]
        want = np.zeros((params.tokens, 2 * n), dtype=np.int64)
        want[:, :c] = x.sum(axis=1)[:, None] * zero
        want[:, s] = x.sum(axis=1) * one
        assert np.array_equal(job.expected, want)
        jobs.append(job)
    assert simulate(params, jobs, seed, 0.2, 0.2) > 0


@pytest.mark.parametrize("mode", list(MacMode), ids=lambda m: m.name)
def test_reuse_before_any_load_uses_zero_activations(mode, seed):
    """``load_act = 0`` before any activation load since reset: every sum is 0 (DRAFT's
    augmentation bit included); a later load works as usual."""
    params = CONFIGS["two-beats"]
    rng = np.random.default_rng(seed)
    c = params.channels(mode)
    q = rng.integers(-128, 128, size=(params.group_size, c))
    zeros = np.zeros((params.tokens, params.group_size), dtype=np.int64)
    first = job_for(params, mode, 1, zeros, q, load_act=False)
    assert not first.expected.any()
    x = rng.integers(-128, 128, size=(params.tokens, params.group_size))
    jobs = [first, first, job_for(params, mode, 2, x, q), job_for(params, mode, 3, x, q, False)]
    assert simulate(params, jobs, seed, 0.0, 0.0) > 0


def test_full_rate_without_pressure(seed):
    """With every stream always ready, one weight beat enters per cycle."""
    params = CONFIGS["two-beats"]
    dut = MacArray(params)
    jobs = random_jobs(params, np.random.default_rng(seed), 20, reuse=0.0)
    encoded = [encode_job(params, job) for job in jobs]
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    accepted = []

    async def driver(ctx):
        ctx.set(dut.results.ready, 1)
        beats = [(op, a, w) for op, acts, ws in encoded for a, w in zip(acts, ws)]
        for cycle in range(len(beats) * 2 + 10):
            if beats:
                op, a, w = beats[0]
                ctx.set(dut.op.payload, op)
                ctx.set(dut.act.payload, a)
                ctx.set(dut.weights.payload, w)
            for port in (dut.op, dut.act, dut.weights):
                ctx.set(port.valid, bool(beats))
            _, _, ready = await ctx.tick().sample(dut.weights.ready)
            if beats and ready:
                accepted.append(cycle)
                beats.pop(0)

    sim.add_testbench(driver)
    sim.run()
    assert len(accepted) == len(jobs) * params.beats_per_group
    assert accepted == list(range(accepted[0], accepted[0] + len(accepted)))


def test_component_rejects_non_params():
    with pytest.raises(TypeError, match="MacArrayParams"):
        MacArray({"tokens": 2})
