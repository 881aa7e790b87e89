"""The configuration of a room's JupyterHub, and its proxy from npm (docs/classroom.md, C).

kit.room.hub starts what this module writes: jupyterhub_config.py (learners
by name, one room password, each learner's key in KIT_REMOTE_API_KEY) and
secrets.json (0600), in the room folder. With accounts (kit/room/hub_users.py:
the hub runs as root) each learner's server runs as their own system user
through JupyterHub's LocalProcessSpawner; without, all run as the hub's user
through SimpleLocalProcessSpawner (one learner, or a room that accepted it). configurable-http-proxy is installed, pinned, with `npm install
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
FREE_TRIES = 5  # wrong hub passwords from one address before each try waits


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
import os
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
# Wrong passwords from one address are slowed after a few (1, 2, 4 ... 30 s,
# one try at a time), as reverse proxies do; a right one clears the count.
import asyncio
import time

from jupyterhub.authenticators.shared import SharedPasswordAuthenticator

FREE_TRIES, WINDOW, LONGEST = {free_tries}, 300, 30
FAILED, LOCKS = {{}}, {{}}  # client address: times of wrong passwords; its lock


class RoomAuthenticator(SharedPasswordAuthenticator):
    async def authenticate(self, handler, data):
        request = getattr(handler, "request", None)
        address = getattr(request, "remote_ip", None) or "unknown"
        async with LOCKS.setdefault(address, asyncio.Lock()):
            now = time.monotonic()
            recent = [t for t in FAILED.get(address, ()) if now - t < WINDOW]
            if len(recent) >= FREE_TRIES:
                wait = min(LONGEST, 2 ** (len(recent) - FREE_TRIES))
                self.log.warning("%d wrong passwords from %s in %d s: this try "
                                 "waits %d s", len(recent), address, WINDOW, wait)
                await asyncio.sleep(wait)
            user = await super().authenticate(handler, data)
            FAILED[address] = [] if user else recent + [time.monotonic()]
            return user


c.JupyterHub.authenticator_class = RoomAuthenticator
c.SharedPasswordAuthenticator.user_password = SECRETS["password"]
c.Authenticator.allowed_users = set({learners!r})

# Each learner's JupyterLab: a process on this machine, in the kit's Python,
# as the learner's own system user when the room made them accounts.
ACCOUNTS = {accounts!r}  # learner: system user (kit/room/hub_users.py)
if ACCOUNTS:
    import pwd

    from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid

    class RoomSpawner(LocalProcessSpawner):
        """LocalProcessSpawner, with the learner's kit-NAME account."""

        def make_preexec_fn(self, name):
            return set_user_setuid(ACCOUNTS[name])

        def user_env(self, env):
            pw = pwd.getpwnam(ACCOUNTS[self.user.name])
            env.update(USER=pw.pw_name, HOME=pw.pw_dir, SHELL=pw.pw_shell)
            return env

    c.JupyterHub.spawner_class = RoomSpawner
else:
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
    """The kit's notebooks in the learner's home, once (their edits stay),
    owned by the learner's account when there is one."""
    home = (Path(pwd.getpwnam(ACCOUNTS[spawner.user.name]).pw_dir) if ACCOUNTS
            else ROOM / "homes" / spawner.user.name)
    if NOTEBOOKS and not (home / "notebooks").exists():
        home.mkdir(parents=True, exist_ok=True)
        shutil.copytree(NOTEBOOKS, home / "notebooks")
        if ACCOUNTS:
            owner = home.stat()
            for p in (home / "notebooks", *(home / "notebooks").rglob("*")):
                os.chown(p, owner.st_uid, owner.st_gid, follow_symlinks=False)


c.Spawner.pre_spawn_hook = copy_notebooks
'''


def write_config(room: Path, learners, kit_url: str, *, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, proxy: Path | str = PROXY,
                 spawn_timeout: int = 300, marker: str = "", models=(),
                 shared_key: str | None = None, accounts: dict | None = None) -> Path:
    """The room folder's jupyterhub_config.py and secrets.json; returns the config.

    models: what the learners' keys may use (empty: all the server offers);
    shared_key: a server of another kind (llama.cpp's, vLLM): every learner
    gets this one key ("" for none) instead of a room key of their own.
    accounts: {learner: {"account": ...}} from hub_users.make_accounts.
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
        accounts={k: v["account"] for k, v in (accounts or {}).items()},
        args=["--allow-root"] if os.geteuid() == 0 and not accounts else [],
        timeout=spawn_timeout,
        kit_url=kit_url, marker=MARKER, room_id=marker or new_marker(room),
        free_tries=FREE_TRIES)
    path = room / "jupyterhub_config.py"
    path.write_text(text)
    os.chmod(path, 0o600)  # only the hub reads it
    return path


def read_secrets(room: Path) -> dict:
    try:
        return json.loads((Path(room) / "secrets.json").read_text())
    except (OSError, ValueError):
        return {}


def new_marker(room: Path) -> str:
    """A value for MARKER unique to one start of a room."""
    return f"{Path(room).name}-{os.getpid()}-{secrets.token_hex(4)}"
