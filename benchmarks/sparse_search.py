"""Sparse search: ragloom's inverted index vs a brute-force scipy sparse product vs bm25s, in one run.

Two collections: SciFact (the real SPLADE-tiny index that ``ragloom eval ... -r splade --index DIR`` builds) and a
synthetic collection of ``--docs`` documents (default 1M) drawn with SciFact's SPLADE statistics — each term's
document frequency and weights, each document's length — pruned to its ``--doc-terms`` largest weights, as SPLADE
deployments do. Queries are SciFact's test queries encoded by splade-tiny, in two workloads:

- weighted: SPLADE query vectors. ragloom (default, and with MaxScore pruning) vs ``X @ q`` over the CSR matrix.
- unweighted: each query's own wordpieces with weight 1 (inference-free SPLADE; BM25 queries look the same).
  Here bm25s joins, searching the very same postings (its precomputed score matrix is a CSC over terms, which is
  what ragloom's postings are), so the comparison is of the search alone; bm25s's index build is not timed.

Single queries, one at a time, after a warm-up; latency p50/p99 and the ratio of each system's p50 to ragloom's.
"agree" is the share of top-k lists identical (as sets) to the brute-force answer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import SHARED_DATA, machine, peak_rss_mib, percentile


def _load_index(path: Path) -> Any:
    from ragloom.stores.sparse import SparseIndex

    for candidate in (path / "splade" / "sparse", path / "sparse", path):
        if (candidate / "state.json").exists():
            return SparseIndex(candidate), candidate
    raise SystemExit(f"no sparse index under {path}; build one with `ragloom eval DATA -r splade --index {path}`")


def _build_scifact(limit: int | None) -> tuple[Any, Path]:
    from ragloom.adapters.sparse import SparseRetriever, SpladeEncoder
    from ragloom.eval import load_beir

    print("# building the SciFact SPLADE index (tens of minutes on a CPU; pass --scifact-index to reuse one)")
    data = load_beir(SHARED_DATA / "scifact", "test")
    folder = Path(tempfile.mkdtemp(prefix="sparse-bench-"))
    retriever = SparseRetriever(SpladeEncoder("splade-tiny"), folder, chunk_size=254)
    retriever.add(list(data.documents[:limit]))
    retriever.close()
    return _load_index(folder)


def _doc_matrix(index: Any) -> Any:
    """The live rows of every segment as one documents × terms CSR matrix."""
    import scipy.sparse as sp

    blocks = []
    width = max(seg.postings.shape[0] for seg in index._segments)
    for seg in index._segments:
        rows = seg.postings.T.tocsr()[np.flatnonzero(~seg.deleted)]
        rows.resize((rows.shape[0], width))
        blocks.append(rows)
    return sp.vstack(blocks, format="csr")


def _queries(n: int) -> tuple[list[Any], list[Any]]:
    """SciFact test queries as SPLADE vectors (weighted) and as their own wordpieces (unweighted)."""
    from ragloom.adapters.sparse import SpladeEncoder

    qrels = {
        line.split("\t")[0] for line in (SHARED_DATA / "scifact" / "qrels" / "test.tsv").read_text().splitlines()[1:]
    }
    texts = []
    with open(SHARED_DATA / "scifact" / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["_id"] in qrels:
                texts.append(record["text"])
    texts = texts[:n]
    weighted = SpladeEncoder("splade-tiny").encode_queries(texts)
    unweighted = SpladeEncoder("splade-tiny", query_mode="tokens").encode_queries(texts)
    return weighted, unweighted


def _synthetic(real: Any, n_docs: int, doc_terms: int, seed: int) -> Any:
    """Documents with the real collection's term document frequencies, per-term weights and lengths.

    Each document takes a real document's length and draws that many postings uniformly from the real index: a
    drawn posting's term follows the term document frequencies, and its weight is one that term really has.
    Duplicate terms are dropped and the ``doc_terms`` largest weights kept.
    """
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    postings = real.T.tocsr()  # terms × docs
    n_terms = postings.shape[0]
    term_of = np.repeat(np.arange(n_terms, dtype=np.int64), np.diff(postings.indptr))
    lengths = np.diff(real.indptr)
    assert n_terms < 1 << 15 and term_of.size < 1 << 32, "the packed sort keys below need these bounds"
    indptr = [np.zeros(1, dtype=np.int64)]
    indices, data = [], []
    offset = 0
    block = 1 << 15  # rows of a block fit 15 bits: every sort below is one np.sort of packed int64 keys
    for start in range(0, n_docs, block):
        n = min(block, n_docs - start)
        want = rng.choice(lengths, size=n)
        drawn = rng.integers(0, term_of.size, size=int(want.sum()), dtype=np.int64)
        row = np.repeat(np.arange(n, dtype=np.int64), want)
        packed = np.sort((row << 47) | (term_of[drawn] << 32) | drawn)  # row | term | posting
        pair = packed >> 32
        packed = packed[np.concatenate(([True], pair[1:] != pair[:-1]))]  # one posting per (document, term)
        row, term = packed >> 47, (packed >> 32) & 0x7FFF
        bits = postings.data[packed & 0xFFFFFFFF].astype(np.float32).view(np.int32).astype(np.int64)
        # by row, largest weight first (a non-negative float32's bits sort like the float), then keep the top
        packed = np.sort((row << 46) | ((0x7FFFFFFF - bits) << 15) | term)
        row = packed >> 46
        rank = np.arange(row.size) - np.searchsorted(row, np.arange(n))[row]
        packed = packed[rank < doc_terms]
        row, term, bits = packed >> 46, packed & 0x7FFF, 0x7FFFFFFF - ((packed >> 15) & 0x7FFFFFFF)
        packed = np.sort((row << 46) | (term << 31) | bits)  # by row, then term
        counts = np.bincount(packed >> 46, minlength=n)
        indptr.append(offset + np.cumsum(counts))
        offset += int(counts.sum())
        indices.append(((packed >> 31) & 0x7FFF).astype(np.int32))
        data.append((packed & 0x7FFFFFFF).astype(np.int32).view(np.float32))
    return sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.concatenate(indptr)), shape=(n_docs, n_terms)
    )


def _time(fn: Any, queries: list[Any], warmup: int = 5) -> tuple[list[float], list[Any]]:
    for q in queries[:warmup]:
        fn(q)
    latencies, answers = [], []
    for q in queries:
        started = time.perf_counter()
        answers.append(fn(q))
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, answers


def _bm25s_over(index: Any, backend: str) -> Any:
    """A bm25s retriever whose score matrix is the index's postings (one segment), term ids as its vocabulary."""
    import bm25s

    (seg,) = index._segments
    model = bm25s.BM25(backend=backend)
    model.scores = {
        "data": seg.postings.data,
        "indices": seg.postings.indices,
        "indptr": seg.postings.indptr,
        "num_docs": seg.n_rows,
    }
    model.vocab_dict = {i: i for i in range(seg.postings.shape[0])}
    model.unique_token_ids_set = set(model.vocab_dict)
    model.nonoccurrence_array = None
    return model


def _bm25s_top(model: Any, terms: list[int], k: int) -> set[int]:
    result = model.retrieve([terms], k=k, show_progress=False, return_as="tuple")
    documents, scores = np.asarray(result.documents[0]), np.asarray(result.scores[0])
    return set(documents[scores > 0].tolist())


def _run(label: str, matrix: Any, weighted: list[Any], unweighted: list[Any], k: int, persist: bool) -> None:
    from ragloom.stores.sparse import SparseIndex
    from ragloom.types import Chunk

    n = matrix.shape[0]
    chunks = [Chunk(id=f"d{i}#0-0", doc_id=f"d{i}", text="", start=0, end=0) for i in range(n)]
    folder = Path(tempfile.mkdtemp(prefix="sparse-bench-")) if persist else None
    started = time.perf_counter()
    index = SparseIndex(folder)
    index.replace_documents([], chunks, matrix)
    build_s = time.perf_counter() - started
    stats = index.stats
    del chunks
    csr_bytes = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    print(
        f"\n## {label}: {n:,} documents, {matrix.nnz:,} postings ({matrix.nnz / n:.0f} per document); ragloom build "
        f"{'+ persist ' if persist else ''}{build_s:.1f}s, on disk {stats['bytes_on_disk'] / 2**20:.0f} MiB; "
        f"CSR in memory {csr_bytes / 2**20:.0f} MiB"
    )
    print(f"| workload | system | p50 ms | p99 ms | p50 ratio vs ragloom | agree@{k} |\n|---|---|---|---|---|---|")

    def dense(q: Any) -> np.ndarray:
        vector = np.zeros(matrix.shape[1], dtype=np.float32)
        inside = q.indices < matrix.shape[1]
        vector[q.indices[inside]] = q.values[inside]
        return vector

    def brute(q: Any) -> set[int]:
        scores = matrix @ dense(q)
        top = np.argpartition(-scores, k - 1)[:k]
        return set(top[scores[top] > 0].tolist())

    def ragloom(prune: bool) -> Any:
        return lambda q: {int(m.chunk.doc_id[1:]) for m in index.search([q], k, prune=prune)[0]}

    for workload, queries in (("weighted (SPLADE)", weighted), ("unweighted (tokens)", unweighted)):
        systems: dict[str, Any] = {"ragloom": ragloom(False), "ragloom (prune=True)": ragloom(True)}
        if workload.startswith("unweighted"):
            for backend in ("numpy", "numba"):
                try:
                    model = _bm25s_over(index, backend)
                except ImportError:
                    continue
                terms = [[int(t) for t in q.indices if t < matrix.shape[1]] or [0] for q in queries]
                lookup = {id(q): t for q, t in zip(queries, terms)}
                systems[f"bm25s ({backend})"] = lambda q, m=model: _bm25s_top(m, lookup[id(q)], k)
        systems["scipy brute force (X @ q)"] = brute
        reference = _time(brute, queries, warmup=2)
        base = None
        for name, fn in systems.items():
            latencies, answers = reference if fn is brute else _time(fn, queries)
            p50 = percentile(latencies, 50)
            base = base or p50
            agree = np.mean([a == b or (not a and not b) for a, b in zip(answers, reference[1])])
            print(
                f"| {workload} | {name} | {p50:.2f} | {percentile(latencies, 99):.2f} | {p50 / base:.2f} | "
                f"{agree:.0%} |"
            )
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sparse_search", description=__doc__)
    parser.add_argument("--scifact-index", type=Path, help="index dir from `ragloom eval DATA -r splade --index DIR`")
    parser.add_argument("--docs", type=int, default=1_000_000, help="synthetic collection size (0 to skip)")
    parser.add_argument("--doc-terms", type=int, default=128, help="largest weights kept per synthetic document")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-persist", action="store_true", help="skip writing the synthetic index to disk")
    args = parser.parse_args(argv)
    print(f"# sparse_search · k {args.k} · {args.queries} single queries · {machine()}")
    index, where = _load_index(args.scifact_index) if args.scifact_index else _build_scifact(None)
    real = _doc_matrix(index)
    print(f"# SciFact SPLADE-tiny index: {where} ({index.stats['bytes_on_disk'] / 2**20:.1f} MiB on disk)")
    weighted, unweighted = _queries(args.queries)
    print(
        f"# queries: {np.mean([len(q) for q in weighted]):.0f} weighted terms, "
        f"{np.mean([len(q) for q in unweighted]):.0f} unweighted terms on average"
    )
    _run("SciFact (real SPLADE-tiny vectors)", real, weighted, unweighted, args.k, persist=True)
    if args.docs:
        started = time.perf_counter()
        synthetic = _synthetic(real, args.docs, args.doc_terms, args.seed)
        print(f"\n# synthetic collection generated in {time.perf_counter() - started:.0f}s")
        del index
        _run(
            f"synthetic (SciFact statistics, top {args.doc_terms} terms)",
            synthetic,
            weighted,
            unweighted,
            args.k,
            persist=not args.no_persist,
        )
    print(f"\npeak RSS {peak_rss_mib():.0f} MiB")
