"""The package's layers, read from the code: every import (at the top, inside
functions, under TYPE_CHECKING) points in an allowed direction between subpackages,
no modules import each other in a cycle, and `import gmtrace` loads no torch.
docs/architecture.md draws the same directions."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gmtrace"

# what each layer may import (besides itself); `gmtrace` is the package's own
# __init__, the public API, which loads its parts on first use
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "nets": {"core"},
    "grouping": {"core"},
    "realmodel": {"core"},
    "zoo": {"core", "data"},
    "readout": {"core", "data", "nets", "grouping", "realmodel"},
    "engine": {"core", "data", "nets", "readout"},
    "train": {"core", "data", "nets", "readout", "grouping", "realmodel"},
    "methods": {"core", "data", "nets", "readout", "grouping", "train", "realmodel"},
    "evaluation": {
        "core",
        "data",
        "nets",
        "readout",
        "grouping",
        "methods",
        "train",
        "realmodel",
    },
    "product": {"core", "data", "nets", "readout", "engine", "grouping", "realmodel", "index"},
    "index": {"core", "readout"},
    "cli": {
        "core",
        "data",
        "nets",
        "grouping",
        "realmodel",
        "zoo",
        "readout",
        "train",
        "methods",
        "evaluation",
        "product",
        "index",
    },
    "gmtrace": {"core", "zoo", "product"},
}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere in its code. `from a.b
    import c` counts as an import of a.b.c where that is a module, else of a.b;
    relative imports are resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = root.name
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        for t in targets:
            if t == top or t.startswith(top + "."):
                while t not in modules:  # an attribute path: its module
                    t = t.rpartition(".")[0]
                if t != name:
                    out.add(t)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    return {module_name(f, root): imports_of(f, root, modules) for f in files}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else parts[0]


def wrong_directions(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for m, deps in graph.items():
        for d in deps:
            a, b = layer(m), layer(d)
            if a != b and b not in ALLOWED.get(a, set()):
                out.append(f"{m} -> {d} ({a} may not import {b})")
    return sorted(out)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_lives_in_a_layer():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == [], "modules belong in a subpackage"
    layers = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert layers == set(ALLOWED) - {"gmtrace"}


def test_imports_point_in_the_allowed_directions():
    assert wrong_directions(import_graph(PACKAGE)) == []


def test_no_import_cycles():
    assert cycles(import_graph(PACKAGE)) == []


def test_the_product_never_reaches_training_evaluation_or_the_zoo():
    graph = import_graph(PACKAGE)
    reach, todo = set(), [m for m in graph if layer(m) == "product"]
    while todo:
        m = todo.pop()
        if m not in reach:
            reach.add(m)
            todo.extend(graph[m])
    assert not {layer(m) for m in reach} & {"train", "methods", "evaluation", "zoo", "cli"}


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "gmtrace"


def test_the_checks_see_imports_inside_functions(tmp_path):
    """A cycle and a reversed dependency hidden in function bodies, as the flat
    package had them (analyze and scan, nets importing the grouping above it)."""
    pkg = _write(
        tmp_path,
        {
            "gmtrace/__init__.py": "",
            "gmtrace/product/__init__.py": "",
            "gmtrace/product/analyze.py": "def f():\n    from gmtrace.product.scan import g\n",
            "gmtrace/product/scan.py": "def g():\n    from . import analyze\n",
            "gmtrace/nets/__init__.py": "",
            "gmtrace/nets/model.py": "def h():\n    import gmtrace.readout.embedding.x\n",
            "gmtrace/readout/__init__.py": "",
            "gmtrace/readout/embedding.py": "x = 1\n",
        },
    )
    graph = import_graph(pkg)
    assert cycles(graph) == [["gmtrace.product.analyze", "gmtrace.product.scan"]]
    assert wrong_directions(graph) == [
        "gmtrace.nets.model -> gmtrace.readout.embedding (nets may not import readout)"
    ]


@pytest.mark.parametrize(
    "module", ["gmtrace", "gmtrace.core.schema", "gmtrace.core.metrics", "gmtrace.cli.main"]
)
def test_light_imports_load_no_torch(module):
    code = f"import sys, {module}\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_the_public_api_loads_no_training_or_evaluation():
    code = (
        "import json, sys, gmtrace\n"
        "for name in gmtrace.__all__: getattr(gmtrace, name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('gmtrace'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = {layer(m) for m in json.loads(out.stdout)}
    assert "product" in loaded
    assert not loaded & {"train", "methods", "evaluation", "cli"}, sorted(loaded)
