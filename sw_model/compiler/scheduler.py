"""The scheduler: one decode step's :class:`sw_model.decode.step_record.StepRecord` to a command
stream.

The stream is in :mod:`hw.isa`'s command set; weights are where :class:`WeightLayout` says. The
scheduler has no strategy of its own: the step record fixes routing, precision, cache requests and
the resident sets; the scheduler only orders the work and assigns addresses, so a step record gives
one stream (deterministic).

**Experts as jobs.** Every (pass, MoE layer, expert) the record used is a *job* with the rows routed
to it. A job runs tensor parallel on every PE over that PE's shard
(:mod:`sw_model.compiler.weight_layout`): for each input (``x`` for gate and up, ``hidden`` for
down; the host has written its INT8 rows into the input memory IMEM, token tile by token tile), for
windows of weight groups whose activations fit the activation memory, the PE loads the activations
(LOAD_ACT), then for each of its column blocks and chunk of groups loads the weights once and runs
every token tile:

=============== =========================================================================
``draft``        MSB slices from the expert's HB slot (LOAD_SLOT), MAC in DRAFT mode; an
                 expert that is not resident (elastic-k drafts) reads its MSB plane from LPDDR
``hit``          MSB from the HB slot and LSB plane from LPDDR, MAC MSB and MAC LSB, COMBINE
``miss``         all 8 bits from LPDDR: the WHOLE plane and two FULL MACs per block, or, when
                 the expert is also installed now (or the layout has no WHOLE plane), the MSB
                 and LSB planes, MAC MSB + MAC LSB + COMBINE, and the MSB words go on into the
                 expert's new HB slot (WRITE_SLOT): the fill piggy-backs on the miss
``install``      an expert of the next resident set that verification does not stream: its MSB
                 plane from LPDDR into its slot (LOAD_LPDDR, WRITE_SLOT)
=============== =========================================================================

**A step.** Cached decoding (phase ``cached``): the recorded LOOKUP/INSTALL requests in order (CACHE
commands), each expert's job right after its LOOKUP (hit) or INSTALL (miss). Elastic-SD: phase
``draft``: the ``gamma`` draft passes (DRAFT jobs, HB only for the resident-set draft); phase
``verify``: the hit jobs of every layer (they read the old resident set's HB slots), a BARRIER,
then the recorded RESET_COUNTS / COUNT / SELECT requests (the next resident set, counted from the
draft), then the miss jobs (whose fills go to the newly selected slots) and the install jobs.
SELECT may evict a slot the hit jobs read; putting every read of the old set before the barrier
and the SELECT respects that hazard, and the validator would reject a violation
(``SLOT_NOT_INSTALLED``). Every step starts with a BARRIER that opens its first phase and ends with
END; ``cache_prologue`` gives the CACHE commands that bring a reset controller to the step's
starting state (the requests recorded before it).

Outputs: MAC results go to the output memory OMEM of each PE in issue order (the second partial of a
split pair to a scratch word); :class:`Schedule` maps every final result word to its (job, linear,
block, half, group, token tile), so the host's float part can read the group sums back.
"""

from dataclasses import dataclass, field
import math
from typing import NamedTuple

import numpy as np

from hw.isa import COUNT_CHUNK_BITS, Command, Opcode, Slice
from hw.params import CacheOp, CacheStatus, MacMode
from sw_model.compiler.weight_layout import WeightLayout

__all__ = ["PHASES", "Job", "ResultSlot", "Schedule", "schedule_step", "cache_commands",
           "stream_bytes", "expert_jobs"]

#: BARRIER phase numbers (cycles are counted per phase by the status register).
PHASES = {"setup": 0, "draft": 1, "verify": 2, "cached": 3}
PHASE_NAMES = {v: k for k, v in PHASES.items()}


@dataclass(frozen=True)
class Job:
    """One expert in one pass: ``kind`` (draft, draft_lpddr, hit, miss, install), the pass index
    (-1 for install), model ``layer``, ``expert``, the pass ``rows`` it serves (indices into the
    pass's rows, ascending), ``install``: write its MSB words to its new slot too (miss only)."""
    kind: str
    pass_index: int
    layer: int
    expert: int
    rows: tuple = ()
    install: bool = False


class ResultSlot(NamedTuple):
    """Where one final MAC result went: PE, OMEM word, the job (index into ``Schedule.jobs``),
    the linear layer, column block, FULL half (0/1; None for a 4-bit result covering the whole
    block), weight group, token tile and the part of the step (see :class:`Schedule`)."""
    pe: int
    omem: int
    job: int
    linear: str
    block: int
    half: object
    group: int
    tile: int
    part: int = 0


@dataclass
class Schedule:
    """One step's stream and what the host needs around it: ``commands`` (ending with END),
    ``jobs``, ``results`` (the :class:`ResultSlot` of every surviving result), ``inputs``: per
    job and input ("x"/"hidden") the IMEM word address of its first beat, ``wrapped``: the memories
    whose addresses wrapped around (then earlier results/inputs were overwritten), ``imem_used``:
    the IMEM words used (when nothing wrapped).

    A step scheduled with ``split`` is cut into *parts* where the output or input memory (or the
    command memory) would overflow: ``parts`` holds each part's ``(start, end)`` command range
    (the last part ends before END), ``job_part`` each job's part. Every part starts with a
    BARRIER of the phase it continues and allocates OMEM and IMEM from 0 again: the host drains
    the output memory and refills the input memory between parts, and the cache controller and HB
    carry over (:meth:`part_commands` gives a part as a stream of its own)."""
    commands: list
    jobs: list
    results: list
    inputs: dict
    layout: WeightLayout
    wrapped: set = field(default_factory=set)
    imem_used: int = 0
    parts: list = field(default_factory=list)
    job_part: list = field(default_factory=list)

    def part_commands(self, k):
        """Part ``k`` as a stream: its commands and END."""
        start, end = self.parts[k]
        return self.commands[start:end] + [Command(Opcode.END)]

    def cache_commands_before(self, k):
        """The CACHE commands of the parts before part ``k`` (what brings the controller from the
        step's start to part ``k``'s)."""
        return [c for c in self.commands[:self.parts[k][0]] if c.op is Opcode.CACHE]

    def counts(self):
        """Commands per opcode name."""
        out = {}
        for c in self.commands:
            out[c.op.name] = out.get(c.op.name, 0) + 1
        return out


def cache_commands(requests, experts):
    """CACHE commands for controller ``requests`` (:class:`sw_model.golden.expert_cache.Request`); a
    COUNT vector wider than 64 experts becomes one command per non-empty 64-expert chunk."""
    out = []
    for r in requests:
        if r.op == CacheOp.COUNT:
            for chunk in range(math.ceil(experts / COUNT_CHUNK_BITS)):
                part = (r.vector >> (chunk * COUNT_CHUNK_BITS)) & ((1 << COUNT_CHUNK_BITS) - 1)
                if part:
                    out.append(Command(Opcode.CACHE, cop=int(CacheOp.COUNT), layer=r.layer,
                                       chunk=chunk, vector=part))
        else:
            out.append(Command(Opcode.CACHE, cop=int(r.op), layer=r.layer, expert=r.expert))
    return out


def _rows_of(routes, expert):
    hit = (np.asarray(routes) == expert).any(axis=1)
    return tuple(int(r) for r in np.flatnonzero(hit))


def expert_jobs(routes, kind_of, pass_index):
    """Jobs of one pass: for every MoE layer (in order) the experts its ``routes[layer]`` used,
    ascending (the golden model's order), with ``kind_of(layer, expert)``."""
    jobs = []
    for layer, experts in routes.items():
        e = np.asarray(experts)
        for expert in np.unique(e[e >= 0]):
            jobs.append(Job(kind_of(layer, int(expert)), pass_index, layer, int(expert),
                            _rows_of(e, expert)))
    return jobs


class _Full(Exception):
    """A job does not fit the current part's memories."""


_ABSENT = object()


class _Emitter:
    """Turns jobs into commands on a :class:`WeightLayout`, allocating IMEM and OMEM (wrapping
    around, or with ``split`` starting a new part, when one is full)."""

    def __init__(self, layout, split=False, part_commands=None):
        self.layout, self.p = layout, layout.params
        self.commands, self.jobs, self.results, self.inputs = [], [], {}, {}
        self.wrapped = set()
        self.imem_next = self.imem_used = 0
        self.omem_next = [0] * self.p.pes
        self.split, self.part_limit = split, part_commands
        self.part_starts, self.job_part, self.phase = [0], [], None
        self._journal = []      # (table, key, previous value) of the job being emitted
        B = layout.B
        # WMEM: the MSB plane of a load in the lower half, the LSB plane in the upper half (a WHOLE
        # load uses both halves); the scratch partial of a split pair sits at the OMEM top
        self.half = self.p.weight_words // 2
        self.chunk_groups = max(1, self.half // B)
        if 2 * B > self.p.weight_words:
            raise ValueError(f"weight_words ({self.p.weight_words}) cannot hold one group of two "
                             f"planes ({2 * B} words)")

    def emit(self, op, **fields):
        self.commands.append(Command(op, **fields))

    def barrier(self, phase):
        self.phase = phase
        self.emit(Opcode.BARRIER, phase=PHASES[phase])

    # -- allocation ----------------------------------------------------------------------------------
    def _imem(self, words):
        if words > self.p.input_words:
            raise ValueError(f"one job input needs {words} IMEM words, more than input_words "
                             f"({self.p.input_words})")
        if self.imem_next + words > self.p.input_words:
            if self.split:
                raise _Full
            self.wrapped.add("imem")
            self.imem_next = 0
        addr, self.imem_next = self.imem_next, self.imem_next + words
        self.imem_used = max(self.imem_used, self.imem_next)
        return addr

    def _omem(self, pe, words):
        limit = self.p.output_words - self.chunk_groups     # top: scratch partials
        if words > limit:
            raise ValueError(f"output_words ({self.p.output_words}) too small for a chunk of "
                             f"{self.chunk_groups} results plus scratch")
        if self.omem_next[pe] + words > limit:
            if self.split:
                raise _Full
            self.wrapped.add("omem")
            self.omem_next[pe] = 0
        addr = self.omem_next[pe]
        self.omem_next[pe] += words
        return addr

    def _put(self, table, key, value):
        """``table[key] = value``, undone if the job being emitted does not fit its part."""
        self._journal.append((table, key, table.get(key, _ABSENT)))
        table[key] = value

    # -- jobs ----------------------------------------------------------------------------------------
    def job(self, job):
        """Emit ``job``; with ``split``, in a new part when it does not fit the current one."""
        if not self.split:
            return self._job(job)
        mark, index = len(self.commands), len(self.jobs)
        for attempt in range(2):
            self._journal = []
            try:
                self._job(job)
                if (self.part_limit is not None
                        and len(self.commands) - self.part_starts[-1] > self.part_limit):
                    raise _Full
                return
            except _Full:
                del self.commands[mark:]
                del self.jobs[index:], self.job_part[index:]
                for table, key, previous in reversed(self._journal):
                    if previous is _ABSENT:
                        del table[key]
                    else:
                        table[key] = previous
                if attempt or mark == self.part_starts[-1] + 1:
                    raise ValueError(f"{job.kind} job of layer {job.layer} expert {job.expert} "
                                     "alone does not fit the output, input or command memory "
                                     "of one part") from None
                self.part_starts.append(mark)
                self.omem_next = [0] * self.p.pes
                self.imem_next = 0
                self.barrier(self.phase)
                mark = len(self.commands)

    def _job(self, job):
        lay, p = self.layout, self.p
        index = len(self.jobs)
        self.jobs.append(job)
        self.job_part.append(len(self.part_starts) - 1)
        key = dict(layer=lay.layer_index(job.layer), expert=job.expert)
        if job.kind == "install":
            for pe, shard in enumerate(lay.shards):
                pieces = [(u, u.g0, u.groups) for u in shard]
                for group in self._groups(pieces, p.weight_words):
                    self._move(pe, job, key, group, "MSB", 0, write=True)
            return
        T, B = p.mac.tokens, lay.B
        tiles = math.ceil(len(job.rows) / T)
        for name, groups in (("x", lay.groups["gate"]), ("hidden", lay.groups["down"])):
            self._put(self.inputs, (index, name), self._imem(tiles * groups * B))
        window = p.act_words // (tiles * B)
        if window < 1:
            raise ValueError(f"act_words ({p.act_words}) cannot hold one weight group of "
                             f"{tiles} token tiles ({tiles * B} words)")
        for pe, shard in enumerate(lay.shards):
            for name in ("x", "hidden"):
                units = [u for u in shard if u.input == name]
                if not units:
                    continue
                groups = lay.groups["gate" if name == "x" else "down"]
                lo = min(u.g0 for u in units)
                hi = max(u.g0 + u.groups for u in units)
                for w0 in range(lo, hi, window):
                    wn = min(window, hi - w0)
                    pieces = []
                    for u in units:
                        a, b = max(w0, u.g0), min(w0 + wn, u.g0 + u.groups)
                        pieces += [(u, c0, min(self.chunk_groups, b - c0))
                                   for c0 in range(a, b, self.chunk_groups)]
                    if not pieces:
                        continue
                    for t in range(tiles):
                        self.emit(Opcode.LOAD_ACT, pe=pe, amem=t * wn * B, count=wn * B,
                                  imem=self.inputs[(index, name)] + (t * groups + w0) * B)
                    for group in self._groups(pieces, self.half):
                        self._run(index, job, key, pe, group, tiles,
                                  lambda t, c0, w0=w0, wn=wn: t * wn * B + (c0 - w0) * B)

    def _groups(self, pieces, budget):
        """Consecutive pieces ``(unit, first group, groups)`` packed into loads of at most
        ``budget`` weight words (per plane)."""
        B, out, words = self.layout.B, [], budget
        for piece in pieces:
            n = piece[2] * B
            if words + n > budget:
                out.append([])
                words = 0
            out[-1].append(piece)
            words += n
        return out

    def _segments(self, group, plane, base):
        """``(source offset in the PE's plane, words, wmem)`` runs of a load group, contiguous
        runs merged; each piece's WMEM address is ``base`` plus the words before it."""
        B, segs, wmem = self.layout.B, [], base
        for u, c0, cn in group:
            n = cn * B
            at = (c0 - u.g0) * B
            halves = ([2 * u.offset + at, 2 * u.offset + u.groups * B + at]
                      if plane == "WHOLE" else [u.offset + at])
            for src in halves:
                if segs and segs[-1][0] + segs[-1][1] == src and segs[-1][2] + segs[-1][1] == wmem:
                    segs[-1][1] += n
                else:
                    segs.append([src, n, wmem])
                wmem += n
        return segs

    def _move(self, pe, job, key, group, plane, base, write=False, slot=False):
        """Load ``plane`` of a load group into WMEM at ``base`` (from the slot with ``slot``, else
        from LPDDR); with ``write``, also write those MSB words into the key's slot."""
        lay, p = self.layout, self.p
        for src, n, wmem in self._segments(group, plane, base):
            if slot:
                self.emit(Opcode.LOAD_SLOT, pe=pe, slice=Slice.MSB, wmem=wmem, count=n,
                          offset=src * p.hb_ratio, **key)
            else:
                addr = lay.lpddr_plane(job.layer, job.expert, pe, plane)
                self.emit(Opcode.LOAD_LPDDR, pe=pe, slice=Slice[plane], wmem=wmem, count=n,
                          lpddr=addr + src * p.lpddr_ratio)
            if write:
                self.emit(Opcode.WRITE_SLOT, pe=pe, slice=Slice.MSB, wmem=wmem, count=n,
                          offset=src * p.hb_ratio, **key)

    def _run(self, index, job, key, pe, group, tiles, amem_of):
        """Loads and MACs of one load group of a job on PE ``pe``."""
        B, upper = self.layout.B, self.half
        scratch = self.p.output_words - self.chunk_groups
        kind = job.kind

        def record(omem, u, c0, cn, half, t):
            k = len(self.part_starts) - 1
            results, journal, name, block = self.results, self._journal, u.name, u.block
            for g in range(cn):     # self._put, inlined: millions of results at paper size
                slot = (k, pe, omem + g)
                journal.append((results, slot, results.get(slot, _ABSENT)))
                results[slot] = ResultSlot(pe, omem + g, index, name, block, half, c0 + g, t, k)

        def pieces():
            wmem = 0
            for u, c0, cn in group:
                yield u, c0, cn, wmem
                wmem += cn * B

        if kind in ("draft", "draft_lpddr"):
            self._move(pe, job, key, group, "MSB", 0, slot=kind == "draft")
            for u, c0, cn, wmem in pieces():
                for t in range(tiles):
                    out = self._omem(pe, cn)
                    self.emit(Opcode.MAC, pe=pe, mode=MacMode.DRAFT, wmem=wmem,
                              amem=amem_of(t, c0), omem=out, count=cn)
                    record(out, u, c0, cn, None, t)
            return
        if kind == "miss" and not job.install and self.layout.whole_copy:
            self._move(pe, job, key, group, "WHOLE", 0)
            for u, c0, cn, wmem in pieces():
                for t in range(tiles):
                    for half in range(2):
                        out = self._omem(pe, cn)
                        self.emit(Opcode.MAC, pe=pe, mode=MacMode.FULL,
                                  wmem=2 * wmem + half * cn * B, amem=amem_of(t, c0), omem=out,
                                  count=cn)
                        record(out, u, c0, cn, half, t)
            return
        self._move(pe, job, key, group, "MSB", 0, write=kind == "miss" and job.install,
                   slot=kind == "hit")
        self._move(pe, job, key, group, "LSB", upper)
        for u, c0, cn, wmem in pieces():
            for t in range(tiles):
                out = self._omem(pe, cn)
                self.emit(Opcode.MAC, pe=pe, mode=MacMode.MSB, wmem=wmem, amem=amem_of(t, c0),
                          omem=out, count=cn)
                self.emit(Opcode.MAC, pe=pe, mode=MacMode.LSB, wmem=upper + wmem,
                          amem=amem_of(t, c0), omem=scratch, count=cn)
                self.emit(Opcode.COMBINE, pe=pe, a=out, b=scratch, dst=out, count=cn)
                record(out, u, c0, cn, None, t)

    def finish(self):
        ends = self.part_starts[1:] + [len(self.commands)]
        self.emit(Opcode.END)
        return Schedule(self.commands, self.jobs, list(self.results.values()), self.inputs,
                        self.layout, self.wrapped, self.imem_used,
                        list(zip(self.part_starts, ends)), self.job_part)


def _responses(entries):
    """``(request, last response beat)`` of recorded controller trace entries."""
    return [(t.request, t.responses[-1]) for t in entries]


def schedule_step(record, layout, split=False, part_commands=None):
    """The :class:`Schedule` of one decode step (module docstring). ``record``: a
    :class:`sw_model.decode.step_record.StepRecord`; ``layout``: the :class:`WeightLayout`.
    ``split``: cut the step into parts instead of wrapping memories around, each at most
    ``part_commands`` commands long (see :class:`Schedule`)."""
    em = _Emitter(layout, split, part_commands)
    E = layout.config.num_experts
    if record.mode == "cached":
        em.barrier("cached")
        routes = record.target_routes
        rows = {(l, int(e)): _rows_of(routes[l], e)
                for l in routes for e in np.unique(routes[l][routes[l] >= 0])}
        for request, beat in _responses(record.cache_requests.get("target", [])):
            em.commands += cache_commands([request], E)
            key = (layout.moe_layers[request.layer], request.expert)
            if request.op == CacheOp.LOOKUP and beat.status is CacheStatus.HIT:
                em.job(Job("hit", 0, *key, rows[key]))
            elif request.op == CacheOp.INSTALL:
                em.job(Job("miss", 0, *key, rows[key], install=True))
        return em.finish()
    if record.mode != "elastic_sd":
        raise ValueError(f"step record mode must be 'cached' or 'elastic_sd', not "
                         f"{record.mode!r}")
    resident = {l: set(record.resident_before[l]) for l in record.layers}
    installed = {l: set(record.installed.get(l, ())) for l in record.layers}
    em.barrier("draft")
    for j, routes in enumerate(record.draft_routes):
        for job in expert_jobs(routes, lambda l, e: "draft" if e in resident[l]
                               else "draft_lpddr", j):
            em.job(job)
    em.barrier("verify")
    gamma = len(record.draft_routes)
    verify = expert_jobs(record.target_routes,
                         lambda l, e: "hit" if e in resident[l] else "miss", gamma)
    for job in verify:
        if job.kind == "hit":
            em.job(job)
    # every read of the old resident set is issued: now the next set may take their slots
    em.barrier("verify")
    requests = [t.request for phase in ("select", "install")
                for t in record.cache_requests.get(phase, [])]
    em.commands += cache_commands(requests, E)
    streamed = set()
    for job in verify:
        if job.kind == "miss":
            fill = job.expert in installed[job.layer]
            em.job(Job("miss", job.pass_index, job.layer, job.expert, job.rows, install=fill))
            streamed.add((job.layer, job.expert))
    for layer in record.layers:
        for expert in sorted(installed[layer]):
            if (layer, expert) not in streamed:
                em.job(Job("install", -1, layer, expert))
    return em.finish()


def stream_bytes(commands, params):
    """Commands and bytes each memory tier moves per phase: ``{phase: {"commands": n, "HB": read
    bytes, "LPDDR": read bytes, "HB writes": bytes}}`` (phases by BARRIER; before the first one:
    "setup"; END is not counted)."""
    hb = params.hb_ratio * params.hb.bytes_per_word
    lp = params.lpddr_ratio * params.lpddr.bytes_per_word
    out, phase = {}, "setup"
    tiers = {Opcode.LOAD_SLOT: ("HB", hb), Opcode.LOAD_HB: ("HB", hb),
             Opcode.LOAD_LPDDR: ("LPDDR", lp), Opcode.WRITE_SLOT: ("HB writes", hb)}
    for c in commands:
        if c.op is Opcode.END:
            continue
        if c.op is Opcode.BARRIER:
            phase = PHASE_NAMES.get(c.phase, str(c.phase))
        row = out.setdefault(phase, {"commands": 0, "HB": 0, "LPDDR": 0, "HB writes": 0})
        row["commands"] += 1
        tier = tiers.get(c.op)
        if tier is not None:
            row[tier[0]] += c.count * tier[1]
    return out
