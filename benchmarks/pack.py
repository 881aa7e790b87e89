"""Offline packs: serving speed and resuming, measured side by side.

    .venv/bin/python benchmarks/pack.py

Prints (never asserts; shared machines are noisy):
- download throughput of the starter model from `kit pack serve` as a ratio
  of Python's plain http.server on the same file, with the same client,
  alternating runs;
- how much of the file a resumed install transfers when 90% already arrived;
- a full `install_pack` over loopback (download, sha256, register).
"""
import hashlib
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kit.fileserver import RequestLog  # noqa: E402
from kit.models.starter import install_starter  # noqa: E402
from kit.room.install import install_pack  # noqa: E402
from kit.room.pack import build_pack  # noqa: E402
from kit.room.serve import PackServer, pack_app  # noqa: E402

SENT = {"bytes": 0}


def count(entry: dict) -> None:
    """Bytes of model files sent (what a resumed install transfers)."""
    if "/models/" in entry["path"]:
        SENT["bytes"] += entry["sent"]


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def start(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def fetch(url: str) -> float:
    t0, h = time.perf_counter(), hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as r:
        while block := r.read(1 << 20):
            h.update(block)
    return time.perf_counter() - t0


def main(repeats: int = 5) -> None:
    with tempfile.TemporaryDirectory(prefix="kit-bench-pack-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("KIT_HOME", str(tmp / "instructor"))
        install_starter(quiet=True)
        pack = build_pack(tmp / "pack", wheels=False, quiet=True)
        rel = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
        size = (pack / rel).stat().st_size

        kit_srv = PackServer(RequestLog(pack_app(pack), on_done=count)).start()
        plain = start(ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(Quiet, directory=str(pack))))
        plain_url = f"http://127.0.0.1:{plain.server_address[1]}/{rel}"
        times = {"kit pack serve": [], "http.server": []}
        for _ in range(repeats):  # alternate, so both see the same noise
            times["kit pack serve"].append(fetch(kit_srv.url + rel))
            times["http.server"].append(fetch(plain_url))
        mbps = {k: size / statistics.median(v) / 1e6 for k, v in times.items()}
        print(f"File: {size / 1e6:.0f} MB, {repeats} downloads each, median")
        for k, v in mbps.items():
            print(f"  {k:<15} {v:8.0f} MB/s")
        print(f"  ratio kit/plain {mbps['kit pack serve'] / mbps['http.server']:8.2f}")

        os.environ["KIT_HOME"] = str(tmp / "learner")
        target = tmp / "learner" / "models" / "smollm2-135m" / Path(rel).name
        target.parent.mkdir(parents=True)
        part = target.with_name(target.name + ".partial")
        part.write_bytes((pack / rel).read_bytes()[: int(size * 0.9)])
        SENT["bytes"] = 0
        t0 = time.perf_counter()
        install_pack(kit_srv.url, quiet=True)
        resumed = time.perf_counter() - t0
        print(f"Resume at 90%: transferred {SENT['bytes'] / size:.1%} of the "
              f"file, install took {resumed:.2f} s")

        os.environ["KIT_HOME"] = str(tmp / "learner2")
        SENT["bytes"] = 0
        t0 = time.perf_counter()
        install_pack(kit_srv.url, quiet=True)
        full = time.perf_counter() - t0
        print(f"Full install over loopback: {full:.2f} s "
              f"({size / full / 1e6:.0f} MB/s including sha256 and register)")
        kit_srv.stop()
        plain.shutdown()
        plain.server_close()


if __name__ == "__main__":
    main()
