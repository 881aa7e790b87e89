"""Is this computer ready? The machine check behind `kit doctor` and notebook 00.

>>> print(format_report(run_checks()))   # '[OK]   Python   3.11.7' ... '15 OK, ...'
"""
from __future__ import annotations

from dataclasses import dataclass

from kit.errors import BadParameter, KitError
from kit.engines import engine_capabilities
from kit.machine import GIB, OPTIONAL, REQUIRED, hub_reachable, machine_facts
from kit.models.starter import starter_status
from kit.models.registry import check_registry

STATUSES = ("OK", "WARN", "FAIL")
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


def _check_starter(answer) -> Check:
    """The starter model line, from kit.models.starter (or a given answer)."""
    if answer is None:
        try:
            answer = starter_status()
        except KitError as exc:  # its message already says what to do
            return Check("Starter model", "FAIL", str(exc), FIXES["starter"])
    ok, detail = answer
    return _line("Starter model", "OK" if ok else "WARN", detail, FIXES["starter"])


def _check_registry() -> Check:
    """The model list (models.json): readable, or damaged with the way out."""

    try:
        n = check_registry()
    except KitError as exc:  # RegistryDamaged: its message says what to do
        return Check("Model list", "FAIL", str(exc))
    return Check("Model list", "OK", f"{n} model{'s' * (n != 1)} registered")


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
    return checks + [_check_registry(), _check_starter(facts.get("starter"))]


def worst(checks: list[Check]) -> str:
    """The worst status: 'FAIL' beats 'WARN' beats 'OK' (OK when empty)."""
    return max((c.status for c in checks), key=STATUSES.index, default="OK")


def format_report(checks: list[Check]) -> str:
    """One line per check, then a summary like '7 OK, 1 WARN, 0 FAIL'."""
    counts = ", ".join(f"{sum(c.status == s for c in checks)} {s}" for s in STATUSES)
    return "\n".join([str(c) for c in checks] + [counts])
