"""pyproject.toml and environment.yml declare the same packages."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_ONLY = {"python", "pip"}


def _name(spec: str) -> str:
    name = re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = data["dependencies"] + data["optional-dependencies"]["test"]
    return {_name(s) for s in specs}


def _environment(path: Path) -> set[str]:
    names, section = set(), None
    for line in path.read_text().splitlines():
        stripped = line.split("#")[0].rstrip()
        if stripped and not stripped.startswith(" "):
            section = stripped.rstrip(":")  # top-level key: channels, dependencies
            continue
        if section != "dependencies" or not stripped.strip().startswith("- "):
            continue
        item = stripped.strip()[2:].strip()
        if item == "pip:":
            continue
        if item.startswith("-e") or not item:
            continue
        names.add(_name(item))
    return names - CONDA_ONLY


def test_environment_yml_lists_the_same_packages_as_pyproject():
    assert _environment(ROOT / "environment.yml") == _pyproject()


def test_binder_environment_matches_too():
    assert _environment(ROOT / "binder" / "environment.yml") == _pyproject()


def test_parser_sees_a_difference(tmp_path):
    # guard against a comparison that can never fail
    text = (ROOT / "environment.yml").read_text().replace("  - pandas>=2\n", "")
    probe = tmp_path / "environment.yml"
    probe.write_text(text)
    assert _environment(probe) == _pyproject() - {"pandas"}


def test_console_script_and_python_version():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert data["scripts"]["kit"] == "kit.cli:main"
    assert data["requires-python"] == ">=3.11"


def test_every_package_the_kit_imports_is_declared():
    import ast
    import sys
    from importlib.metadata import packages_distributions

    dists = packages_distributions()
    declared = _pyproject()
    missing = {}
    for path in (ROOT / "kit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top == "kit" or top in sys.stdlib_module_names:
                    continue
                if not {_name(d) for d in dists.get(top, [top])} & declared:
                    missing.setdefault(top, path.relative_to(ROOT).as_posix())
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
