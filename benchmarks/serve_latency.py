"""`ragloom serve` overhead and CLI cold start.

    RAGLOOM_SHARED_DATA=/work/shared/data python -m benchmarks serve_latency [--queries 40]

1. Warm query latency: the same index (MiniLM, exact store, the 4 sample PDFs) queried through the Python API
   (``Pipeline.retrieve``) in this process and through a ``ragloom serve`` process over HTTP (keep-alive httpx),
   alternating query by query; reports p50/p90 of each and the p50 of the per-query difference (the overhead).
2. Cold start of one CLI call: wall time of ``ragloom search`` (loads the models) vs ``ragloom search --server``
   (an HTTP client only), and ``python -X importtime`` of the loading call: the modules that take the longest.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import SHARED_DATA, offline_model

QUERIES = [
    "maximum penalty for a nonwillful violation of the Bank Secrecy Act",
    "is a daily-rate worker paid on a salary basis",
    "debt obtained by a partner's fraud discharge in bankruptcy",
    "Simmons parole ineligibility instruction Arizona",
    "highly compensated employee annual income threshold",
    "significant change in the law Rule 32.1(g)",
    "per-account or per-report penalty accrual",
    "common law of fraud partnership liability",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ragloom.recipes.cli", *args]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=40, help="queries per side (cycling through 8 texts)")
    parser.add_argument("--index", type=Path, default=None, help="reuse/keep the index here")
    parser.add_argument(
        "--retriever",
        default="dense",
        choices=["dense", "bm25"],
        help="bm25: millisecond queries, so the overhead is not lost in the encoder's noise on a loaded machine",
    )
    args = parser.parse_args(argv)

    import httpx

    from ragloom.recipes.config import IndexSpec, RetrieverSpec, open_pipeline

    index = args.index or Path(tempfile.mkdtemp(prefix="ragloom-serve-bench-")) / "index"
    if not (index / "ragloom.json").exists():
        kind = args.retriever
        store = "memory" if kind == "dense" else "bm25s"
        spec = IndexSpec(retrievers=(RetrieverSpec(kind, kind, str(offline_model("minilm")), store),))
        with open_pipeline(index, spec=spec) as pipeline:
            pipeline.ingest([SHARED_DATA / "sample_pdfs"], include=["*.pdf"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        _cli("serve", "--index", str(index), "--port", str(port), "--no-ask", "--no-mcp", "--offline"),
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        pipeline = open_pipeline(index)
        api: list[float] = []
        http: list[float] = []
        health: list[float] = []
        with httpx.Client(timeout=60) as client:
            for i in range(args.queries + 3):
                query = QUERIES[i % len(QUERIES)]
                t0 = time.perf_counter()
                local = pipeline.retrieve(query, k=5)
                t1 = time.perf_counter()
                remote = client.post(url + "/v1/search", json={"query": query, "k": 5}).json()["hits"]
                t2 = time.perf_counter()
                client.get(url + "/v1/health")
                health.append((time.perf_counter() - t2) * 1000)
                assert [h.chunk.id for h in local] == [h["chunk_id"] for h in remote]
                if i >= 3:  # warm-up
                    api.append((t1 - t0) * 1000)
                    http.append((t2 - t1) * 1000)
        pipeline.close()

        diffs = [h - a for a, h in zip(api, http)]
        print(f"# {args.retriever}: warm search, k=5, {len(api)} queries per side, alternating (loaded shared machine)")
        print("| path | p50 ms | p90 ms |\n|---|---|---|")
        print(f"| Python API Pipeline.retrieve | {_pct(api, 0.5):.2f} | {_pct(api, 0.9):.2f} |")
        print(f"| ragloom serve, POST /v1/search | {_pct(http, 0.5):.2f} | {_pct(http, 0.9):.2f} |")
        print(f"| per-query overhead (HTTP - API) | {statistics.median(diffs):.2f} | {_pct(diffs, 0.9):.2f} |")
        print(f"| GET /v1/health round trip (no model work) | {_pct(health, 0.5):.2f} | {_pct(health, 0.9):.2f} |")

        query = QUERIES[0]
        timings = {}
        for label, command in (
            ("ragloom search (loads models)", _cli("search", query, "--index", str(index), "--json", "--offline")),
            ("ragloom search --server", _cli("search", query, "--server", url, "--json")),
            ("ragloom --help", _cli("--help")),
        ):
            runs = []
            for _ in range(3):
                t0 = time.perf_counter()
                subprocess.run(command, env=env, check=True, capture_output=True)
                runs.append(time.perf_counter() - t0)
            timings[label] = statistics.median(runs)
        print("\n# cold CLI call, wall seconds (median of 3)")
        print("| command | s |\n|---|---|")
        for label, seconds in timings.items():
            print(f"| {label} | {seconds:.2f} |")
    finally:
        server.terminate()
        server.wait(timeout=30)

    profile = subprocess.run(
        [sys.executable, "-X", "importtime", *_cli("search", QUERIES[0], "--index", str(index), "--json")[1:]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in profile.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if found and len(found.group(3)) <= 2:  # top-level imports and their direct children
            rows.append((int(found.group(2)) / 1e6, found.group(4)))
    print("\n# python -X importtime of `ragloom search` (cumulative s, largest top-level imports)")
    for seconds, module in sorted(rows, reverse=True)[:10]:
        print(f"{seconds:7.3f}  {module}")


if __name__ == "__main__":
    main()
