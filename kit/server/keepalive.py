"""How long a served model stays loaded once idle: Ollama's keep_alive (notebook 07).

keep_alive is a duration ("5m", "1h30m", "90s", "500ms"), a number of seconds,
0 (unload as soon as it is idle) or a negative number (keep it loaded). Without
one, the server keeps a model until the memory budget needs the room.

>>> seconds("5m"), seconds(0), seconds(-1), seconds(None)
(300.0, 0.0, inf, None)
"""
from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from datetime import datetime, timezone

from kit.errors import BadRequest

log = logging.getLogger("kit.server")

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
CHECK_EVERY = 1.0  # seconds between looks for expired models


def seconds(value) -> float | None:
    """keep_alive as seconds (inf: keep; None: the server's default)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRequest("keep_alive must be a duration such as \"5m\", a number "
                         "of seconds, 0 (unload now) or -1 (keep loaded).")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return math.inf
        return math.inf if value < 0 else float(value)
    text = str(value).strip()
    if text.startswith("-"):
        return math.inf
    try:
        return float(text)  # "300" is seconds too
    except ValueError:
        pass
    parts = PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise BadRequest(f"keep_alive {value!r} is not a duration: write it like "
                         "\"5m\", \"1h30m\", \"90s\", a number of seconds, 0 "
                         "(unload now) or -1 (keep loaded).")
    return sum(float(n) * UNITS[u] for n, u in parts)


def set_keep(pool, name: str, n_ctx: int | None, value) -> float | None:
    """Remember a request's keep_alive for its model; return it in seconds."""
    keep = seconds(value)
    if keep is not None:
        pool.slot(name, n_ctx).keep_s = keep
    return keep


def expires_at(slot) -> float | None:
    """When an idle slot unloads (a time.time()), or None for never."""
    keep = getattr(slot, "keep_s", None)
    if keep is None or math.isinf(keep):
        return None
    if slot.busy:
        return time.time() + keep
    return getattr(slot, "idle_since", time.time()) + keep


def iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, timezone.utc).isoformat()


def unload_expired(pool, now: float | None = None) -> list[str]:
    """Unload idle models whose keep_alive has run out; their names."""
    now = time.time() if now is None else now
    gone = []
    for slot in pool.loaded():
        when = expires_at(slot)
        if when is not None and when <= now and not slot.busy \
                and not slot.loading.locked():
            pool._unload(slot)
            gone.append(slot.name)
            log.info("Unloaded %s (context %d): its keep_alive ran out", slot.name,
                     slot.n_ctx)
    return gone


def stop(pool, name: str) -> bool:
    """Unload `name` (every context of it) once idle: now if it is idle."""
    found = False
    for slot in [s for s in pool.loaded() if s.name == name]:
        slot.keep_s, found = 0.0, True
        slot.idle_since = getattr(slot, "idle_since", time.time())
    unload_expired(pool)
    return found


async def reaper(pool) -> None:
    """Runs beside the server: unloads models whose time is up."""
    while True:
        await asyncio.sleep(CHECK_EVERY)
        try:
            unload_expired(pool)
        except Exception:  # never stop the server over it
            log.exception("Could not unload an expired model")
