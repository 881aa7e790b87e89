"""Tests for kit.machine and kit.doctor: real facts from this machine, verdicts from made-up ones."""
from __future__ import annotations

import http.server
import json
import platform
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from kit import doctor, machine
from kit.errors import BadParameter, KitError
from kit.doctor import Check, format_report, run_checks, worst
from kit.machine import hub_reachable

GIB = 1024**3


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """Kit state in a temp folder; no proxies or Hub settings from outside."""
    monkeypatch.setenv("KIT_HOME", str(tmp_path / "kit"))
    for name in ("HF_HUB_OFFLINE", "HF_ENDPOINT", *machine.PROXY_VARS):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def healthy(**changes) -> dict:
    """Facts of a comfortable laptop, with live probes answered in advance."""
    facts = {
        "python": "3.11.7", "os": "Linux-6.1", "platform": "linux",
        "machine": "x86_64", "cpu_model": "Intel Core i5",
        "cpu_flags": ["avx", "avx2", "fma", "f16c"],
        "cores_physical": 4, "cores_logical": 8,
        "ram_total": 16 * GIB, "ram_available": 10 * GIB,
        "models_dir": "/home/ada/kit/models", "disk_free": 100 * GIB,
        "gpus": [], "metal": False, "gpu_offload": False, "llama_cpp_error": None,
        "packages": {n: "1.0" for n in {**machine.REQUIRED, **machine.OPTIONAL}},
        "proxies": [], "hub": (True, "answered"), "starter": (True, "installed"),
    }
    facts.update(changes)
    return facts


def line(checks: list[Check], name: str) -> Check:
    (found,) = [c for c in checks if c.name == name]
    return found


# ---- Check, worst, format_report ----------------------------------------


def test_check_renders_one_aligned_line():
    assert str(Check("Python", "OK", "3.11.7")) == "[OK]   Python           3.11.7"
    warn = Check("RAM", "WARN", "6.0 GiB total", "close tabs")
    assert str(warn) == "[WARN] RAM              6.0 GiB total -> close tabs"
    assert "->" not in str(Check("GPU", "OK", "none", "ignored when OK"))


def test_check_refuses_unknown_status():
    with pytest.raises(BadParameter, match="status"):
        Check("Python", "MAYBE", "3.11.7")


def test_worst_and_summary():
    checks = [Check("a", "OK", ""), Check("b", "WARN", "", "x"), Check("c", "OK", "")]
    assert worst(checks) == "WARN"
    assert worst(checks + [Check("d", "FAIL", "", "y")]) == "FAIL"
    assert worst([]) == "OK"
    report = format_report(checks)
    assert report.splitlines()[-1] == "2 OK, 1 WARN, 0 FAIL"
    assert len(report.splitlines()) == 4


# ---- verdicts from made-up facts ----------------------------------------


def test_healthy_machine_is_all_ok():
    checks = run_checks(facts=healthy())
    assert worst(checks) == "OK", format_report(checks)
    assert all(c.fix == "" for c in checks)  # a fix only where something is wrong
    names = [c.name for c in checks]
    assert names[0] == "Python"
    assert {"CPU", "RAM", "Disk", "GPU", "Hub reachable", "Starter model"} <= set(names)


@pytest.mark.parametrize("version, status", [("3.10.12", "FAIL"), ("3.9.0", "FAIL"),
                                             ("3.11.0", "OK"), ("3.13.1", "OK")])
def test_python_version(version, status):
    check = line(run_checks(facts=healthy(python=version)), "Python")
    assert check.status == status
    assert ("3.11" in check.fix) == (status == "FAIL")


def test_ram_verdicts_in_gib():
    low = line(run_checks(facts=healthy(ram_available=GIB // 2)), "RAM")
    assert low.status == "FAIL" and "0.5 GiB free" in low.detail and low.fix
    tight = line(run_checks(facts=healthy(ram_available=3 * GIB)), "RAM")
    assert tight.status == "WARN" and "3.0 GiB free" in tight.detail
    small = line(run_checks(facts=healthy(ram_total=6 * GIB, ram_available=5 * GIB)),
                 "RAM")
    assert small.status == "WARN" and "6.0 GiB total" in small.detail
    unknown = line(run_checks(facts=healthy(ram_total=None, ram_available=None)), "RAM")
    assert unknown.status == "WARN" and "pip install psutil" in unknown.fix


@pytest.mark.parametrize("free, status", [(GIB // 2, "FAIL"), (5 * GIB, "WARN"),
                                          (50 * GIB, "OK"), (None, "WARN")])
def test_disk_verdicts_name_the_folder(free, status):
    check = line(run_checks(facts=healthy(disk_free=free)), "Disk")
    assert check.status == status
    assert "/home/ada/kit/models" in check.detail
    assert bool(check.fix) == (status != "OK")


def test_missing_packages():
    packages = healthy()["packages"] | {"llama-cpp-python": None, "voila": None}
    checks = run_checks(facts=healthy(packages=packages))
    engine = line(checks, "llama-cpp-python")
    assert engine.status == "FAIL" and "pip install llama-cpp-python" in engine.fix
    assert line(checks, "voila").status == "WARN"
    assert "pip install voila" in line(checks, "voila").fix
    assert line(checks, "gguf").status == "OK"


def test_installed_engine_that_will_not_load_fails():
    facts = healthy(llama_cpp_error="OSError: libcuda.so.1: cannot open")
    engine = line(run_checks(facts=facts), "llama-cpp-python")
    assert engine.status == "FAIL" and "libcuda" in engine.detail
    assert "--force-reinstall" in engine.fix


@pytest.mark.parametrize("machine, flags, status", [
    ("x86_64", ["avx", "fma"], "WARN"), ("AMD64", [], "WARN"),
    ("x86_64", ["avx", "avx2"], "OK"), ("x86_64", None, "OK"),  # unknown: no alarm
    ("arm64", ["neon"], "OK"), ("aarch64", ["asimd"], "OK")])
def test_cpu_without_avx2_warns_only_on_x86(machine, flags, status):
    check = line(run_checks(facts=healthy(machine=machine, cpu_flags=flags)), "CPU")
    assert check.status == status
    assert ("slowly" in check.detail) == (status == "WARN")


def test_single_core_warns():
    facts = healthy(cores_physical=1, cores_logical=1)
    assert line(run_checks(facts=facts), "CPU cores").status == "WARN"


def test_nvidia_without_offload_says_how_to_build_for_cuda():
    gpu = {"name": "NVIDIA GeForce RTX 3060", "memory_total_mib": 12288,
           "memory_free_mib": 11000, "driver": "535.104"}
    for offload in (False, None):
        check = line(run_checks(facts=healthy(gpus=[gpu], gpu_offload=offload)), "GPU")
        assert check.status == "WARN" and "RTX 3060 (12.0 GiB)" in check.detail
        assert check.detail.count("NVIDIA") == 1
        assert "CUDA" in check.fix and '-DGGML_CUDA=on' in check.fix
        assert "--force-reinstall --no-cache-dir llama-cpp-python" in check.fix
    ready = line(run_checks(facts=healthy(gpus=[gpu], gpu_offload=True)), "GPU")
    assert ready.status == "OK" and ready.fix == ""


def test_apple_metal():
    off = line(run_checks(facts=healthy(metal=True, gpu_offload=False)), "GPU")
    assert off.status == "WARN" and "-DGGML_METAL=on" in off.fix
    for offload in (True, None):  # a plain pip install on a Mac already uses Metal
        on = line(run_checks(facts=healthy(metal=True, gpu_offload=offload)), "GPU")
        assert on.status == "OK"


@pytest.mark.parametrize("offload", [None, False, True])
def test_no_gpu_is_never_a_failure(offload):
    check = line(run_checks(facts=healthy(gpus=[], gpu_offload=offload)), "GPU")
    assert check.status in ("OK", "WARN")
    assert "CPU only" in check.detail


def test_hub_unreachable_is_a_warning_that_reassures():
    facts = healthy(hub=(False, "no answer within 2 s"),
                    proxies=["HTTPS_PROXY=proxy.example:3128"])
    checks = run_checks(facts=facts)
    hub = line(checks, "Hub reachable")
    assert hub.status == "WARN" and "Offline is fine for the starter model" in hub.fix
    assert "HTTPS_PROXY=proxy.example:3128" in hub.detail
    assert worst(checks) == "WARN"


def test_starter_line_comes_from_the_starter_module(monkeypatch):
    monkeypatch.setattr(doctor, "starter_status", lambda: (False, "not installed yet"))
    starter = line(run_checks(facts=healthy(starter=None)), "Starter model")
    assert starter.status == "WARN" and "kit setup" in starter.fix

    def broken():
        raise KitError("registry damaged: run `kit setup --force`")

    monkeypatch.setattr(doctor, "starter_status", broken)
    failed = line(run_checks(facts=healthy(starter=None)), "Starter model")
    assert failed.status == "FAIL" and "registry damaged" in failed.detail


# ---- real facts from this machine ---------------------------------------


def test_machine_facts_on_this_machine(tmp_path):
    psutil = pytest.importorskip("psutil")
    facts = machine.machine_facts()
    assert json.loads(json.dumps(facts)) == facts  # plain data, nothing else
    assert facts["python"] == platform.python_version()
    assert facts["cores_logical"] >= 1
    assert facts["cores_physical"] is None or 1 <= facts["cores_physical"]
    assert (facts["cores_physical"] or 1) <= facts["cores_logical"]
    assert facts["ram_total"] > facts["ram_available"] > 0
    assert facts["disk_free"] > 0  # measured at tmp_path: kit/models does not exist yet
    assert facts["models_dir"] == str(tmp_path / "kit" / "models")
    assert facts["packages"]["psutil"] == psutil.__version__
    assert set(facts["cpu_flags"] or []) <= set(machine.FLAGS_OF_INTEREST)
    # gpu_offload is None exactly when llama_cpp cannot be imported.
    assert (facts["gpu_offload"] is None) == (facts["llama_cpp_error"] is not None)


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="Linux only")
def test_cpu_flags_from_proc_agree_with_py_cpuinfo(monkeypatch):
    cpuinfo = pytest.importorskip("cpuinfo")
    model, flags = machine.cpu_model_and_flags()  # read from /proc/cpuinfo
    reference = cpuinfo.get_cpu_info()
    assert flags == [f for f in machine.FLAGS_OF_INTEREST if f in reference["flags"]]
    assert model == reference["brand_raw"]
    # Where there is no /proc (macOS, Windows) py-cpuinfo gives the same answer.
    monkeypatch.setattr(machine, "PROC_CPUINFO", Path("/no/such/cpuinfo"))
    assert machine.cpu_model_and_flags() == (model, flags)
    # And with neither, the model name still comes from somewhere.
    monkeypatch.setitem(sys.modules, "cpuinfo", None)  # makes `import cpuinfo` fail
    assert machine.cpu_model_and_flags()[1] is None


def test_nvidia_smi_output_is_parsed(monkeypatch):
    # The first line is what a real H100 machine printed.
    out = ("NVIDIA H100 80GB HBM3, 81559, 81079, 580.159.04\n"
           "NVIDIA RTX A2000, Laptop GPU, 4096, [N/A], 535.104.05\n")

    def fake_run(cmd, **kwargs):
        assert cmd[0] == "nvidia-smi" and kwargs["timeout"] <= 10
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")

    monkeypatch.setattr(machine.subprocess, "run", fake_run)
    first, second = machine.nvidia_gpus()
    assert first == {"name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559,
                     "memory_free_mib": 81079, "driver": "580.159.04"}
    assert second["name"] == "NVIDIA RTX A2000, Laptop GPU"
    assert second["memory_free_mib"] is None


@pytest.mark.parametrize("error", [FileNotFoundError("nvidia-smi"),
                                   subprocess.TimeoutExpired("nvidia-smi", 5),
                                   subprocess.CalledProcessError(9, "nvidia-smi")])
def test_no_nvidia_smi_means_no_gpus(monkeypatch, error):
    def fake_run(cmd, **kwargs):
        raise error

    monkeypatch.setattr(machine.subprocess, "run", fake_run)
    assert machine.nvidia_gpus() == []


def test_importing_does_nothing_heavy():
    code = ("import sys, kit.doctor; "
            "heavy = {'llama_cpp', 'psutil', 'cpuinfo', 'huggingface_hub'}; "
            "print(sorted(heavy & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"


# ---- proxies and the Hub probe ------------------------------------------


@pytest.mark.parametrize("value, shown", [
    ("http://user:secret@proxy.example:3128", "proxy.example:3128"),
    ("http://proxy.example:3128/", "proxy.example:3128"),
    ("user:secret@proxy.example:3128", "proxy.example:3128"),  # no scheme
    ("http://us/er:se@cr/et@proxy.example:8080/x", "proxy.example:8080"),
])
def test_proxy_settings_show_hosts_only(monkeypatch, value, shown):
    monkeypatch.setenv("https_proxy", value)
    monkeypatch.setenv("NO_PROXY", "localhost,.library.example")
    assert machine.proxy_settings() == ["NO_PROXY=localhost,.library.example",
                                         f"https_proxy={shown}"]


def test_proxy_password_never_reaches_the_report(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.example:3128")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network in this test
    facts = machine.machine_facts()
    report = format_report(run_checks(facts=facts))
    assert "proxy.example:3128" in report
    assert "secret" not in report and "secret" not in json.dumps(facts)


def test_offline_mode_does_not_touch_the_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(machine, "_probe", None)  # any attempt to probe would fail
    start = time.monotonic()
    assert hub_reachable(timeout=5) == (False, "offline mode (HF_HUB_OFFLINE=1)")
    assert time.monotonic() - start < 0.5


def test_silent_server_never_hangs(monkeypatch):
    """A server that accepts but never answers: give up within the timeout."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        ok, reason = hub_reachable(timeout=0.5)
        elapsed = time.monotonic() - start
    assert not ok and "no answer within 0.5 s" in reason
    assert elapsed < 0.5 + 1


def test_refused_connection_is_reported(monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # free now that it is closed below
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    ok, reason = hub_reachable(timeout=2)
    assert not ok and "refused" in reason.lower()


@pytest.fixture
def answering_server():
    """A loopback HTTP server; set .code to choose its answer."""

    class Handler(http.server.BaseHTTPRequestHandler):
        code = 200

        def do_HEAD(self):
            self.send_response(Handler.code)
            self.end_headers()

        def log_message(self, *args):  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server, Handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("code, ok", [(200, True), (404, True), (407, False),
                                      (503, False)])
def test_answering_server(monkeypatch, answering_server, code, ok):
    server, handler = answering_server
    handler.code = code
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url + "/")
    reachable, reason = hub_reachable(timeout=2)
    assert reachable is ok
    assert ok or str(code) in reason
    assert (code == 407) == ("password" in reason)


def test_one_line_per_engine_with_its_capabilities():
    checks = run_checks(facts=healthy(gpu_offload=False))
    llama, ct, remote = (line(checks, n) for n in doctor.ENGINE_LINES.values())
    assert "chat templates yes" in llama.detail and "CPU only" in llama.detail
    assert "ctransformers 1.0" in ct.detail and "ctransformers[cuda]" in ct.detail
    assert "the server applies it" in remote.detail
    assert all("streaming yes" in c.detail for c in (llama, ct, remote))
    packages = healthy()["packages"] | {"ctransformers": None}
    names = [c.name for c in run_checks(facts=healthy(packages=packages))]
    assert doctor.ENGINE_LINES["ctransformers"] not in names  # its package line says
