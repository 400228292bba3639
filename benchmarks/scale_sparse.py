"""``python -m benchmarks scale sparse``: exact vs approximate (Seismic-style) SPLADE-like search at 1M documents,
beside scipy brute force and bm25s (numpy, numba) over the very same postings.

The collection is synthetic with SPLADE-like statistics: a 30,522-term vocabulary whose document frequencies
follow a power law, ``--doc-terms`` terms a document (SPLADE documents pruned to their largest weights), weights
log-normal and larger for rarer terms. Weighted queries: ~24 terms with SPLADE-like weights; token queries: ~8
terms of weight 1 (inference-free SPLADE / BM25-style). Recall@10 is against the exact answer.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from benchmarks._common import machine, percentile

VOCAB = 30_522


def _popularity(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(VOCAB) + 20.0) ** 1.05
    p = p[rng.permutation(VOCAB)]
    return p / p.sum()


def collection(n_docs: int, doc_terms: int, seed: int = 0) -> Any:
    """A CSR documents × terms matrix with SPLADE-like statistics (see the module docstring)."""
    import scipy.sparse as sp

    p = _popularity(seed)
    cdf = np.cumsum(p)
    rarity = np.log1p(1.0 / (p * VOCAB)).astype(np.float32)  # an IDF-like term scale
    rng = np.random.default_rng(seed + 1)
    indptr, indices, data = [np.zeros(1, np.int64)], [], []
    offset = 0
    block = 1 << 15
    for start in range(0, n_docs, block):
        n = min(block, n_docs - start)
        draws = int(doc_terms * 1.4)
        terms = np.searchsorted(cdf, rng.random(n * draws)).clip(0, VOCAB - 1).astype(np.int64)
        rows = np.repeat(np.arange(n, dtype=np.int64), draws)
        packed = np.sort((rows << 15) | terms)  # sort-based dedup (numpy's hash unique is slow here)
        packed = packed[np.concatenate(([True], packed[1:] != packed[:-1]))]
        rows, terms = packed >> 15, packed & 0x7FFF
        first = np.searchsorted(rows, np.arange(n))
        keep = np.arange(rows.size) - first[rows] < doc_terms  # a random doc_terms of the distinct terms
        rows, terms = rows[keep], terms[keep]
        weights = (rng.lognormal(-0.3, 0.5, rows.size) * (0.3 + rarity[terms])).astype(np.float32)
        counts = np.bincount(rows, minlength=n)
        indptr.append(offset + np.cumsum(counts))
        offset += int(counts.sum())
        indices.append(terms.astype(np.int32))
        data.append(weights)
    return sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.concatenate(indptr)), (n_docs, VOCAB))


def queries(n: int, weighted: bool, seed: int = 0) -> list[Any]:
    from ragloom.types import SparseVector

    p = _popularity(seed)
    rarity = np.log1p(1.0 / (p * VOCAB))
    q = np.sqrt(p) / np.sqrt(p).sum()  # queries favour mid-frequency terms more than documents do
    rng = np.random.default_rng(seed + 2)
    out = []
    for _ in range(n):
        size = int(rng.integers(16, 33)) if weighted else int(rng.integers(4, 13))
        terms = np.unique(rng.choice(VOCAB, size=size, p=q, replace=False))
        values = rng.lognormal(-0.5, 0.6, terms.size) * (0.3 + rarity[terms]) if weighted else np.ones(terms.size)
        out.append(SparseVector(terms.astype(np.int32), values.astype(np.float32)))
    return out


def sparse(args: argparse.Namespace) -> None:
    from benchmarks.sparse_search import _bm25s_over, _bm25s_top
    from ragloom.stores.sparse import SparseIndex
    from ragloom.stores.sparse_approx import ApproxSearch
    from ragloom.types import Chunk

    k = args.k
    print(f"# scale sparse · {args.docs:,} synthetic SPLADE-like documents · k {k} · {machine()} (shared, loaded)")
    started = time.perf_counter()
    matrix = collection(args.docs, args.doc_terms)
    print(f"- generated {matrix.nnz:,} postings in {time.perf_counter() - started:.0f} s")
    chunks = [Chunk(id=f"d{i}#0-1", doc_id=f"d{i}", text="", start=0, end=1) for i in range(args.docs)]
    index = SparseIndex(None)
    index.replace_documents([], chunks, matrix)
    del chunks
    settings = [
        ApproxSearch(query_terms=8, postings=1024, rescore=5),
        ApproxSearch(query_terms=12, postings=2048, rescore=10),
        ApproxSearch(query_terms=16, postings=4096, rescore=10),
        ApproxSearch(query_terms=None, postings=8192, rescore=10),
    ]
    started = time.perf_counter()
    for setting in settings:  # build the impact-ordered heads once, outside the timings
        index.search(queries(1, True), k, approx=setting)
    print(f"- impact-ordered heads built in {time.perf_counter() - started:.0f} s")

    def top_ids(matches: list[Any]) -> set[int]:
        return {int(m.chunk.doc_id[1:]) for m in matches}

    print(
        "\n| workload | system | p50 ms | p99 ms | p50 ratio vs ragloom exact | recall@10 |\n|---|---|---|---|---|---|"
    )
    for workload, qs in (
        ("weighted (SPLADE)", queries(args.queries, True)),
        ("tokens (BM25-style)", queries(args.queries, False)),
    ):
        systems: dict[str, Any] = {"ragloom exact": lambda q: top_ids(index.search([q], k)[0])}
        systems["ragloom exact (MaxScore prune)"] = lambda q: top_ids(index.search([q], k, prune=True)[0])
        for s in settings:
            label = f"ragloom approx (q {s.query_terms or 'all'}, λ {s.postings}, rescore {s.rescore}×)"
            systems[label] = lambda q, s=s: top_ids(index.search([q], k, approx=s)[0])
        if workload.startswith("tokens"):
            for backend in ("numpy", "numba"):
                try:
                    model = _bm25s_over(index, backend)
                except ImportError:
                    continue
                systems[f"bm25s ({backend})"] = lambda q, m=model: _bm25s_top(m, q.indices.tolist(), k)
        lat: dict[str, list[float]] = {name: [] for name in systems}
        answers: dict[str, list[set[int]]] = {name: [] for name in systems}
        for fn in systems.values():
            for q in qs[:3]:
                fn(q)  # warm-up (numba compiles here)
        for q in qs:  # alternating, query by query
            for name, fn in systems.items():
                began = time.perf_counter()
                answers[name].append(fn(q))
                lat[name].append((time.perf_counter() - began) * 1000)
        base = percentile(lat["ragloom exact"], 50)
        for name in systems:
            recall = np.mean([len(a & e) / max(1, len(e)) for a, e in zip(answers[name], answers["ragloom exact"])])
            p50 = percentile(lat[name], 50)
            p99 = percentile(lat[name], 99)
            print(f"| {workload} | {name} | {p50:.2f} | {p99:.2f} | {p50 / base:.2f} | {recall:.3f} |", flush=True)
