"""A room's JupyterHub under load: learners log in and run notebook 01 at once.

Run with `python benchmarks/jupyterhub.py [--users 10] [--threads N]`. Starts a
real JupyterHub on 127.0.0.1 (kit.room.hub: configurable-http-proxy from npm,
SimpleLocalProcessSpawner, one shared `kit serve` with a key per learner),
then every learner, at the same moment, logs in through the Hub's login form,
starts their JupyterLab server and a kernel, and runs notebook 01's core cells
(kit.room.hub_check.CORE_CELLS: load on the remote engine, tokens, a
completion, chats, seeds, a stop string) over the kernel websocket. Prints one
row per learner (server start, cells completed, requests the kit server
counted for their key, peak memory of their server + kernel) and the room's
totals: all learners at the peak, the hub and proxy, the kit server.
Everything is stopped at the end, also on failure. Needs the [hub] extra and
npm. On a shared machine the seconds are noisy; the memory and the counts are not.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import psutil

from kit.models.starter import install_starter
from kit.room.hub import start_room
from kit.room.hub_check import check_room, format_report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="the kit server's threads")
    a = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # a server beside 2N processes
    install_starter(quiet=True)
    names = [f"learner-{i}" for i in range(1, a.users + 1)]
    cpus = os.cpu_count()
    mem = psutil.virtual_memory().total / 2**30
    print(f"Machine: {platform.machine()}, {cpus} cores, {mem:.0f} GiB; load average "
          f"{os.getloadavg()[0]:.1f} at start")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kit-hub-bench-") as folder:
        with start_room(names, room=folder, port=0, n_threads=a.threads,
                        quiet=True) as room:
            started = time.monotonic() - t0
            report = check_room(room)
        print(f"Hub and kit server started in {started:.1f} s; {a.users} learners at once:")
        print(format_report(report))
    left = [r.name for r in report.learners if r.problem]
    print(f"load average {os.getloadavg()[0]:.1f} at the end; everything stopped "
          f"in {time.monotonic() - t0:.0f} s in all")
    return 0 if report.cells_ok == report.cells_total and not left else 1


if __name__ == "__main__":
    raise SystemExit(main())
