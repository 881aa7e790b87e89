"""`kit dashboard NAME [--port N]`: a Voila dashboard on this computer only.

>>> proc, url = start("chat")           # Voila on 127.0.0.1, a free port
>>> url                                  # 'http://127.0.0.1:8866/'
>>> proc.terminate()
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kit.errors import (DashboardMissing, DashboardPortBusy, EngineMissing, NoFreePort,
                        UnknownDashboard, VoilaStopped, VoilaTimedOut)
from kit.util import port_free, start_and_wait, stop_process

DASHBOARDS = {"chat": "chat with a model, streaming, with Stop and export",
              "arena": "one prompt, models side by side, blind vote",
              "benchmarks": "speed and quality plots",
              "fit": "will a catalog model fit this computer, and why",
              "documents": "index a folder, ask, see the answer with its sources"}
DEFAULT_PORT = 8866  # Voila's own default


def dashboard_path(name: str) -> Path:
    if name not in DASHBOARDS:
        raise UnknownDashboard(name=name, choices=", ".join(DASHBOARDS))
    path = Path(__file__).resolve().parents[2] / "notebooks" / "dashboards" / f"{name}.ipynb"
    if not path.is_file():
        raise DashboardMissing(path=path)
    return path


def free_port(start: int = DEFAULT_PORT, tries: int = 50) -> int:
    """The first free port from start on (Voila's 8866 if it is free)."""
    for port in range(start, start + tries):
        if port_free(port):
            return port
    raise NoFreePort(first=start, last=start + tries - 1)


def voila_command(path: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "voila", str(path), f"--port={port}",
            "--no-browser", "--Voila.ip=127.0.0.1"]


def start(name: str, port: int | None = None, timeout: float = 60, log=None):
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
    proc, state = start_and_wait(voila_command(path, port), url + "voila/static/",
                                 timeout, stdout=log, cwd=path.parent,
                                 stderr=subprocess.STDOUT if log else None)
    if state == "exited":
        raise VoilaStopped(code=proc.returncode)
    if state == "timeout":
        raise VoilaTimedOut(url=url, timeout=timeout)
    return proc, url


def cmd_dashboard(a) -> int:
    proc, url = start(a.name, a.port)
    print(f"Dashboard {a.name!r} ({DASHBOARDS[a.name]}) at {url}", flush=True)
    print("Open it in a browser on this computer. Press Ctrl-C to stop.", flush=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop_process(proc)
        return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("dashboard", help="open a Voila dashboard "
                              "(" + ", ".join(DASHBOARDS) + ")")
    p.add_argument("name", choices=list(DASHBOARDS), metavar="NAME",
                   help="; ".join(f"{k}: {v}" for k, v in DASHBOARDS.items()))
    p.add_argument("--port", type=int, help=f"port (default: {DEFAULT_PORT} or "
                   "the next free one)")
    p.set_defaults(func=cmd_dashboard)
