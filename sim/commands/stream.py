"""``python build.py stream validate|disasm|run FILE``: command streams as a user format.

``FILE`` is a stream in the binary form (``.bin``: 16-byte little-endian commands, what
``schedule`` writes beside the text) or the text form (any other name: one command a line,
``name=value`` fields, ``#`` comments; :func:`hw.isa.assemble`). The machine is ``--machine`` /
``--set`` (default ``demo``; ``schedule`` saves the machine its streams were made for as
``machine.toml`` beside them).

* ``validate``: every error of the stream, each with its line (text form), command index (counting
  every command of the file, those that do not assemble too) and field: every line that does not assemble, every command that fails the ISA's static checks, and
  the first state-dependent error (cache and slot checks depend on what ran before, so the machine
  stops there). Exit status 1 when there is any.
* ``disasm``: the text form of the stream (a text file comes back normalised).
* ``run``: execute on the golden executor from all-zero memories and a reset cache; with
  ``--rtl`` also on the Verilated top (:func:`sim.top.run.run_streams`), then compare the error
  code, the commands completed, every memory and the slot table. Exit status 1 on a mismatch.
"""

from pathlib import Path
import re

from hw.isa import StreamError, assemble, check_command, decode_word, disassemble
from hw.machines import MachineError
from sim.commands.output import Result, Table, progress

__all__ = ["NAME", "HELP", "MACHINE", "add_arguments", "run", "read_stream"]

NAME = "stream"
HELP = "validate, disassemble or run a command stream file (text or binary)"
#: The machine streams are checked against unless ``--machine`` names another.
MACHINE = "demo"


def add_arguments(p):
    p.add_argument("action", choices=("validate", "disasm", "run"), help="what to do")
    p.add_argument("file", metavar="FILE", help="a stream: .bin (binary form) or text")
    p.add_argument("--rtl", action="store_true",
                   help="run: also on the Verilated top, compared with the golden executor")


def read_stream(path):
    """``(commands or words, line numbers or None, parse errors)`` of a stream file. A text file
    is assembled line by line, so every bad line is reported; ``line numbers[i]`` is the line of
    command ``i``. Raises :class:`hw.machines.MachineError` for a file that cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise MachineError(f"stream file {path}: "
                           + ("is a directory" if path.is_dir() else "no such file"))
    if path.suffix == ".bin":
        from hw.isa import as_words
        data = path.read_bytes()
        try:
            return as_words(data), None, []
        except ValueError as exc:
            raise MachineError(f"stream file {path}: {exc}") from None
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise MachineError(f"stream file {path}: not a text stream (binary streams end in "
                           ".bin)") from None
    commands, lines, errors = [], [], []
    index = 0                     # commands in the file so far, those that do not assemble too
    for number, line in enumerate(text.splitlines(), 1):
        if not line.split("#", 1)[0].strip():
            continue
        try:
            # each line alone, padded so the error names the file's line number
            parsed = assemble("\n" * (number - 1) + line)
        except ValueError as exc:
            message = str(exc)
            field = re.search(r"\.(\w+) = |field '(\w+)'|^line \d+: (\w+)=", message)
            errors.append((number, index,
                           next((g for g in field.groups() if g), None) if field else None,
                           message))
        else:
            commands += parsed
            lines += [(number, index)]
        index += 1
    return commands, lines, errors


def _error(lines, index, err):
    """``(line, command index in the file, field, message)`` of a :class:`StreamError` raised
    for parsed command ``index``."""
    line, position = (lines[index] if lines is not None and index < len(lines)
                      else (None, index))
    reason = str(err).split(": ", 1)[1] if ": " in str(err) else str(err)
    where = (f"line {line}, " if line is not None else "") + f"command {position}" \
        + (f", field {err.field}" if err.field else "")
    return line, position, err.field, f"{where}: {reason}"


def _validate(stream, lines, parse_errors, params):
    from sw_model.golden.expert_cache import ExpertCacheModel
    from sw_model.golden.top import check_dynamic
    from hw.isa import Opcode
    errors = list(parse_errors)
    commands = []
    for index, item in enumerate(stream):
        try:
            command = item if not isinstance(item, int) else decode_word(item, index)
            check_command(command, index, params)
            commands.append(command)
        except StreamError as err:
            errors.append(_error(lines, index, err))
            commands.append(None)
    if not any(c is not None and c.op is Opcode.END for c in commands):
        end = lines[-1][1] + 1 if lines else len(commands)
        errors.append((None, end, "opcode",
                       f"command {end}: NO_END: the stream has no END"))
    if not errors:
        cache = ExpertCacheModel(params.cache)
        for index, command in enumerate(commands):
            if command.op is Opcode.END:
                break
            try:
                check_dynamic(command, index, cache)
            except StreamError as err:
                errors.append(_error(lines, index, err))
                break
    return commands, errors


def run(args):
    params = args.params
    try:
        stream, lines, parse_errors = read_stream(args.file)
    except MachineError as exc:
        raise SystemExit(f"stream: {exc}") from None
    if args.action == "disasm":
        if parse_errors:
            return _error_result(args, parse_errors, len(stream))
        text = disassemble(stream)
        return Result([text.rstrip("\n")], {"file": args.file, "commands": len(stream)})
    commands, errors = _validate(stream, lines, parse_errors, params)
    if args.action == "validate" or errors:
        return _error_result(args, errors, len(commands))
    return _run(args, commands, params)


def _error_result(args, errors, count):
    rows = [[line if line is not None else "-", index if index is not None else "-",
             field or "-", message] for line, index, field, message in errors]
    verdict = (f"{args.file}: {count} commands, valid on {args.run_name}" if not errors else
               f"{args.file}: {len(errors)} error(s)")
    if count > args.params.command_words:
        verdict += (f"\n(longer than the command memory, {args.params.command_words} commands: "
                    "the host loads it in parts; run --rtl needs a stream that fits)")
    tables = [verdict]
    if errors:
        tables.append(Table(None, ["line", "command", "field", "error"], rows))
    figures = {"file": args.file, "machine": args.run_name, "commands": count,
               "valid": not errors,
               "errors": [{"line": line, "command": index, "field": field, "message": message}
                          for line, index, field, message in errors]}
    return Result(tables, figures, status=1 if errors else 0)


def _run(args, commands, params):
    from sw_model.golden.top import execute
    gold = execute(commands, params)
    rows = [["golden executor", gold.error.name, gold.progress, "-"]]
    figures = {"file": args.file, "machine": args.run_name, "commands": len(commands),
               "golden": {"error": gold.error.name, "progress": gold.progress}}
    status = 0
    if args.rtl:
        from sim.top.run import Job, run_streams
        progress(f"running {len(commands)} commands on the Verilated top ({params.describe()}) "
                 "...")
        try:
            (rtl,) = run_streams(params, [Job(commands)], seed=args.seed, waves=args.waves)
        except ValueError as exc:
            raise SystemExit(f"stream run --rtl: {exc}") from None
        differences = []
        if not rtl.done:
            differences.append("the RTL did not finish")
        if rtl.error != gold.error:
            differences.append(f"error {rtl.error.name} vs {gold.error.name}")
        if rtl.progress != gold.progress:
            differences.append(f"progress {rtl.progress} vs {gold.progress}")
        if rtl.images.normalized() != gold.images.normalized():
            differences.append("memories differ")
        if rtl.slot_table != gold.slot_table():
            differences.append("slot tables differ")
        match = not differences
        rows.append(["Verilated top", rtl.error.name, rtl.progress, rtl.cycles])
        figures.update(match=match, differences=differences,
                       rtl={"error": rtl.error.name, "progress": rtl.progress,
                            "cycles": rtl.cycles, "done": rtl.done})
        status = 0 if match else 1
    table = Table(f"{args.file} on {args.run_name}", ["run", "error", "commands completed",
                                                      "cycles"], rows,
                  None if not args.rtl else (
                      "MATCH: the RTL's memories, slot table, error and progress equal the golden "
                      "executor's" if figures["match"] else
                      "MISMATCH: " + "; ".join(figures["differences"])))
    return Result([table], figures, status=status)
