"""A key per learner or per table for a room's server (notebook 07).

The key file (KIT_HOME/server/keys.json) holds each key's name, a SHA-256 of
the key (never the key: it is shown once, when made), when it was made, the
models it may use (empty: all the server offers) and whether it is revoked.
`kit serve` reads it on every request (cached by modification time), so a
revoked key stops working at once.

>>> key = add_key("table-3", models=["smollm2:135m"])   # shown once
>>> check_key(key).name
'table-3'
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KeyNameTaken, UnknownKey
from kit.util import atomic_write_text

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def keys_file() -> Path:
    """KIT_KEYS if set (read when called), else KIT_HOME/server/keys.json."""
    from kit.settings import get_settings

    if os.environ.get("KIT_KEYS"):
        return Path(os.environ["KIT_KEYS"])
    return get_settings().home / "server" / "keys.json"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RoomKey:
    name: str
    digest: str
    created: float
    models: tuple[str, ...] = ()
    revoked: bool = False

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models or \
            model.split(":")[0] in self.models


def read_keys(path: Path | None = None) -> dict[str, RoomKey]:
    path = path or keys_file()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return {name: RoomKey(name, k["sha256"], k.get("created", 0.0),
                          tuple(k.get("models") or ()), bool(k.get("revoked")))
            for name, k in raw.get("keys", {}).items()}


def _write(keys: dict[str, RoomKey], path: Path) -> None:
    data = {"keys": {k.name: {"sha256": k.digest, "created": k.created,
                              "models": list(k.models), "revoked": k.revoked}
                     for k in keys.values()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    os.chmod(path, 0o600)


def add_key(name: str, models=(), path: Path | None = None) -> str:
    """Make a key called `name`; return it (the only time it is seen)."""
    from kit.errors import BadParameter

    if not name or set(name) - NAME_CHARS or len(name) > 64:
        raise BadParameter("name", name, "letters, digits, '-', '_' or '.', "
                           "at most 64 (for example table-3)")
    models = tuple(known_model(m) for m in models)
    path = path or keys_file()
    keys = read_keys(path)
    if name in keys and not keys[name].revoked:
        raise KeyNameTaken(name)
    key = "kit-" + secrets.token_urlsafe(24)
    keys[name] = RoomKey(name, _digest(key), time.time(), tuple(models))
    _write(keys, path)
    return key


def known_model(name: str) -> str:
    """`name` if it names a model this computer has or can pull (the catalog,
    the embedding model), else ModelNotFound: a typo would lock a key out."""
    from kit.errors import NotPulledYet
    from kit.models.catalog import entries
    from kit.models.registry import resolve

    name = name.strip()
    if name in {e["name"].split(":")[0] for e in entries()}:
        return name  # a family: every size of it
    try:
        ref = resolve(name)
    except NotPulledYet:
        return name  # the instructor may pull it later
    if not Path(ref.path).is_file():  # a .gguf path that is not there
        from kit.errors import ModelFileMissing

        raise ModelFileMissing(str(ref.path))
    return ref.name if ref.name != name and Path(name).suffix == ".gguf" else name


def scoped_status(status: dict, key: RoomKey | None) -> dict:
    """What /kit/status shows a room key: its own use and its own models.

    The server's own key (or no key at all) sees everything.
    """
    if key is None:
        return status
    return {**status,
            "models": [m for m in status["models"] if key.allows(m)],
            "loaded": [s for s in status["loaded"] if key.allows(s["name"])],
            "usage": {n: u for n, u in status["usage"].items() if n == key.name}}


def revoke_key(name: str, path: Path | None = None) -> None:
    path = path or keys_file()
    keys = read_keys(path)
    if name not in keys:
        raise UnknownKey(name, sorted(keys))
    k = keys[name]
    keys[name] = RoomKey(k.name, k.digest, k.created, k.models, True)
    _write(keys, path)


class KeyRing:
    """The server's view of the key file, read again when it changes."""

    def __init__(self, path: Path | None = None):
        self.path = path or keys_file()
        self._stamp, self._by_digest = None, {}

    def _refresh(self) -> None:
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            keys = read_keys(self.path) if stamp is not None else {}
            self._by_digest = {k.digest: k for k in keys.values() if not k.revoked}

    def active(self) -> int:
        self._refresh()
        return len(self._by_digest)

    def check(self, given: str) -> RoomKey | None:
        """The key's entry if `given` is an active key, else None."""
        self._refresh()
        digest = _digest(given)
        for known, entry in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return entry
        return None
