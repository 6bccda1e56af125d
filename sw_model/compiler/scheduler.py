"""The scheduler: one decode step's :class:`sw_model.decode.step_record.StepRecord` to a command
stream.

The stream is in :mod:`hw.isa`'s command set; weights are where :class:`WeightLayout` says. The
scheduler has no strategy of its own: the step record fixes routing, precision, cache requests and
the resident sets; the scheduler only orders the work and assigns addresses, so a step record gives
one stream (deterministic).

**Experts as jobs.** Every (pass, MoE layer, expert) the record used is a *job* with the rows routed
to it. A job runs tensor parallel on every PE over that PE's column blocks
(:mod:`sw_model.compiler.weight_layout`): for each input (``x`` for gate and up, ``hidden`` for
down; the host has written its INT8 rows and its tokens' binary32 scales into the input memory
IMEM, token tile by token tile), the PE loads the activations (LOAD_ACT: the whole input when it
fits the activation memory, else one chunk at a time), and for each column block and token tile
runs MAC_DQ over the block's weight groups, a chunk of groups at a time (MSB words in the lower half
of WMEM, LSB words in the upper half, scale words at its top), the first chunk with ``first``, the
last with ``last``: one binary32 value per token and channel goes to OMEM. Each chunk is loaded once
for up to ``P.accumulators`` token tiles, each accumulating in its own accumulator (``acc``):

=============== =========================================================================
``draft``        MSB slices and scales from the expert's HB slot (LOAD_SLOT), MAC_DQ in DRAFT
                 mode; an expert that is not resident (elastic-k drafts) reads them from LPDDR
``hit``          MSB and scales from the HB slot, LSB plane from LPDDR, MAC_DQ ``split``
``miss``         MSB, LSB and scales from LPDDR, MAC_DQ ``split``; when the expert is also
                 installed now, the MSB and scale words go on into its new HB slot (WRITE_SLOT):
                 the fill piggy-backs on the miss
``install``      an expert of the next resident set that verification does not stream: its MSB
                 and scale planes from LPDDR into its slot (LOAD_LPDDR, WRITE_SLOT)
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

Outputs: each block's dequantised result (``P.dq_words`` OMEM words) goes to the output memory
OMEM of its PE in issue order; :class:`Schedule` maps every result to its (job, linear, block,
token tile), so the host reads the expert layers' outputs back.
"""

from dataclasses import dataclass, field
import math
from typing import NamedTuple

import numpy as np

from hw.isa import COUNT_CHUNK_BITS, Command, Opcode, Slice
from hw.params import CacheOp, CacheStatus, MacMode
from sw_model.compiler.weight_layout import WeightLayout

__all__ = ["PHASES", "Job", "ResultSlot", "Schedule", "schedule_step", "cache_commands",
           "stream_bytes", "expert_jobs", "max_job_rows", "check_pass_fits"]

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
    """Where one dequantised block result went: PE, first OMEM word (``P.dq_words`` words), the
    job (index into ``Schedule.jobs``), the linear layer, column block, token tile and the part of
    the step (see :class:`Schedule`)."""
    pe: int
    omem: int
    job: int
    linear: str
    block: int
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
        B, k, W = layout.B, layout.k, self.p.weight_words
        # WMEM: a chunk's MSB words at 0, its LSB words at W // 2 (where MAC_DQ split reads them),
        # its scale words at the top; a chunk of a multiple of k groups starts on a scale word
        self.chunk_groups = 0
        for cn in range((W // 2) // B, 0, -1):
            if cn * B + self._scale_span(cn) <= W - W // 2:
                self.chunk_groups = cn
                break
        if not self.chunk_groups:
            raise ValueError(f"weight_words ({W}) cannot hold one weight group of two planes and "
                             f"its scale word ({2 * B + 1} words)")
        if self.chunk_groups > k:
            self.chunk_groups -= self.chunk_groups % k

    def _scale_span(self, groups):
        """Scale words a chunk of ``groups`` groups may touch (one more unless k divides it)."""
        k = self.layout.k
        return -(-groups // k) + (0 if groups % k == 0 else 1)

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

    def _omem(self, pe):
        words = self.p.dq_words
        if self.omem_next[pe] + words > self.p.output_words:
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
            for pe in range(p.pes):
                for plane, words in (("MSB", lay.plane_words[pe]),
                                     ("SCALE", lay.scale_words[pe])):
                    for at in range(0, words, p.weight_words):
                        n = min(p.weight_words, words - at)
                        self._move(pe, job, key, plane, at, n, 0, write=True)
            return
        T, B = p.mac.tokens, lay.B
        tiles = math.ceil(len(job.rows) / T)
        for name, groups in (("x", lay.groups["gate"]), ("hidden", lay.groups["down"])):
            self._put(self.inputs, (index, name),
                      self._imem(tiles * groups * B + tiles))
        for pe, shard in enumerate(lay.shards):
            for name in ("x", "hidden"):
                units = [u for u in shard if u.input == name]
                if units:
                    self._input(index, job, key, pe, name, units, tiles)

    def _input(self, index, job, key, pe, name, units, tiles):
        """The blocks of one input of a job on PE ``pe`` (module docstring). Up to
        ``P.accumulators`` token tiles run over each chunk of weights loaded once, each tile in
        its own accumulator."""
        lay, p = self.layout, self.p
        B = lay.B
        G = lay.groups["gate" if name == "x" else "down"]
        base = self.inputs[(index, name)]
        ts_imem = base + tiles * G * B              # the tiles' token-scale words
        whole = tiles * G * B + tiles <= p.act_words    # the whole input stays in AMEM
        group = min(tiles, p.accumulators)              # tiles sharing one load of weights
        step = self.chunk_groups
        if whole:
            for t in range(tiles):
                self.emit(Opcode.LOAD_ACT, pe=pe, amem=t * G * B, count=G * B,
                          imem=base + t * G * B)
            self.emit(Opcode.LOAD_ACT, pe=pe, amem=tiles * G * B, count=tiles, imem=ts_imem)
        else:           # per chunk, the chunk's activations of the group's tiles, then their scales
            step = min(step, (p.act_words - group) // (group * B))
            if step < 1:
                raise ValueError(f"act_words ({p.act_words}) cannot hold one weight group of "
                                 f"{group} token tiles and their token scales "
                                 f"({group * B + group} words)")
        dq = dict(mode=MacMode.DRAFT) if job.kind.startswith("draft") else \
            dict(mode=MacMode.FULL, split=1)
        chunks = [(c0, min(step, G - c0)) for c0 in range(0, G, step)]
        if whole and len(chunks) == 1:
            # every block is one chunk: consecutive blocks share each load (their words and scale
            # words are consecutive in the planes), every tile of a block runs on it
            for pack in self._packs(units, G):
                at = self._load_pack(pe, job, key, pack, G)
                for u, (wmem, slots) in zip(pack, at):
                    for t in range(tiles):
                        out = self._omem(pe)
                        self.emit(Opcode.MAC_DQ, pe=pe, **dq, first=1, last=1, wmem=wmem,
                                  amem=t * G * B, omem=out, count=G, scales=slots,
                                  tscale=tiles * G * B + t)
                        self._record(index, pe, out, u, t)
            return
        for u in units:
            loaded = None
            for g0 in range(0, tiles, group):
                batch = range(g0, min(tiles, g0 + group))
                if not whole:
                    for i, t in enumerate(batch):
                        self.emit(Opcode.LOAD_ACT, pe=pe, amem=group * step * B + i, count=1,
                                  imem=ts_imem + t)
                for ci, (c0, cn) in enumerate(chunks):
                    if loaded != ci:
                        slots = self._load_chunk(pe, job, key, u, c0, cn, write=g0 == 0)
                        loaded = ci
                    last = ci == len(chunks) - 1
                    for i, t in enumerate(batch):
                        if whole:
                            amem, tscale = (t * G + c0) * B, tiles * G * B + t
                        else:
                            amem, tscale = i * step * B, group * step * B + i
                            self.emit(Opcode.LOAD_ACT, pe=pe, amem=amem, count=cn * B,
                                      imem=base + (t * G + c0) * B)
                        out = self._omem(pe) if last else 0
                        self.emit(Opcode.MAC_DQ, pe=pe, **dq, first=int(ci == 0),
                                  last=int(last), acc=i, wmem=0, amem=amem, omem=out, count=cn,
                                  scales=slots, tscale=tscale)
                        if last:
                            self._record(index, pe, out, u, t)

    def _packs(self, units, G):
        """Consecutive units of ``G`` groups each in loads that fit WMEM: MSB words in the lower
        half, LSB words in the upper half, the scale words at the top."""
        B, k, W = self.layout.B, self.layout.k, self.p.weight_words
        words, scales = G * B, -(-G // k)
        per = max(1, min((W // 2) // words, (W - W // 2) // (words + scales)))
        return [units[i:i + per] for i in range(0, len(units), per)]

    def _load_pack(self, pe, job, key, pack, G):
        """Load the whole of the units of ``pack`` (consecutive in the planes); returns each
        unit's ``(wmem, first scale slot)``."""
        B, k = self.layout.B, self.layout.k
        u0 = pack[0]
        at = self._load_words(pe, job, key, u0.offset, len(pack) * G * B, u0.scale_offset,
                              len(pack) * -(-G // k), write=True)
        return [((u.offset - u0.offset), (at + u.scale_offset - u0.scale_offset) * k)
                for u in pack]

    def _record(self, index, pe, omem, unit, tile):
        k = len(self.part_starts) - 1
        self._put(self.results, (k, pe, omem),
                  ResultSlot(pe, omem, index, unit.name, unit.block, tile, k))

    def _load_chunk(self, pe, job, key, u, c0, cn, write):
        """Load groups ``c0 .. c0 + cn - 1`` of unit ``u``: MSB (and for verification LSB) words
        and the scale words; returns the WMEM scale slot of group ``c0``. With ``write`` a miss
        that installs its expert also writes the MSB and scale words into the new slot."""
        B, k = self.layout.B, self.layout.k
        first_word, last_word = c0 // k, (c0 + cn - 1) // k
        at = self._load_words(pe, job, key, u.offset + c0 * B, cn * B, u.scale_offset + first_word,
                              last_word - first_word + 1, write)
        return at * k + c0 % k

    def _load_words(self, pe, job, key, src, words, scale_src, scale_words, write):
        """Load ``words`` MSB words (and for verification as many LSB words) of PE ``pe``'s planes
        from word ``src`` on, and ``scale_words`` scale words from ``scale_src`` on: MSB at WMEM 0,
        LSB at ``weight_words // 2``, the scale words at the top; returns where those start. With
        ``write`` a miss that installs its expert also writes the MSB and scale words into the new
        slot."""
        W = self.p.weight_words
        kind = job.kind
        slot = kind in ("draft", "hit")
        fill = write and kind == "miss" and job.install
        at = W - scale_words
        self._move(pe, job, key, "MSB", src, words, 0, write=fill, slot=slot)
        if not kind.startswith("draft"):
            self._move(pe, job, key, "LSB", src, words, W // 2)
        self._move(pe, job, key, "SCALE", scale_src, scale_words, at, write=fill, slot=slot)
        return at

    def _move(self, pe, job, key, plane, src, n, wmem, write=False, slot=False):
        """Load ``n`` words of PE ``pe``'s ``plane`` from word ``src`` on into WMEM at ``wmem``
        (from the key's slot with ``slot``, else from LPDDR); with ``write``, also write them into
        the key's slot."""
        lay, p = self.layout, self.p
        kind = Slice.SCALES if plane == "SCALE" else Slice[plane]
        if slot:
            self.emit(Opcode.LOAD_SLOT, pe=pe, slice=kind, wmem=wmem, count=n,
                      offset=(lay.slot_offset(pe, plane) + src) * p.hb_ratio, **key)
        else:
            addr = lay.lpddr_plane(job.layer, job.expert, pe, plane)
            self.emit(Opcode.LOAD_LPDDR, pe=pe, slice=kind, wmem=wmem, count=n,
                      lpddr=addr + src * p.lpddr_ratio)
        if write:
            self.emit(Opcode.WRITE_SLOT, pe=pe, slice=kind, wmem=wmem, count=n,
                      offset=(lay.slot_offset(pe, plane) + src) * p.hb_ratio, **key)

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


def _job_fits(layout, rows, part_commands):
    em = _Emitter(layout, split=True, part_commands=part_commands)
    em.barrier("verify")
    layer = layout.moe_layers[0]
    try:
        em.job(Job("miss", 0, layer, 0, tuple(range(rows)), install=True))
    except ValueError:
        return False
    return True


def max_job_rows(layout, part_commands=None):
    """The most token rows one expert's job (the costliest kind: a miss that also fills its slot)
    can serve in one part of ``layout``'s machine: its input words in IMEM, its results in every
    PE's OMEM and its commands within ``part_commands`` (default: the command memory less 2)."""
    p = layout.params
    limit = part_commands if part_commands is not None else p.command_words - 2
    lo, hi = 0, 1
    while _job_fits(layout, hi, limit):
        lo, hi = hi, hi * 2
        if hi > 1 << 20:
            return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _job_fits(layout, mid, limit) else (lo, mid)
    return lo


def check_pass_fits(layout, batch, tokens, what="decoding.tree"):
    """Raise ValueError naming ``what`` unless a pass of ``batch`` sequences x ``tokens`` tokens
    each can be scheduled whatever the routing: every token might pick the same expert, whose job
    must then fit one part (:func:`max_job_rows`). Called before decoding starts."""
    rows = batch * tokens
    most = max_job_rows(layout)
    if rows > most:
        raise ValueError(f"{what}: a verification pass of {batch} sequences x {tokens} tokens = "
                         f"{rows} rows does not fit one part of {layout.params.describe()} "
                         f"(one expert's job may serve at most {most} rows: input, output and "
                         f"command memories); at most {most // batch} tokens per sequence "
                         f"({most // batch - 1} draft nodes) at batch {batch}")


def stream_bytes(commands, params):
    """Commands and bytes each memory tier moves per phase: ``{phase: {"commands": n, "HB": read
    bytes, "LPDDR": read bytes, "HB writes": bytes, "HB scales": .., "LPDDR scales": ..}}`` (the
    last two: the scale words among the reads; phases by BARRIER; before the first one: "setup";
    END is not counted)."""
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
        row = out.setdefault(phase, {"commands": 0, "HB": 0, "LPDDR": 0, "HB writes": 0,
                                     "HB scales": 0, "LPDDR scales": 0})
        row["commands"] += 1
        tier = tiers.get(c.op)
        if tier is not None:
            row[tier[0]] += c.count * tier[1]
            if c.slice == Slice.SCALES and tier[0] != "HB writes":
                row[f"{tier[0]} scales"] += c.count * tier[1]
    return out
