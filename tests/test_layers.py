"""The layers point down: ``hw`` imports nothing from ``sim`` or ``sw_model``, ``sw_model`` nothing
from ``sim``, and no module depends on itself through others. Every import counts, also those
inside functions."""

import ast

import pytest

from hw.flows.verilog import REPO_ROOT

PACKAGES = ("hw", "sw_model", "sim")
#: What each layer must not import.
FORBIDDEN = {"hw": ("sim", "sw_model"), "sw_model": ("sim",), "sim": ()}


def _module_name(path, root=REPO_ROOT):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path, root=REPO_ROOT):
    """Every module ``path`` imports (absolute names), wherever the import statement stands."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            # ``from package import module`` imports the module
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph():
    modules = {_module_name(p): p for package in PACKAGES
               for p in (REPO_ROOT / package).rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name}
            for name, path in modules.items()}


GRAPH = _graph()


def test_the_tree_is_seen():
    assert {"hw.mac_array", "sw_model.golden.mac_array", "sim.mac_array.tb"} <= set(GRAPH)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module):
    layer = module.split(".")[0]
    wrong = sorted(m for m in GRAPH[module] if m.split(".")[0] in FORBIDDEN[layer])
    assert not wrong, f"{module} ({layer}) imports {', '.join(wrong)}"


def test_imports_inside_functions_and_relative_imports_count(tmp_path):
    package = tmp_path / "hw"
    package.mkdir()
    (package / "bad.py").write_text("def f():\n    from sim.runner import build\n"
                                    "    from .flows import verilog\n")
    assert {"sim.runner", "hw.flows", "hw.flows.verilog"} <= _imports(package / "bad.py", tmp_path)


def test_no_import_cycles():
    """Strongly connected components of the import graph (Tarjan) have one module each."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_test_module_imports_another():
    """Shared test data and helpers live in ``conftest.py``, ``tests/support`` or the libraries,
    never in a test module another one imports."""
    tests = REPO_ROOT / "tests"
    wrong = {}
    for path in tests.rglob("test_*.py"):
        names = _imports(path, REPO_ROOT)
        bad = sorted(n for n in names if n.split(".")[-1].startswith("test_")
                     or n.split(".")[0] == "tests" and not n.startswith("tests.support"))
        if bad:
            wrong[str(path.relative_to(REPO_ROOT))] = bad
    assert not wrong, f"test modules importing test modules: {wrong}"
