"""`kit dashboard NAME [--port N]`: a Voila dashboard on this computer only.

>>> proc, url = start("chat")           # Voila on 127.0.0.1, a free port
>>> url                                  # 'http://127.0.0.1:8866/'
>>> proc.terminate()
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from kit.errors import (DashboardMissing, DashboardPortBusy, EngineMissing, NoFreePort,
                        UnknownDashboard, VoilaStopped, VoilaTimedOut)
from kit.util import notebooks_dir, port_free, start_and_wait, stop_process

DASHBOARDS = {"chat": "chat with a model, streaming, with Stop and export",
              "arena": "one prompt, models side by side, blind vote",
              "benchmarks": "speed and quality plots",
              "fit": "will a catalog model fit this computer, and why",
              "documents": "index a folder, ask, see the answer with its sources",
              "tokens": "the next-token choices, sampler sliders, pick or draw each token"}
DEFAULT_PORT = 8866  # Voila's own default


def dashboard_path(name: str) -> Path:
    if name not in DASHBOARDS:
        raise UnknownDashboard(name=name, choices=", ".join(DASHBOARDS))
    folder = notebooks_dir()  # a checkout, or installed with the package
    path = (folder / "dashboards" / f"{name}.ipynb") if folder else \
        Path("notebooks", "dashboards", f"{name}.ipynb")
    if not path.is_file():
        raise DashboardMissing(path=path)
    return path


def free_port(start: int = DEFAULT_PORT, tries: int = 50) -> int:
    """The first free port from start on (Voila's 8866 if it is free)."""
    for port in range(start, start + tries):
        if port_free(port):
            return port
    raise NoFreePort(first=start, last=start + tries - 1)


CULL_AFTER_S = 300  # a page closed this long ago gives its kernel (and model) back


def voila_command(path: Path, port: int, cull_after: int = CULL_AFTER_S) -> list[str]:
    """Voila on loopback. Each page load starts a kernel that loads a model
    (about 250 MB): kernels no page is connected to are shut down once idle
    for cull_after seconds, checked every cull_after / 5 seconds."""
    return [sys.executable, "-m", "voila", str(path), f"--port={port}",
            "--no-browser", "--Voila.ip=127.0.0.1",
            f"--MappingKernelManager.cull_idle_timeout={cull_after}",
            f"--MappingKernelManager.cull_interval={max(1, cull_after // 5)}",
            "--MappingKernelManager.cull_connected=False"]


def start(name: str, port: int | None = None, timeout: float = 60, log=None,
          cull_after: int = CULL_AFTER_S):
    """Start Voila on 127.0.0.1 for one dashboard; (process, URL) once it answers."""
    import importlib.util

    path = dashboard_path(name)
    if importlib.util.find_spec("voila") is None:
        raise EngineMissing("voila", "it serves the dashboards")
    if port is None:
        port = free_port()
    elif not port_free(port):
        raise DashboardPortBusy(port=port)
    url = f"http://127.0.0.1:{port}/"
    # The root page renders the notebook; the static path answers at once.
    proc, state = start_and_wait(voila_command(path, port, cull_after),
                                 url + "voila/static/",
                                 timeout, stdout=log, cwd=path.parent,
                                 stderr=subprocess.STDOUT if log else None)
    if state == "exited":
        raise VoilaStopped(code=proc.returncode)
    if state == "timeout":
        raise VoilaTimedOut(url=url, timeout=timeout)
    return proc, url


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def cmd_dashboard(a) -> int:
    # Stopped by Ctrl-C, `kill` (SIGTERM) or a closed terminal (SIGHUP): Voila
    # and its kernels stop too, instead of holding the port and the models.
    hangup = getattr(signal, "SIGHUP", None)  # not on Windows
    before = {sig: signal.signal(sig, _interrupt)
              for sig in (signal.SIGTERM, hangup) if sig is not None}
    proc = None
    try:
        proc, url = start(a.name, a.port)
        print(f"Dashboard {a.name!r} ({DASHBOARDS[a.name]}) at {url}", flush=True)
        print("Open it in a browser on this computer. Press Ctrl-C to stop.",
              flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc is not None:
            stop_process(proc)
        for sig, handler in before.items():
            signal.signal(sig, handler)


def register(subparsers) -> None:
    p = subparsers.add_parser("dashboard", help="open a Voila dashboard "
                              "(" + ", ".join(DASHBOARDS) + ")")
    p.add_argument("name", choices=list(DASHBOARDS), metavar="NAME",
                   help="; ".join(f"{k}: {v}" for k, v in DASHBOARDS.items()))
    p.add_argument("--port", type=int, help=f"port (default: {DEFAULT_PORT} or "
                   "the next free one)")
    p.set_defaults(func=cmd_dashboard)
