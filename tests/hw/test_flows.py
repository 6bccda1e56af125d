"""The implementation flows: the scan-chain I/O harness of the FPGA builds, the liberty lookup, the
MAC growth fit and the synthesis ladder, a small synthesis with the liberty file (Yosys), and
(slow) place and route on each FPGA family (nextpnr)."""


import numpy as np
import pytest
from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.flows import synth
from hw.bram_die import BramDie
from hw.flows.fpga import IoHarness, place_and_route, FAMILIES
from hw.params import HbInterfaceParams
from hw.params import MAC_PAPER_PE
from hw.flows.synth_report import fit_mac, synth_points, AUGMENTATION_POINTS
from hw.flows.verilog import BUILD_ROOT, generate_verilog


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
    T, C = MAC_PAPER_PE.tokens, MAC_PAPER_PE.out_channels          # 16 tokens, 16 channels
    assert cells["paper_pe"] == pytest.approx(a * T * C + b * T + c * C + d)
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


@pytest.mark.slow
@pytest.mark.toolchain
def test_small_synthesis_reports_area_and_keeps_rams_apart():
    """A die of 16 x 8-bit words: its RAM is counted in bits, not mapped to cells; the logic gets a
    positive 0.18 um area."""
    port = HbInterfaceParams(channels=1, data_width=8, words=16, address_width=5, max_length=16,
                             die_burst=4, outstanding=4, read_buffer=16, write_buffer=8)
    stats = synth.synth_stats("bram_die", generate_verilog(BramDie(port), "bram_die"), BUILD_ROOT,
                              liberty=synth.find_liberty())
    assert stats["ram_bits"] == 16 * 8
    assert stats["flip_flops"] > 0 and stats["cells"] > stats["flip_flops"]
    assert stats["area_um2"] > stats["sequential_area_um2"] > 0
    assert stats["liberty_cells"] > 0


@pytest.mark.slow
@pytest.mark.toolchain
@pytest.mark.parametrize("family", list(FAMILIES))
def test_place_and_route_of_a_small_block(family):
    verilog_text = generate_verilog(IoHarness(_Adder()), "adder_harness")
    result = place_and_route("adder_harness", verilog_text, family, BUILD_ROOT)
    assert result["fmax_mhz"] > 50
    assert 0 < result["luts"][0] < result["luts"][1]
    assert result["ffs"] >= 15      # the harness chains: one flip-flop per port bit


def test_verilog_is_converted_once_per_design_and_sources(tmp_path, monkeypatch):
    """The conversion cache answers a repeat without converting, and converts again for other
    parameters or another name."""
    from hw.flows import verilog as flows_verilog
    from hw.params import MAC_DEFAULT, MAC_PAPER_PE
    monkeypatch.setattr(flows_verilog, "BUILD_ROOT", tmp_path)
    made = []

    def make(text):
        return lambda: made.append(text) or text

    assert flows_verilog.cached_verilog("mac_array", MAC_DEFAULT, make("a")) == "a"
    assert flows_verilog.cached_verilog("mac_array", MAC_DEFAULT, make("b")) == "a"
    assert flows_verilog.cached_verilog("mac_array", MAC_PAPER_PE, make("c")) == "c"
    assert flows_verilog.cached_verilog("other", MAC_DEFAULT, make("d")) == "d"
    assert made == ["a", "c", "d"]
    assert len(list((tmp_path / "verilog-cache").glob("*.v"))) == 3


def _memory_rtlil(depth, width, init):
    from amaranth.back import rtlil
    from amaranth.lib.memory import Memory

    class Mem(wiring.Component):
        addr: In(range(depth))
        data: Out(width)

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=width, depth=depth, init=init)
            port = mem.read_port(domain="comb")
            m.d.comb += [port.addr.eq(self.addr), self.data.eq(port.data)]
            return m

    return rtlil.convert(Mem(), name="mem", emit_src=False)


def test_fast_memory_contents_write_exactly_amaranths_rtlil(monkeypatch):
    """The conversions' fast writer of memory contents is in use, and writes what Amaranth's own
    does on memories other than the one it checks itself on; a writer that differs is refused and
    Amaranth's own stays."""
    from amaranth.back import rtlil
    from hw.flows import memory_init
    assert memory_init.install() and memory_init.installed()
    rng = np.random.default_rng(5)
    cases = [(1, 1, [1]), (3, 64, [2**64 - 1, 0, 2**63]), (17, 9, rng.integers(0, 512, 17).tolist()),
             (256, 40, rng.integers(0, 2**40, 200).tolist())]
    fast = [_memory_rtlil(*case) for case in cases]
    monkeypatch.setattr(rtlil.ModuleEmitter, "emit_memory", memory_init._ORIGINAL)
    assert fast == [_memory_rtlil(*case) for case in cases]

    def wrong(self, cell_idx, cell):      # rows in the wrong order
        cell.init = list(reversed(cell.init))
        return memory_init._ORIGINAL(self, cell_idx, cell)
    monkeypatch.setattr(memory_init, "_emit_memory", wrong)
    monkeypatch.setattr(memory_init, "_state", {"checked": False, "installed": False})
    assert not memory_init.install()
    assert rtlil.ModuleEmitter.emit_memory is memory_init._ORIGINAL


def test_lint_verdicts_are_kept_for_the_same_text_only(tmp_path, monkeypatch):
    """A clean lint is not run again for the same text; other text, or an error, runs Verilator."""
    from hw.flows import verilog as flows_verilog
    monkeypatch.setattr(flows_verilog, "BUILD_ROOT", tmp_path / "build")
    calls = []
    real_run = flows_verilog.subprocess.run
    monkeypatch.setattr(flows_verilog.subprocess, "run",
                        lambda *a, **k: calls.append(a[0]) or real_run(*a, **k))
    good = tmp_path / "adder.v"
    good.write_text(generate_verilog(_Adder(), "adder"))
    first = flows_verilog.lint(good, "adder")
    assert first[0] == [] and len(calls) == 1
    assert flows_verilog.lint(good, "adder") == first and len(calls) == 1
    good.write_text(good.read_text() + "\n// changed\n")
    assert flows_verilog.lint(good, "adder")[0] == [] and len(calls) == 2
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input a, output b); assign b = ; endmodule\n")
    for expected_calls in (3, 4):
        errors, _ = flows_verilog.lint(bad, "bad")
        assert errors and len(calls) == expected_calls
