"""A JupyterHub for a room on one machine, with one shared kit server (docs/classroom.md, C).

Each learner logs in with their name and the room's password, gets their own
JupyterLab (a local process as their own system user, kit-NAME, when the hub
runs as root: kit/room/hub_users.py) with the notebooks in their home folder, and their kernels reach ONE `kit serve` through
the remote engine: KIT_REMOTE_URL and a key of their own (KIT_REMOTE_API_KEY,
a room key of kit.server.keys, so /kit/status counts each learner's use).
JupyterHub comes from PyPI (`pip install 'local-llm-workshop-kit[hub]'`), its
proxy (configurable-http-proxy) from npm, installed into a cache folder.

>>> room = start_room(["ana", "ben"])   # http://127.0.0.1:8001, loopback only
>>> room.hub_url, room.password_file    # the password is never printed
>>> room.stop()                          # the hub, the proxy, every server, kit serve
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kit.errors import HubMissing, HubNotRunning, HubStartFailed, HubUnsafe
from kit.room.hub_config import (DEFAULT_PORT, MARKER, check_learners, install_proxy,
                                 new_marker, read_secrets, write_config)
from kit.room.hub_users import (can_make_accounts, closed_to_learners, kit_paths,
                                make_accounts)
from kit.util import free_port, stop_process, wait_until_ready


def hub_version(hub_url: str, timeout: float = 2.0) -> str | None:
    """JupyterHub's version once the hub answers through its proxy, else None."""
    import urllib.request

    try:
        with urllib.request.urlopen(hub_url + "/hub/api/", timeout=timeout) as r:
            return json.loads(r.read()).get("version")
    except (OSError, ValueError):
        return None


def room_processes(marker: str) -> list:
    """Every process whose environment carries this room's marker."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER) == marker:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def sweep(marker: str, timeout: float = 10.0) -> int:
    """Stop what a room left running (SIGTERM, then SIGKILL); how many."""
    import psutil

    procs = [p for p in room_processes(marker) if p.pid != os.getpid()]
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return len(procs)


@dataclass
class Room:
    """A room's hub and kit server as its folder's room.json records them."""

    room: Path
    hub_url: str
    kit_url: str
    learners: list[str]
    marker: str  # every process of the hub carries it (MARKER)
    hub_pid: int
    server_pid: int
    accounts: bool = False  # each learner runs as their own system user

    @property
    def password_file(self) -> Path:
        return self.room / "secrets.json"

    @property
    def hub_log(self) -> Path:
        return self.room / "hub.log"

    def secrets(self) -> dict:
        """The room's password, the kit server's key, each learner's key."""
        return read_secrets(self.room)

    def save(self) -> None:
        fields = {k: v for k, v in vars(self).items() if k in Room.__dataclass_fields__}
        fd = os.open(self.room / "room.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({**fields, "room": str(self.room)}, f)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop it from another process: the hub, what is left, the kit server."""
        import psutil

        for pid in filter(None, (self.hub_pid, self.server_pid)):  # 0: no kit server
            try:
                proc = psutil.Process(pid)
                proc.terminate()
                proc.wait(timeout)
            except psutil.TimeoutExpired:
                proc.kill()
            except psutil.Error:
                pass
            sweep(self.marker)
        (self.room / "room.json").unlink(missing_ok=True)


def open_room(room: Path | None = None) -> Room:
    """The room running from this folder (default KIT_HOME/hub)."""
    import psutil

    from kit.settings import get_settings

    room = Path(room or get_settings().home / "hub").resolve()
    try:
        data = json.loads((room / "room.json").read_text())
    except (OSError, ValueError):
        raise HubNotRunning(folder=str(room)) from None
    data["room"] = Path(data["room"])
    found = Room(**data)
    if not psutil.pid_exists(found.hub_pid):
        raise HubNotRunning(folder=str(room))
    return found


@dataclass
class RunningRoom(Room):
    """A room started by this process: hub, proxy, learners' servers, kit server."""

    hub: subprocess.Popen = None
    server: object = None  # kit.server.launch.RunningServer

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the hub (it stops learners' servers and its proxy), then
        whatever is left of the room, then the kit server; safe to call twice."""
        if self.hub.poll() is None:
            self.hub.send_signal(signal.SIGTERM)  # JupyterHub's clean shutdown
            try:
                self.hub.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        stop_process(self.hub, 5)
        sweep(self.marker)
        if self.server is not None:
            self.server.stop()
        (self.room / "room.json").unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_room(learners, *, model: str = "smollm2:135m", room: Path | None = None,
               host: str = "127.0.0.1", port: int = DEFAULT_PORT, n_threads: int | None = None,
               max_queue: int = 40, parallel: int | None = None, timeout: float = 120.0,
               server_url: str | None = None, server_key: str | None = None,
               shared_user: bool = False, quiet: bool = False) -> RunningRoom:
    """Start one `kit serve` and a JupyterHub whose learners use it; return once both answer.

    server_url: learners use this OpenAI-compatible server instead (llama.cpp's
    or vLLM on a GPU machine, docs/classroom.md B), all with server_key.
    shared_user: where no system user per learner can be made (the hub is not
    root), run several learners as this one user anyway, knowing each can
    read the others' keys and the room's secrets; refused otherwise.
    """
    import importlib.util

    from kit.settings import get_settings

    if importlib.util.find_spec("jupyterhub") is None:
        raise HubMissing()
    learners = check_learners(learners)
    why = can_make_accounts()
    if why and len(learners) > 1 and not shared_user:
        raise HubUnsafe(learners=len(learners), reason=why)
    closed = None if why else closed_to_learners(kit_paths())
    if closed:
        raise HubStartFailed(what="A room with a system user per learner", detail=(
            f"those users cannot run this Python: {closed} is closed to other users."
            " Install the kit in a Python every user can run (for example "
            "python3 -m venv /opt/kit), or let them through: chmod o+x " + str(closed)))
    room = Path(room or get_settings().home / "hub").resolve()
    room.mkdir(parents=True, exist_ok=True)
    os.chmod(room, 0o700)
    accounts = None if why else make_accounts(room, learners)  # /home/kit-NAME
    proxy = install_proxy(quiet=quiet)
    port = port or free_port(host)
    hub_url, kit_port, marker = f"http://{host}:{port}", free_port(), new_marker(room)
    kit_url = server_url.rstrip("/") if server_url else f"http://127.0.0.1:{kit_port}"
    config = write_config(room, learners, kit_url, host=host, port=port, proxy=proxy,
                          marker=marker, models=[model], accounts=accounts,
                          shared_key=(server_key or "") if server_url else None)
    server = None if server_url else _start_server(room, model, kit_port, n_threads=n_threads,
                                                   max_queue=max_queue, parallel=parallel,
                                                   timeout=timeout)
    try:
        fd = os.open(room / "hub.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:  # umask 077: what the hub writes is private
            hub = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=room,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, MARKER: marker}, start_new_session=True, umask=0o077)
    except BaseException:
        if server:
            server.stop()
        raise
    out = RunningRoom(room, hub_url, kit_url, learners, marker, hub.pid,
                      server.proc.pid if server else 0, bool(accounts), hub=hub,
                      server=server)
    state = wait_until_ready(hub, lambda: hub_version(hub_url) is not None, timeout)
    if state != "ready":
        out.stop()
        tail = out.hub_log.read_text(errors="replace").strip().splitlines()[-3:]
        raise HubStartFailed(what="JupyterHub", detail=" | ".join(tail) or state)
    out.save()
    if not quiet:
        print(f"JupyterHub for {len(learners)} learners on {hub_url} (their model "
              f"server: {kit_url}); the room's password is in "
              f"{out.password_file} (not printed here). " + (
                  "Each learner runs as their own system user (kit-NAME)."
                  if accounts else f"All learners run as one user ({why}): each "
                  "can read the others' keys and the room's secrets."), flush=True)
    return out


def _start_server(room: Path, model: str, port: int, **options):
    """The room's one `kit serve`, reading the learners' keys from the room's key file."""
    from kit.server import start

    saved = os.environ.get("KIT_KEYS")
    os.environ["KIT_KEYS"] = str(room / "keys.json")  # the server process reads it
    try:
        return start([model], port=port, api_key=read_secrets(room)["server_key"],
                     quiet=True, **options)
    finally:
        if saved is None:
            os.environ.pop("KIT_KEYS", None)
        else:
            os.environ["KIT_KEYS"] = saved
