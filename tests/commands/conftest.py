"""``build.py`` run in this process, as the command-line tests call it."""

import pytest

import build


@pytest.fixture
def run_build(capsys):
    """``run_build(*args) -> (exit status, stdout, stderr)`` of ``build.main(args)``; the message
    of a ``SystemExit`` counts as stderr (where Python prints it), with status 1."""
    def run(*args):
        try:
            code, message = build.main(list(args)), ""
        except SystemExit as exc:
            code, message = ((exc.code, "") if exc.code is None or isinstance(exc.code, int)
                             else (1, str(exc.code)))
        out = capsys.readouterr()
        return code, out.out, out.err + message
    return run
