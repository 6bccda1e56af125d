"""Differential fuzzing of the command processor: seeded random streams, legal and illegal, run on
the RTL (:func:`sim.top.run.run_streams`) and on the golden executor
(:func:`sw_model.golden.top.execute`); the error code, the progress, every memory image and the
cache's slot table must be equal, every time.

Streams are drawn against a shadow of the machine's control state (the golden cache model), so a
legal stream really is legal: each candidate command is checked with :func:`hw.isa.check_command`
and :func:`hw.isa.check_dynamic` and redrawn while it fails. An illegal stream runs a legal prefix,
then the first candidate that fails one particular check (the stream's target error: unknown
opcode, reserved bits, a field out of range, an address beyond a memory, a slot not installed, a
cache error) and a legal-looking tail that must never run; ``NO_END`` streams just stop. Memory
images are random words over the regions the commands touch, including the PE memories, so "left
every memory as before" is checked on real data.
"""

import copy
import logging
import random
import time

from hw.isa import (COUNT_CHUNK_BITS, FIELDS, Command, ErrorCode, Opcode, Slice, StreamError,
                    check_command, encode_word)
from hw.params import CacheOp, MacMode
from sw_model.golden.top import check_dynamic, execute, Images
from sw_model.golden.expert_cache import ExpertCacheModel

__all__ = ["random_images", "random_stream", "random_jobs", "compare", "fuzz"]

log = logging.getLogger(__name__)

#: Target of a stream: None for a legal stream, else the error it must end with.
TARGETS = [None] * 6 + [ErrorCode.BAD_OPCODE, ErrorCode.BAD_FIELD, ErrorCode.BAD_ADDRESS,
                        ErrorCode.SLOT_NOT_INSTALLED, ErrorCode.CACHE_ERROR, ErrorCode.NO_END]


def _words(rng, bits, count):
    return {rng.randrange(count): rng.getrandbits(bits) for _ in range(count // 2)}


def random_images(params, rng):
    """Random words in every memory region a fuzzed stream touches."""
    p = params
    images = Images.empty(p)
    window = p.slot_region_words + 64
    for k in range(p.pes):
        images.hb[k] = {a: rng.getrandbits(p.hb.data_width) for a in range(window)
                        if rng.random() < 0.7}
        images.wmem[k] = _words(rng, p.mac.weight_beat_bits, p.weight_words)
        images.amem[k] = _words(rng, p.mac.act_beat_bits, p.act_words)
        images.omem[k] = _words(rng, p.result_bits, p.output_words)
    images.lpddr = {a: rng.getrandbits(p.lpddr.data_width) for a in range(128)
                    if rng.random() < 0.8}
    images.lpddr[p.lpddr.words - 1] = rng.getrandbits(p.lpddr.data_width)
    images.imem = {a: rng.getrandbits(p.mac.act_beat_bits) for a in range(p.input_words)
                   if rng.random() < 0.8}
    return images


def _span(rng, size, most):
    """``(start, count)`` with ``start + count <= size`` (usually), ``count >= 1``."""
    count = rng.randint(1, max(1, min(most, size)))
    return rng.randint(0, size - count), count


def _candidate(params, rng, cache):
    """One command, mostly legal: fields drawn from their ranges, keys mostly resident ones."""
    p = params
    op = rng.choices(list(Opcode)[1:], weights=[1, 2, 3, 3, 2, 3, 4, 2, 5, 4])[0]
    v = {}
    if "pe" in {f.name for f in FIELDS[op]}:
        v["pe"] = rng.randrange(p.pes)
    resident = sorted(cache.resident())
    key = (rng.choice(resident) if resident and rng.random() < 0.8
           else (rng.randrange(p.cache.layers), rng.randrange(p.cache.experts)))
    if op is Opcode.BARRIER:
        v["phase"] = rng.randrange(4)
    elif op in (Opcode.LOAD_HB, Opcode.LOAD_LPDDR, Opcode.LOAD_SLOT, Opcode.WRITE_SLOT):
        # a weight word is hb_ratio HB words (lpddr_ratio LPDDR words): the counts shrink so
        # the memory words stay in the regions random_images fills
        ratio = p.lpddr_ratio if op is Opcode.LOAD_LPDDR else p.hb_ratio
        room = {Opcode.LOAD_HB: 64, Opcode.LOAD_LPDDR: 128}.get(op, p.slot_words) // ratio
        v["slice"] = rng.choice(list(Slice))
        v["wmem"], v["count"] = _span(rng, p.weight_words, min(24, max(1, room)))
        words = v["count"] * ratio
        if op is Opcode.LOAD_HB:
            v["hb"] = rng.randint(p.slot_region_words, p.slot_region_words + max(0, 64 - words))
        elif op is Opcode.LOAD_LPDDR:
            v["lpddr"] = (rng.randint(0, max(0, 128 - words)) if rng.random() < 0.9
                          else max(0, p.lpddr.words - words))
        else:
            v["layer"], v["expert"] = key
            v["offset"] = rng.randint(0, max(0, p.slot_words - words))
    elif op is Opcode.LOAD_ACT:
        v["amem"], v["count"] = _span(rng, p.act_words, 12)
        v["imem"] = rng.randint(0, p.input_words - v["count"])
    elif op is Opcode.MAC:
        B = p.mac.beats_per_group
        v["mode"] = rng.choice(list(MacMode))
        v["reuse"] = rng.randrange(2)
        v["count"] = rng.randint(1, 4)
        v["wmem"] = rng.randint(0, p.weight_words - v["count"] * B)
        v["amem"] = rng.randint(0, p.act_words - (1 if v["reuse"] else v["count"]) * B)
        v["omem"] = rng.randint(0, p.output_words - v["count"])
    elif op is Opcode.MAC_DQ:
        B, W, k = p.mac.beats_per_group, p.weight_words, p.scale_slots
        v["split"] = int(rng.random() < 0.4)
        v["mode"] = MacMode.FULL if v["split"] else rng.choice(list(MacMode))
        v["reuse"] = rng.randrange(2)
        v["first"], v["last"] = rng.randrange(2), int(rng.random() < 0.7)
        v["acc"] = rng.randrange(p.accumulators)
        v["count"] = rng.randint(1, 4)
        top = (W // 2 if v["split"] else W) - v["count"] * B
        v["wmem"] = rng.randint(0, top)
        v["amem"] = rng.randint(0, p.act_words - (1 if v["reuse"] else v["count"]) * B)
        v["omem"] = rng.randint(0, p.output_words - p.dq_words)
        v["scales"] = rng.randint(0, W * k - v["count"])
        v["tscale"] = rng.randrange(p.act_words)
    elif op is Opcode.COMBINE:
        v["count"] = rng.randint(1, 6)
        for name in ("a", "b", "dst"):
            v[name] = rng.randint(0, p.output_words - v["count"])
    elif op is Opcode.CACHE:
        v["cop"] = rng.choices(list(CacheOp), weights=[3, 4, 1, 1, 1, 1, 2, 1, 1])[0]
        v["layer"], v["expert"] = key
        if v["cop"] == CacheOp.COUNT:
            chunks = -(-p.cache.experts // COUNT_CHUNK_BITS)
            v["chunk"] = rng.randrange(chunks)
            live = min(COUNT_CHUNK_BITS, p.cache.experts - COUNT_CHUNK_BITS * v["chunk"])
            v["vector"] = rng.getrandbits(live)
    return Command(op, **v)


def _illegal(params, rng, target, cache):
    """A command that fails with ``target`` given the cache state (or None: try again)."""
    p = params
    if target is ErrorCode.BAD_OPCODE:
        return rng.randrange(max(Opcode) + 1, 32) | (rng.getrandbits(100) << 5)
    c = _candidate(params, rng, cache)
    if target is ErrorCode.BAD_FIELD and rng.random() < 0.2:
        used = 5 + sum(f.width for f in FIELDS[c.op])
        return encode_word(c) | (1 << rng.randrange(used, 128))
    if target in (ErrorCode.BAD_FIELD, ErrorCode.BAD_ADDRESS):
        values = c.fields()
        if not values:
            return None
        name = rng.choice(list(values))
        width = next(f.width for f in FIELDS[c.op] if f.name == name)
        values[name] = rng.choice([0, (1 << width) - 1, rng.getrandbits(width),
                                   values[name] + 1, values[name] * 2]) % (1 << width)
        return Command(c.op, **values)
    if target is ErrorCode.SLOT_NOT_INSTALLED:
        op = rng.choice([Opcode.LOAD_SLOT, Opcode.WRITE_SLOT])
        return Command(op, pe=rng.randrange(p.pes), count=1, layer=rng.randrange(p.cache.layers),
                       expert=rng.randrange(p.cache.experts))
    return Command(Opcode.CACHE, cop=rng.choice([CacheOp.INSTALL, CacheOp.PIN, CacheOp.UNPIN,
                                                 CacheOp.INVALIDATE]),
                   layer=rng.randrange(p.cache.layers), expert=rng.randrange(p.cache.experts))


def _outcome(command, index, params, cache):
    """The error ``command`` raises on the shadow ``cache`` (applying it), or NONE."""
    try:
        check_command(command, index, params)
        check_dynamic(command, index, cache)
    except StreamError as err:
        return err.code
    return ErrorCode.NONE


def random_stream(params, rng, target=None, length=None):
    """A stream of about ``length`` commands ending in END (legal), or in a command failing with
    ``target`` followed by a tail (illegal), or without END (``NO_END``)."""
    length = rng.randint(3, 24) if length is None else length
    cache = ExpertCacheModel(params.cache)
    stream = []
    bad_at = rng.randrange(length) if target not in (None, ErrorCode.NO_END) else None
    while len(stream) < length:
        index = len(stream)
        if index == bad_at:
            for _ in range(200):
                word = _illegal(params, rng, target, cache)
                if word is None:
                    continue
                trial = copy.deepcopy(cache)
                if isinstance(word, int):
                    try:
                        from hw.isa import decode_word
                        decode_word(word, index)
                    except StreamError as err:
                        code = err.code
                    else:
                        continue
                else:
                    code = _outcome(word, index, params, trial)
                if code is target:
                    stream.append(word)
                    break
            else:
                raise RuntimeError(f"no command failing with {target.name} found")
            stream += [_candidate(params, rng, cache) for _ in range(rng.randint(0, 3))]
            break
        trial = copy.deepcopy(cache)
        c = _candidate(params, rng, trial)
        if _outcome(c, index, params, trial) is ErrorCode.NONE:
            stream.append(c)
            cache = trial
    if target is not ErrorCode.NO_END:
        stream.append(Command(Opcode.END))
    return stream


def random_jobs(params, count, seed):
    """``count`` ``(target, stream, images)`` triples, reproducible from ``seed``."""
    from sim.top.run import Job
    rng = random.Random(seed)
    jobs, order = [], []
    for _ in range(count):
        if not order:           # every target once per len(TARGETS) streams, in random order
            order = list(TARGETS)
            rng.shuffle(order)
        target = order.pop()
        jobs.append((target, Job(random_stream(params, rng, target), random_images(params, rng))))
    return jobs


def compare(params, job, rtl):
    """Sentences naming every difference between the RTL's result and the golden executor's
    for one job (empty when they agree)."""
    gold = execute(job.stream, params, job.images)
    problems = []
    if not rtl.done:
        problems.append(f"the RTL did not finish within {job.max_cycles} cycles")
    if rtl.error != gold.error:
        problems.append(f"error code: RTL {rtl.error!r}, golden {gold.error.name}")
    if rtl.progress != gold.progress:
        problems.append(f"progress: RTL {rtl.progress}, golden {gold.progress}")
    problems += rtl.images.differences(gold.images)
    if rtl.slot_table != gold.slot_table():
        problems.append(f"slot table: RTL {rtl.slot_table}, golden {gold.slot_table()}")
    return problems, gold


def fuzz(params, streams, seed, progress=None):
    """Run ``streams`` random jobs on both back ends; returns a dict of figures: streams,
    mismatches (with the first few described), per-target counts, seconds, cycles."""
    from sim.top.run import run_streams
    start = time.monotonic()
    jobs = random_jobs(params, streams, seed)
    generated = time.monotonic()
    results = run_streams(params, [j for _, j in jobs], seed=seed)
    simulated = time.monotonic()
    by_target, mismatches, cycles, commands = {}, [], 0, 0
    for number, ((target, job), rtl) in enumerate(zip(jobs, results)):
        problems, gold = compare(params, job, rtl)
        name = "legal" if target is None else target.name
        row = by_target.setdefault(name, {"streams": 0, "mismatches": 0, "commands": 0})
        row["streams"] += 1
        row["commands"] += gold.progress
        commands += gold.progress
        cycles += rtl.cycles
        if problems:
            row["mismatches"] += 1
            mismatches.append({"stream": number, "target": name, "problems": problems[:5]})
        if target is not None and target is not gold.error:
            raise AssertionError(f"stream {number} was drawn to fail with {target.name} but the "
                                 f"executor says {gold.error.name}")
    return {"streams": streams, "mismatches": len(mismatches), "first_mismatches": mismatches[:5],
            "by_target": by_target, "commands_executed": commands, "rtl_cycles": cycles,
            "seconds": round(time.monotonic() - start, 1),
            "generate_seconds": round(generated - start, 1),
            "simulate_seconds": round(simulated - generated, 1), "seed": seed}
