"""The kit's layout: imports between kit modules only go one way (no cycles).

Function-level imports count too: a cycle hidden inside a function is still
a cycle a reader has to untangle.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parents[1] / "kit"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(KIT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def kit_imports(path: Path) -> set[str]:
    """Every kit module this file imports, anywhere in it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "kit"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.split(".")[0] != "kit":
                continue
            for alias in node.names:  # `from kit.models import hub` imports a module
                sub = f"{base}.{alias.name}"
                found.add(sub if (KIT.parent / (sub.replace(".", "/") + ".py")).exists()
                          or (KIT.parent / sub.replace(".", "/")).is_dir() else base)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in KIT.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        deps = set()
        for dep in kit_imports(path):
            # importing kit.a.b runs kit/__init__ and kit/a/__init__ first; the
            # package inits are import-free by design, so count the module only
            deps.add(dep if dep in modules else dep.rpartition(".")[0])
        edges[name] = deps & set(modules)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_between_kit_modules():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("path", sorted(KIT.rglob("*.py")), ids=lambda p: module_name(p))
def test_modules_stay_readable(path):
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"{path.name} has {lines} lines: split it (the layout keeps modules under 400)"


def test_package_inits_import_nothing_from_the_kit():
    """kit/__init__ and the stage packages' __init__ only define: no cycles through them."""
    for init in KIT.rglob("__init__.py"):
        if init.parent in (KIT / "engines", KIT / "server", KIT / "widgets", KIT / "commands",
                           KIT / "errors"):
            continue  # these packages are stages whose __init__ is their public module
        tree = ast.parse(init.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert all(not (isinstance(n, ast.ImportFrom) and (n.module or "").startswith("kit"))
                   for n in top), f"{init} imports kit modules at the top"


def test_the_readme_map_names_files_that_exist():
    """README's "Where things are": every module and test file it names is there."""
    root = KIT.parent
    text = (root / "README.md").read_text()
    table = text.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) >= 10
    for row in rows:
        notebook, modules, tests = (cell.strip() for cell in row.strip("|").split("|"))
        for name in re.findall(r"`(test_\w+\.py)`", tests):
            assert (root / "tests" / name).is_file(), f"README names tests/{name}"
        for name in re.findall(r"`([\w/]+(?:\.py|/))`", modules):
            assert (KIT / name).exists(), f"README names kit/{name}"
        nb = re.match(r"`(\d\d_\w+)`", notebook)
        if nb:
            assert (root / "notebooks" / f"{nb[1]}.ipynb").is_file(), nb[1]


def test_public_calls_resolve_lazily():
    """Every name in kit's public table exists in its stage module, and
    `import kit` alone imports none of them."""
    import subprocess
    import sys

    code = ("import sys, kit; before = set(sys.modules); "
            "print(sorted(m for m in before if m.startswith('kit.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"
    import kit

    for name in kit._PUBLIC:
        assert callable(getattr(kit, name)), name
    with pytest.raises(AttributeError):
        kit.no_such_call
