"""A room's JupyterHub put to the test before the day (docs/classroom.md, C; notebook 01).

Learners log in at once through the Hub's login form, their JupyterLab
servers start, each opens a kernel and runs notebook 01's core cells over the
Jupyter server's REST API and kernel websocket, against the room's one kit
server (remote engine). Memory (RSS of each learner's server and kernel) is
sampled throughout; the peak is kept.

>>> report = check_room(open_room(), users=10)   # a room started by `kit hub start`
>>> print(format_report(report))
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from kit.room.hub import room_processes

# notebook 01's cells (by cell id) that a learner on the remote engine runs:
# load, tokens, a completion and its figures, a chat, why it stopped, three
# answers at temperature 1, the same answer twice at 0, a seed, a stop string.
CORE_CELLS = ("01-002", "01-005", "01-012", "01-014", "01-017", "01-025", "01-027",
              "01-031", "01-034", "01-048")
NOTEBOOK = "01_first_local_model.ipynb"


@dataclass
class CellResult:
    cell_id: str
    status: str = "not run"  # "ok" or "error" (the kernel's execute_reply)
    output: str = ""
    error: str = ""
    seconds: float = 0.0


@dataclass
class LearnerResult:
    name: str
    logged_in: bool = False
    spawn_s: float = 0.0
    cells: list[CellResult] = field(default_factory=list)
    peak_rss: int = 0  # bytes: their JupyterLab server and kernels together
    peak_kernel_rss: int = 0  # bytes: their kernels alone
    problem: str = ""
    reconnects: int = 0  # kernel connections lost and made again, as a browser does

    @property
    def cells_ok(self) -> int:
        return sum(c.status == "ok" for c in self.cells)

    @property
    def cells_s(self) -> float:
        return sum(c.seconds for c in self.cells)


@dataclass
class RoomReport:
    learners: list[LearnerResult]
    cells_per_learner: int
    seconds: float
    peak_learners_rss: int = 0  # all learners' servers and kernels, at the peak
    peak_room_rss: int = 0  # the same plus the hub, its proxy and the kit server
    hub_rss: int = 0  # the hub and its proxy, at the room's peak
    server_rss: int = 0  # the kit server, at the room's peak
    usage: dict = field(default_factory=dict)  # /kit/status's usage per learner key

    @property
    def cells_ok(self) -> int:
        return sum(r.cells_ok for r in self.learners)

    @property
    def cells_total(self) -> int:
        return self.cells_per_learner * len(self.learners)


def core_cells(cell_ids=CORE_CELLS) -> list[tuple[str, str]]:
    """(cell id, source) of notebook 01's core cells, as they are: kit.load()
    uses the room's server because the hub sets KIT_REMOTE_URL."""
    from kit.util import notebooks_dir

    folder = notebooks_dir()
    cells = {c.get("id"): "".join(c["source"]) for c in
             json.loads((folder / NOTEBOOK).read_text())["cells"]}
    missing = [i for i in cell_ids if i not in cells]
    if missing:
        raise ValueError(f"notebook 01 has no cells {missing}; update CORE_CELLS")
    return [(i, cells[i]) for i in cell_ids]


# ---- memory ----------------------------------------------------------------

class MemorySampler:
    """Samples the RSS of a room's processes every `interval` seconds, keeping peaks."""

    def __init__(self, marker: str, server_pid: int, interval: float = 0.5):
        self.marker, self.server_pid, self.interval = marker, server_pid, interval
        self.peak_user: dict[str, int] = {}
        self.peak_kernel: dict[str, int] = {}
        self.peak_learners = self.peak_room = self.hub_at_peak = self.server_at_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        import psutil

        users: dict[str, int] = {}
        kernels: dict[str, int] = {}
        hub = 0
        for p in room_processes(self.marker):
            try:
                rss, user = p.memory_info().rss, p.environ().get("JUPYTERHUB_USER")
                kernel = any("ipykernel" in part for part in p.cmdline())
            except psutil.Error:
                continue
            if user:
                users[user] = users.get(user, 0) + rss
                if kernel:
                    kernels[user] = kernels.get(user, 0) + rss
            else:
                hub += rss
        try:  # server_pid 0: the learners use a server on another machine
            server = psutil.Process(self.server_pid).memory_info().rss \
                if self.server_pid else 0
        except psutil.Error:
            server = 0
        for user, rss in users.items():
            self.peak_user[user] = max(self.peak_user.get(user, 0), rss)
        for user, rss in kernels.items():
            self.peak_kernel[user] = max(self.peak_kernel.get(user, 0), rss)
        learners = sum(users.values())
        self.peak_learners = max(self.peak_learners, learners)
        if learners + hub + server > self.peak_room:
            self.peak_room = learners + hub + server
            self.hub_at_peak, self.server_at_peak = hub, server

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


# ---- one learner ------------------------------------------------------------

def _login(client, hub_url: str, name: str, password: str) -> None:
    """The Hub's login form, as a browser fills it in (with its _xsrf field)."""
    import re

    page = client.get(hub_url + "/hub/login")
    page.raise_for_status()
    xsrf = re.search(r'name="_xsrf"\s+value="([^"]+)"', page.text)
    form = {"username": name, "password": password}
    if xsrf:
        form["_xsrf"] = xsrf.group(1)
    answer = client.post(hub_url + "/hub/login", data=form, follow_redirects=False)
    if answer.status_code != 302 or not any(c.startswith("jupyterhub-session")
                                            for c in client.cookies.keys()):
        raise RuntimeError(f"login refused for {name} (HTTP {answer.status_code})")


def _start_server(client, hub_url: str, name: str, token: str, deadline: float) -> str:
    """Ask the Hub for the learner's server; its URL once it is ready."""
    auth = {"Authorization": f"token {token}"}
    r = client.post(f"{hub_url}/hub/api/users/{name}/server", headers=auth, timeout=120)
    if r.status_code not in (201, 202, 400):  # 400: already running
        raise RuntimeError(f"the Hub would not start {name}'s server (HTTP "
                           f"{r.status_code}: {r.text[:200]})")
    while time.monotonic() < deadline:
        user = client.get(f"{hub_url}/hub/api/users/{name}", headers=auth).json()
        server = (user.get("servers") or {}).get("", {})
        if server.get("ready"):
            return hub_url + server["url"]
        time.sleep(0.5)
    raise TimeoutError(f"{name}'s server was not ready in time")


def _execute(ws, session: str, code: str, timeout: float) -> CellResult:
    """Run one cell through the kernel's websocket; its status and printed text."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "kit", "session": session,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False,
                    "stop_on_error": True}}))
    result, texts, replied, idle = CellResult(""), [], False, False
    t0 = time.monotonic()
    while not (replied and idle):
        ws.settimeout(max(0.1, timeout - (time.monotonic() - t0)))
        msg = json.loads(ws.recv())
        if (msg.get("parent_header") or {}).get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg.get("content", {})
        if kind == "stream":
            texts.append(content.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            texts.append(content.get("data", {}).get("text/plain", ""))
        elif kind == "error":
            result.error = f"{content.get('ename')}: {content.get('evalue')}"
        elif kind == "execute_reply":
            result.status, replied = content.get("status", "?"), True
        elif kind == "status" and content.get("execution_state") == "idle":
            idle = True
    result.output, result.seconds = "".join(texts), time.monotonic() - t0
    return result


def run_learner(hub_url: str, name: str, password: str, cells, *, together=None,
                deadline: float, cell_timeout: float = 300.0) -> LearnerResult:
    """One learner's session: log in, start the server and a kernel, run the cells."""
    import httpx
    import websocket

    out = LearnerResult(name)
    try:
        with httpx.Client(timeout=60, trust_env=False) as client:
            _login(client, hub_url, name, password)
            out.logged_in = True
            # a token through the REST API with the same credentials (no
            # cookie: with the browser's cookie the Hub would ask for _xsrf)
            r = httpx.post(f"{hub_url}/hub/api/users/{name}/tokens", timeout=60,
                           json={"auth": {"username": name, "password": password},
                                 "note": "kit hub check", "expires_in": 3600},
                           trust_env=False)
            r.raise_for_status()
            token = r.json()["token"]
            t0 = time.monotonic()
            base = _start_server(client, hub_url, name, token, deadline)
            out.spawn_s = time.monotonic() - t0
            auth = {"Authorization": f"token {token}"}
            kernel = client.post(base + "api/kernels", json={"name": "python3"},
                                 headers=auth)
            kernel.raise_for_status()
            kid, session = kernel.json()["id"], uuid.uuid4().hex
            if together is not None:  # everyone's cells start at the same moment
                try:
                    together.wait(max(1.0, deadline - time.monotonic()))
                except threading.BrokenBarrierError:
                    pass  # another learner failed: carry on alone
            def connect():
                return websocket.create_connection(
                    base.replace("http", "ws", 1) + f"api/kernels/{kid}/channels"
                    f"?session_id={session}", header=[f"Authorization: token {token}"],
                    timeout=60, suppress_origin=True)
            ws = connect()
            try:
                for cell_id, code in cells:
                    left = min(cell_timeout, deadline - time.monotonic())
                    try:
                        result = _execute(ws, session, code, left)
                    except websocket.WebSocketConnectionClosedException:
                        # JupyterLab reconnects when a busy machine drops the
                        # kernel's connection; so does the check, once a cell
                        ws.close()
                        ws, out.reconnects = connect(), out.reconnects + 1
                        left = min(cell_timeout, deadline - time.monotonic())
                        result = _execute(ws, session, code, left)
                    result.cell_id = cell_id
                    out.cells.append(result)
                    if result.status != "ok":
                        break
            finally:
                ws.close()
            client.delete(f"{base}api/kernels/{kid}", headers=auth)
    except Exception as exc:  # reported per learner: the others carry on
        out.problem = f"{type(exc).__name__}: {exc}"
        if together is not None:
            together.abort()
    return out


def check_room(room, users: int | None = None, cells=None,
               timeout: float = 900.0) -> RoomReport:
    """Every learner of `room` (or the first `users`) at once; a RoomReport."""
    import httpx

    names = room.learners[:users] if users else list(room.learners)
    secrets = room.secrets()
    cells = cells or core_cells()
    deadline = time.monotonic() + timeout
    together = threading.Barrier(len(names))
    results: dict[str, LearnerResult] = {}
    t0 = time.monotonic()
    with MemorySampler(room.marker, room.server_pid) as memory:
        threads = [threading.Thread(target=lambda n=n: results.__setitem__(
            n, run_learner(room.hub_url, n, secrets["password"], cells,
                           together=together, deadline=deadline)), daemon=True)
                   for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()) + 5)
    report = RoomReport([results.get(n) or LearnerResult(n, problem="no result in time")
                         for n in names], len(cells), time.monotonic() - t0,
                        memory.peak_learners, memory.peak_room, memory.hub_at_peak,
                        memory.server_at_peak)
    for r in report.learners:
        r.peak_rss = memory.peak_user.get(r.name, 0)
        r.peak_kernel_rss = memory.peak_kernel.get(r.name, 0)
    if room.server_pid:  # a kit server counts each learner's requests
        status = httpx.get(room.kit_url + "/kit/status", timeout=30, trust_env=False,
                           headers={"Authorization": f"Bearer {secrets['server_key']}"})
        report.usage = status.json().get("usage", {})
    return report


def format_report(report: RoomReport) -> str:
    """A table per learner, then the room's totals."""
    from kit.util import human_size, text_table

    rows = [{"learner": r.name, "login": "yes" if r.logged_in else "no",
             "server start": f"{r.spawn_s:.1f} s",
             "cells": f"{r.cells_ok}/{report.cells_per_learner}",
             "cells time": f"{r.cells_s:.1f} s",
             "requests": report.usage.get(r.name, {}).get("requests", 0),
             "memory": human_size(r.peak_rss),
             "of which kernel": human_size(r.peak_kernel_rss),
             "problem": r.problem or next((f"{c.cell_id}: {c.error}" for c in r.cells
                                           if c.status != "ok"), "")}
            for r in report.learners]
    n = len(report.learners)
    lines = [text_table(rows, right=("server start", "cells", "cells time", "requests",
                                     "memory", "of which kernel")), "",
             f"{n} learners, cells completed: {report.cells_ok} of {report.cells_total}, "
             f"in {report.seconds:.0f} s",
             f"memory per learner (their server + kernel, peak): "
             f"{human_size(report.peak_learners_rss // max(n, 1))} on average",
             f"all learners at the peak: {human_size(report.peak_learners_rss)}; with the "
             f"hub and proxy ({human_size(report.hub_rss)}) and the kit server "
             f"({human_size(report.server_rss)}): {human_size(report.peak_room_rss)}"]
    again = sum(r.reconnects for r in report.learners)
    if again:
        lines.append(f"kernel connections lost and made again: {again}")
    return "\n".join(lines)

