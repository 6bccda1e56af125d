"""The command handlers of ``build.py``: one module per subcommand, in the order of its help.

Every handler module has the same shape: a docstring saying what the command does; ``NAME`` and
``HELP`` (one line); ``add_arguments(parser)``; ``run(args)`` returning a
:class:`sim.commands.output.Result`. ``run`` checks its arguments before any work (a bad one stops
it with ``SystemExit`` and a one-line message naming it), calls library code (``hw``, ``sw_model``,
``sim``), and hands back tables and figures for :func:`sim.commands.output.emit` to print.
"""

from sim.commands import (ablate, bench, check, clean, coverage, demo, formal, fpga, machine,
                          mutate, perf, schedule, sd, simrate, stream, sweep, synth, train, verilog)

__all__ = ["COMMANDS", "DEFAULT"]

#: The handler modules, in the order ``build.py --help`` lists them.
COMMANDS = (demo, machine, check, verilog, bench, simrate, coverage, mutate, synth, fpga, formal,
            sd, perf, sweep, schedule, stream, ablate, train, clean)
#: What ``python build.py`` runs without a subcommand.
DEFAULT = demo.NAME
