"""`kit hub start / check / stop`: a JupyterHub for a room, sharing one kit server.

    kit hub start --users 30                learners learner-1 ... learner-30
    kit hub start --learners names.txt      one name a line (ana, ben, ...)
    kit hub start --host 0.0.0.0            the room reaches it (default: this computer only)
    kit hub check --users 10                10 learners log in and run notebook 01 at once
    kit hub stop                            stop a room started in another terminal
    kit hub stop --remove-users             ... and delete the learners' system users

Run as root, the hub gives each learner a system user of their own (kit-NAME),
so no learner can read another's key or the room's secrets. Not as root, a room
of several learners is refused unless you pass --shared-user-unsafe.
    kit hub start --server-url http://10.0.0.5:8080 --server-key-env GPU_KEY
                                            learners use a GPU server instead

Learners open http://HOST:8001, log in with their name and the room's password
(in ROOM/secrets.json, never printed), and their notebooks use the shared server:
model = kit.load() (KIT_REMOTE_URL is set for them). Needs `pip install 'local-llm-workshop-kit[hub]'`
and npm (docs/classroom.md, C).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("hub", help="a JupyterHub for a room, with one shared kit server",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", required=True)
    start = verbs.add_parser("start", help="start the hub and the kit server (Ctrl-C stops)")
    who = start.add_mutually_exclusive_group()
    who.add_argument("--users", type=int, default=None, metavar="N",
                     help="N learners called learner-1 ... learner-N (default 10)")
    who.add_argument("--learners", metavar="FILE", help="learners' names, one a line")
    start.add_argument("--model", default="smollm2:135m")
    start.add_argument("--host", default="127.0.0.1",
                       help="address the hub listens on (default 127.0.0.1: this computer)")
    start.add_argument("--port", type=int, default=8001)
    start.add_argument("--dir", help="the room's folder (default KIT_HOME/hub)")
    start.add_argument("--threads", type=int, help="the kit server's threads")
    start.add_argument("--parallel", type=int, metavar="N",
                       help="answers the kit server gives at once (its --parallel)")
    start.add_argument("--server-url", metavar="URL",
                       help="learners use this OpenAI-compatible server (llama.cpp's or "
                       "vLLM on a GPU machine) instead of a kit serve started here")
    start.add_argument("--server-key-env", metavar="VAR",
                       help="environment variable holding that server's API key")
    start.add_argument("--shared-user-unsafe", action="store_true",
                       help="not root: run all learners as this one user, although each "
                       "can then read the others' keys and the room's password")
    start.add_argument("--check", type=int, default=0, metavar="N",
                       help="once started, N learners run notebook 01 at once; report, stop")
    start.set_defaults(func=cmd_start)
    check = verbs.add_parser("check", help="learners log in and run notebook 01 at once")
    check.add_argument("--users", type=int, default=None, metavar="N",
                       help="how many of the room's learners (default all)")
    check.add_argument("--dir", help="the room's folder (default KIT_HOME/hub)")
    check.set_defaults(func=cmd_check)
    stop = verbs.add_parser("stop", help="stop a room started in another terminal")
    stop.add_argument("--dir", help="the room's folder (default KIT_HOME/hub)")
    stop.add_argument("--remove-users", action="store_true",
                      help="also delete the system users the room made (homes stay)")
    stop.set_defaults(func=cmd_stop)


def learner_names(users: int | None, learners_file: str | None) -> list[str]:
    if learners_file:
        lines = Path(learners_file).read_text().splitlines()
        return [x.strip() for x in lines if x.strip() and not x.startswith("#")]
    return [f"learner-{i}" for i in range(1, (users or 10) + 1)]


def cmd_start(a) -> int:
    import os
    import time

    from kit.room.hub import start_room

    key = os.environ.get(a.server_key_env, "") if a.server_key_env else None
    room = start_room(learner_names(a.users, a.learners), model=a.model, host=a.host,
                      port=a.port, room=a.dir, n_threads=a.threads, parallel=a.parallel,
                      server_url=a.server_url, server_key=key,
                      shared_user=a.shared_user_unsafe)
    try:
        if a.check:
            return _report(room, a.check)
        print(f"Learners: {', '.join(room.learners)}. Stop the room with Ctrl-C.",
              flush=True)
        while room.hub.poll() is None and (room.server is None or room.server.running):
            time.sleep(1)
        if not (room.room / "room.json").exists():  # `kit hub stop` elsewhere
            print("The room was stopped (kit hub stop).")
            return 0
        print("The hub or the kit server stopped; see", room.hub_log)
        return 1
    except KeyboardInterrupt:
        print("\nStopping the room ...", flush=True)
        return 0
    finally:
        room.stop()


def _report(room, users: int | None) -> int:
    from kit.room.hub_check import check_room, format_report

    report = check_room(room, users=users)
    print(format_report(report))
    return 0 if report.cells_ok == report.cells_total else 1


def cmd_check(a) -> int:
    from kit.room.hub import open_room

    return _report(open_room(a.dir), a.users)


def cmd_stop(a) -> int:
    from kit.room.hub import open_room

    room = open_room(a.dir)
    room.stop()
    print(f"Stopped the room in {room.room}.")
    if a.remove_users:
        from kit.room.hub_users import remove_accounts

        gone = remove_accounts(room.room)
        print(f"Removed {len(gone)} system user(s): {', '.join(gone) or 'none'}.")
    return 0
