"""A system user per learner, so learners on one hub cannot read each other's
secrets (docs/classroom.md, C; kit/room/hub.py).

Run as one user, every learner's JupyterLab could read the room's
secrets.json (the room password, the server's key, every learner's key) and
each other's /proc/PID/environ. When the hub runs as root it makes an
account per learner, `kit-NAME` (as The Littlest JupyterHub makes
`jupyter-NAME`: a prefix, so a learner called "root" never becomes root),
with a locked password and a home of their own (/home/kit-NAME, 0700);
JupyterHub's LocalProcessSpawner starts each learner's server as their
account. The room's folder (secrets.json, keys.json, the hub's database and
log) stays root's alone (0700).

>>> accounts = make_accounts(Path("room"), ["ana", "ben"])   # as root
>>> accounts["ana"]                 # {'account': 'kit-ana', 'uid': 1001, ...}
>>> remove_accounts(Path("room"))  # the accounts this room made; homes stay
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

PREFIX = "kit-"
ACCOUNTS_FILE = "accounts.json"  # the accounts a room made (to remove them)
SHELL = "/bin/bash"  # JupyterLab's terminal runs it; the password stays locked


def can_make_accounts() -> str | None:
    """None when this process can make system users, else why not."""
    if not hasattr(os, "geteuid"):
        return "this system has no Unix users (Windows)"
    if os.geteuid() != 0:
        return "the hub does not run as root"
    missing = [c for c in ("useradd", "userdel") if not shutil.which(c)]
    if missing:
        return f"{', '.join(missing)} not found"
    return None


def closed_to_learners(paths) -> Path | None:
    """The first folder on the way to `paths` that other users cannot pass
    through (no o+x), or a file they cannot read; None when all are open.

    The learners' accounts run the kit's Python: a Python installed inside
    /root (pyenv's default there) cannot be run by anyone else.
    """
    import stat

    for path in paths:
        path = Path(path).resolve()
        for folder in reversed(path.parents):
            if not folder.stat().st_mode & stat.S_IXOTH:
                return folder
        if not path.stat().st_mode & stat.S_IROTH:
            return path
    return None


def kit_paths() -> list[Path]:
    """What a learner's JupyterLab must reach: the kit's Python and packages."""
    import sys
    import sysconfig

    import kit

    return [Path(sys.executable), Path(sysconfig.get_path("stdlib")),
            Path(sysconfig.get_path("purelib")), Path(kit.__file__).parent]


def account_name(learner: str) -> str:
    """kit-NAME; a long name is cut and given a hash (Linux allows 32 characters)."""
    name = PREFIX + learner
    if len(name) <= 32:
        return name
    return name[:25] + "-" + hashlib.sha256(learner.encode()).hexdigest()[:6]


def _run(cmd: list[str]) -> None:
    from kit.errors import HubStartFailed

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise HubStartFailed(what=f"`{' '.join(cmd[:1] + cmd[-1:])}`",
                             detail=(done.stderr or done.stdout).strip()[-300:])


def make_accounts(room: Path, learners) -> dict[str, dict]:
    """One locked account per learner with a private home (/home/kit-NAME);
    {learner: {account, uid, gid, home}}. Accounts that exist are reused."""
    import pwd

    room = Path(room).resolve()
    made = _read(room)
    out = {}
    for learner in learners:
        account = account_name(learner)
        try:
            pwd.getpwnam(account)
        except KeyError:
            _run(["useradd", "--create-home", "--shell", SHELL, "--user-group",
                  "--comment", f"kit room learner {learner}", account])
            made.append(account)
            _write(room, made)  # at once: a failure later still removes it
        entry = pwd.getpwnam(account)
        home = Path(entry.pw_dir)
        home.mkdir(parents=True, exist_ok=True)
        for path in (home, *(home.rglob("*") if account in made else ())):
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        os.chmod(home, 0o700)
        out[learner] = {"account": account, "uid": entry.pw_uid,
                        "gid": entry.pw_gid, "home": str(home)}
    return out


def remove_accounts(room: Path, homes: bool = False) -> list[str]:
    """Delete the accounts this room made; their homes too if `homes`."""
    import pwd

    room = Path(room).resolve()
    gone = []
    for account in _read(room):
        try:
            pwd.getpwnam(account)
        except KeyError:
            continue
        subprocess.run(["pkill", "-KILL", "-u", account], capture_output=True)
        _run(["userdel", *(["--remove"] if homes else []), account])
        gone.append(account)
    (room / ACCOUNTS_FILE).unlink(missing_ok=True)
    return gone


def _read(room: Path) -> list[str]:
    try:
        return list(json.loads((room / ACCOUNTS_FILE).read_text()))
    except (OSError, ValueError):
        return []


def _write(room: Path, accounts: list[str]) -> None:
    fd = os.open(room / ACCOUNTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(sorted(set(accounts)), f)
