"""The floors of docs/architecture.md, checked on the source: every import of a paradiff module
(top-level or inside a function) read with `ast`, then no cycle, no import of the entry floor
(`cli`, `app`, `demo`) from anywhere else, no floor importing a higher one, and no floor importing
the shapes world."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "paradiff"

# Floor of each module, by its dotted name's longest listed prefix (docs/architecture.md).
FLOORS = {
    "paradiff.layout": 1,
    "paradiff.model_config": 1,
    "paradiff.text_tokenizer": 1,
    "paradiff.image_tokenizers": 1,
    "paradiff.checkpoint": 1,
    "paradiff.quantization": 1,
    "paradiff.trajectory": 1,
    "paradiff.plots": 1,
    "paradiff.files": 1,
    "paradiff.schema": 1,
    "paradiff.registry": 1,
    "paradiff.model": 2,
    "paradiff.sampling": 3,
    "paradiff.pipeline": 4,
    "paradiff.training": 5,
    "paradiff.bench": 5,
    "paradiff.batch": 5,
    "paradiff.resumable": 5,
    "paradiff.command_support": 5,
    "paradiff.cli": 6,
    "paradiff.app": 6,
    "paradiff.demo": 6,
}
ENTRY = ("paradiff.cli", "paradiff.app", "paradiff.demo")
SHAPES = "paradiff.shapes"


def module_files() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def import_edges(modules: dict[str, Path]) -> set[tuple[str, str]]:
    """(importer, imported) pairs between paradiff modules; `from a import b` counts as an import
    of module a.b when b is a module, else of a."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = set()
    for importer, path in modules.items():
        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = resolve(name)
                if target and target != importer and target != "paradiff":
                    if not importer.startswith(target + "."):  # a package's own __init__
                        edges.add((importer, target))
    return edges


def floor_of(module: str) -> int | None:
    for prefix in sorted(FLOORS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return FLOORS[prefix]
    return None


def is_shapes(module: str) -> bool:
    return module == SHAPES or module.startswith(SHAPES + ".")


def cycles(nodes, edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
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
                found.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph():
    modules = module_files()
    return modules, import_edges(modules)


def test_every_module_has_a_floor_or_is_in_the_shapes_room(graph):
    modules, _ = graph
    homeless = [m for m in modules if m != "paradiff" and floor_of(m) is None and not is_shapes(m)]
    assert not homeless, f"give these a floor in FLOORS and docs/architecture.md: {homeless}"


def test_no_import_cycle(graph):
    modules, edges = graph
    assert cycles(modules, edges) == []


def test_imports_point_down_and_never_into_the_entry_floor_or_the_shapes_room(graph):
    _, edges = graph
    wrong = []
    for importer, target in sorted(edges):
        low, high = floor_of(importer), floor_of(target)
        if target.startswith(ENTRY) and not importer.startswith(ENTRY):
            wrong.append(f"{importer} -> {target} (the entry floor)")
        elif is_shapes(target) and low is not None and low < FLOORS["paradiff.cli"]:
            wrong.append(f"{importer} -> {target} (the core never imports the shapes world)")
        elif low is not None and high is not None and high > low:
            wrong.append(f"{importer} -> {target} (floor {low} imports floor {high})")
    assert not wrong, "\n".join(wrong)


def test_batch_inference_stands_on_its_own_types_not_the_benchmark_runners(graph):
    """`generate --batch` shares the resumable folder with the benchmarks (paradiff.resumable),
    never their runner, items or commands."""
    _, edges = graph
    assert [
        t for i, t in sorted(edges) if i == "paradiff.batch" and t.startswith("paradiff.bench")
    ] == []


def test_the_checker_sees_an_upward_import_and_a_cycle(tmp_path):
    """The walker itself: a relative upward import inside a function and a two-module cycle."""
    fake = {
        "paradiff.model": tmp_path / "model.py",
        "paradiff.sampling": tmp_path / "sampling" / "__init__.py",
        "paradiff.sampling.sampler": tmp_path / "sampling" / "sampler.py",
    }
    fake["paradiff.sampling"].parent.mkdir()
    fake["paradiff.model"].write_text("def f():\n    from paradiff.sampling import sampler\n")
    fake["paradiff.sampling"].write_text("")
    fake["paradiff.sampling.sampler"].write_text("from ..model import f\n")
    edges = import_edges(fake)
    assert edges == {
        ("paradiff.model", "paradiff.sampling.sampler"),
        ("paradiff.sampling.sampler", "paradiff.model"),
    }
    assert cycles(fake, edges) == [["paradiff.model", "paradiff.sampling.sampler"]]
