"""Exact vector search: ragloom's in-memory store vs faiss (IndexFlatIP exact, IndexHNSWFlat approximate), and
chromadb's embedded HNSW, on unit vectors (n × 384) drawn around 1,000 cluster centres like real embeddings
(``--uniform`` for uniform random vectors, the worst case for graph indexes).

Single-query latency p50/p99 over the same queries, alternating, and recall@10 of the approximate indexes against
the exact answer. Sizes default to 100k and 1M (chromadb only at the first size: inserting 1M takes many minutes).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from benchmarks._common import machine, median, peak_rss_mib, percentile


def _chunks(n: int):  # type: ignore[no-untyped-def]
    from ragloom.types import Chunk

    return [Chunk(id=f"d{i}#0-1", doc_id=f"d{i}", text="", start=0, end=1) for i in range(n)]


def _unit(rng: np.random.Generator, n: int, dim: int, centers: np.ndarray | None = None) -> np.ndarray:
    """Unit vectors; around ``centers`` (a Gaussian mixture, like real embeddings) when given, else uniform."""
    if centers is None:
        x = rng.standard_normal((n, dim), dtype=np.float32)
    else:
        x = centers[rng.integers(0, len(centers), n)] + 0.35 * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _latencies(fn, queries: np.ndarray) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for q in queries:
        started = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks vector_search", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--no-chroma", action="store_true")
    parser.add_argument("--no-hnsw", action="store_true")
    parser.add_argument("--uniform", action="store_true", help="uniform random vectors (worst case for HNSW)")
    args = parser.parse_args(argv)

    import faiss

    from ragloom.stores import InMemoryVectorStore

    rng = np.random.default_rng(0)
    print(f"# vector_search · dim {args.dim} · k {args.k} · {args.queries} single queries · {machine()}")
    print("| n | system | build s | p50 ms | p99 ms | ratio p50 vs faiss flat | recall@10 |")
    print("|---|---|---|---|---|---|---|")
    centers = None if args.uniform else _unit(rng, 1000, args.dim)
    for size in args.sizes:
        data = _unit(rng, size, args.dim, centers)
        queries = _unit(rng, args.queries, args.dim, centers)
        started = time.perf_counter()
        store = InMemoryVectorStore(dim=args.dim)
        store.replace_documents([], _chunks(size), data)
        build = {"ragloom exact (memory)": time.perf_counter() - started}
        started = time.perf_counter()
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(data)
        build["faiss IndexFlatIP"] = time.perf_counter() - started
        systems = {
            "ragloom exact (memory)": lambda q: store.search(q[None, :], args.k),
            "faiss IndexFlatIP": lambda q: flat.search(q[None, :], args.k),
        }
        if not args.no_hnsw:
            started = time.perf_counter()
            hnsw = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
            hnsw.add(data)
            hnsw.hnsw.efSearch = 64
            build["faiss IndexHNSWFlat (M=32)"] = time.perf_counter() - started
            systems["faiss IndexHNSWFlat (M=32)"] = lambda q: hnsw.search(q[None, :], args.k)
        if not args.no_chroma and size == args.sizes[0]:
            from ragloom.stores.chroma import ChromaVectorStore

            folder = tempfile.mkdtemp(prefix="rl-chroma-bench-")
            started = time.perf_counter()
            chroma = ChromaVectorStore(folder)
            chunks = _chunks(size)
            step = 20_000
            for begin in range(0, size, step):
                chroma.replace_documents([], chunks[begin : begin + step], data[begin : begin + step])
            build["chromadb embedded (HNSW)"] = time.perf_counter() - started
            systems["chromadb embedded (HNSW)"] = lambda q: chroma.search(q[None, :], args.k)

        exact = {i: {int(x) for x in flat.search(queries[i : i + 1], args.k)[1][0]} for i in range(len(queries))}
        lat: dict[str, list[float]] = {}
        for fn in systems.values():
            fn(queries[0])  # warm-up
        for name, fn in systems.items():
            lat[name] = _latencies(fn, queries)
        base = median(lat["faiss IndexFlatIP"])
        for name, values in lat.items():
            recall = ""
            if name != "faiss IndexFlatIP":
                found = 0
                for i, q in enumerate(queries):
                    result = systems[name](q)
                    ids = result[0] if isinstance(result, list) else result[1][0]
                    got = {int(c.doc_id[1:]) for c, _ in ids} if isinstance(result, list) else {int(x) for x in ids}
                    found += len(got & exact[i])
                recall = f"{found / (len(queries) * args.k):.3f}"
            print(
                f"| {size:,} | {name} | {build[name]:.1f} | {median(values):.2f} | {percentile(values, 99):.2f} | "
                f"{median(values) / base:.2f}x | {recall or '1 (reference)'} |",
                flush=True,
            )
        print(f"| {size:,} | (process peak RSS so far) | | | | | {peak_rss_mib():.0f} MiB |")
