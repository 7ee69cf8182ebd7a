"""The engine must never import Qt: it runs in the engine process, the CLI and tests."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy", "app")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_engine_module_imports_qt_or_the_app():
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & set(QT_MODULES))
        for path in (ROOT / "engine").rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"engine modules import Qt or app: {offenders}"


def test_importing_the_whole_engine_loads_no_qt():
    code = (
        "import pkgutil, importlib, sys, engine\n"
        "for m in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in "
        f"{QT_MODULES!r}]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _module_imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Full names of the modules ``path`` imports (``from a.b import c`` gives ``a.b`` and
    ``a.b.c``); with ``top_level_only``, only imports run when the module is imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_only_the_runtime_and_the_engine_process_import_the_runtime():
    """Everything else talks to an ``engine.api.Engine``; llama.cpp specifics stay behind it."""
    allowed = (ROOT / "engine" / "runtime", ROOT / "engine" / "worker")
    offenders = {}
    for path in [*(ROOT / "engine").rglob("*.py"), *(ROOT / "app").rglob("*.py")]:
        if any(path.is_relative_to(a) for a in allowed):
            continue
        bad = sorted(n for n in _module_imports(path)
                     if n == "engine.runtime" or n.startswith("engine.runtime."))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, f"modules outside engine/runtime and engine/worker import it: " \
                          f"{offenders}"


def test_tasks_and_app_are_typed_against_the_engine_protocol():
    """The tasks never name a concrete backend; the app names ``EngineClient`` only as the
    default factory of its bridge."""
    for path in (ROOT / "engine" / "tasks").rglob("*.py"):
        assert "EngineClient" not in path.read_text(encoding="utf-8"), path
    for path in (ROOT / "app").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name not in ("bridge.py", "window.py", "selftest.py"):
            assert "EngineClient" not in text, path


def test_engine_modules_have_no_import_cycles():
    """Module-level imports among engine modules form no cycle (imports inside functions are
    deferred on purpose and do not count)."""
    paths = {_module_name(p): p for p in (ROOT / "engine").rglob("*.py")}
    graph = {name: {m for m in _module_imports(path, top_level_only=True) if m in paths
                    and m != name}
             for name, path in paths.items()}
    for name, deps in graph.items():
        # a package's __init__ importing its own submodules is not a cycle of the submodule
        graph[name] = {d for d in deps if not (d.startswith(name + ".")
                                               and paths[name].name == "__init__.py")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep):], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
