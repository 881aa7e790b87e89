"""The configuration of a room's JupyterHub, and its proxy from npm (docs/classroom.md, C).

kit.room.hub starts what this module writes: jupyterhub_config.py (learners
by name, one room password, SimpleLocalProcessSpawner in the kit's Python,
each learner's key in KIT_REMOTE_API_KEY) and secrets.json (0600), in the room
folder. configurable-http-proxy is installed, pinned, with `npm install
--prefix` into a cache folder (never globally).

>>> write_config(Path("room"), ["ana", "ben"], "http://127.0.0.1:8000")
PosixPath('/.../room/jupyterhub_config.py')
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from kit.errors import BadParameter, HubStartFailed, NpmMissing
from kit.util import free_port

PROXY = "configurable-http-proxy"
# configurable-http-proxy 5 needs Node.js 20; Debian 12's nodejs is 18, which
# runs the 4.6 line. Pinned, installed with `npm install --prefix` (never -g).
PROXY_VERSIONS = {20: "5.3.0", 10: "4.6.3"}
MARKER = "KIT_HUB_ROOM"  # in the environment of every process a room starts
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
DEFAULT_PORT = 8001


def proxy_cache() -> Path:
    """Where the proxy is installed: $KIT_HUB_CACHE, else ~/.cache/kit/hub."""
    if os.environ.get("KIT_HUB_CACHE"):
        return Path(os.environ["KIT_HUB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kit" / "hub"


def _node_major(node: str) -> int:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    return int(out.stdout.strip().lstrip("v").split(".")[0])


def install_proxy(cache: Path | None = None, quiet: bool = False) -> Path:
    """configurable-http-proxy from npm, pinned, in `cache`; its command's path."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise NpmMissing(missing="node" if not node else "npm")
    major = _node_major(node)
    version = next((v for need, v in sorted(PROXY_VERSIONS.items(), reverse=True)
                    if major >= need), PROXY_VERSIONS[10])
    prefix = (cache or proxy_cache()) / f"{PROXY}-{version}"
    command = prefix / "node_modules" / ".bin" / PROXY
    if command.exists():
        return command
    if not quiet:
        print(f"Installing {PROXY} {version} from npm into {prefix} ...", flush=True)
    prefix.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit",
                           "--no-fund", "--loglevel=error", f"{PROXY}@{version}"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not command.exists():
        raise HubStartFailed(what=f"`npm install {PROXY}@{version}`",
                             detail=(done.stderr or done.stdout).strip()[-300:])
    return command


def check_learners(names) -> list[str]:
    """Learners' names as JupyterHub keeps them: lower case, unique, simple."""
    out = []
    for name in names:
        name = name.strip().lower()
        if not name or set(name) - NAME_CHARS or len(name) > 32 or name[0] in "-_.":
            raise BadParameter("learner name", name, "letters, digits, '-', '_' or '.', "
                               "at most 32, starting with a letter or digit (e.g. ana)")
        if name not in out:
            out.append(name)
    if not out:
        raise BadParameter("learners", names, "at least one name")
    return out


def _secret_file(path: Path, data: dict) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.chmod(path, 0o600)


CONFIG = '''\
# Made by kit.room.hub (`kit hub start`); JupyterHub reads it at start.
# The secrets (room password, learners' keys) stay in secrets.json (0600).
import json
import shutil
from pathlib import Path

c = get_config()  # noqa: F821
ROOM = Path({room!r})
SECRETS = json.loads((ROOM / "secrets.json").read_text())
NOTEBOOKS = {notebooks!r}

c.JupyterHub.bind_url = {hub_url!r}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///" + str(ROOM / "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = str(ROOM / "cookie_secret")
c.JupyterHub.pid_file = str(ROOM / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = SECRETS["proxy_token"]

# Learners by name, one password for the room (JupyterHub's shared-password).
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = SECRETS["password"]
c.Authenticator.allowed_users = set({learners!r})

# Each learner's JupyterLab: a process on this machine, in the kit's Python.
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = str(ROOM / "homes" / "{{username}}")
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = {args!r}
c.Spawner.ip = "127.0.0.1"
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = {timeout}
c.Spawner.http_timeout = {timeout}
c.Spawner.environment = {{
    "KIT_REMOTE_URL": {kit_url!r},
    "KIT_REMOTE_API_KEY": lambda spawner: SECRETS["keys"][spawner.user.name],
    "OMP_WAIT_POLICY": "PASSIVE",
    {marker!r}: {room_id!r},
}}


def copy_notebooks(spawner):
    """The kit's notebooks in the learner's home, once (their edits stay)."""
    home = Path(spawner.home_dir)
    if NOTEBOOKS and not (home / "notebooks").exists():
        home.mkdir(parents=True, exist_ok=True)
        shutil.copytree(NOTEBOOKS, home / "notebooks")


c.Spawner.pre_spawn_hook = copy_notebooks
'''


def write_config(room: Path, learners, kit_url: str, *, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, proxy: Path | str = PROXY,
                 spawn_timeout: int = 300, marker: str = "", models=(),
                 shared_key: str | None = None) -> Path:
    """The room folder's jupyterhub_config.py and secrets.json; returns the config.

    models: what the learners' keys may use (empty: all the server offers);
    shared_key: a server of another kind (llama.cpp's, vLLM): every learner
    gets this one key ("" for none) instead of a room key of their own.
    """
    from kit.server.keys import add_key
    from kit.util import notebooks_dir

    learners = check_learners(learners)
    room = Path(room).resolve()
    (room / "homes").mkdir(parents=True, exist_ok=True)
    keys_path = room / "keys.json"  # this room's keys only, made afresh
    keys_path.unlink(missing_ok=True)
    if shared_key is None:
        keys = {name: add_key(name, models=models, path=keys_path) for name in learners}
    else:
        keys = dict.fromkeys(learners, shared_key)
    old = read_secrets(room)
    _secret_file(room / "secrets.json", {
        "password": old.get("password") or secrets.token_urlsafe(9),
        "server_key": old.get("server_key") or secrets.token_urlsafe(24),
        "proxy_token": secrets.token_hex(32), "keys": keys})
    singleuser = Path(sys.executable).with_name("jupyterhub-singleuser")
    nbs = notebooks_dir()
    text = CONFIG.format(
        room=str(room), notebooks=str(nbs) if nbs else "", hub_url=f"http://{host}:{port}",
        hub_port=free_port(), proxy=str(proxy), proxy_api_port=free_port(),
        learners=learners, singleuser=str(singleuser),
        args=["--allow-root"] if os.geteuid() == 0 else [], timeout=spawn_timeout,
        kit_url=kit_url, marker=MARKER, room_id=marker or new_marker(room))
    path = room / "jupyterhub_config.py"
    path.write_text(text)
    return path


def read_secrets(room: Path) -> dict:
    try:
        return json.loads((Path(room) / "secrets.json").read_text())
    except (OSError, ValueError):
        return {}


def new_marker(room: Path) -> str:
    """A value for MARKER unique to one start of a room."""
    return f"{Path(room).name}-{os.getpid()}-{secrets.token_hex(4)}"
