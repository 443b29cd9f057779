"""The README stays true to the code and free of dated figures.

The module map ("How it is built") names every module of the package, each once, under the layer
tests/test_layers.py puts it in, and names nothing that does not exist. Dated figures and history
("12:08 today", "was 103 s", "0.36x before, 0.32x after") belong in the bench's output and in git,
not in the README: the check below catches those forms only, so a reviewer still reads the text.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import REPO
from tests.test_layers import layer_of

MAP_HEADING = "### How it is built"
ENTRY = re.compile(r"^- `(runner/[^`]+)`: \S", re.M)
LAYER_HEADING = re.compile(r"^\*\*Layer (\d+):", re.M)

# A time of day ("10:51"; not a port as in 127.0.0.1:8765), a figure followed by "today" ("14:58 today"),
# and history ("was 103 s", "took 44 ms before", "1.82x before, 1.92x after").
DATED = {
    "a time of day": re.compile(r"(?<![\d:.])(?:[01]?\d|2[0-3]):[0-5]\d(?![\d:])"),
    "a figure of today": re.compile(r"\d\)?\s*(?:today|yesterday)\b"),
    "a figure that was": re.compile(r"\b(?:was|were|took) \d"),
    "a figure before and after": re.compile(r"\bbefore\b[^.;]{0,40}?\d[\d.,]*\s*(?:s|ms|MB|%|×)?,?\s+after\b"),
}


def module_map(readme: str) -> str:
    """The README's module map: its section, up to the next heading of that level or above."""
    assert readme.count(MAP_HEADING + "\n") == 1, f"the README has no single {MAP_HEADING!r} section"
    section = readme.split(MAP_HEADING + "\n", 1)[1]
    return re.split(r"^#{1,3} ", section, maxsplit=1, flags=re.M)[0]


def package_modules(root: Path) -> set[str]:
    """Every module of the package as the map names it: runner/x/y.py, and each subpackage as runner/x/."""
    package = root / "runner"
    modules = {p.relative_to(root).as_posix() for p in package.rglob("*.py") if p.name != "__init__.py"}
    packages = {p.parent.relative_to(root).as_posix() + "/" for p in package.rglob("__init__.py")
                if p.parent != package}
    return modules | packages


def module_name(entry: str) -> str | None:
    """runner/render/task.py -> runner.render.task; runner/kinds/ -> runner.kinds; a data folder -> None."""
    if entry.endswith(".py"):
        return entry.removesuffix(".py").replace("/", ".")
    if (REPO / entry / "__init__.py").exists():
        return entry.rstrip("/").replace("/", ".")
    return None


def map_problems(readme: str, root: Path) -> list[str]:
    entries = ENTRY.findall(module_map(readme))
    problems = [f"named twice: {entry}" for entry in sorted({e for e in entries if entries.count(e) > 1})]
    problems += [f"missing from the module map: {m}" for m in sorted(package_modules(root) - set(entries))]
    problems += [f"in the module map but not in the tree: {e}" for e in sorted(set(entries))
                 if not (root / e).exists()]
    return problems


def layer_problems(readme: str) -> list[str]:
    """Each entry sits under the layer heading of the layer tests/test_layers.py gives its module."""
    problems = []
    parts = LAYER_HEADING.split(module_map(readme))
    for number, body in zip(parts[1::2], parts[2::2], strict=True):
        for entry in ENTRY.findall(body):
            name = module_name(entry)
            if name is not None and (REPO / entry).exists() and layer_of(name) != int(number):
                problems.append(f"{entry} is under layer {number}, tests/test_layers.py says {layer_of(name)}")
    return problems


def dated_figures(readme: str) -> list[str]:
    text = " ".join(readme.split())  # a phrase may wrap across lines
    return [f"{what}: ...{text[max(0, m.start() - 40):m.end() + 20]}..."
            for what, pattern in DATED.items() for m in pattern.finditer(text)]


def test_the_module_map_lists_every_module_once_and_nothing_else() -> None:
    problems = map_problems((REPO / "README.md").read_text(), REPO)
    assert not problems, "README.md's module map (How it is built) is out of date:\n" + "\n".join(problems)


def test_the_module_map_puts_each_module_in_its_layer() -> None:
    readme = (REPO / "README.md").read_text()
    assert LAYER_HEADING.search(module_map(readme)), "the module map has no **Layer N: ...** headings"
    problems = layer_problems(readme)
    assert not problems, "\n".join(problems)


def test_the_readme_holds_no_dated_figure_or_history() -> None:
    found = dated_figures((REPO / "README.md").read_text())
    assert not found, ("README.md holds dated figures or history (the bench prints today's figures, git keeps "
                       "history):\n" + "\n".join(found))


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """A module added to the tree but not the map, a map entry for a module gone, and the dated
    phrases the README once held, are each caught."""
    (tmp_path / "runner" / "sub").mkdir(parents=True)
    for name in ("__init__.py", "a.py", "sub/__init__.py", "sub/b.py"):
        (tmp_path / "runner" / name).write_text("")
    readme = (f"{MAP_HEADING}\n\n**Layer 0: x**\n\n- `runner/a.py`: a\n- `runner/sub/`: sub\n"
              "- `runner/gone.py`: gone\n\n## Next\n- `runner/sub/b.py`: outside the map\n")
    assert map_problems(readme, tmp_path) == ["missing from the module map: runner/sub/b.py",
                                              "in the module map but not in the tree: runner/gone.py"]
    for phrase in ("a full run (10:51 today)", "3 repetitions (12:08\ntoday)", "one chart alone: 33.9 s; was 103 s",
                   "3.49–3.75 s before, 3.76 s after", "0.36× of the cold run before that change, 0.32× after"):
        assert dated_figures(phrase), phrase
    for phrase in ("tcp://10.0.0.5:8786", "http://127.0.0.1:8765", "relative: `today`, `yesterday`",
                   '`today = "2026-01-15"`', "prints today's figures", "postgresql://me@localhost:5432/warehouse"):
        assert not dated_figures(phrase), phrase
