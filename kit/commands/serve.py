"""`kit serve [MODEL ...]`: an OpenAI- and Ollama-compatible API on this computer.

    kit serve                         every installed model, http://127.0.0.1:8000
    kit serve smollm2:135m --port 11435
    kit serve --host 0.0.0.0          the room can reach it: an API key is needed
"""
from __future__ import annotations

import argparse
from kit.errors import BadParameter
from kit.server.launch import DEFAULT_PORT, is_local, KEY_ENV, room_key, serve


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve models over an OpenAI- and Ollama-"
                       "compatible API", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="kit names or .gguf paths (default: every installed model)")
    p.add_argument("--port", type=int, default=None, help="default 8000; 0 = any free port")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer "
                   "only); any other address requires an API key")
    p.add_argument("--api-key-env", metavar="VAR", default=None,
                   help="read the API key from this environment variable (default "
                   "KIT_API_KEY when --host is given; else a key file is made)")
    p.add_argument("--ctx", type=int, help="context size for each model (default 2048)")
    p.add_argument("--threads", type=int)
    p.add_argument("--memory", type=int, metavar="MB",
                   help="keep loaded models within this many MB (default: 70%% of "
                   "the memory available at start)")
    p.add_argument("--max-queue", type=int, default=8,
                   help="requests that may wait for one model before others are "
                   "told to retry (HTTP 503); default 8")
    p.add_argument("--parallel", type=int, default=None, metavar="N",
                   help="answers one model gives at once, in one batch (default: "
                   "as many as the memory budget allows, at most 8; 1 = one at a time)")
    p.add_argument("--max-body", type=float, default=10, metavar="MB",
                   help="largest request accepted, in MB (default 10; larger: HTTP 413)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to this host name (for "
                   "example the name a proxy uses); this computer's own names "
                   "always work")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--ready-file", help=argparse.SUPPRESS)
    p.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)


def cmd_serve(a) -> int:
    import logging

    port = DEFAULT_PORT if a.port is None else a.port
    if not 0 <= port <= 65535:
        raise BadParameter("--port", port, "a number from 0 to 65535 (0: any free port)")
    if a.max_queue < 1:
        raise BadParameter("--max-queue", a.max_queue, "1 or more")
    if a.parallel is not None and not 1 <= a.parallel <= 64:
        raise BadParameter("--parallel", a.parallel, "a number from 1 to 64")
    if not a.max_body > 0:
        raise BadParameter("--max-body", a.max_body, "a size in MB above 0")
    api_key = None
    if not is_local(a.host) or a.api_key_env:
        api_key, where = room_key(a.api_key_env or KEY_ENV)
        print(f"API key required; it is in {where} (not printed here). "
              "Learners pass it as api_key=... (OpenAI clients) or the header "
              "'Authorization: Bearer KEY'.", flush=True)
    logging.basicConfig(level=a.log_level.upper(), format="%(levelname)s: %(message)s")
    serve(a.models, host=a.host, port=port, api_key=api_key, n_ctx=a.ctx,
          n_threads=a.threads, max_queue=a.max_queue, log_level=a.log_level,
          memory_budget=a.memory * 1_000_000 if a.memory else None,
          ready_file=a.ready_file, parent_pid=a.parent_pid,
          max_body=int(a.max_body * 1_000_000), allow_hosts=a.allow_host,
          parallel=a.parallel)
    return 0
