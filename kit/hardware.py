"""Is this computer ready? The machine check behind `kit doctor` and notebook 00.

>>> print(format_report(run_checks()))   # '[OK]   Python   3.11.7' ... '15 OK, ...'
"""
from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from kit.errors import BadParameter, KitError
from kit.settings import get_settings

GIB = 1024**3
STATUSES = ("OK", "WARN", "FAIL")
FLAGS_OF_INTEREST = ("avx", "avx2", "avx512f", "fma", "f16c", "neon", "asimd")
PROC_CPUINFO = Path("/proc/cpuinfo")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
# What each package is for, in words a learner can act on.
REQUIRED = {"llama-cpp-python": "runs the models", "gguf": "reads model files",
            "numpy": "does the arithmetic"}
OPTIONAL = {"ctransformers": "second engine, for comparisons",
            "huggingface-hub": "downloads more models", "jupyterlab": "notebooks",
            "ipywidgets": "chat boxes and sliders", "voila": "dashboards",
            "psutil": "measures memory"}
_REINSTALL = "pip install --force-reinstall --no-cache-dir llama-cpp-python"
# The next step for each problem, in plain words.
FIXES = {
    "python": "Install Python 3.11 or newer (python.org or conda), then a new venv.",
    "broken": f"Reinstall it: {_REINSTALL}",
    "slow_cpu": "It still works: stay with small models and allow extra time.",
    "cores": "Answers will come slowly; close other programs while a model runs.",
    "psutil": "In a terminal, run: pip install psutil",
    "ram_low": "Close other programs and browser tabs, then check again.",
    "ram_small": "Fine for small models; stay with models under 2 GB.",
    "disk": "Free some space (empty Downloads and the Trash), or set KIT_HOME "
            "to a folder on a bigger drive.",
    "cuda": "To use the GPU, reinstall llama-cpp-python with CUDA (needs the "
            f"NVIDIA CUDA toolkit): CMAKE_ARGS=\"-DGGML_CUDA=on\" {_REINSTALL}",
    "metal": "To use the Apple GPU, reinstall llama-cpp-python with Metal: "
             f"CMAKE_ARGS=\"-DGGML_METAL=on\" {_REINSTALL}",
    "hub": "Offline is fine for the starter model. To download others, connect "
           "to the internet; behind a proxy, ask IT for the HTTPS_PROXY setting.",
    "starter": "Run `kit setup` in a terminal (--force replaces a damaged file).",
}


@dataclass(frozen=True)
class Check:
    """One line of the report: `[WARN] RAM  7.6 GiB total ... -> fix`."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise BadParameter("status", self.status, "one of OK, WARN, FAIL")

    def __str__(self) -> str:
        line = f"{'[' + self.status + ']':<7}{self.name:<17}{self.detail}"
        return line + (f" -> {self.fix}" if self.status != "OK" and self.fix else "")


def _proc_cpuinfo() -> tuple[str, list[str] | None]:
    """CPU name and all flags from /proc/cpuinfo (Linux); ('', None) elsewhere."""
    model, flags = "", None
    text = PROC_CPUINFO.read_text(errors="replace") if PROC_CPUINFO.exists() else ""
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key.lower() in ("model name", "hardware", "cpu model"):
            model = value or model
        elif key.lower() in ("flags", "features"):  # x86 / ARM spelling
            flags = value.split()
    return model, flags


def _cpu_model_and_flags() -> tuple[str, list[str] | None]:
    """CPU name and the flags of interest it has (None if unknown)."""
    # /proc is instant; py-cpuinfo starts a second Python (about 1 s, no
    # timeout), so it is only asked where /proc is missing (macOS, Windows).
    model, flags = _proc_cpuinfo()
    if flags is None:
        try:
            import cpuinfo

            info = cpuinfo.get_cpu_info()
            model, flags = info.get("brand_raw") or model, info.get("flags")
        except Exception:  # missing, or it failed on an unusual CPU
            pass
    if sys.platform == "darwin" and platform.machine() == "arm64":
        flags = [*(flags or []), "neon"]  # every Apple chip has it, unlisted
    model = model or platform.processor()
    wanted = None if flags is None else [f for f in FLAGS_OF_INTEREST if f in flags]
    return model, wanted


def nvidia_gpus() -> list[dict]:
    """NVIDIA GPUs from nvidia-smi; none when it is missing, hangs or fails."""
    cmd = ["nvidia-smi", "--query-gpu=name,memory.total,memory.free,driver_version",
           "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []  # no driver, a broken one, or a stuck GPU: report none
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.rsplit(",", 3)]  # names may hold commas
        if len(parts) == 4:
            total, free = (int(p) if p.isdigit() else None for p in parts[1:3])
            gpus.append({"name": parts[0], "memory_total_mib": total,
                         "memory_free_mib": free, "driver": parts[3]})
    return gpus


_nvidia_gpus = nvidia_gpus  # older name, still used by kit.bench and tests


def _llama_offload() -> tuple[bool | None, str | None]:
    """(GPU offload supported?, import error); (None, why) if not importable."""
    try:
        import llama_cpp
    except Exception as exc:  # ImportError, or OSError from a broken build
        return None, f"{type(exc).__name__}: {exc}"
    probe = getattr(llama_cpp, "llama_supports_gpu_offload", None)
    return (bool(probe()) if probe else False), None


def _disk_free(folder: Path) -> int | None:
    """Free bytes where models go, measured at the nearest existing folder."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    return shutil.disk_usage(existing).free if existing else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict:
    """What this machine has, as plain data (json.dumps works on it)."""
    model, flags = _cpu_model_and_flags()
    total = available = cores = None
    try:
        import psutil

        mem = psutil.virtual_memory()
        total, available = mem.total, mem.available
        cores = psutil.cpu_count(logical=False)
    except ImportError:
        pass  # the psutil package line and the RAM line say what to do
    models_dir = get_settings().models_dir
    offload, llama_error = _llama_offload()
    return {
        "python": platform.python_version(), "os": platform.platform(),
        "platform": sys.platform, "machine": platform.machine(),
        "cpu_model": model, "cpu_flags": flags,
        "cores_physical": cores, "cores_logical": os.cpu_count(),
        "ram_total": total, "ram_available": available,
        "models_dir": str(models_dir), "disk_free": _disk_free(models_dir),
        "gpus": nvidia_gpus(),
        "metal": sys.platform == "darwin" and platform.machine() == "arm64",
        "gpu_offload": offload, "llama_cpp_error": llama_error,
        "packages": {name: _version(name) for name in {**REQUIRED, **OPTIONAL}},
        "proxies": proxy_settings(),
    }


def _proxy_host(value: str) -> str:
    """Host part of a proxy URL: 'http://u:pw@px:3128/' -> 'px:3128'."""
    # Credentials always come before the host, so keep only what follows
    # the last "@": even a password holding "/" or "@" cannot leak.
    rest = value.split("://", 1)[-1].rpartition("@")[2]
    for stop in "/?#":
        rest = rest.split(stop, 1)[0]
    return rest


def proxy_settings() -> list[str]:
    """Proxy variables that are set, hosts only: ['HTTPS_PROXY=px:3128']."""
    found = []
    for key, value in sorted(os.environ.items()):
        if key.upper() in PROXY_VARS and value.strip():
            # NO_PROXY is a list of hosts, never a URL with a password.
            shown = value if key.upper() == "NO_PROXY" else _proxy_host(value)
            found.append(f"{key}={shown}")
    return found


def _reason(exc: BaseException, timeout: float) -> str:
    """A short human reason for a failed connection."""
    exc = getattr(exc, "reason", exc)  # URLError wraps the real cause
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return "name lookup failed (no internet, or a wrong name)"
    return f"cannot connect: {exc or type(exc).__name__}"  # SSL: often a proxy


def _probe(url: str, timeout: float, result: dict) -> None:
    """HEAD the url; put (ok, reason) in result. Runs in a daemon thread."""
    start = time.monotonic()
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            code = answer.status
    except urllib.error.HTTPError as exc:
        code = exc.code  # the server answered, even if it said no
    except (OSError, ValueError) as exc:  # URLError, timeouts, a bad URL
        result["answer"] = (False, _reason(exc, timeout))
        return
    if code == 407:
        result["answer"] = (False, "the proxy asks for a password (HTTP 407)")
    elif code >= 500:
        result["answer"] = (False, f"{url} answered with an error (HTTP {code})")
    else:
        result["answer"] = (True, f"{url} answered in {time.monotonic() - start:.1f} s")


def hub_reachable(timeout: float = 2.0) -> tuple[bool, str]:
    """(reachable?, why) for the Hub at HF_ENDPOINT; never waits much past timeout."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip()
    if offline.upper() in ("1", "ON", "YES", "TRUE"):  # as huggingface_hub reads it
        return False, f"offline mode (HF_HUB_OFFLINE={offline})"
    url = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/") + "/"
    result: dict = {}
    # A DNS lookup ignores socket timeouts and can hang for a minute, so the
    # whole probe runs in a thread that we stop waiting for.
    worker = threading.Thread(target=_probe, args=(url, timeout, result), daemon=True)
    worker.start()
    worker.join(timeout)
    return result.get("answer", (False, f"no answer within {timeout:g} s"))


def _line(name: str, status: str, detail: str, fix: str) -> Check:
    """A Check that keeps its fix only when something is wrong."""
    return Check(name, status, detail, "" if status == "OK" else fix)


def _check_package(name: str, version: str | None, error: str | None) -> Check:
    needed = name in REQUIRED
    if version is None:
        fix = f"In a terminal, run: pip install {name}"
        if name == "llama-cpp-python":
            fix += " (it compiles for about 10 minutes; that is normal)"
        kind = "needed" if needed else "optional"
        detail = f"not installed ({kind}: {REQUIRED.get(name) or OPTIONAL[name]})"
        return Check(name, "FAIL" if needed else "WARN", detail, fix)
    if error and name == "llama-cpp-python":
        return Check(name, "FAIL", f"{version} installed but will not load: {error}",
                     FIXES["broken"])
    return Check(name, "OK", version)


def _check_cpu(facts: dict) -> list[Check]:
    flags, model = facts.get("cpu_flags"), facts.get("cpu_model") or "unknown CPU"
    x86 = facts.get("machine", "").lower() in ("x86_64", "amd64", "i386", "i686")
    if x86 and flags is not None and "avx2" not in flags:
        cpu = Check("CPU", "WARN", f"{model}, no AVX2: models will run slowly",
                    FIXES["slow_cpu"])
    else:
        shown = ", ".join(f.upper() for f in flags or []) or "flags unknown"
        cpu = Check("CPU", "OK", f"{model} ({shown})")
    physical, logical = facts.get("cores_physical"), facts.get("cores_logical")
    status = "WARN" if (physical or logical or 0) < 2 else "OK"
    detail = f"{physical or '?'} physical, {logical or '?'} logical"
    return [cpu, _line("CPU cores", status, detail, FIXES["cores"])]


def _check_memory(facts: dict) -> list[Check]:
    total, available = facts.get("ram_total"), facts.get("ram_available")
    if total is None or available is None:
        ram = Check("RAM", "WARN", "unknown (psutil is missing)", FIXES["psutil"])
    else:
        detail = f"{total / GIB:.1f} GiB total, {available / GIB:.1f} GiB free"
        # 1 GiB free still runs the starter model; under 4 GiB only small ones.
        ram = (Check("RAM", "FAIL", detail, FIXES["ram_low"]) if available < GIB
               else Check("RAM", "WARN", detail, FIXES["ram_small"])
               if total < 8 * GIB or available < 4 * GIB
               else Check("RAM", "OK", detail))
    free, folder = facts.get("disk_free"), facts.get("models_dir", "?")
    if free is None:
        return [ram, Check("Disk", "WARN", f"cannot measure free space for {folder}",
                           "Set KIT_HOME to a folder you can write to.")]
    status = "FAIL" if free < GIB else "WARN" if free < 10 * GIB else "OK"
    detail = f"{free / GIB:.1f} GiB free for {folder}"
    return [ram, _line("Disk", status, detail, FIXES["disk"])]


def _check_gpu(facts: dict) -> Check:
    offload, gpus = facts.get("gpu_offload"), facts.get("gpus") or []
    if gpus:
        mib = gpus[0].get("memory_total_mib")
        name = gpus[0]["name"]  # nvidia-smi says "NVIDIA GeForce RTX 3060"
        name = name if "NVIDIA" in name.upper() else f"NVIDIA {name}"
        name += f" ({mib / 1024:.1f} GiB)" if mib else ""
        if offload:
            return Check("GPU", "OK", f"{name}, llama.cpp can use it")
        why = "not installed yet" if offload is None else "built for CPU only"
        return Check("GPU", "WARN", f"{name}, but llama-cpp-python is {why}",
                     FIXES["cuda"])
    if facts.get("metal") and offload is False:
        return Check("GPU", "WARN", "Apple Metal, but llama-cpp-python is built "
                     "for CPU only", FIXES["metal"])
    if facts.get("metal"):  # a plain pip install on Apple Silicon uses Metal
        return Check("GPU", "OK", "Apple Metal")
    return Check("GPU", "OK", "none found, CPU only (fine for small models)")


ENGINE_LINES = {"llama.cpp": "Engine llama.cpp", "ctransformers": "Engine ctrans.",
                "remote": "Engine remote"}


def engine_checks(facts: dict) -> list[Check]:
    """One line per installed engine: chat templates, GPU offload, streaming."""
    from kit.engines import engine_capabilities

    packages = facts.get("packages", {})
    caps = engine_capabilities(packages, facts.get("gpu_offload"))
    lines = []
    for engine, cap in caps.items():
        if engine != "remote" and not cap["version"]:
            continue  # its package line above already says how to install it
        version = f" {cap['version']}" if engine != "remote" else ""
        lines.append(Check(ENGINE_LINES[engine], "OK",
                           f"{engine}{version}: chat templates {cap['chat_template']}; "
                           f"GPU {cap['gpu_offload']}; streaming {cap['streaming']}"))
    return lines


def _check_starter(answer) -> Check | None:
    """The starter model line, from kit.store; None if kit.store can't tell."""
    if answer is None:
        try:
            from kit.store import starter_status
        except (ImportError, AttributeError):
            return None  # kit.store is not there yet, or too old to say
        try:
            answer = starter_status()
        except KitError as exc:  # its message already says what to do
            return Check("Starter model", "FAIL", str(exc), FIXES["starter"])
    ok, detail = answer
    return _line("Starter model", "OK" if ok else "WARN", detail, FIXES["starter"])


def run_checks(hub_timeout: float = 2.0, facts: dict | None = None) -> list[Check]:
    """Check this machine, one Check per line; pass facts to judge others.

    facts may carry "hub" and "starter" as (ok, reason) to skip live probes.
    """
    facts = machine_facts() if facts is None else facts
    packages, error = facts.get("packages", {}), facts.get("llama_cpp_error")
    version = facts["python"]
    too_old = tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) < (3, 11)
    checks = [_line("Python", "FAIL" if too_old else "OK", version, FIXES["python"])]
    checks += [_check_package(name, packages.get(name), error)
               for name in {**REQUIRED, **OPTIONAL}]
    checks += _check_cpu(facts) + _check_memory(facts) + [_check_gpu(facts)]
    checks += engine_checks(facts)
    ok, reason = facts.get("hub") or hub_reachable(hub_timeout)
    proxies = facts.get("proxies") or []
    reason += f" (proxies: {', '.join(proxies)})" if proxies else ""
    checks.append(_line("Hub reachable", "OK" if ok else "WARN", reason, FIXES["hub"]))
    starter = _check_starter(facts.get("starter"))
    return checks + ([starter] if starter else [])


def worst(checks: list[Check]) -> str:
    """The worst status: 'FAIL' beats 'WARN' beats 'OK' (OK when empty)."""
    return max((c.status for c in checks), key=STATUSES.index, default="OK")


def format_report(checks: list[Check]) -> str:
    """One line per check, then a summary like '7 OK, 1 WARN, 0 FAIL'."""
    counts = ", ".join(f"{sum(c.status == s for c in checks)} {s}" for s in STATUSES)
    return "\n".join([str(c) for c in checks] + [counts])
