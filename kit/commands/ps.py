"""`kit ps` / `kit stop MODEL`: the models a running `kit serve` holds in memory.

    kit ps                               loaded models, size, context, until when
    kit stop smollm2:135m                unload it now (after any answer running)
    kit ps --url http://10.0.0.5:8000    another computer's server (key: KIT_API_KEY)

They use the server's Ollama API (/api/ps; /api/generate with keep_alive 0),
so they work against Ollama too.
"""
from __future__ import annotations

import argparse
import os

from kit.server.launch import DEFAULT_PORT, KEY_ENV
from kit.util import human_size, text_table


def _common(p) -> None:
    p.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}",
                   help=f"the server (default http://127.0.0.1:{DEFAULT_PORT})")
    p.add_argument("--api-key-env", metavar="VAR", default=KEY_ENV,
                   help=f"environment variable holding the API key (default {KEY_ENV})")


def register(sub) -> None:
    p = sub.add_parser("ps", help="models a running kit serve holds in memory",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.set_defaults(func=cmd_ps)
    s = sub.add_parser("stop", help="unload a model from a running kit serve",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model")
    _common(s)
    s.set_defaults(func=cmd_stop)


def _call(a, method: str, path: str, body=None) -> dict:
    import httpx

    from kit.errors import RemoteError

    key = os.environ.get(a.api_key_env, "")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = a.url.rstrip("/") + path
    try:
        r = httpx.request(method, url, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise RemoteError(f"No server answered at {a.url} ({exc}). Start one with "
                          "`kit serve`, or give its address with --url.") from exc
    if r.status_code >= 400:
        try:
            why = r.json().get("error")
        except ValueError:
            why = r.text[:200]
        raise RemoteError(f"{url} answered {r.status_code}: {why}")
    return r.json()


def cmd_ps(a) -> int:
    models = _call(a, "GET", "/api/ps").get("models", [])
    if not models:
        print("No model is loaded.")
        return 0
    rows = [{"name": m["name"], "size": human_size(m.get("size") or 0),
             "context": str(m.get("context_length", "")),
             "until": (m.get("expires_at") or "kept loaded")[:19].replace("T", " ")}
            for m in models]
    print(text_table(rows, right=("size", "context")))
    return 0


def cmd_stop(a) -> int:
    _call(a, "POST", "/api/generate", {"model": a.model, "keep_alive": 0})
    print(f"Unloaded {a.model} (an answer still running finishes first).")
    return 0
