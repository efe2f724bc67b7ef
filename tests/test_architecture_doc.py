"""docs/architecture.md stays current: every function and class its equation table names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "paradiff"


def equation_table_places() -> list[tuple[str, str]]:
    """(module path, name) for every name in the 'where' column of the equation table; a module
    path alone (no name after it) gives (path, '')."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Where the paper's equations live", 1)[1].split("\n## ", 1)[0]
    places = []
    for line in section.splitlines():
        if not line.startswith("|") or line.startswith("| ---") or line.startswith("| equation"):
            continue
        where = line.rstrip("|").rsplit("|", 1)[1]
        module, named = None, False
        for token in re.findall(r"`([^`]+)`", where):
            if token.endswith((".py", "/")):
                if module is not None and not named:
                    places.append((module, ""))
                module, named = token, False
            else:
                places.append((module, token))
                named = True
        if module is not None and not named:
            places.append((module, ""))
    return places


def defined_names(path: Path) -> set[str]:
    """Top-level functions and classes of a module, and Class.method for their methods."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(f"{node.name}.{item.name}")
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(f"{node.name}.{item.target.id}")  # dataclass fields
    return names


def test_equation_table_names_exist():
    places = equation_table_places()
    assert len(places) > 20
    missing = []
    for module, name in places:
        path = PACKAGE / module
        if not path.exists():
            missing.append(module)
        elif name and name not in defined_names(path):
            missing.append(f"{module} {name}")
    assert not missing, f"docs/architecture.md names what the code lacks: {missing}"
