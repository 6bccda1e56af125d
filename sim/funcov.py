"""Functional coverage of the stimulus: named sets of bins (crosses of stimulus features) that the
benches sample as they drive the RTL, collected while ``python build.py coverage`` runs.

The benches call :func:`sample` with a group name and one value per axis; nothing is recorded
unless :data:`sim.runner.COVERAGE_ENV` names a directory, where every process writes its counts
(``funcov-<pid>.json``, rewritten by :func:`flush`). :func:`collect` merges them and
:func:`report` lists, per group, how many of its bins were hit and which were not. A group's bins
are the legal combinations only (a LOOKUP never answers PRESENT; END has no address to check).
"""

import json
import os
from collections import Counter
from itertools import product
from pathlib import Path

from hw.isa import ErrorCode, Opcode
from hw.params import CacheOp, CachePolicy, CacheStatus, MacMode

__all__ = ["GROUPS", "sample", "flush", "collect", "report", "mac_values", "memory_error"]

_PRESSURE = ("free", "pressure")
_S = CacheStatus

#: Statuses each cache operation can answer (SELECT: its pick beats and its final OK beat).
_CACHE_STATUSES = {
    CacheOp.LOOKUP: (_S.HIT, _S.MISS, _S.BAD_RANGE),
    CacheOp.INSTALL: (_S.OK, _S.PRESENT, _S.PINNED, _S.BAD_RANGE),
    CacheOp.PIN: (_S.OK, _S.ABSENT, _S.BAD_RANGE),
    CacheOp.UNPIN: (_S.OK, _S.ABSENT, _S.BAD_RANGE),
    CacheOp.INVALIDATE: (_S.OK, _S.PINNED, _S.ABSENT, _S.BAD_RANGE),
    CacheOp.INVALIDATE_ALL: (_S.OK,),
    CacheOp.COUNT: (_S.OK, _S.BAD_RANGE),
    CacheOp.SELECT: (_S.HIT, _S.OK, _S.NO_ROOM),
    CacheOp.RESET_COUNTS: (_S.OK,),
}
_ADDRESSED = (Opcode.LOAD_HB, Opcode.LOAD_LPDDR, Opcode.LOAD_SLOT, Opcode.WRITE_SLOT,
              Opcode.LOAD_ACT, Opcode.MAC, Opcode.COMBINE)
#: Error codes each opcode can stop a stream with (``unknown``: an opcode outside the ISA;
#: ``past the end``: the stream ran out without END).
_ISA_ERRORS = {
    **{op.name: ("NONE", "BAD_FIELD") + (("BAD_ADDRESS",) if op in _ADDRESSED else ())
       + (("SLOT_NOT_INSTALLED",) if op in (Opcode.LOAD_SLOT, Opcode.WRITE_SLOT) else ())
       + (("CACHE_ERROR",) if op is Opcode.CACHE else ()) for op in Opcode},
    "unknown": ("BAD_OPCODE",), "past the end": ("NO_END",),
}

#: Group name -> (axis names, the tuple of legal bins).
GROUPS = {
    "mac": (("mode", "activations", "pressure", "values"),
            tuple(product([m.name for m in MacMode], ("load", "reuse"), _PRESSURE,
                          ("random", "extreme", "zero")))),
    "cache": (("op", "status", "policy"),
              tuple((op.name, s.name, pol.name) for pol in CachePolicy
                    for op, statuses in _CACHE_STATUSES.items() for s in statuses)
              + tuple(("unknown", "BAD_OPCODE", pol.name) for pol in CachePolicy)),
    "memory": (("request", "error", "pressure"),
               tuple(product(("read", "write"), ("none", "zero length", "over max_length",
                                                 "beyond the device", "past the end"),
                             _PRESSURE))),
    "isa": (("opcode", "error"),
            tuple((op, err) for op, errs in _ISA_ERRORS.items() for err in errs)),
}

_counts = {name: Counter() for name in GROUPS}
_ENV = "ELMOE_COVERAGE"       # sim.runner.COVERAGE_ENV (not imported: cocotb benches load this)


def _target():
    value = os.environ.get(_ENV)
    return Path(value) if value else None


def sample(group, *values):
    """Count one stimulus item of ``group`` with one value per axis (only while collecting)."""
    if _target() is None:
        return
    axes, _ = GROUPS[group]
    if len(values) != len(axes):
        raise ValueError(f"{group} samples {len(axes)} values ({', '.join(axes)}), "
                         f"not {values!r}")
    _counts[group][tuple(str(v) for v in values)] += 1


def flush():
    """Write this process's counts so far (a no-op unless collecting)."""
    target = _target()
    if target is None or not any(_counts.values()):
        return
    target.mkdir(parents=True, exist_ok=True)
    data = {name: [[list(key), n] for key, n in c.items()] for name, c in _counts.items()}
    (target / f"funcov-{os.getpid()}.json").write_text(json.dumps(data))


def collect(directory):
    """``{group: Counter(bin -> hits)}`` merged over every ``funcov-*.json`` in ``directory``."""
    merged = {name: Counter() for name in GROUPS}
    for path in sorted(Path(directory).glob("funcov-*.json")):
        for name, items in json.loads(path.read_text()).items():
            for key, n in items:
                merged[name][tuple(key)] += n
    return merged


def report(merged):
    """``{group: {"bins", "hit", "missing": [bin, ...], "illegal": [bin, ...]}}``: ``illegal``
    lists sampled combinations outside the legal bins (a bench or contract error)."""
    out = {}
    for name, (_, bins) in GROUPS.items():
        counts = merged.get(name, Counter())
        legal = set(bins)
        out[name] = {"bins": len(bins), "hit": sum(1 for b in bins if counts[b]),
                     "missing": [list(b) for b in bins if not counts[b]],
                     "illegal": sorted(list(b) for b in counts if b not in legal)}
    return out


# -- stimulus classes the benches share ------------------------------------------------------------
_EXTREMES = frozenset((-128, 127, 0, -1, 1, -8, 7, 8, 15, -16, 16))


def mac_values(x, q):
    """A MAC operation's value class: ``zero`` (all activations or all weights 0), ``extreme``
    (every value one of the edge values: -128, 127, 0, -1, 1 and the 4-bit boundaries) or
    ``random``."""
    if not x.any() or not q.any():
        return "zero"
    if set(x.flat) <= _EXTREMES and set(q.flat) <= _EXTREMES:
        return "extreme"
    return "random"


def memory_error(params, request):
    """Which check a memory request fails first (``none`` when it is valid)."""
    if request.length == 0:
        return "zero length"
    if request.length > params.max_length:
        return "over max_length"
    if request.address >= params.words:
        return "beyond the device"
    if request.address + request.length > params.words:
        return "past the end"
    return "none"
