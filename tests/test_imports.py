"""No import circles: the modules of ``src/cnnumpy`` import each other (at module level)
without a cycle, and each model module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import cnnumpy

ROOT = pathlib.Path(cnnumpy.__file__).parent

ALONE = ["cnnumpy.model", "cnnumpy.model_base", "cnnumpy.graph_model", "cnnumpy.graph",
         "cnnumpy.graph_io", "cnnumpy.model_file", "cnnumpy.io", "cnnumpy.training",
         "cnnumpy.callbacks", "cnnumpy.callbacks.files", "cnnumpy.passes", "cnnumpy.shards",
         "cnnumpy.summary", "cnnumpy.inputs", "cnnumpy.models", "cnnumpy.functional.conv",
         "cnnumpy.functional.fast.depthwise", "cnnumpy.functional.fast.pointwise"]


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _module_level_imports(name: str, path: pathlib.Path, modules: dict) -> set[str]:
    """The cnnumpy modules ``name`` imports when it is executed (not inside functions).

    ``from a import b`` is an edge to ``a.b`` when that is a module, else to ``a``.
    """
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for statement in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue  # function bodies run later; class bodies rarely import
        for node in ast.walk(statement):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    prefix = package[:len(package) - (node.level - 1)]
                    base = ".".join([*prefix, *([node.module] if node.module else [])])
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:
                        found.add(f"{base}.{alias.name}")
                    elif base in modules:
                        found.add(base)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_module_level_imports():
    modules = _modules()
    assert "cnnumpy.model" in modules and "cnnumpy.io" in modules
    graph = {name: _module_level_imports(name, path, modules)
             for name, path in modules.items()}
    assert "cnnumpy.training" in graph["cnnumpy.model_base"]  # the finder sees edges
    assert _cycles(graph) == []


def test_each_model_module_imports_alone_in_a_fresh_interpreter():
    """Each module first, before any other cnnumpy module has run (its package's __init__
    aside), in one fresh interpreter: the cnnumpy modules are dropped between imports."""
    script = (
        "import importlib, sys\n"
        f"for name in {ALONE!r}:\n"
        "    for m in [m for m in sys.modules if m.split('.')[0] == 'cnnumpy']:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, cwd=ROOT.parent)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
