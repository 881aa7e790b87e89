"""`kit pull`, `kit rm`, `kit import`, `kit search`, `kit catalog`, `kit mirror`.

Thin shells over kit.models (registry, pull, hub, catalog, mirror).
"""
from __future__ import annotations

import sys

from kit.errors import HubOffline, ModelNotFound, PortInUse
from kit.models.mirror import Mirror
from kit.fit import available_memory
from kit.util import human_size
from kit.models.catalog import find, format_table, table
from kit.models.hub import search
from kit.models.pull import import_file, pull, remove
from kit.models.registry import installed


def cmd_pull(a) -> int:
    pull(a.name, quiet=a.quiet, progress=not a.quiet)
    return 0


def cmd_rm(a) -> int:
    models = installed()
    if a.name not in models:
        raise ModelNotFound(a.name, list(models))
    entry = models[a.name]
    if not a.yes:
        print(f"Remove {a.name} ({human_size(entry['size'])}, {entry['path']})? [y/N] ",
              end="", flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("Nothing removed.")
            return 1
    done = remove(a.name)
    freed = f", freed {human_size(done['freed'])}" if done["freed"] else ""
    print(f"Removed {a.name}{freed}." + ("" if done["deleted"] else
          " (Only forgotten: the file is not the kit's to delete.)"))
    if entry.get("source") == "starter":
        print("Run `kit setup` to install the starter model again.")
    return 0


def cmd_import(a) -> int:
    import_file(a.file, a.name, copy=not a.in_place, force=a.force)
    return 0


def _catalog_lines(text: str) -> list[str]:
    return [f"  {e['name']:<22} {human_size(e['size']):>8}  {e['title']}  "
            f"(licence {e['license']})" for e in find(text)]


def cmd_search(a) -> int:
    catalog = _catalog_lines(a.text)
    try:
        hits = search(a.text, sort=a.sort, limit=a.limit)
    except HubOffline as exc:
        print(f"The Hub cannot be searched now: {exc}")
        print("Catalog models matching " + repr(a.text) + ":" if catalog else
              f"No catalog model matches {a.text!r}; `kit catalog` lists them all.")
        print("\n".join(catalog))
        return 0 if catalog else 1
    if catalog:
        print("In the kit's catalog (`kit pull NAME`):")
        print("\n".join(catalog))
    print(f"On the Hub, GGUF repositories by {a.sort} "
          "(`kit pull hf.co/OWNER/REPO:Q4_K_M`):")
    for hit in hits:
        print(f"  {hit}")
    if not hits:
        print("  (none)")
    return 0


def cmd_catalog(a) -> int:
    print(format_table(table(a.ctx, available_memory()[0])))
    return 0


def cmd_mirror(a) -> int:
    try:
        server = Mirror(a.folder).bind(a.host, a.port)
    except OSError as exc:
        raise PortInUse(a.host, a.port, exc.strerror or str(exc)) from exc
    print(f"Serving {a.folder} as a Hub mirror at {server.url} (Ctrl-C stops).")
    if a.host in ("127.0.0.1", "localhost"):
        print(f"This computer only: export HF_ENDPOINT={server.url} "
              "(add --host 0.0.0.0 to serve the room).")
    else:
        print("On each laptop: export HF_ENDPOINT=http://THIS-COMPUTER'S-ADDRESS:"
              f"{server.server_address[1]} (anyone on this network can download).")
    sys.stdout.flush()
    try:
        server.serve_forever()  # uvicorn stops on Ctrl-C, then raises it here
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def register(sub) -> None:
    p = sub.add_parser("pull", help="download a model (catalog name or hf.co/OWNER/REPO:QUANT)")
    p.add_argument("name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pull)
    r = sub.add_parser("rm", help="remove a model (asks first)")
    r.add_argument("name")
    r.add_argument("--yes", "-y", action="store_true", help="do not ask")
    r.set_defaults(func=cmd_rm)
    i = sub.add_parser("import", help="give a local .gguf file a kit name")
    i.add_argument("file")
    i.add_argument("--name", required=True)
    i.add_argument("--in-place", action="store_true",
                   help="register the file where it is instead of copying it")
    i.add_argument("--force", action="store_true", help="replace a model of that name")
    i.set_defaults(func=cmd_import)
    s = sub.add_parser("search", help="search GGUF models on the Hub and the catalog")
    s.add_argument("text")
    s.add_argument("--sort", choices=("downloads", "likes"), default="downloads")
    s.add_argument("--limit", type=int, default=10)
    s.set_defaults(func=cmd_search)
    c = sub.add_parser("catalog", help="the kit's curated models, with fit verdicts")
    c.add_argument("--ctx", type=int, default=2048, help="context size for the estimate")
    c.set_defaults(func=cmd_catalog)
    m = sub.add_parser("mirror", help="serve a folder of models as a Hub mirror (HF_ENDPOINT)")
    m.add_argument("folder")
    m.add_argument("--host", default="127.0.0.1",
                   help="0.0.0.0 to serve the room (default: this computer only)")
    m.add_argument("--port", type=int, default=8766)
    m.set_defaults(func=cmd_mirror)
