"""Static timing analysis of a synthesised netlist with OpenSTA (Debian package ``opensta``, its
``sta`` program): the critical path, its start and end points, and fmax.

:func:`hw.flows.synth.synth_stats` writes the netlist mapped to the OSU 0.18 um cells
(``netlist.v``); :func:`timing_of` runs ``sta`` on it beside the liberty file and keeps the report
(``timing.txt``) and the parsed result (``timing.json``) in the same folder, so a repeated run reads
them. The analysis, and what it assumes:

* **Delays** are the liberty's non-linear delay tables (its only corner: typical, 1.8 V, 25 C),
  looked up at each pin's input slew and output load, propagated by OpenSTA.
* **Wires**: none. The library has no wire-load model and nothing is placed, so a net's load is
  the sum of the input-pin capacitances it drives, with no wire capacitance or resistance; real
  wires would make every path slower. Because of that the figure is an upper bound on fmax.
* **Clock**: one ideal clock on ``clk`` (no skew, no latency, no clock tree); designs without a
  ``clk`` port get a virtual one, so port-to-port paths are still timed.
* **Ports** behave as registers clocked by the same clock: inputs change :data:`INPUT_DELAY_NS`
  after the edge with a transition of :data:`INPUT_SLEW_NS` (ideal drivers), outputs are required
  at the next edge and drive :data:`OUTPUT_LOAD_PF` (about one flip-flop input).
* **RAM cells** (memories left unmapped, see :mod:`hw.flows.synth`) are cut out before the
  analysis: their read data become inputs and their address, data and enable pins outputs, i.e.
  the RAM is timed as an ideal register, since the library has no SRAM.

The critical path delay is ``period - worst slack``: the data arrival time plus the endpoint's
setup time (zero at an output port), and ``fmax = 1 / delay``. Flip-flops are named after the
signal they hold (``<signal>_reg``), so the path names registers of the design.
"""

import json
import re
import shutil
import subprocess

from hw.flows.heartbeat import heartbeat

__all__ = ["StaNotFound", "STA_PACKAGE", "find_sta", "sta_script", "timing_of", "parse_report",
           "INPUT_DELAY_NS", "INPUT_SLEW_NS", "OUTPUT_LOAD_PF", "PERIOD_NS"]

#: Debian package holding OpenSTA (the ``sta`` program).
STA_PACKAGE = "opensta"
#: The clock period of the analysis; any period longer than the critical path gives the same
#: delay (``period - slack``).
PERIOD_NS = 1000.0
#: Input ports change this long after the clock edge ...
INPUT_DELAY_NS = 0.0
#: ... with this transition time (an ideal driver).
INPUT_SLEW_NS = 0.1
#: Load on each output port: about one DFFPOSX1 D input.
OUTPUT_LOAD_PF = 0.01


class StaNotFound(FileNotFoundError):
    """OpenSTA's ``sta`` is not installed; the message names the Debian package."""


class StaError(RuntimeError):
    """OpenSTA failed or its report could not be read; the message names the log."""


def find_sta():
    """Path of OpenSTA's ``sta`` program; :class:`StaNotFound` (one line, naming the package)
    if it is not on ``PATH``."""
    exe = shutil.which("sta")
    if exe is None:
        raise StaNotFound(f"OpenSTA (the sta program) is not installed; install the Debian/Ubuntu "
                          f"package {STA_PACKAGE} (apt-get install {STA_PACKAGE})")
    return exe


def sta_script(top, liberty_name, netlist_name="netlist.v", clock="clk"):
    """The OpenSTA script: the module docstring's assumptions, then the worst path. ``clock``:
    the clock port's name, or None for a virtual clock."""
    source = f"[get_ports {clock}]" if clock else ""
    return (f"read_liberty {liberty_name}\n"
            f"read_verilog {netlist_name}\n"
            f"link_design {top}\n"
            f"create_clock -name clk -period {PERIOD_NS} {source}\n"
            "set inputs {}\n"
            f"foreach port [all_inputs] {{ if {{[get_full_name $port] != \"{clock}\"}} "
            "{ lappend inputs $port } }\n"
            f"set_input_delay {INPUT_DELAY_NS} -clock clk $inputs\n"
            f"set_output_delay 0 -clock clk [all_outputs]\n"
            f"set_input_transition {INPUT_SLEW_NS} [all_inputs]\n"
            f"set_load {OUTPUT_LOAD_PF} [all_outputs]\n"
            "report_checks -path_delay max -digits 4 -fields {fanout cap slew}\n")


_POINT = re.compile(r"^(Startpoint|Endpoint): (\S+)\s+\((.*?)\)$", re.M)
_STEP = re.compile(r"^\s+(?:[-\d.]+\s+)+[v^] (\S+) \((\S+)\)$", re.M)
_VALUE = r"^\s+(-?[\d.]+)\s+(?:-?[\d.]+\s+)?{}"


def _signal(name, kind):
    """A register's signal (its flip-flop's name less ``_reg``) or a port's name."""
    name = name.replace("\\", "")
    if "flip-flop" in kind and name.endswith("_reg"):
        name = name[:-len("_reg")]
    return name


def parse_report(text):
    """The worst path of a ``report_checks`` report: ``{"start", "start_kind", "end",
    "end_kind", "delay_ns", "fmax_mhz", "arrival_ns", "setup_ns", "slack_ns", "cells"}``
    (``cells``: the cell types along the path, start and end included). ValueError if the report
    has no path."""
    points = {which: (name, kind) for which, name, kind in _POINT.findall(text)}
    slack = re.search(_VALUE.format(r"slack"), text, re.M)
    if "Startpoint" not in points or "Endpoint" not in points or slack is None:
        raise ValueError("no timing path in the OpenSTA report")
    arrival = float(re.search(_VALUE.format("data arrival time"), text, re.M).group(1))
    setup = re.search(_VALUE.format("library setup time"), text, re.M)
    setup = -float(setup.group(1)) if setup else 0.0
    delay = PERIOD_NS - float(slack.group(1))
    cells, last = [], None
    for pin, cell in _STEP.findall(text[:text.index("data arrival time")]):
        instance = pin.rsplit("/", 1)[0]
        if cell not in ("in", "out") and instance != last:   # ports are not cells
            cells.append(cell)
            last = instance
    (start, start_kind), (end, end_kind) = points["Startpoint"], points["Endpoint"]
    return {"start": _signal(start, start_kind), "start_kind": start_kind.split(" clocked")[0],
            "end": _signal(end, end_kind), "end_kind": end_kind.split(" clocked")[0],
            "delay_ns": round(delay, 4), "fmax_mhz": round(1000.0 / delay, 2),
            "arrival_ns": arrival, "setup_ns": setup, "slack_ns": float(slack.group(1)),
            "cells": cells}


def timing_of(work, top, liberty_name, clock="clk"):
    """Time ``work/netlist.v`` (module ``top``) against ``work/liberty_name``; see
    :func:`parse_report`. Cached in ``work/timing.json``."""
    done = work / "timing.json"
    if done.exists():
        return json.loads(done.read_text())
    exe = find_sta()
    (work / "timing.tcl").write_text(sta_script(top, liberty_name, clock=clock))
    with heartbeat(f"OpenSTA timing of {top}"):
        result = subprocess.run([exe, "-no_splash", "-exit", "timing.tcl"], cwd=work,
                                capture_output=True, text=True)
    (work / "timing.txt").write_text(result.stdout + result.stderr)
    try:
        if result.returncode != 0:
            raise ValueError(f"exit {result.returncode}")
        timing = parse_report(result.stdout)
    except ValueError as exc:
        raise StaError(f"OpenSTA failed on {top} ({exc}); see {work / 'timing.txt'}") from None
    done.write_text(json.dumps(timing))
    return timing
