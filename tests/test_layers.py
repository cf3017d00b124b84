"""The package's module graph points one way (DESIGN.md's data flow): no module imports one of a
higher layer, so the physics never depends on training, nor the data side on the model."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hybrid"
# Lower layers first; a module may import its own layer or lower ones.
LAYERS = [
    {"physics", "allocator"},
    {
        "dynamics",
        "metrics",
        "models",
        "objectives",
        "identifiability",
        "plots",
        "flow",
        "flow_refinement",
    },
    {"data"},
    {"train", "warm_start", "callbacks", "schedule", "polish", "environments"},
    {"evaluate"},
    {"cli", "__main__"},
]


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.startswith("hybrid.") else module
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"hybrid.{top} is in no layer of tests/test_layers.py: place it")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hybrid"):
            names |= {
                f"{node.module}.{a.name}" if node.module == "hybrid" else node.module
                for a in node.names
            }
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("hybrid.")}
    return {n for n in names if n.count(".") >= 1}


MODULES = [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path):
    own = _layer("hybrid." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    upward = sorted(m for m in _imports(path) if _layer(m) > own)
    assert not upward, f"{path.relative_to(PACKAGE)} imports {upward} from a higher layer"
