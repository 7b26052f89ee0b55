"""Imports point one way, down these layers, and no module imports (even lazily, inside a function) a module
that imports it back:

    cli -> engine -> viz | weights -> metrics | losses -> data | models -> geometry -> config
        -> config_compat | skeleton | utils -> errors | _version

A part of the package may import its own modules and any part of a lower layer, nothing beside or above it
(``data`` and ``models`` know nothing of each other; the network reads no files of the datasets).
"""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "ctxpose"

#: the intended graph, top to bottom
LAYERS: tuple[frozenset[str], ...] = tuple(frozenset(layer) for layer in (
    {"__main__", "__init__"},  # ``python -m ctxpose`` and the package's public API
    {"cli"},
    {"engine"},
    {"viz", "weights"},
    {"metrics", "losses"},
    {"data", "models"},
    {"geometry"},
    {"config"},
    {"config_compat", "skeleton", "utils"},
    {"errors", "_version"},
))
RANK = {part: rank for rank, layer in enumerate(LAYERS) for part in layer}


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """Every ``ctxpose`` module ``path`` imports, at module level or inside functions.

    ``from ctxpose.engine import dist`` counts as importing ``ctxpose.engine.dist`` (a submodule), not the
    package's ``__init__`` (which Python imports first anyway).
    """
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names}
            modules = {s for s in subs if s.startswith("ctxpose.") and _is_module(s)}
            names.update(modules)
            if len(modules) < len(subs):
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n == "ctxpose" or n.startswith("ctxpose.")}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_part_has_a_layer():
    parts = {_part(p) for p in PACKAGE.rglob("*.py")}
    assert parts <= set(RANK), sorted(parts - set(RANK))


def test_imports_point_one_way():
    violations = []
    for path in PACKAGE.rglob("*.py"):
        part = _part(path)
        for name in imports_of(path):
            target = name.split(".")[1] if "." in name else "__init__"
            if target != part and RANK.get(target, -1) <= RANK[part]:
                violations.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not violations, violations


def test_only_the_command_line_imports_the_package_root():
    """``ctxpose/__init__.py`` re-exports the public API; library modules import what they use directly."""
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "__init__.py" and "ctxpose" in imports_of(p)]
    assert not offenders, offenders


def test_no_import_cycles():
    graph = _graph()
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in stack:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in done:
                visit(nxt, [*stack, nxt], done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], done)
    assert not cycles, cycles


def test_the_checks_see_imports(tmp_path):
    assert "ctxpose.skeleton" in imports_of(PACKAGE / "models" / "build.py")
    assert "ctxpose.models" in imports_of(PACKAGE / "viz" / "model.py")  # imports inside functions count too
    lazy = tmp_path / "m.py"
    lazy.write_text("def f():\n    from ctxpose.engine import dist\n    import ctxpose\n")
    assert {"ctxpose.engine.dist", "ctxpose"} <= imports_of(lazy)


#: what ``preprocess h36m|3dhp`` imports in the command's process and in each spawned worker: no torch
#: (1-2 s of CPU per process); geometry checks for tensors through ``ctxpose.utils.arrays.torch_of``
_NO_TORCH = """
import concurrent.futures, multiprocessing, os, sys
import ctxpose.data.h36m.preprocess, ctxpose.data.mpi_inf_3dhp.preprocess
from ctxpose.data.preprocessing import _start_worker
assert "torch" not in sys.modules, "the preprocessing modules import torch"
if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    crops = context.RawValue("q", -1)
    with concurrent.futures.ProcessPoolExecutor(1, context, _start_worker, (os.getpid(), crops)) as pool:
        in_worker = pool.submit(eval, "'torch' in __import__('sys').modules").result()
    assert crops.value == 0, "the worker did not start"
    assert not in_worker, "a preprocessing worker imports torch"
"""


def test_preprocessing_and_its_workers_import_no_torch():
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
