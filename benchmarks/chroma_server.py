"""Embedded chromadb vs a Chroma server (`chroma run`) on this machine: write rate, query latency, memory.

    python -m benchmarks chroma_server [--vectors 20000] [--dim 384]

Random unit vectors with 1 KB of text each (a 254-token chunk) go through ``ChromaVectorStore`` in 1,000-chunk
``replace_documents`` calls, then 50 single-vector queries (k=10) alternate between the two stores. The server's
resident memory is read from /proc after the writes; the on-disk size of both data directories is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _disk(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=384)
    args = parser.parse_args(argv)

    import httpx

    from ragloom.stores.chroma import ChromaVectorStore
    from ragloom.types import Chunk

    binary = Path(sys.executable).parent / "chroma"
    chroma = str(binary) if binary.exists() else shutil.which("chroma")
    if chroma is None:
        raise SystemExit("the `chroma` command (chromadb wheel) is missing")
    work = Path(tempfile.mkdtemp(prefix="ragloom-chroma-bench-"))
    port = _free_port()
    server = subprocess.Popen(
        [chroma, "run", "--path", str(work / "server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        stores = {
            "embedded (PersistentClient)": ChromaVectorStore(work / "embedded", collection="bench"),
            "server (HttpClient, loopback)": ChromaVectorStore(url=url, collection="bench"),
        }
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((args.vectors, args.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        text = "x" * 1000
        chunks = [
            Chunk(id=f"d{i // 4}#{i}", doc_id=f"d{i // 4}", text=text, start=0, end=1000, page=1)
            for i in range(args.vectors)
        ]
        print(f"# {args.vectors} vectors of {args.dim} dims, 1 KB text each (loaded shared machine)")
        print("| store | write chunks/s | query p50 ms | query p90 ms | disk MiB |\n|---|---|---|---|---|")
        write = {}
        for label, store in stores.items():
            t0 = time.perf_counter()
            for begin in range(0, args.vectors, 1000):
                part = chunks[begin : begin + 1000]
                store.replace_documents(sorted({c.doc_id for c in part}), part, vectors[begin : begin + 1000])
            write[label] = args.vectors / (time.perf_counter() - t0)
        latencies: dict[str, list[float]] = {label: [] for label in stores}
        queries = rng.standard_normal((55, args.dim)).astype(np.float32)
        for i, query in enumerate(queries):
            for label, store in stores.items():
                t0 = time.perf_counter()
                store.search(query[None, :], 10)
                if i >= 5:
                    latencies[label].append((time.perf_counter() - t0) * 1000)
        disks = {
            "embedded (PersistentClient)": _disk(work / "embedded"),
            "server (HttpClient, loopback)": _disk(work / "server"),
        }
        for label in stores:
            values = sorted(latencies[label])
            p90 = values[int(0.9 * (len(values) - 1))]
            print(
                f"| {label} | {write[label]:.0f} | {statistics.median(values):.2f} | {p90:.2f} | {disks[label]:.0f} |"
            )
        print(f"\nchroma server resident memory after the writes: {_rss_mb(server.pid):.0f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
