"""`kit pack build|install|serve`: prepare a room that has no internet."""
from __future__ import annotations
from kit.room.install import install_pack
from kit.room.pack import build_pack
from kit.room.serve import serve_pack


def cmd_build(a) -> int:
    import platform

    # x86-64 processors differ (AVX-512 or not): by default the pack carries
    # a wheel for any of them with AVX2, compiled once (kit.room.wheelhouse)
    portable = a.portable if a.portable is not None else (
        platform.machine().lower() in ("x86_64", "amd64") and not a.llama_wheel)
    build_pack(a.dir, models=a.models, wheels=not a.no_wheels, force=a.force,
               llama_wheel=a.llama_wheel, portable=portable)
    return 0


def cmd_install(a) -> int:
    install_pack(a.source, install_wheels=a.install_wheels)
    return 0


def cmd_serve(a) -> int:
    serve_pack(a.dir, host=a.host, port=a.port, quiet=a.quiet)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pack", help="offline workshop packs: build, serve, install",
        description="Prepare a room without internet: build a pack of models "
        "and wheels, serve it on the local network, install it on laptops.")
    verbs = p.add_subparsers(dest="pack_command", required=True, metavar="VERB")
    b = verbs.add_parser("build", help="write models, checksums and wheels "
                         "to a folder")
    b.add_argument("dir", help="a new or empty folder")
    b.add_argument("--models", default="smollm2:135m",
                   help="comma-separated model names (default: smollm2:135m)")
    b.add_argument("--no-wheels", action="store_true",
                   help="models only, no Python packages")
    b.add_argument("--force", action="store_true",
                   help="replace the pack already in DIR")
    b.add_argument("--llama-wheel", metavar="FILE",
                   help="a llama-cpp-python wheel to ship (e.g. a portable one)")
    kind = b.add_mutually_exclusive_group()
    kind.add_argument("--portable", dest="portable", action="store_true", default=None,
                      help="llama-cpp-python for any x86-64 laptop with AVX2, compiled "
                      "once (about 11 minutes) and kept (the default on x86-64)")
    kind.add_argument("--native", dest="portable", action="store_false",
                      help="ship the llama-cpp-python installed here, tuned for this "
                      "processor (laptops with older ones may fail)")
    b.set_defaults(func=cmd_build)
    i = verbs.add_parser("install", help="verify and register a pack's models")
    i.add_argument("source", metavar="DIR_OR_URL")
    i.add_argument("--install-wheels", action="store_true",
                   help="also pip-install the pack's Python packages, offline")
    i.set_defaults(func=cmd_install)
    s = verbs.add_parser("serve", help="serve a pack over HTTP to the room")
    s.add_argument("dir")
    s.add_argument("--port", type=int, default=8765, help="default 8765; 0 = any")
    s.add_argument("--host", default="127.0.0.1",
                   help="0.0.0.0 lets the room reach it (default: this "
                   "computer only)")
    s.add_argument("--quiet", action="store_true", help="no line per download")
    s.set_defaults(func=cmd_serve)
