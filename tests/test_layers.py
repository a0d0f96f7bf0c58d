"""The house's floor plan, checked from the source (ast, nothing imported): `pages -> core ->
model_zoo`, no arrow back, and no circle among the imports a module makes when it is loaded."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "model_zoo", "pages")


def _modules() -> dict[str, Path]:
    found = {"app": ROOT / "app.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:  # Alembic scripts: loaded by Alembic, not imported
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imported_names(module: str, path: Path, *, load_time_only: bool) -> set[str]:
    """Dotted names imported by `module`; load_time_only: leave out imports inside functions and
    under `if TYPE_CHECKING`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()

    def visit(node, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = (
                deferred
                or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            )
            if isinstance(child, ast.Import) and not (load_time_only and deferred):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and not (load_time_only and deferred):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in child.names)
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return names


def _project_module(name: str) -> str | None:
    parts = name.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts) or None


@pytest.mark.parametrize(
    "layer, forbidden", [("core", ("streamlit", "pages")), ("model_zoo", ("core", "pages", "streamlit"))]
)
def test_no_import_goes_up_a_layer(layer, forbidden):
    wrong = sorted(
        f"{module} imports {name}"
        for module, path in MODULES.items()
        if module == layer or module.startswith(layer + ".")
        for name in _imported_names(module, path, load_time_only=False)
        if name.split(".")[0] in forbidden
    )
    assert wrong == []


def test_no_import_circles_when_modules_load():
    graph = {}
    for module, path in MODULES.items():
        targets = {_project_module(n) for n in _imported_names(module, path, load_time_only=True)}
        # loading a.b.c runs a/__init__ and a/b/__init__ first
        parents = {".".join(t.split(".")[:i]) for t in targets if t for i in range(1, t.count(".") + 1)}
        graph[module] = {t for t in targets | parents if t and t != module and not module.startswith(t + ".")}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")
