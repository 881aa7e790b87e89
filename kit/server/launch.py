"""Starting the server: in the foreground (`kit serve`) or in the background
from a notebook (`start()`), on this computer only unless told otherwise.

>>> server = start()            # a free port on 127.0.0.1, in a subprocess
>>> server.url
'http://127.0.0.1:40123'
>>> server.stop()
"""
from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from kit.errors import ApiKeyRequired, PortInUse, ServerStartFailed
from kit.server.guard import MAX_BODY
from kit.util import lan_addresses, listen_socket, stop_process, wait_until_ready

DEFAULT_PORT = 8000
MIN_KEY = 16  # characters: shorter keys are guessable, so the server warns
LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}
KEY_ENV = "KIT_API_KEY"


def is_local(host: str) -> bool:
    """True only for this computer's own address (127.0.0.1, ::1, localhost)."""
    return host in LOCAL_HOSTS


def url_for(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port)."""
    try:
        sock = listen_socket(host, port)
    except socket.gaierror as exc:
        raise PortInUse(host, port, f"unknown address: {exc}") from exc
    except OSError as exc:
        raise PortInUse(host, port, exc.strerror or str(exc)) from exc
    sock.set_inheritable(True)
    return sock


def key_file() -> Path:
    from kit.settings import get_settings

    return get_settings().home / "server" / "api-key"


def room_key(env_var: str = KEY_ENV) -> tuple[str, str]:
    """(key, where it is): from $env_var, else the key file (made once, 0600).

    The key itself is never printed; tell learners where to read it instead.
    """
    key = os.environ.get(env_var, "").strip()
    if key:
        return key, f"the environment variable {env_var}"
    path = key_file()
    try:
        key = path.read_text().strip()
    except OSError:
        key = ""
    if not key:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
        os.replace(partial, path)  # never a half-written key file
        key = path.read_text().strip()
    os.chmod(path, 0o600)
    return key, str(path)


def _watch_parent(pid: int, server) -> None:
    """Stop when the notebook kernel that started us is gone."""
    while not server.should_exit:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except OSError:
            server.should_exit = True


def serve(models=None, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          api_key: str | None = None, n_ctx: int | None = None,
          n_threads: int | None = None, memory_budget: int | None = None,
          max_queue: int = 8, log_level: str = "info", ready_file=None,
          parent_pid: int | None = None, quiet: bool = False,
          max_body: int = MAX_BODY, allow_hosts=(), parallel: int | None = None) -> None:
    """Serve `models` (default: every installed model) until stopped (Ctrl-C).

    max_body: the largest request in bytes (larger ones get HTTP 413);
    allow_hosts: host names to answer for besides this computer's own;
    parallel: answers at once per model (None: from the memory budget).
    """
    import uvicorn

    from kit.server.app import create_app
    from kit.server.models import ModelPool

    from kit.server.keys import KeyRing, keys_file

    ring = KeyRing() if keys_file().exists() else None  # made by `kit keys add`
    if not is_local(host) and not api_key and ring is None:
        raise ApiKeyRequired(host)
    if api_key and len(api_key) < MIN_KEY:
        print(f"Warning: the API key is only {len(api_key)} characters long; anyone "
              f"on the network could guess it. Use {MIN_KEY} or more (unset "
              f"{KEY_ENV} and the kit makes a long one).", file=sys.stderr, flush=True)
    pool = ModelPool(models, n_ctx=n_ctx, n_threads=n_threads,
                     memory_budget=memory_budget, max_queue=max_queue,
                     parallel=parallel)
    sock = bind(host, port)
    url = url_for(host, sock.getsockname()[1])

    def ready():
        if ready_file:  # atomically, so the parent never reads half a line
            part = Path(f"{ready_file}.partial")
            part.write_text(json.dumps({"url": url, "pid": os.getpid()}))
            os.replace(part, ready_file)

    if ring is not None:
        print(f"Room keys: {ring.active()} active in {ring.path} (kit keys list); "
              "each works as an API key.", flush=True)
    app = create_app(pool, api_key=api_key, on_ready=ready, max_body=max_body, ring=ring,
                     hosts=served_names(host, allow_hosts))
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=3)
    HideSecrets([api_key or ""]).install()  # after Config: it makes uvicorn's handlers
    server = uvicorn.Server(config)
    if parent_pid:
        threading.Thread(target=_watch_parent, args=(parent_pid, server),
                         daemon=True).start()
    if not quiet and host in ("0.0.0.0", "::"):
        print("Others on the network reach it at: " + ", ".join(
            url_for(a, sock.getsockname()[1]) for a in _lan_addresses()), flush=True)
    if not quiet:
        print(f"kit server on {url} (OpenAI API: {url}/v1, Ollama API: {url}/api); "
              f"models: {', '.join(pool.offered)}"
              + ("; API key required" if api_key else "")
              + ". Stop it with Ctrl-C.", flush=True)
    server.run(sockets=[sock])


class HideSecrets:
    """A log filter: keys never reach the log, wherever a client put them.

    It hides the server's own key and anything shaped like a room key
    (kit-...), as sent or percent-encoded, anywhere in a line (a query
    parameter of any name, a path segment), and the values of parameters
    named like secrets (?api_key=..., ?token=...).

    >>> HideSecrets(["s3cret-key"]).hide("GET /v1/x?k=s3cret%2Dkey")
    'GET /v1/x?k=[hidden]'
    """

    SECRET = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|secret|"
                        r"password)=)[^&\s]*")
    ROOM_KEY = re.compile(r"kit-[A-Za-z0-9_-]{20,}")  # kit.server.keys.add_key's

    def __init__(self, keys=()):
        self.keys = sorted({k for k in keys if k}, key=len, reverse=True)

    def hide(self, text: str) -> str:
        from urllib.parse import unquote_plus

        for _ in range(3):  # %-encoded (even twice): judge and log the plain text
            plain = unquote_plus(text)
            if plain == text:
                break
            text = plain
        for key in self.keys:
            text = text.replace(key, "[hidden]")
        return self.SECRET.sub(r"\1[hidden]", self.ROOM_KEY.sub("[hidden]", text))

    def filter(self, record) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.hide(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self.hide(a) if isinstance(a, str) else a
                                for a in record.args)
        return True

    def install(self) -> None:
        """On every handler that writes the server's log, and uvicorn's access log."""
        import logging

        logging.getLogger("uvicorn.access").addFilter(self)
        for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "kit"):
            for handler in logging.getLogger(name).handlers:
                handler.addFilter(self)


def served_names(host: str, extra=()) -> set[str]:
    """Host names to answer for besides loopback: the address served, and for
    0.0.0.0 this computer's network addresses and names."""
    names = {h.lower() for h in extra}
    if is_local(host):
        return names
    if host in ("0.0.0.0", "::"):
        names |= set(lan_addresses())
        base = socket.gethostname().lower()
        names |= {base, base + ".local", socket.getfqdn().lower()}
    else:
        names.add(host.lower())
    return names


def _lan_addresses() -> list[str]:
    return lan_addresses() or ["(no network address found)"]


class RunningServer:
    """A kit server running in the background; `stop()` ends it."""

    def __init__(self, proc, url: str, log_path: Path, models, api_key):
        self.proc, self.url, self.log_path = proc, url, log_path
        self.models = list(models)
        self._key = api_key  # kept out of repr and printouts
        atexit.register(self.stop)

    @property
    def openai_url(self) -> str:
        """The base_url for OpenAI clients."""
        return self.url + "/v1"

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def status(self, timeout: float = 5.0) -> dict:
        """What the server holds and has done (its /kit/status)."""
        req = urllib.request.Request(self.url + "/kit/status", headers=self.headers)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def log(self, lines: int = 20) -> str:
        """The last lines the server wrote (requests, loads, cancels)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace")
                             .splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (politely, then firmly); safe to call twice."""
        stop_process(self.proc, timeout)
        atexit.unregister(self.stop)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<kit server {self.url} {state}, models: {', '.join(self.models)}>"


def start(models=None, *, port: int = 0, host: str = "127.0.0.1",
          api_key: str | None = None, n_ctx: int | None = None,
          n_threads: int | None = None, max_queue: int = 8,
          memory_budget_mb: int | None = None, timeout: float = 60.0,
          quiet: bool = False, max_body_mb: float | None = None,
          allow_hosts=(), parallel: int | None = None) -> RunningServer:
    """Start `kit serve` in a background process; return once it answers."""
    if isinstance(models, str):
        models = [models]
    if not is_local(host) and not api_key:
        raise ApiKeyRequired(host)
    workdir = Path(tempfile.mkdtemp(prefix="kit-serve-"))
    ready, log_path = workdir / "ready.json", workdir / "server.log"
    cmd = [sys.executable, "-m", "kit", "serve", *(models or []), "--host", host,
           "--port", str(port), "--max-queue", str(max_queue),
           "--ready-file", str(ready), "--parent-pid", str(os.getpid()),
           "--log-level", "info"]
    if n_ctx:
        cmd += ["--ctx", str(n_ctx)]
    if n_threads:
        cmd += ["--threads", str(n_threads)]
    if memory_budget_mb:
        cmd += ["--memory", str(memory_budget_mb)]
    if max_body_mb:
        cmd += ["--max-body", str(max_body_mb)]
    if parallel:
        cmd += ["--parallel", str(parallel)]
    for name in allow_hosts:
        cmd += ["--allow-host", name]
    env = dict(os.environ)
    env.pop(KEY_ENV, None)
    if api_key:  # through the environment: never on a command line others can see
        env[KEY_ENV] = api_key
        cmd += ["--api-key-env", KEY_ENV]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    if wait_until_ready(proc, ready.exists, timeout, interval=0.05) != "ready":
        text = log_path.read_text(errors="replace").strip().splitlines()
        detail = next((line for line in reversed(text) if line.startswith("Error:")),
                      text[-1] if text else f"no answer within {timeout:.0f} s")
        raise ServerStartFailed(detail)
    info = json.loads(ready.read_text())
    server = RunningServer(proc, info["url"], log_path,
                           _offered(info["url"], api_key), api_key)
    if not quiet:
        print(f"kit server running at {server.url} (models: "
              f"{', '.join(server.models)}); stop it with .stop()")
    return server


def _offered(url: str, api_key: str | None) -> list[str]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    req = urllib.request.Request(url + "/v1/models", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return [m["id"] for m in json.loads(r.read())["data"]]
