"""MaxSim throughput at ColPali sizes, ragloom's store beside a naive dense-padded scorer, and memory per page.

    python -m benchmarks maxsim [--pages 1000] [--tokens 1030] [--dim 128] [--queries 8] [--repeat 3]

Synthetic pages (``--tokens`` x ``--dim`` unit vectors, clustered around a per-page topic so that first stages
have something to find) are written to a :class:`~ragloom.stores.multivector.MultiVectorStore` on disk (fp16,
memory-mapped) and searched by exact MaxSim in float32 and bfloat16. The peer is transformers'
``ColPaliProcessor.score_retrieval`` — pad a batch of pages into a dense tensor and ``einsum`` — given the pages
already in memory as float32 tensors (its best case). Both return the same top 10. First stages (int8, binary,
MUVERA) are timed with exact rescoring of their candidates and their recall@10 against exact search is printed.
Memory per page is measured on disk for each compression setting (pruning's keep fraction is content-dependent,
so its row is an estimate). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ragloom.compression import MultiVectorSettings, estimate_memory, pool_tokens
from ragloom.stores.multivector import MultiVectorStore
from ragloom.types import Chunk, chunk_id_for_page


def _pages(n: int, tokens: int, dim: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.standard_normal((tokens, dim), dtype=np.float32) + 0.5 * rng.standard_normal(dim, dtype=np.float32)
        out.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16))
    return out


def _queries(pages: list[np.ndarray], n: int, q_tokens: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        page = pages[int(rng.integers(len(pages)))].astype(np.float32)
        x = page[rng.integers(0, page.shape[0], q_tokens)] + 0.6 * rng.standard_normal((q_tokens, page.shape[1]))
        out.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return out


def _chunks(n: int) -> list[Chunk]:
    return [Chunk(id=chunk_id_for_page(f"doc{i // 10}", i % 10 + 1), doc_id=f"doc{i // 10}", text="", start=0,
                  end=0, page=i % 10 + 1) for i in range(n)]  # fmt: skip


def _fill(path: Path, pages: list[np.ndarray], settings: MultiVectorSettings) -> tuple[MultiVectorStore, float]:
    store = MultiVectorStore(path, pages[0].shape[1], settings)
    chunks = _chunks(len(pages))
    started = time.perf_counter()
    for i in range(0, len(pages), 256):
        docs = sorted({c.doc_id for c in chunks[i : i + 256]})
        store.replace_documents(docs, chunks[i : i + 256], pages[i : i + 256])
    return MultiVectorStore(path, pages[0].shape[1], settings), time.perf_counter() - started


def _best(fn: Any, repeat: int) -> tuple[float, Any]:
    fn()  # warm-up (page cache, torch kernels)
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def _naive(torch: Any, queries: list[np.ndarray], pages: list[Any]) -> Any:
    from transformers import ColPaliProcessor

    q = [torch.from_numpy(x) for x in queries]
    return ColPaliProcessor.score_retrieval(None, q, pages, batch_size=128)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="MaxSim throughput and memory per page")
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=1030)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--query-tokens", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sample", type=int, default=16, help="pages pooled to measure compression")
    args = parser.parse_args(argv)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    pages = _pages(args.pages, args.tokens, args.dim, seed=0)
    queries = _queries(pages, args.queries, args.query_tokens, seed=1)
    root = Path(tempfile.mkdtemp(prefix="ragloom-maxsim-"))
    try:
        _throughput(torch, args, pages, queries, root)
        _memory(args, pages, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _throughput(
    torch: Any, args: argparse.Namespace, pages: list[np.ndarray], queries: list[np.ndarray], root: Path
) -> None:
    n = len(pages)
    print(f"\n== MaxSim: {n} pages x {args.tokens} x {args.dim} (fp16 on disk), queries of {args.query_tokens} tokens")
    store, ingest_s = _fill(root / "exact", pages, MultiVectorSettings())
    print(f"ingest: {n / ingest_s:,.0f} pages/s into the memory-mapped store (atomic, fsynced segments)")
    dense = [torch.from_numpy(p.astype(np.float32)) for p in pages]  # the peer's input: every page in RAM, fp32
    rows = []
    for label, batch in (("1 query", queries[:1]), (f"{len(queries)} queries", queries)):
        naive_s, naive = _best(lambda b=batch: _naive(torch, b, dense), args.repeat)
        naive_top = [torch.topk(r, 10).indices.tolist() for r in naive]
        for dtype in ("float32", "bfloat16"):
            fast = MultiVectorStore(root / "exact", args.dim, MultiVectorSettings(compute_dtype=dtype))  # type: ignore[arg-type]
            ours_s, hits = _best(lambda b=batch, s=fast: s.search(b, k=10), args.repeat)
            ids = {c.id: i for i, c in enumerate(_chunks(n))}
            same = sum(len({ids[c.id] for c, _ in h} & set(t)) for h, t in zip(hits, naive_top)) / (10 * len(batch))
            rows.append((label, dtype, len(batch) * n / ours_s, len(batch) * n / naive_s, naive_s / ours_s, same))
    header = f"{'queries':<12}{'ragloom dtype':<15}{'ragloom pages/s':>17}{'naive pages/s':>15}{'ratio':>8}"
    print(header + f"{'top-10 agree':>14}")
    for label, dtype, ours, naive, ratio, same in rows:
        print(f"{label:<12}{dtype:<15}{ours:>17,.0f}{naive:>15,.0f}{ratio:>7.1f}x{same:>13.0%}")
    exact_hits = store.search(queries, k=10)
    print(f"\n== First stage + exact rescoring of 128 candidates ({len(queries)} queries)")
    print(f"{'first stage':<14}{'pages/s':>12}{'recall@10 vs exact':>20}")
    exact_s, _ = _best(lambda: store.search(queries, k=10), args.repeat)
    print(f"{'exact':<14}{len(queries) * n / exact_s:>12,.0f}{1.0:>20.0%}")
    for kind in ("int8", "binary", "muvera"):
        settings = MultiVectorSettings(first_stage=kind, candidates=128)  # type: ignore[arg-type]
        approx_store, _ = _fill(root / kind, pages, settings)
        seconds, hits = _best(lambda s=approx_store: s.search(queries, k=10), args.repeat)
        recall = np.mean([len({c.id for c, _ in a} & {c.id for c, _ in e}) / 10 for a, e in zip(hits, exact_hits)])
        print(f"{kind:<14}{len(queries) * n / seconds:>12,.0f}{recall:>20.0%}")
        shutil.rmtree(root / kind, ignore_errors=True)


def _memory(args: argparse.Namespace, pages: list[np.ndarray], root: Path) -> None:
    sample = pages[: args.sample]
    print(f"\n== Memory per page ({args.tokens} x {args.dim}; measured on {len(sample)} pages unless noted)")
    print(f"{'setting':<28}{'vectors/page':>14}{'disk/page':>12}{'read/query/page':>17}{'read vs plain':>15}")
    plain_read = None
    cases: list[tuple[str, MultiVectorSettings]] = [
        ("plain fp16", MultiVectorSettings()),
        ("pool factor 2", MultiVectorSettings(pool_factor=2)),
        ("pool factor 3", MultiVectorSettings(pool_factor=3)),
        ("pool factor 4", MultiVectorSettings(pool_factor=4)),
        ("int8 first stage", MultiVectorSettings(first_stage="int8")),
        ("binary first stage", MultiVectorSettings(first_stage="binary")),
        ("muvera first stage", MultiVectorSettings(first_stage="muvera")),
        ("pool 3 + binary", MultiVectorSettings(pool_factor=3, first_stage="binary")),
    ]
    for i, (label, settings) in enumerate(cases):
        vectors = [pool_tokens(p.astype(np.float32), settings.pool_factor) for p in sample]
        store = MultiVectorStore(root / f"memory-{i}", args.dim, settings)
        store.replace_documents([], _chunks(len(sample)), vectors)
        disk = sum(store.disk_bytes().values()) / len(sample)
        per_page = store.token_count() / len(sample)
        tokens = round(per_page)
        read = estimate_memory(100_000, settings, tokens_per_page=tokens, dim=args.dim).scan_bytes_per_page
        if settings.pool_factor > 1:  # the estimate pools again; measured vectors are already pooled
            plain = MultiVectorSettings(first_stage=settings.first_stage)
            read = estimate_memory(100_000, plain, tokens_per_page=tokens, dim=args.dim).scan_bytes_per_page
        plain_read = plain_read or read
        print(f"{label:<28}{per_page:>14.0f}{disk / 1024:>9.1f}KiB{read / 1024:>14.1f}KiB{plain_read / read:>14.1f}x")
    pruned = estimate_memory(1, MultiVectorSettings(prune_k=0.0), tokens_per_page=args.tokens, dim=args.dim)
    ratio = (plain_read or 1) / pruned.scan_bytes_per_query
    print(f"{'prune k=0 (est., keeps 50%)':<28}{pruned.tokens_per_page:>14.0f}{pruned.disk_bytes / 1024:>9.1f}KiB"
          f"{pruned.scan_bytes_per_query / 1024:>14.1f}KiB{ratio:>14.1f}x")  # fmt: skip
    print("read/query/page: bytes one query reads per indexed page at 100k pages (first stage + 128 rescored pages)")


if __name__ == "__main__":
    main()
