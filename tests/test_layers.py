"""The package's layers, read from its imports: a module imports only from its own layer or the
ones below it, the stages of one layer do not import each other, and no import makes a cycle.
Imports under `if TYPE_CHECKING:` count for the layers but not for cycles (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "runner"

# Lowest first. A module belongs to the first entry that names it or its package.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("runner.status", "runner.clock", "runner.signals", "runner.redaction", "runner.errors", "runner.files",
     "runner.merchants", "runner.wording", "runner.sql", "runner.logs", "runner.fonts"),
    ("runner.settings", "runner.config", "runner.charts", "runner.figures", "runner.kinds", "runner.records",
     "runner.request", "runner.shards", "runner.planning", "runner.metrics", "runner.events", "runner.chart_states",
     "runner.journal"),
    ("runner.decks", "runner.retrieval", "runner.demo"),
    ("runner.render",),
    ("runner.cache",),
    ("runner.report", "runner.report_reader", "runner.outcomes", "runner.junit", "runner.progress",
     "runner.run_report",
     "runner.coordinator", "runner.run_folders",
     "runner.server_record", "runner.read_back", "runner.resume", "runner.run", "runner.rerun", "runner.merge",
     "runner.merge_reports"),
    ("runner.cli", "runner.__main__"),
)
# Stages that share a layer and must not lean on each other.
SIBLINGS = ("runner.decks", "runner.retrieval", "runner.demo")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    if module == "runner":  # the package itself holds only its version
        return 0
    for number, names in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names):
            return number
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def sibling_of(module: str) -> str | None:
    return next((name for name in SIBLINGS if module == name or module.startswith(name + ".")), None)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, whether it runs) for every import of runner's own modules in the file."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("runner"):
            targets = [node.module]
            if node.module in {"runner", "runner.render", "runner.decks", "runner.kinds", "runner.retrieval",
                               "runner.cache", "runner.demo"}:  # `from runner.render import worker`
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            found += [(target, id(node) not in typing_only) for target in targets]
        elif isinstance(node, ast.Import):
            found += [(alias.name, id(node) not in typing_only) for alias in node.names
                      if alias.name.startswith("runner")]
    return found


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def known(module: str) -> str:
    """The module itself, or the package an imported name belongs to (`runner.render.worker`)."""
    while module not in MODULES and "." in module:
        module = module.rsplit(".", 1)[0]
    return module


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_nothing_above_its_layer(module: str) -> None:
    mine = layer_of(module)
    wrong = []
    for target, _ in imports(MODULES[module]):
        target = known(target)
        if layer_of(target) > mine:
            wrong.append(f"{target} (layer {layer_of(target)})")
        elif sibling_of(module) and sibling_of(target) and sibling_of(module) != sibling_of(target):
            wrong.append(f"{target} (a sibling stage)")
    assert not wrong, f"{module} (layer {mine}) imports {', '.join(wrong)}"


def test_no_import_makes_a_cycle() -> None:
    graph = {module: {known(t) for t, runs in imports(path) if runs} - {module} for module, path in MODULES.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)
