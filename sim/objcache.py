"""A compiler wrapper that compiles Verilator's run-time library once for all builds.

Every Verilator build compiles the same run-time sources (``verilated.cpp``, ``verilated_vpi.cpp``,
``verilated_threads.cpp``, ``verilated_dpi.cpp``, the trace writers) with the same flags: about 16
CPU-seconds per design on this project's machines, for objects that never change. Verilator's
makefiles put ``$(OBJCACHE)`` in front of every compile command; :func:`sim.runner.build` sets it to
this script when no ``ccache`` is installed (``ccache`` caches everything and is used instead).

Usage (by make): ``python objcache.py CXX ARGS...``. A command that compiles one source from the
Verilator installation's ``include`` folder with ``-c -o OBJ`` is looked up in the cache folder
(``ELMOE_OBJCACHE_DIR``) under a hash of the compiler, the whole command line and the source's
contents; a hit copies the object and its ``-MMD`` dependency file into place, a miss compiles and
stores both. Any other command runs unchanged.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["CACHE_DIR_ENV", "main"]

#: The environment variable naming the cache folder (set by the simulation runner).
CACHE_DIR_ENV = "ELMOE_OBJCACHE_DIR"


def _cacheable(argv):
    """``(source, object)`` when ``argv`` compiles one Verilator run-time source, else None."""
    root = os.environ.get("VERILATOR_ROOT")
    if not root or "-c" not in argv or "-o" not in argv or "-MMD" not in argv:
        return None
    sources = [a for a in argv[1:] if a.endswith(".cpp")]
    include = Path(root).resolve() / "include"
    if len(sources) != 1 or Path(sources[0]).resolve().parent != include:
        return None
    target = argv[argv.index("-o") + 1]
    return Path(sources[0]), Path(target)


def _key(argv, source):
    compiler = shutil.which(argv[0]) or argv[0]
    stat = os.stat(compiler)
    digest = hashlib.sha256(json.dumps([os.path.realpath(compiler), stat.st_size, stat.st_mtime,
                                        argv]).encode())
    digest.update(source.read_bytes())
    return digest.hexdigest()[:32]


def _store(cache, key, obj, dep):
    """Copy the fresh object and dependency file into the cache, each by an atomic rename."""
    cache.mkdir(parents=True, exist_ok=True)
    for path, suffix in ((dep, ".d"), (obj, ".o")):     # the object last: it marks a full entry
        handle, tmp = tempfile.mkstemp(dir=cache, suffix=suffix)
        os.close(handle)
        shutil.copyfile(path, tmp)
        os.replace(tmp, cache / f"{key}{suffix}")


def main(argv):
    found = _cacheable(argv) if os.environ.get(CACHE_DIR_ENV) else None
    if found is None:
        return subprocess.call(argv)
    source, obj = found
    dep = obj.with_suffix(".d")
    cache = Path(os.environ[CACHE_DIR_ENV])
    key = _key(argv, source)
    if (cache / f"{key}.o").exists():
        shutil.copyfile(cache / f"{key}.d", dep)
        shutil.copyfile(cache / f"{key}.o", obj)
        return 0
    status = subprocess.call(argv)
    if status == 0 and obj.exists() and dep.exists():
        _store(cache, key, obj, dep)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
