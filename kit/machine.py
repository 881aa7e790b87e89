"""Probes of this machine: CPU, memory, GPUs, disk, packages, proxies, the Hub.

A leaf: it imports nothing from the kit but errors and settings. The doctor
(kit/doctor.py, notebook 00) turns these facts into a report; kit/fit.py
turns them into "will this model fit?".

>>> machine_facts()["ram_total"]      # bytes, or None without psutil
"""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

from kit.settings import get_settings
from kit.util import free_disk_bytes, hf_endpoint, hf_offline

GIB = 1024**3
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


def cpu_model_and_flags() -> tuple[str, list[str] | None]:
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



def _llama_offload() -> tuple[bool | None, str | None]:
    """(GPU offload supported?, import error); (None, why) if not importable."""
    from kit.settings import apply_openmp_defaults

    apply_openmp_defaults()  # the first import of llama.cpp in a notebook may be here
    try:
        import llama_cpp
    except Exception as exc:  # ImportError, or OSError from a broken build
        return None, f"{type(exc).__name__}: {exc}"
    probe = getattr(llama_cpp, "llama_supports_gpu_offload", None)
    return (bool(probe()) if probe else False), None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict:
    """What this machine has, as plain data (json.dumps works on it)."""
    model, flags = cpu_model_and_flags()
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
        "models_dir": str(models_dir), "disk_free": free_disk_bytes(models_dir),
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
    if hf_offline():  # as huggingface_hub reads it
        var = "HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE") else "TRANSFORMERS_OFFLINE"
        return False, f"offline mode ({var}={os.environ[var].strip()})"
    url = hf_endpoint() + "/"
    result: dict = {}
    # A DNS lookup ignores socket timeouts and can hang for a minute, so the
    # whole probe runs in a thread that we stop waiting for.
    worker = threading.Thread(target=_probe, args=(url, timeout, result), daemon=True)
    worker.start()
    worker.join(timeout)
    return result.get("answer", (False, f"no answer within {timeout:g} s"))
