"""`kit mcp serve`: the kit's library tools for any MCP host (notebook 11, docs/mcp.md).

    kit mcp serve                          stdio: an MCP host starts this command
    kit mcp serve --folder ~/Documents     search these documents (default: the kit's)
    kit mcp serve --search keywords        no embedding model needed
    kit mcp serve --http --port 8765       streamable HTTP on 127.0.0.1/mcp, with a key
    kit mcp tools                          list the tools it offers, as a host sees them

Over HTTP every request needs Authorization: Bearer KEY: the room's key
(KIT_API_KEY, or the key file `kit serve` uses) or one from `kit keys add`.
"""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("mcp", help="the kit's tools as a Model Context Protocol server",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("serve", help="serve the tools (stdio, or --http)")
    _common(s)
    s.add_argument("--http", action="store_true",
                   help="streamable HTTP instead of stdio (for a room; needs a key)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address for --http (default 127.0.0.1: this computer only)")
    s.add_argument("--port", type=int, default=8765, help="port for --http (8765)")
    s.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another host name to answer for over --http (repeatable)")
    s.set_defaults(func=cmd_serve)
    t = verbs.add_parser("tools", help="list the tools, with what they may change")
    _common(t)
    t.set_defaults(func=cmd_tools)


def _common(p) -> None:
    p.add_argument("--folder", help="the documents to search (default: the kit's "
                   "bundled library documents)")
    p.add_argument("--search", choices=("auto", "meaning", "keywords"), default="auto",
                   help="auto: by meaning if the embedding model is installed, "
                   "else by keywords")


def _check_folder(a) -> None:
    from pathlib import Path

    from kit.errors import NoDocuments

    if a.folder and not Path(a.folder).expanduser().is_dir():
        raise NoDocuments(a.folder, "it is not a folder on this computer")


def cmd_serve(a) -> int:
    from kit.tools.mcp_server import build_server, say, serve_http

    _check_folder(a)
    if a.http:
        serve_http(a.folder, a.search, a.host, a.port, a.allow_host)
        return 0
    say("kit MCP server on stdio: an MCP host talks to it (Ctrl-C stops it).")
    build_server(a.folder, a.search).run()
    return 0


def cmd_tools(a) -> int:
    from kit.tools.mcp_client import kit_server_command, mcp_tools
    from kit.util import text_table

    _check_folder(a)
    command = kit_server_command(folder=a.folder, search=a.search)
    with mcp_tools(command) as tools:
        rows = [{"tool": t.name, "changes things": "yes (asks first)" if t.confirm
                 else "no", "what it does": t.description[:60]} for t in tools]
    print(text_table(rows))
    return 0
