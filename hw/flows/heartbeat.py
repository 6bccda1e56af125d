"""Progress of long tool runs: what is running and for how long, at least every 10 seconds.

Verilator builds, Yosys and nextpnr runs and the Amaranth conversion of a large design can take
minutes without a word. :func:`heartbeat` wraps such a run: it says what started, then every
``every`` seconds (default :data:`EVERY`) that it is still running with the elapsed time, then
how long it took; on standard error (a terminal or a log file alike) and in the ``logging`` record
of the caller's logger. Runs shorter than ``quiet`` seconds say nothing.
"""

from contextlib import contextmanager
import logging
import sys
import threading
import time

__all__ = ["heartbeat", "EVERY"]

#: Seconds between two progress lines.
EVERY = 10.0

log = logging.getLogger("elmoe.progress")


@contextmanager
def heartbeat(what, every=EVERY, quiet=None, stream=None):
    """Report progress of the block run inside this context (module docstring). ``quiet``
    (default ``every``): seconds before the first line."""
    quiet = every if quiet is None else quiet
    start = time.monotonic()
    done = threading.Event()
    said = []

    def say(text):
        out = stream or sys.stderr
        out.write(f"  [{time.monotonic() - start:5.0f} s] {text}\n")
        out.flush()
        log.info(text)
        said.append(text)

    def beat():
        if done.wait(quiet):
            return
        say(f"{what}: running")
        while not done.wait(every):
            say(f"{what}: still running")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        if said:
            say(f"{what}: done in {time.monotonic() - start:.0f} s")
