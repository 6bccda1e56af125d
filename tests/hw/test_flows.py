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


def test_mac_timing_fit_recovers_a_logarithmic_model_and_names_the_path():
    """Delays of exactly p + q*log2(T*C) give p, q and the paper PE's value back; the path is
    named by its registers without bit indices; fewer than 3 points are refused."""
    from hw.flows.synth_report import fit_mac_timing
    p, q = 7.0, 0.25

    def row(t, c, start="s1_mode[0]"):
        return {"params": {"tokens": t, "out_channels": c},
                "critical_path_ns": p + q * np.log2(t * c),
                "path": {"start": start, "end": f"s2_sum_h[{t + c}]"}}

    rows = [row(1, 1), row(2, 1), row(2, 2), row(4, 2)]
    fit = fit_mac_timing(rows)
    assert fit["constant_ns"] == pytest.approx(p) and fit["per_doubling_ns"] == pytest.approx(q)
    size = MAC_PAPER_PE.tokens * MAC_PAPER_PE.out_channels
    assert fit["critical_path_ns"] == pytest.approx(p + q * np.log2(size), abs=1e-3)
    assert fit["fmax_mhz"] == pytest.approx(1000 / fit["critical_path_ns"], abs=0.05)
    assert (fit["start"], fit["end"], fit["same_path_in_every_point"]) == \
        ("s1_mode", "s2_sum_h", True)
    other = fit_mac_timing(rows[:3] + [row(4, 2, start="s1_beat[3]")])
    assert (other["start"], other["same_path_in_every_point"]) == ("s1_beat", False)
    with pytest.raises(ValueError, match="at least 3 ladder points, got 2"):
        fit_mac_timing(rows[:2])


def test_the_paper_pe_path_is_the_longer_of_the_array_and_the_path_inside_a_pe():
    from hw.flows.synth_report import _pe_path, pe_timing
    mac = {"critical_path_ns": 9.0}

    def top(start, end, delay):
        return {"block": "top", "config": "default", "critical_path_ns": delay,
                "path": {"start": start, "end": end}}
    inside = top("top.pe0.a_step", "top.pe0.out[447]", 37.85)
    assert _pe_path([{"block": "mac_array"}, inside]) is inside
    t = pe_timing(mac, inside)
    assert (t["critical_path_ns"], t["fmax_mhz"], t["limited_by"]) == (37.85, 26.4, "inside the PE")
    assert (t["start"], t["end"]) == ("top.pe0.a_step", "top.pe0.out")
    assert pe_timing(mac, top("top.pe1.x", "top.pe1.y", 4.0))["limited_by"] == "MAC array"
    assert _pe_path([top("top.pe0.x", "top.pe1.y", 5.0)]) is None       # between two PEs
    assert _pe_path([top("top.cmd.x", "top.cmd.y", 5.0)]) is None


def test_synth_of_a_machine_names_the_blocks_too_large_to_finish():
    from hw.machines import MACHINES
    from hw.flows.synth_report import machine_points
    points, skipped = machine_points(MACHINES["paper"], "paper")
    assert {p.block for p in points} == {"expert_cache", "hb_interface", "lpddr_port"}
    assert set(skipped) == {"mac_array", "top"}
    mac = MACHINES["paper"].mac
    products = mac.tokens * mac.out_channels * mac.lanes
    assert f"its array has {products} lane products" in skipped["mac_array"]
    assert f"32 PEs x {products} lane products" in skipped["top"]
    points, skipped = machine_points(MACHINES["demo"], "demo")
    assert not skipped and {p.block for p in points} == set(BLOCKS_NAMES)


BLOCKS_NAMES = ("mac_array", "expert_cache", "hb_interface", "lpddr_port", "top")


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


def _registered_adder(n):
    """``s <= ra + rb`` with ``ra <= a``, ``rb <= b``: an n-bit adder between registers."""
    class Adder(wiring.Component):
        a: In(n)
        b: In(n)
        s: Out(n + 1)

        def elaborate(self, platform):
            m = Module()
            ra, rb = Signal(n, name="ra"), Signal(n, name="rb")
            m.d.sync += [ra.eq(self.a), rb.eq(self.b), self.s.eq(ra + rb)]
            return m
    return Adder()


@pytest.mark.toolchain
def test_timing_of_a_ripple_adder_grows_one_carry_cell_per_bit():
    """The critical path of an n-bit adder between registers runs from a low bit of an operand
    register through the carry chain to the top bits of the sum register: one carry cell per
    bit (the mapped adder ripples), each adding the same delay, about that of one AOI21/OAI21
    gate of the library (0.05-0.3 ns at these loads); fmax is 1 / delay."""
    timings = {}
    for n in (8, 16, 32):
        stats = synth.synth_stats(f"adder{n}", generate_verilog(_registered_adder(n), f"adder{n}"),
                                  BUILD_ROOT, liberty=synth.find_liberty())
        timing = timings[n] = stats["timing"]
        assert timing["start_kind"] == timing["end_kind"] == "rising edge-triggered flip-flop"
        register, bit = timing["start"][:-1].split("[")
        assert register in ("ra", "rb") and int(bit) < 4
        assert timing["end"] in (f"s[{n - 1}]", f"s[{n}]")
        assert timing["cells"][0] == timing["cells"][-1] == "DFFPOSX1"
        # the report has 4 decimals (0.1 ps): delay and arrival + setup agree to 2 of them
        assert timing["delay_ns"] == pytest.approx(timing["arrival_ns"] + timing["setup_ns"],
                                                   abs=2e-4)
        assert timing["setup_ns"] > 0
        assert timing["fmax_mhz"] == pytest.approx(1000 / timing["delay_ns"], rel=1e-4)
    cells = {n: len(t["cells"]) for n, t in timings.items()}
    assert cells[16] - cells[8] == 8 and cells[32] - cells[16] == 16
    per_bit = [(timings[16]["delay_ns"] - timings[8]["delay_ns"]) / 8,
               (timings[32]["delay_ns"] - timings[16]["delay_ns"]) / 16]
    assert all(0.05 < d < 0.3 for d in per_bit)
    assert per_bit[1] == pytest.approx(per_bit[0], rel=0.2)


def test_timing_report_parsing_and_a_missing_opensta(monkeypatch):
    """The worst path of an OpenSTA report: its points, delay (arrival + setup), fmax and cells;
    without ``sta`` on PATH, one line naming the Debian package."""
    from hw.flows import timing
    report = """Startpoint: acc[0]_reg
            (rising edge-triggered flip-flop clocked by clk)
Endpoint: out[3] (output port clocked by clk)
Path Group: clk
Path Type: max

      Cap      Slew     Delay      Time   Description
---------------------------------------------------------
             0.0000    0.0000    0.0000 ^ acc[0]_reg/CLK (DFFPOSX1)
   0.0100    0.1000    0.3000    0.3000 v acc[0]_reg/Q (DFFPOSX1)
   0.0100    0.1000    0.2000    0.5000 ^ _12_/Y (INVX1)
             0.1000    0.0000    0.5000 ^ out[3] (out)
                                 0.5000   data arrival time

                      1000.0000 1000.0000   clock clk (rise edge)
                                 1000.0000   data required time
                               -0.5000   data arrival time
---------------------------------------------------------
                                999.5000   slack (MET)
"""
    path = timing.parse_report(report)
    assert (path["start"], path["end"], path["end_kind"]) == ("acc[0]", "out[3]", "output port")
    assert path["delay_ns"] == 0.5 and path["fmax_mhz"] == 2000 and path["setup_ns"] == 0
    assert path["cells"] == ["DFFPOSX1", "INVX1"]
    with pytest.raises(ValueError, match="no timing path"):
        timing.parse_report("No paths found.\n")
    monkeypatch.setenv("PATH", "")
    with pytest.raises(timing.StaNotFound) as info:
        timing.find_sta()
    message = str(info.value)
    assert "\n" not in message and "apt-get install opensta" in message


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


def test_module_by_module_lint_finds_errors_in_a_part_and_in_the_top(tmp_path):
    """The top is linted with each instanced part reduced to its ports, each part on its own: an
    error inside a part and a wrong connection in the top are both found."""
    from hw.flows.verilog import lint_modules
    part = ("module part(a, b);\n  input wire a;\n  output wire b;\n  assign b = a;\n"
            "endmodule\n")
    top = ("module top(x, y, z);\n  input wire x;\n  output wire y;\n  output wire z;\n"
           "  part u0 (.a(x), .b(y));\n  part u1 (.a(x), .b(z));\nendmodule\n")
    path = tmp_path / "t.v"
    path.write_text(top + part)
    assert lint_modules(path, "top", ["part"])[0] == []
    path.write_text(top + part.replace("assign b = a;", "assign b = nosuch;"))
    assert any("nosuch" in e for e in lint_modules(path, "top", ["part"])[0])
    path.write_text(top.replace(".a(x), .b(z)", ".c(x), .b(z)") + part)
    assert any("c" in e and "Error" in e for e in lint_modules(path, "top", ["part"])[0])
