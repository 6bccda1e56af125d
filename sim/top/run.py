"""Run command streams on the Verilated accelerator: the RTL side of every stream comparison.

API::

    from sim.top.run import run_streams, Job
    results = run_streams(params, [Job(stream, images), ...])   # one simulator run for all jobs
    r = results[0]
    r.error, r.progress, r.cycles, r.phase_cycles, r.images, r.slot_table, r.done

``stream`` is anything :func:`hw.isa.as_words` takes (Commands, 128-bit words, the binary form);
``images`` a :class:`sw_model.golden.top.Images` (HB, LPDDR, input and PE memories). The runner
builds (once per ``params``, cached under ``build/``) :class:`sim.top.system.TopSystem` on
Verilator, and for each job: resets, preloads the command memory and the images through the back
door, starts the processor and lets Verilator run freely until ``done``, then reads the status and
the memories back. :class:`RtlResult` mirrors :class:`sw_model.golden.top.ExecResult`, so
``r.images == golden.images`` and ``r.slot_table == golden.slot_table()`` compare directly.
"""

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hw.isa import OPCODE_BITS, ErrorCode, Opcode, as_words
from hw.params import TopParams
from sim import funcov
from sim.runner import run_cocotb
from hw.flows.verilog import BUILD_ROOT, REPO_ROOT, cached_verilog
from sw_model.golden.top import Images

__all__ = ["Job", "RtlResult", "run_streams", "system_verilog", "check_simulable",
           "DEFAULT_MAX_CYCLES", "MAX_SIMULATED_BYTES"]

log = logging.getLogger(__name__)

#: A job that has not finished after this many cycles is reported with ``done = False``.
DEFAULT_MAX_CYCLES = 200_000
#: The simulated system's DRAM dies hold every word of every HB channel and of LPDDR (the
#: simulator allocates them all): a machine with more than this is refused before any build.
MAX_SIMULATED_BYTES = 1 << 30


def check_simulable(params):
    """Raise ValueError, naming the fields, unless the DRAM dies of :class:`sim.top.system.
    TopSystem` for ``params`` hold at most :data:`MAX_SIMULATED_BYTES`."""
    total = params.hb_capacity_bytes + params.lpddr.capacity_bytes
    if total > MAX_SIMULATED_BYTES:
        raise ValueError(
            f"the simulated DRAM dies would hold {total / (1 << 30):.4g} GiB (pes x hb.words = "
            f"{params.pes} x {params.hb.words} HB words and lpddr.words = {params.lpddr.words} "
            f"LPDDR words); at most {MAX_SIMULATED_BYTES >> 20} MiB is simulated: give the "
            f"machine smaller memories (--set hb.words=..., lpddr.words=...)")


@dataclass
class Job:
    """One stream and the memories it starts from (default: all zero)."""
    stream: object
    images: Images | None = None
    max_cycles: int = DEFAULT_MAX_CYCLES


@dataclass
class RtlResult:
    """What the RTL did with one job: ``done`` (False: still busy after ``max_cycles``), ``error``
    (:class:`hw.isa.ErrorCode`), ``progress`` (commands completed; the illegal command's index on
    an error), ``cycles`` from start to done, ``phase_cycles`` per BARRIER phase, the final
    ``images`` and the cache's ``slot_table`` ``{slot: (layer, expert, pinned)}``."""
    done: bool
    error: ErrorCode
    progress: int
    cycles: int
    phase_cycles: list
    images: Images
    slot_table: dict = field(default_factory=dict)


def system_verilog(params):
    """Verilog of the simulated system for ``params`` (cached: :func:`cached_verilog`)."""
    from sim.top.system import top_system_verilog
    return cached_verilog("top_system", params, lambda: top_system_verilog(params),
                          sources=[REPO_ROOT / "sim" / "dram_model.py",
                                   REPO_ROOT / "sim" / "top" / "system.py"])


def _images_to_json(params, images):
    images = Images.empty(params) if images is None else images
    images.check(params)
    return {name: {str(a): w for a, w in words.items()}
            for name, words in images.normalized().items()}


def _images_from_json(params, values):
    images = Images.empty(params)
    for name, words in values.items():
        words = {int(a): w for a, w in words.items()}
        if "[" in name:
            base, index = name[:-1].split("[")
            getattr(images, base)[int(index)].update(words)
        else:
            getattr(images, name).update(words)
    return images


def run_streams(params, jobs, seed=None, waves=False):
    """Run ``jobs`` (a list of :class:`Job`) on the RTL for ``params``, in one simulator run;
    returns one :class:`RtlResult` per job. ValueError names a job that does not fit the
    machine (a stream longer than the command memory, images outside the memories), or a machine
    too large to simulate (:func:`check_simulable`)."""
    if not isinstance(params, TopParams):
        raise TypeError(f"params must be a TopParams, not {params!r}")
    check_simulable(params)
    payload = []
    for number, job in enumerate(jobs):
        if not isinstance(job, Job):
            raise TypeError(f"job {number} must be a Job, not {job!r}")
        words = as_words(job.stream)
        if len(words) > params.command_words:
            raise ValueError(f"job {number}: {len(words)} commands do not fit in the command "
                             f"memory ({params.command_words})")
        try:
            images = _images_to_json(params, job.images)
        except ValueError as exc:
            raise ValueError(f"job {number}: {exc}") from None
        payload.append({"words": words, "images": images, "max_cycles": job.max_cycles})
    if not payload:
        return []
    from sim.top.system import TOP_NAME, TOP_PUBLIC
    verilog_text = system_verilog(params)
    with tempfile.TemporaryDirectory() as tmp:
        jobs_file, out_file = Path(tmp) / "jobs.json", Path(tmp) / "results.json"
        jobs_file.write_text(json.dumps(payload))
        env = {"ELMOE_TOP_PARAMS": json.dumps(params.to_dict()),
               "ELMOE_TOP_JOBS": str(jobs_file), "ELMOE_TOP_OUT": str(out_file)}
        if seed is not None:
            env["ELMOE_SEED"] = str(seed)
        # a run directory of its own: several runs of the same design may go on at once
        (BUILD_ROOT / "runs").mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix=f"{TOP_NAME}-", dir=BUILD_ROOT / "runs"))
        run_cocotb(TOP_NAME, verilog_text, "sim.top.tb", env=env, waves=waves, run_dir=run_dir,
                   public=TOP_PUBLIC)
        raw = json.loads(out_file.read_text())
        shutil.rmtree(run_dir, ignore_errors=True)     # kept (with its log) when the run failed
    results = [RtlResult(bool(r["done"]), ErrorCode(r["error"]) if r["error"] in set(ErrorCode)
                         else r["error"], r["progress"], r["cycles"], r["phase_cycles"],
                         _images_from_json(params, r["images"]),
                         {int(s): tuple(v[:2]) + (bool(v[2]),) for s, v in r["slots"].items()})
               for r in raw]
    for job, result in zip(jobs, results):
        _sample_isa(job.stream, result)
    funcov.flush()
    return results


_OPCODES = set(int(op) for op in Opcode)


def _sample_isa(stream, result):
    """Functional coverage: each command run as (opcode, NONE), the one that stopped the stream
    as (opcode, its error)."""
    words = as_words(stream)
    for index in range(min(result.progress, len(words))):
        funcov.sample("isa", Opcode(words[index] & ((1 << OPCODE_BITS) - 1)).name, "NONE")
    if result.error is ErrorCode.NONE:
        funcov.sample("isa", "END", "NONE")
    elif result.error is ErrorCode.NO_END:
        funcov.sample("isa", "past the end", "NO_END")
    elif isinstance(result.error, ErrorCode):
        code = words[result.progress] & ((1 << OPCODE_BITS) - 1)
        name = Opcode(code).name if code in _OPCODES else "unknown"
        funcov.sample("isa", name, result.error.name)

