"""`kit keys add NAME / list / revoke NAME`: a key per learner or table.

    kit keys add table-3                          prints the key, once
    kit keys add ana --models smollm2:135m        this key may use only these
    kit keys list                                 names, models, made, revoked
    kit keys revoke table-3                       stops working at once

A running `kit serve` accepts every active key (Authorization: Bearer KEY)
and shows each key's use on /kit/status. Keys are stored only as hashes.
"""
from __future__ import annotations

import argparse
import time

from kit.server.keys import add_key, keys_file, read_keys, revoke_key
from kit.util import text_table


def register(sub) -> None:
    p = sub.add_parser("keys", help="API keys for a room: one per learner or table",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="make a key (shown once)")
    add.add_argument("name", help="who or which table it is for, e.g. table-3")
    add.add_argument("--models", default="", metavar="A,B",
                     help="models this key may use: installed or catalog names, "
                     "or families such as smollm2 (default: all the server offers)")
    add.set_defaults(func=cmd_add)
    ls = verbs.add_parser("list", help="the keys (never the keys themselves)")
    ls.set_defaults(func=cmd_list)
    rv = verbs.add_parser("revoke", help="stop a key working")
    rv.add_argument("name")
    rv.set_defaults(func=cmd_revoke)


def cmd_add(a) -> int:
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    key = add_key(a.name, models)
    print(f"Key for {a.name} (shown only now; hand it over, it is not stored):")
    print(key)
    return 0


def cmd_list(a) -> int:
    keys = read_keys()
    if not keys:
        print(f"No keys yet ({keys_file()}): make one with `kit keys add NAME`.")
        return 0
    rows = [{"name": k.name, "models": ", ".join(k.models) or "all",
             "made": time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created)),
             "state": "revoked" if k.revoked else "active"} for k in keys.values()]
    print(text_table(rows))
    return 0


def cmd_revoke(a) -> int:
    revoke_key(a.name)
    print(f"Revoked {a.name}: a running server refuses it from its next request.")
    return 0
