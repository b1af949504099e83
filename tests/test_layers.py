"""advnets' modules import in one direction: no import cycle (imports inside functions counted), and every import
points down the declared layers, or says on its line why not (``# upward: <why>``). Read from the source (AST),
nothing imported."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from conftest import REPO

SRC = REPO / "src"
UPWARD = "# upward:"
"""The comment that lets one import line point up a layer; the text after it says why."""

LAYERS: list[tuple[str, ...]] = [
    ("advnets", "advnets.logs", "advnets.errors", "advnets.choices", "advnets.internals", "advnets.threads"),
    ("advnets.outcome", "advnets.store", "advnets.search.trials"),
    (
        "advnets.data",
        "advnets.nets",
        "advnets.losses",
        "advnets.metrics",
        "advnets.sampling",
        "advnets.optim",
        "advnets.schedules",
        "advnets.schema",
        "advnets.pictures",
    ),
    (
        "advnets.game",
        "advnets.evaluation",
        "advnets.callbacks",
        "advnets.summary",
        "advnets.search.pruning",
        "advnets.rendezvous",
        "advnets.stops",
    ),
    ("advnets.training", "advnets.run_folder"),
    ("advnets.jobs", "advnets.search", "hydra_plugins"),
    ("advnets.cli", "advnets.metrics.figures"),  # figures: a command (python -m), drawing a run folder's figures
]
"""Lowest first: a module may import its own layer and those below. A module belongs to the longest name listed
that is it or a package above it (``advnets.search.pruning`` sits below the rest of ``advnets.search``); the root,
``advnets``, is the package's ``__init__`` alone, so every new module of it must be listed."""


def modules(src: Path = SRC) -> dict[str, Path]:
    """Every module of advnets and its Hydra plugin, by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in sorted([*(src / "advnets").rglob("*.py"), *(src / "hydra_plugins").rglob("*.py")]):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module ``name`` is, or is inside of (``advnets.store.atomic.write_text`` -> ``advnets.store.atomic``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(name: str, known: dict[str, Path]) -> Iterator[tuple[str, int, str]]:
    """``(imported module, line number, line)`` for every import of ``name`` (at any depth, inside functions and
    ``TYPE_CHECKING`` blocks too) of a module of ``known``; ``from PACKAGE import SUBMODULE`` imports the
    submodule."""
    path = known[name]
    lines = path.read_text().splitlines()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        text = "\n".join(lines[node.lineno - 1 : getattr(node, "end_lineno", node.lineno)])
        for target in targets:
            owner = _owner(target, known)
            if owner is not None and owner != name:
                yield owner, node.lineno, text


def layer(name: str) -> int:
    """The index in LAYERS of the longest listed name that is ``name`` or a package above it."""
    best, index = "", -1
    for i, names in enumerate(LAYERS):
        for listed in names:
            inside = listed != "advnets" and name.startswith(listed + ".")
            if (name == listed or inside) and len(listed) > len(best):
                best, index = listed, i
    assert index >= 0, f"{name} is in no layer: add it to LAYERS in {Path(__file__).name}"
    return index


def graph(known: dict[str, Path]) -> dict[str, set[str]]:
    """Who imports whom; a package's ``__init__`` importing its own submodules (re-exporting them) left out."""
    edges: dict[str, set[str]] = {m: set() for m in known}
    for name, path in known.items():
        for target, _, _ in imports(name, known):
            if path.name == "__init__.py" and target.startswith(name + ".") and name != "advnets":
                continue
            edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def upward_imports(known: dict[str, Path], src: Path = SRC) -> list[str]:
    """Every import that points up a layer without an ``# upward: <why>`` comment on its lines (each as
    ``PATH:LINE: what``, the path relative to ``src``)."""
    wrong = []
    for name in known:
        for target, lineno, text in imports(name, known):
            if layer(target) > layer(name) and not text.partition(UPWARD)[2].strip():
                wrong.append(f"{known[name].relative_to(src)}:{lineno}: {name} imports {target} (a layer above it)")
    return wrong


def test_no_import_cycle_among_advnets_modules() -> None:
    known = modules()
    assert "advnets.training" in known and "advnets.store.atomic" in known  # the walk found the source
    assert cycles(graph(known)) == []


def test_every_module_is_in_a_layer_and_imports_only_its_own_and_lower_layers() -> None:
    known = modules()
    for name in known:
        layer(name)
    assert upward_imports(known) == []


def test_an_upward_import_is_found_unless_its_line_says_why(tmp_path: Path) -> None:
    """The checks above on a copy of the source with one import pointing up, as a function's import."""
    copy = tmp_path / "src"
    for path in modules().values():
        target = copy / path.relative_to(SRC)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    atomic = copy / "advnets" / "store" / "atomic.py"
    source = atomic.read_text()
    upward = "\n\ndef _up() -> None:\n    from advnets.run_folder import RunFolder{}\n\n    print(RunFolder)\n"
    atomic.write_text(source + upward.format(""))
    known = modules(copy)
    assert [c for c in cycles(graph(known)) if "advnets.store.atomic" in c]  # run_folder imports atomic
    found = [line.split(": ", 1)[1] for line in upward_imports(known, copy)]
    assert found == ["advnets.store.atomic imports advnets.run_folder (a layer above it)"]
    atomic.write_text(source + upward.format("  # upward: why it must"))
    assert upward_imports(modules(copy), copy) == []
