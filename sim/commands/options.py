"""Options every machine-using command shares, and where each run's results go.

A handler module that uses a machine sets ``MACHINE`` (the built-in machine it uses by default, or
None for "every built-in machine"); ``build.py`` then gives it ``--machine NAME|FILE`` and
``--set key=value`` (:mod:`hw.machines`) and resolves them before the handler runs: a bad name,
file, key or value stops the command with one line and exit status 2, before any work. The handler
finds the machine in ``args.params`` (a :class:`hw.params.TopParams`, None for "every machine")
and the run's name in ``args.run_name``.

Every command's results (its tables as CSV, its JSON figures, its plots, the resolved machine as
``machine.toml``) go to ``build/<command>/<run name>/`` (``args.out_dir``): the run name is
built from the bench (for ``bench``), the machine and its overrides; ``--out NAME`` names the
folder under ``build/<command>/`` instead, ``--out PATH`` (with a slash) puts it anywhere. The
folder is written under a temporary name and renamed when the command has finished, so a failed
run leaves nothing half-written.
"""

import csv
import errno
import json
import os
import re
import secrets
import shutil
from pathlib import Path

from hw.flows.verilog import BUILD_ROOT
from hw.machines import MACHINES, MachineError, resolve_machine, write_machine
from sw_model.decode.policy import (DEFAULT_POLICY, PolicyError, apply_policy_sets, load_policy,
                                    policy_toml)
from sim.commands.output import Table

__all__ = ["add_machine_arguments", "add_set_argument", "add_decoding_arguments",
           "add_out_argument", "resolve_args", "RESULTS_ROOT",
           "save_results", "discard_partial", "rename_run"]

#: Where every command's results go.
RESULTS_ROOT = BUILD_ROOT


def add_machine_arguments(p, default):
    names = ", ".join(MACHINES)
    p.add_argument("--machine", default=None, metavar="NAME|FILE",
                   help=f"the machine: {names}, or a .toml/.json machine file (default: "
                        f"{default or 'every built-in machine'}; python build.py machine show "
                        "NAME prints one)")


def add_set_argument(p, machine, decoding):
    what = " or ".join(x for x, used in (("one machine field (e.g. --set pes=16 --set "
                                           "mac.tokens=8)", machine),
                                          ("one decoding setting (e.g. --set decoding.gamma=6)",
                                           decoding)) if used)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override {what}; dotted keys, repeatable")


def add_decoding_arguments(p):
    p.add_argument("--decoding", default=None, metavar="FILE",
                   help="a decoding policy file (TOML or JSON: gamma, threshold, draft_policy, "
                        "resident_set, temperature, acceptance, locality, tree; the rest keep "
                        f"their defaults: {DEFAULT_POLICY.describe()})")


def add_out_argument(p):
    p.add_argument("--out", default=None, metavar="NAME",
                   help="name of the results folder under build/<command>/ (default: from the "
                        "machine and the overrides)")


def resolve_args(handler, args):
    """Resolve ``args.machine`` and ``args.set`` of a machine-using ``handler`` into
    ``args.params`` and ``args.run_name``, and set ``args.out_dir``. Raises
    :class:`hw.machines.MachineError` naming a bad input."""
    sets = list(getattr(args, "set", None) or [])
    decoding_sets = [x[len("decoding."):] for x in sets if x.startswith("decoding.")]
    args.set = [x for x in sets if not x.startswith("decoding.")]
    if getattr(handler, "DECODING", False):
        policy = DEFAULT_POLICY if args.decoding is None else load_policy(args.decoding)
        args.decoding_policy = apply_policy_sets(policy, decoding_sets)
    elif decoding_sets:
        raise MachineError(f"build.py {handler.NAME} has no decoding settings: "
                           f"--set decoding.{decoding_sets[0]}")
    if args.set and not hasattr(handler, "MACHINE"):
        raise MachineError(f"build.py {handler.NAME} uses no machine: --set {args.set[0]}")
    if hasattr(handler, "MACHINE"):
        spec = (getattr(args, "machine_name", None) or args.machine
                or (handler.machine_default(args) if hasattr(handler, "machine_default")
                    else handler.MACHINE))
        if spec is None:
            if args.set:
                raise MachineError("--set needs one machine: name it with --machine")
            args.params, run = None, "all"
        else:
            args.params, run = resolve_machine(spec, args.set)
    else:
        args.params, run = None, "run"
    args.machine_label = run
    what = getattr(args, "what", None)
    if isinstance(what, str) and re.fullmatch(r"[a-z]+", what):
        run = f"{what}-{run}"
    out = getattr(args, "out", None)
    args.run_name = run
    args.out_dir = RESULTS_ROOT / handler.NAME / run
    if out is not None:
        path = Path(out)
        if not out.strip() or path.name in ("", ".", "..") or path.is_file():
            raise MachineError(f"--out {out!r}: expected a folder name (under "
                               f"build/{handler.NAME}/) or a folder path")
        args.run_name = path.name
        args.out_dir = path if len(path.parts) > 1 else RESULTS_ROOT / handler.NAME / out
    #: where the handler writes its plots while it runs (renamed to ``out_dir`` at the end)
    args.work_dir = work_dir_of(args.out_dir)


def work_dir_of(out_dir):
    """The folder a run writes into before it becomes ``out_dir``: ``<name>.partial-<pid>-<random>``
    beside it, its own even when other runs with the same folder name go on at the same time."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f"{out_dir.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")


def _slug(text, index):
    words = re.findall(r"[a-z0-9]+", (text or "").lower())[:6]
    return f"{index:02d}-" + ("-".join(words) or "table")


def save_results(result, args):
    """Write ``result``'s tables (CSV), figures (``result.json``) and the machine
    (``machine.toml``) into ``args.out_dir``, beside the plots the command wrote there; returns
    the folder. Writes into ``<folder>.partial`` first and renames it at the end."""
    final, partial = Path(args.out_dir), Path(args.work_dir)
    partial.mkdir(parents=True, exist_ok=True)
    tables = [t for t in list(result.tables) + list(result.saved) if isinstance(t, Table)]
    for i, table in enumerate(tables, 1):
        with open(partial / f"{_slug(table.title, i)}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(table.headers)
            writer.writerows(table.rows)
    (partial / "result.json").write_text(json.dumps(result.figures, indent=1) + "\n")
    if getattr(args, "params", None) is not None:
        write_machine(args.params, partial / "machine.toml",
                      title=f"the machine of this run ({args.run_name})")
    if getattr(args, "decoding_policy", None) is not None:
        (partial / "decoding.toml").write_text(policy_toml(
            args.decoding_policy, title=f"the decoding policy of this run ({args.run_name})"))
    _replace_folder(partial, final)
    return final


def _replace_folder(partial, final):
    """Rename ``partial`` to ``final``, removing an older ``final`` first. Runs that finish at the
    same moment with the same folder each move the other's folder aside whole (never delete
    files under a folder being renamed), and the last to rename wins."""
    for _ in range(64):
        if final.exists():
            aside = final.with_name(f"{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
            try:
                final.rename(aside)
            except FileNotFoundError:       # another run moved it first
                pass
            else:
                shutil.rmtree(aside, ignore_errors=True)
        try:
            partial.rename(final)
            return
        except OSError as exc:              # another run's folder took the name in between
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            last = exc
    raise OSError(f"could not move {partial} to {final}: {last}")


def discard_partial(args):
    """Remove what a failed run wrote."""
    work = getattr(args, "work_dir", None)
    if work is not None and Path(work).exists():
        shutil.rmtree(work)


def rename_run(args, name):
    """Give the run another folder name (a handler that knows more than the machine, e.g. the
    model, before it writes anything)."""
    args.run_name = name
    args.out_dir = Path(args.out_dir).with_name(name)
    args.work_dir = work_dir_of(args.out_dir)


def policy_from_flags(args, **flags):
    """Fold a command's own decoding flags into ``args.decoding_policy`` and back: for each
    ``field=flag``, a flag the user gave overrides the policy's field (checked by the record), and
    a flag left at None takes the policy's value. Raises :class:`PolicyError` naming a bad one."""
    from dataclasses import replace
    changes = {field: getattr(args, flag) for field, flag in flags.items()
               if getattr(args, flag, None) is not None}
    try:
        args.decoding_policy = replace(args.decoding_policy, **changes)
    except PolicyError as exc:
        message = str(exc)
        for field in changes:
            message = message.replace(f"decoding.{field} ",
                                      f"--{flags[field].replace('_', '-')} ")
        raise PolicyError(message) from None
    for field, flag in flags.items():
        setattr(args, flag, getattr(args.decoding_policy, field))
    return args.decoding_policy


def decoding_flags_or_exit(args, *positive, **flags):
    """:func:`policy_from_flags`, then every argument named in ``positive`` must be a positive
    integer; a bad one stops the command with its one-line message."""
    try:
        policy_from_flags(args, **flags)
    except PolicyError as exc:
        raise SystemExit(str(exc)) from None
    for name in positive:
        value = getattr(args, name)
        if value < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be a positive integer, not "
                             f"{value}")
