"""Which processors a pack's llama-cpp-python wheel runs on (offline packs;
docs/classroom.md).

llama.cpp compiled on the instructor's computer uses every instruction that
processor has (GGML_NATIVE): on an older laptop it dies with "illegal
instruction". We look inside the wheel: several `libggml-cpu-*.so` files mean
a portable build (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS) that picks the best
at start; one library is read with `objdump` for AVX-512 (zmm registers) and
AVX2/FMA (ymm registers, vfmadd) instructions.

>>> needs = wheel_cpu_needs("llama_cpp_python-0.3.36-cp311-linux_x86_64.whl")
>>> refusal(needs, ["avx", "avx2", "fma", "f16c"])   # None: it runs here
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

LEVELS = {  # what each level needs, and the processors that have it
    "avx512": (["avx512f", "avx2", "fma"], "x86-64 processors with AVX-512 "
               "(Intel Xeon Skylake-SP and later, Intel Core 11th gen Tiger Lake, "
               "AMD Zen 4 and later); NOT most Intel laptop chips since 12th gen"),
    "avx2": (["avx2", "fma"], "x86-64 processors with AVX2 and FMA (Intel since "
             "Haswell, 2013; AMD since Zen, 2017)"),
    "baseline": ([], "any x86-64 processor"),
    "variants": ([], "any x86-64 processor: llama.cpp picks the fastest of its "
                 "variants when it starts"),
}


def _instructions(lib: Path) -> str | None:
    """The level one shared library needs, from its disassembly (None: unknown)."""
    if not shutil.which("objdump"):
        return None
    try:
        text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)],
                              capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    if "%zmm" in text:
        return "avx512"
    if "%ymm" in text and re.search(r"\bvfmadd\w*", text):
        return "avx2"
    return "baseline"


def wheel_cpu_needs(wheel) -> dict:
    """{"level", "runs_on", "needs" (cpu flags), "how"} for a llama-cpp-python wheel."""
    wheel = Path(wheel)
    with zipfile.ZipFile(wheel) as z:
        libs = [n for n in z.namelist() if re.search(r"libggml-cpu[^/]*\.so", n)]
        variants = sorted({re.sub(r"\.so.*", "", Path(n).name) for n in libs
                           if re.search(r"libggml-cpu-[\w-]+\.so", Path(n).name)})
        level, how = None, "not known (no CPU library of llama.cpp in the wheel)"
        if len(variants) > 1:
            level, how = "variants", f"{len(variants)} CPU variants: {', '.join(variants)}"
        elif libs and not wheel.name.endswith(("macosx_11_0_arm64.whl",)):
            with tempfile.TemporaryDirectory(prefix="kit-wheel-") as tmp:
                lib = Path(z.extract(sorted(libs, key=len)[0], tmp))
                level = _instructions(lib)
            how = ("read from its CPU library's instructions" if level else
                   "not known (objdump is missing: apt install binutils)")
    needs, runs_on = LEVELS.get(level, ([], "not known"))
    return {"level": level, "needs": list(needs), "runs_on": runs_on, "how": how}


def refusal(needs: dict | None, flags) -> str | None:
    """Why this processor (its flags) cannot run the wheel, or None."""
    if not needs or not needs.get("needs") or flags is None:
        return None
    missing = [f for f in needs["needs"] if f not in set(flags)]
    if not missing:
        return None
    return (f"The pack's llama-cpp-python wheel was compiled for {needs['runs_on']}; "
            f"this computer's processor lacks {', '.join(f.upper() for f in missing)}, "
            "so it would stop with 'illegal instruction'. Ask the instructor for a "
            "portable wheel (docs/classroom.md: GGML_NATIVE=OFF, "
            "GGML_BACKEND_DL=ON, GGML_CPU_ALL_VARIANTS=ON), or install without "
            "--install-wheels and compile llama-cpp-python here (about 11 minutes).")
