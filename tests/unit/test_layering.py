"""Imports point one way: cli -> engine | weights -> data | models -> geometry -> config | skeleton | errors | utils."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "ctxpose"

#: for each part of the package, the parts it must never import
FORBIDDEN = {
    "data": {"models", "engine", "losses", "cli", "weights"},
    "models": {"engine", "losses", "metrics", "cli", "weights"},
    "weights": {"engine", "cli"},
    "losses": {"engine", "data", "cli"},
    "metrics": {"engine", "data", "models", "losses", "cli"},
    "engine": {"cli"},
    "geometry": {"data", "models", "engine", "losses", "metrics", "cli"},
    "skeleton": {"data", "models", "engine", "losses", "metrics", "cli", "geometry"},
    "config": {"data", "models", "engine", "losses", "metrics", "cli", "geometry"},
    "utils": {"data", "models", "engine", "losses", "metrics", "cli", "geometry"},
}
#: the one crossing allowed: models take the limb prior's type (a dataclass of two tensors) from data
ALLOWED = {("models", "ctxpose.data.limb_prior")}


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("ctxpose.")}


def test_imports_point_one_way():
    violations = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        part = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for name in imports_of(path):
            target = name.split(".")[1]
            if target in FORBIDDEN.get(part, set()) and (part, name) not in ALLOWED:
                violations.append(f"{rel} imports {name}")
    assert not violations, violations


def test_the_check_sees_imports():
    assert "ctxpose.data.limb_prior" in imports_of(PACKAGE / "models" / "build.py")
