"""``build.py coverage``, ``mutate`` and ``simrate``: bad requests are named in one line before
any work starts (the runs themselves are long; ``python build.py coverage`` / ``mutate`` /
``simrate`` run them)."""

import pytest


@pytest.mark.parametrize("args, message", [
    (("coverage", "--jobs", "0"), "--jobs must be at least 1, not 0"),
    (("coverage", "--line", "101"), "--line must be a percentage in [0, 100], not 101.0"),
    (("coverage", "--toggle", "-1"), "--toggle must be a percentage in [0, 100], not -1.0"),
    (("mutate", "--block", "alu"), "unknown block 'alu'; choose from mac_array"),
    (("mutate", "--count", "0"), "--count must be at least 1, not 0"),
    (("mutate", "--jobs", "0"), "--jobs must be at least 1, not 0"),
    (("mutate", "--timeout", "0"), "--timeout must be at least 1 second, not 0"),
    (("simrate", "--dots", "0"), "--dots must be at least 1, not 0"),
    (("simrate", "--words", "40000"), "--words must be at most 32768"),
])
def test_bad_requests_are_named(run_build, args, message):
    code, stdout, stderr = run_build(*args)
    assert code == 1 and message in stderr and "Traceback" not in stderr
    assert stdout == ""
