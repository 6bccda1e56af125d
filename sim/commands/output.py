"""The one printer of the command handlers: tables, progress lines and the last-line JSON object.

A handler returns a :class:`Result`; :func:`emit` prints its tables and paragraphs, then, as the
last line of stdout, ``json.dumps(result.figures)``: the figures a script reads. Long work tells
of its progress with :func:`progress` (a flushed line) or :func:`progress_bar` (on stderr); a
handler that has a table long before it is done prints it at once with :func:`show`.
"""

from dataclasses import dataclass, field
import json
import sys
import time

__all__ = ["Table", "Result", "format_table", "progress", "progress_bar", "show", "emit"]


@dataclass(frozen=True)
class Table:
    """``headers`` and ``rows`` (cells of any type, shown with ``str``); ``title`` is printed
    above the table and ``note`` below it (either may span lines, or be None)."""
    title: str | None
    headers: list
    rows: list
    note: str | None = None

    def text(self):
        parts = [self.title] if self.title else []
        parts.append(format_table(self.headers, self.rows))
        if self.note:
            parts.append(self.note)
        return "\n".join(parts)


@dataclass
class Result:
    """What a command hands back: ``tables`` (:class:`Table` or text, printed in order), the JSON
    ``figures``, the exit ``status``, and ``saved``: tables too long to print, written only to the
    results folder."""
    tables: list = field(default_factory=list)
    figures: object = None
    status: int = 0
    saved: list = field(default_factory=list)


def format_table(headers, rows):
    """Columns left-aligned to their widest cell, a rule under the headers."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def progress(text):
    """One line of progress, on stdout at once."""
    print(text, flush=True)


def progress_bar(label, stream=None):
    """A text progress bar on ``stream`` (default: stderr): ``callback(done, total)``. On a
    terminal it redraws one line; otherwise it writes a line every tenth of the way."""
    stream = stream or sys.stderr
    start = time.monotonic()
    tty = getattr(stream, "isatty", lambda: False)()

    def callback(done, total):
        width = 30
        filled = width * done // total
        text = (f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                f"{time.monotonic() - start:5.1f} s")
        if tty:
            stream.write("\r" + text + ("\n" if done == total else ""))
        elif done == total or (10 * done) // total != (10 * (done - 1)) // total:
            stream.write(text + "\n")
        stream.flush()
    return callback


def show(item):
    """Print a :class:`Table` (after a blank line) or a text as it is."""
    if isinstance(item, Table):
        print()
        item = item.text()
    print(item, flush=True)


def emit(result):
    """Print ``result``'s tables and texts, then its figures as the last line (one JSON object)."""
    for item in result.tables:
        show(item)
    print(json.dumps(result.figures), flush=True)
