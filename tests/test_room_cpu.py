"""Which processors a pack's llama-cpp-python wheel runs on (kit.room.cpu),
and kit pack install refusing one this processor cannot run."""
import zipfile
from pathlib import Path

import llama_cpp
import pytest

from kit.errors import PackError
from kit.room import install
from kit.room.cpu import refusal, wheel_cpu_needs

LIB = Path(llama_cpp.__file__).parent / "lib" / "libggml-cpu.so"


def fake_wheel(tmp_path, files):
    wheel = tmp_path / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return wheel


@pytest.mark.skipif(not LIB.exists(), reason="llama-cpp-python without libggml-cpu.so")
def test_the_installed_build_is_read_from_its_instructions(tmp_path):
    """This machine's own build: AVX-512 exactly when llama.cpp says it was built so."""
    needs = wheel_cpu_needs(fake_wheel(tmp_path, {
        "llama_cpp/lib/libggml-cpu.so": LIB.read_bytes()}))
    built = llama_cpp.llama_print_system_info().decode()
    assert needs["level"] == ("avx512" if "AVX512 = 1" in built else
                              "avx2" if "AVX2 = 1" in built else "baseline")
    assert needs["how"].startswith("read from")


def test_a_portable_build_runs_anywhere(tmp_path):
    needs = wheel_cpu_needs(fake_wheel(tmp_path, {
        f"llama_cpp/lib/libggml-cpu-{v}.so": b"\x7fELF" for v in
        ("x64", "sse42", "haswell", "skylakex", "zen4")}))
    assert needs["level"] == "variants" and needs["needs"] == []
    assert "any x86-64" in needs["runs_on"] and "5 CPU variants" in needs["how"]
    assert refusal(needs, []) is None


def test_refusal_names_what_is_missing():
    avx512 = {"needs": ["avx512f", "avx2", "fma"], "runs_on": "AVX-512 chips"}
    assert refusal(avx512, ["avx", "avx2", "avx512f", "fma"]) is None
    why = refusal(avx512, ["avx", "avx2", "fma", "f16c"])
    assert "AVX512F" in why and "illegal instruction" in why and "GGML_NATIVE=OFF" in why
    assert refusal(avx512, None) is None  # unknown flags: do not guess


def test_pack_install_refuses_before_pip(monkeypatch, tmp_path):
    monkeypatch.setattr("kit.machine.cpu_model_and_flags",
                        lambda: ("An old laptop", ["avx", "avx2", "fma"]))
    manifest = {"wheels": {"files": [], "install": ["kit"], "platform": "linux",
                           "python": "3.11", "llama_cpu": {
                               "needs": ["avx512f"], "runs_on": "AVX-512 chips"}}}
    src = install._Source(str(tmp_path))
    with pytest.raises(PackError, match="AVX512F"):
        install._install_wheels(src, manifest, quiet=True)
