"""Synthesis and FPGA helpers: the block-RAM die behind a memory channel (Amaranth simulator, with
and without pressure), the scan-chain I/O harness, the liberty lookup, the MAC growth fit, a small
synthesis with the liberty file, and the self-test checker against a stand-in accelerator. Place and
route is slow."""

import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth import *
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw import synth
from hw.bram_die import BramDie
from hw.fpga import IoHarness, place_and_route, FAMILIES
from hw.selftest import SelfTestChecker
from hw.params import HbInterfaceParams, MemOp, MacArrayParams
from hw.synth_report import fit_mac, synth_points, AUGMENTATION_POINTS
from sim.mem_traffic import (GoldenMemory, PortDriver, Request, covering, error_requests,
                             expected_count, random_bursts, run_in_amaranth)
from sim.dram_model import HbSystem
from sim.runner import BUILD_ROOT, REPO_ROOT, generate_verilog

SMALL = HbInterfaceParams(channels=2, data_width=32, words=256, address_width=9, max_length=16,
                          die_burst=4, outstanding=4, read_buffer=16, write_buffer=8, tag_width=4)
PRESSURE = [(0.0, 0.0), (0.3, 0.4)]


@pytest.mark.parametrize("pressure", PRESSURE, ids=["free", "pressure"])
def test_bram_die_serves_the_channel_contract(pressure, seed):
    """Preloaded words read back; random writes and reads, bursts and bad requests match the
    golden memory, and the final arrays equal it."""
    rng = random.Random(seed)
    p = SMALL
    images = [[rng.getrandbits(p.data_width) for _ in range(40)] for _ in range(p.channels)]
    traffic = []
    for c in range(p.channels):
        reqs = [Request(MemOp.READ, 0, 16, 1), Request(MemOp.READ, 24, 16, 2)]
        reqs += covering(p, MemOp.WRITE, 64, rng, first=64)
        reqs += random_bursts(p, MemOp.READ, 12, 5, rng, p.words)
        reqs += [request for _name, request in error_requests(p, rng)]
        reqs += random_bursts(p, MemOp.WRITE, 12, 6, rng, p.words)
        reqs += covering(p, MemOp.READ, p.words, rng)
        traffic.append(reqs)
    system = HbSystem(p, dies=[BramDie(p, image) for image in images])
    drivers = [PortDriver(p, reqs, seed=seed + c, idle=pressure[0], stall=pressure[1])
               for c, reqs in enumerate(traffic)]
    counts = [expected_count(p, reqs) for reqs in traffic]

    async def backdoor(ctx, when):
        if when == "after":
            return [[ctx.get(die.storage.data[a]) for a in range(p.words)]
                    for die in system.dies]

    arrays = run_in_amaranth(system, drivers, counts, max_cycles=20 * sum(counts) + 4000,
                             backdoor=backdoor)
    for driver, array, image in zip(drivers, arrays, images):
        golden = GoldenMemory(p, dict(enumerate(image)))
        assert driver.check(golden) >= p.words
        assert array == [golden.words.get(a, 0) for a in range(p.words)]


def test_bram_die_rejects_bad_arguments():
    with pytest.raises(ValueError, match="init holds 257 words, more than the die's 256"):
        BramDie(SMALL, [0] * 257)
    with pytest.raises(TypeError, match="port must be a MemPortParams"):
        BramDie(MacArrayParams())


class _Adder(wiring.Component):
    a: In(5)
    b: In(3)
    total: Out(6)
    odd: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.total.eq(self.a + self.b), self.odd.eq(self.total[0])]
        return m


CASES = [(0, 0), (31, 7), (16, 1), (5, 3)]


@pytest.mark.parametrize("a, b", CASES)
def test_io_harness_scans_inputs_in_and_outputs_out(a, b):
    """Bits shifted in reach the wrapped component's inputs in port order; its outputs, captured,
    shift out least significant first."""
    harness = IoHarness(_Adder())
    assert (harness.in_bits, harness.out_bits) == (8, 7)
    sim = Simulator(harness)
    sim.add_clock(1e-6)
    outcome = []

    async def bench(ctx):
        word = a | b << 5
        ctx.set(harness.scan_en, 1)
        for i in reversed(range(8)):         # the first bit in ends up at the top
            ctx.set(harness.scan_in, (word >> i) & 1)
            await ctx.tick()
        ctx.set(harness.scan_en, 0)
        ctx.set(harness.capture, 1)
        await ctx.tick()
        ctx.set(harness.capture, 0)
        ctx.set(harness.scan_en, 1)
        bits = []
        for _ in range(7):
            bits.append(ctx.get(harness.scan_out))
            await ctx.tick()
        outcome.append(sum(bit << i for i, bit in enumerate(bits)))

    sim.add_testbench(bench)
    sim.run()
    total = a + b
    assert outcome == [total | (total & 1) << 6]


def test_io_harness_rejects_a_non_component():
    with pytest.raises(TypeError, match="wraps a wiring.Component"):
        IoHarness("mac_array")


def test_liberty_lookup_names_the_package_and_paths(monkeypatch, tmp_path):
    missing = tmp_path / "none.lib"
    monkeypatch.delenv("ELMOE_LIBERTY", raising=False)
    monkeypatch.setattr(synth, "LIBERTY_PATHS", (missing,))
    with pytest.raises(synth.LibertyNotFound) as info:
        synth.find_liberty()
    assert str(missing) in str(info.value) and "qflow-tech-osu018" in str(info.value)
    monkeypatch.setenv("ELMOE_LIBERTY", str(missing))
    with pytest.raises(synth.LibertyNotFound, match=f"ELMOE_LIBERTY={missing} is not a file"):
        synth.find_liberty()


def test_mac_fit_recovers_a_structural_model():
    """Exact data of a*T*C + b*T + c*C + d come back exactly, hold-out error 0; too few points
    are refused."""
    a, b, c, d = 700.0, 300.0, 900.0, 50.0
    rows = [{"tokens": t, "channels": ch, "cells": a * t * ch + b * t + c * ch + d,
             "area_um2": 24 * (a * t * ch + b * t + c * ch + d)}
            for t, ch in [(1, 1), (2, 1), (1, 2), (2, 2), (4, 2)]]
    fit = fit_mac(rows)
    cells = fit["cells"]
    assert np.allclose([cells["per_token_channel"], cells["per_token"], cells["per_channel"],
                        cells["constant"]], [a, b, c, d])
    assert cells["paper_pe"] == pytest.approx(a * 512 + b * 16 + c * 32 + d)
    assert fit["area_um2"]["paper_pe"] == pytest.approx(24 * cells["paper_pe"])
    assert cells["holdout_error"] < 1e-9 and cells["max_residual"] < 1e-9
    with pytest.raises(ValueError, match="at least 5 ladder points, got 4"):
        fit_mac(rows[:4])


def test_synth_ladder_covers_every_block_and_the_ablation():
    from hw.blocks import BLOCKS
    points = synth_points()
    assert {p.block for p in points} == set(BLOCKS)
    labels = {(p.block, p.label) for p in points}
    for label in AUGMENTATION_POINTS:
        assert ("mac_array", label) in labels and ("mac_array", label + " no-aug") in labels
    no_aug = [p for p in points if p.label.endswith("no-aug")]
    assert all(not p.params.augmented for p in no_aug)
    assert {p.block for p in synth_points(quick=True)} == set(BLOCKS)


def test_small_synthesis_reports_area_and_keeps_rams_apart():
    """A die of 16 x 8-bit words: its RAM is counted in bits, not mapped to cells; the logic gets a
    positive 0.18 um area."""
    port = dataclasses.replace(SMALL, channels=1, data_width=8, words=16, address_width=5)
    stats = synth.synth_stats("bram_die", generate_verilog(BramDie(port), "bram_die"), BUILD_ROOT,
                              liberty=synth.find_liberty())
    assert stats["ram_bits"] == 16 * 8
    assert stats["flip_flops"] > 0 and stats["cells"] > stats["flip_flops"]
    assert stats["area_um2"] > stats["sequential_area_um2"] > 0
    assert stats["liberty_cells"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_place_and_route_of_a_small_block(family):
    verilog_text = generate_verilog(IoHarness(_Adder()), "adder_harness")
    result = place_and_route("adder_harness", verilog_text, family, BUILD_ROOT)
    assert result["fmax_mhz"] > 50
    assert 0 < result["luts"][0] < result["luts"][1]
    assert result["ffs"] >= 15      # the harness chains: one flip-flop per port bit


# -- the self-test checker, against a stand-in accelerator --------------------------------------------

STATUS = data.StructLayout({"busy": 1, "done": 1, "error": 4, "progress": 8})


class _FakeAccelerator(wiring.Component):
    """Raises ``done`` ``latency`` cycles after ``start`` with ``error`` and ``progress = length``;
    two output memories with fixed contents."""

    def __init__(self, contents, latency, error=0):
        self.contents, self.latency, self.error = contents, latency, error
        super().__init__({"start": In(1), "length": In(8), "status": Out(STATUS),
                          "out_addr": In(3), "out_en": In(2), "out_data": Out(12).array(2)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self.latency + 2))
        running = Signal()
        with m.If(self.start):
            m.d.sync += [running.eq(1), count.eq(0), self.status.done.eq(0),
                         self.status.progress.eq(self.length)]
        with m.Elif(running):
            m.d.sync += count.eq(count + 1)
            with m.If(count == self.latency):
                m.d.sync += [running.eq(0), self.status.done.eq(1),
                             self.status.error.eq(self.error)]
        for pe, words in enumerate(self.contents):
            m.submodules[f"omem{pe}"] = mem = memory.Memory(shape=12, depth=8, init=words)
            port = mem.read_port()
            m.d.comb += [port.addr.eq(self.out_addr), port.en.eq(self.out_en[pe]),
                         self.out_data[pe].eq(port.data)]
        return m


def _run_checker(expected, latency=30, error=0, corrupt=0, timeout=1000):
    contents = [[(7 * a + 1) for a in range(8)], [(100 + 5 * a) for a in range(8)]]
    fake = _FakeAccelerator(contents, latency, error)
    checker = SelfTestChecker(STATUS, 2, 8, 12, length=9, expected=expected, timeout=timeout)

    class Pair(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.submodules.fake, m.submodules.checker = fake, checker
            m.d.comb += [fake.start.eq(checker.start), fake.length.eq(checker.length),
                         checker.status.eq(fake.status), fake.out_addr.eq(checker.out_addr),
                         fake.out_en.eq(checker.out_en), checker.corrupt.eq(corrupt)]
            m.d.comb += [checker.out_data[pe].eq(fake.out_data[pe]) for pe in range(2)]
            return m

    sim = Simulator(Pair())
    sim.add_clock(1e-6)
    outcome = {}

    async def bench(ctx):
        for cycle in range(3000):
            if ctx.get(checker.done):
                break
            assert not ctx.get(checker.passed), "passed before done"
            await ctx.tick()
        outcome.update(done=ctx.get(checker.done), passed=ctx.get(checker.passed),
                       mismatches=ctx.get(checker.mismatches),
                       timed_out=ctx.get(checker.timed_out), cycles=cycle)

    sim.add_testbench(bench)
    sim.run()
    return outcome


GOOD = [(0, 0, 1), (0, 7, 50), (1, 3, 115), (1, 0, 100)]


@pytest.mark.parametrize("case, expected, kwargs, passed, mismatches", [
    ("all equal", GOOD, {}, 1, 0),
    ("one word wrong", GOOD[:2] + [(1, 3, 116)] + GOOD[3:], {}, 0, 1),
    ("wrong PE", [(1, 0, 1)], {}, 0, 1),
    ("corrupt input flips the first word", GOOD, {"corrupt": 1}, 0, 1),
    ("error code", GOOD, {"error": 3}, 0, 0),
    ("timeout", GOOD, {"latency": 200, "timeout": 100}, 0, 0),
])
def test_selftest_checker(case, expected, kwargs, passed, mismatches):
    outcome = _run_checker(expected, **kwargs)
    assert outcome["done"] == 1
    assert (outcome["passed"], outcome["mismatches"]) == (passed, mismatches)
    assert outcome["timed_out"] == (case == "timeout")


def test_selftest_checker_rejects_bad_expectations():
    with pytest.raises(ValueError, match="at least one expected output word"):
        SelfTestChecker(STATUS, 2, 8, 12, length=9, expected=[])
    with pytest.raises(ValueError, match=r"\(pe 2, address 0\) is outside 2 PEs x 8 words"):
        SelfTestChecker(STATUS, 2, 8, 12, length=9, expected=[(2, 0, 1)])


# -- the commands, end to end (minutes: slow) -----------------------------------------------------------

def _build_py(*args):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "build.py"), *args], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_build_synth_quick_reports_every_block():
    from hw.blocks import BLOCKS
    figures = json.loads(_build_py("synth", "--quick").strip().splitlines()[-1])
    rows = {(r["block"], r["config"]): r for r in figures["synth"]}
    assert {block for block, _ in rows} == set(BLOCKS)
    assert all(r["area_um2"] > 0 and r["cells"] > 0 for r in rows.values())
    (aug,) = figures["augmentation"]
    assert aug["config"] == "default" and abs(aug["overhead"]) <= 0.03


@pytest.mark.slow
@pytest.mark.verilator
def test_build_fpga_board_ulx3s_writes_a_bitstream():
    figures = json.loads(_build_py("fpga", "--board", "ulx3s").strip().splitlines()[-1])
    assert figures["selftest_passed"] and figures["corrupted_fails"]
    assert Path(figures["bitstream"]).stat().st_size == figures["bytes"] > 100_000
    assert figures["fmax_mhz"] >= figures["clock_mhz"]
