"""The layering rules of the code base, read from the imports of every module (with `ast`, not by running them).

Dependencies run one way: billing -> builds -> tenants -> core. The roof (`mlaas_portal`) may use every app;
no app imports the roof, `core` imports no app, an engine never sees tenant models, and no two modules import
each other, directly or through others. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "emulator", "mlaas_steps", "tenants", "builds", "billing", "mlaas_portal")
APPS = ("tenants", "builds", "billing")
FORBIDDEN = [
    # (importer prefix, imported prefix, why)
    ("builds", "billing", "usage flows one way: billing reads what builds recorded"),
    ("tenants", "billing", "usage flows one way: billing reads tenants"),
    ("tenants", "builds", "builds depend on tenants, not the other way (a model reference by string is fine)"),
    ("core", "tenants", "the ground floor knows no app"),
    ("core", "builds", "the ground floor knows no app"),
    ("core", "billing", "the ground floor knows no app"),
    ("core", "mlaas_portal", "the ground floor knows no app"),
    *[(app, "mlaas_portal", "apps never import the roof (settings come from django.conf)") for app in APPS],
    ("builds.engines", "tenants", "engines are handed a build specification and gateways"),
    ("builds.engines.local", "builds.models", "engines see plain dataclasses; the factory hands them readers"),
    ("builds.engines.sagemaker", "builds.models", "engines see plain dataclasses; the factory hands them readers"),
    *[("mlaas_steps", app, "the step code runs inside the image: it knows no Django app")
      for app in (*APPS, "mlaas_portal")],
    *[("core", package, "the ground floor knows no app") for package in ("emulator",)],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py") if (ROOT / package).is_dir() else ():
            if "migrations" in path.parts or "tests" in path.parts:
                continue
            found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every project module `name` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            # `from pkg import submodule` depends on the submodule (and pkg's __init__ only for other names)
            targets = submodules + ([base] if len(submodules) < len(node.names) else [])
        for target in targets:
            while target and target not in known:  # `from a.b import c`: module a.b.c, else a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name, path, set(modules())) for name, path in modules().items()}


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize(("importer", "imported", "why"), FORBIDDEN)
def test_no_import_against_the_layers(importer, imported, why):
    offending = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() if under(m, importer)
                       for d in deps if under(d, imported))
    assert offending == [], why


def test_no_import_cycles():
    """Tarjan's strongly connected components: any component of more than one module is a cycle."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for dep in GRAPH.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_walk_sees_imports_inside_functions():
    """The rules would pass vacuously if the walk missed imports: check it finds a known one in a function."""
    assert "builds.models" in GRAPH["builds.intake"]
    assert len(GRAPH) > 50
