"""Matryoshka × compression on real embeddings: nomic-embed-text-v1.5 truncated to 768/512/256/128 dims, each
searched through :class:`~ragloom.stores.compressed.CompressedVectorStore` as fp32 exact, int8 and binary (with and
without fp32 rescoring), beside all-MiniLM-L6-v2 (384) on the same SciFact subset.

    python -m benchmarks scale matryoshka --limit-docs 1000 --dims 768 512 256 128

The subset: every document judged relevant for a test query, then the other documents in a seeded random order
(``--seed``), up to ``--limit-docs``; every test query. Both models see the same chunks (254 tokens — MiniLM's
capacity; both use the bert-base-uncased WordPiece vocabulary — 32 tokens of overlap) and are encoded group by group
in alternation, so the encoding-time ratio comes from the same minutes of a shared machine. The 768-dim nomic
vectors are cached under ``$RAGLOOM_BENCH_CACHE`` after every group (an interrupted run resumes) and truncated +
renormalised for the smaller dims, which is what ``TransformersDenseEncoder(truncate_dim=N)`` computes.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks._common import SHARED_DATA, machine, median

if TYPE_CHECKING:
    from ragloom.stores.compressed_settings import FirstStage, Rescore

CACHE = Path(os.environ.get("RAGLOOM_BENCH_CACHE", "/tmp/ragloom-bench-cache"))
MODELS = ("minilm", "nomic")
CHUNK_TOKENS = 254  # MiniLM's document capacity (256 - [CLS] - [SEP]): the same chunks for both models


def subset_order(data: Any, seed: int) -> list[Any]:
    """Documents judged relevant (corpus order), then the rest in a seeded random order: any prefix is a subset."""
    relevant = {d for rel in data.qrels.values() for d, grade in rel.items() if grade > 0}
    keep = [d for d in data.documents if d.id in relevant]
    rest = [d for d in data.documents if d.id not in relevant]
    random.Random(seed).shuffle(rest)
    return keep + rest


def _save(path: Path, **arrays: Any) -> None:
    """np.savez to a temp file, then rename: a killed run leaves the previous checkpoint."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def encode(data: Any, order: list[Any], limit: int, seed: int, group: int) -> dict[str, dict[str, Any]]:
    """Encode the first ``limit`` documents of ``order`` with every model, alternating group by group; cached."""
    from ragloom.adapters.dense import TransformersDenseEncoder
    from ragloom.retrieval import default_chunker

    CACHE.mkdir(parents=True, exist_ok=True)
    paths = {m: CACHE / f"scifact-subset-seed{seed}-{m}.npz" for m in MODELS}
    state: dict[str, dict[str, Any]] = {}
    for model, path in paths.items():
        if path.exists():
            loaded = np.load(path, allow_pickle=False)
            state[model] = {k: loaded[k] for k in loaded.files}
        else:
            state[model] = {"n_docs": np.array(0), "seconds": np.array(0.0)}
    done = min(int(s["n_docs"]) for s in state.values())
    if done >= limit:
        return state
    qids = list(data.queries)
    encoders: dict[str, Any] = {}
    chunkers: dict[str, Any] = {}
    for model in MODELS:
        encoders[model] = TransformersDenseEncoder(model, batch_size=16, threads="auto")
        chunkers[model] = default_chunker(encoders[model], CHUNK_TOKENS, 32)
        if "queries" not in state[model]:
            state[model]["queries"] = encoders[model].encode_queries([data.queries[q] for q in qids])
            state[model]["qids"] = np.array(qids)
    print(f"- encoding documents {done}..{limit} in groups of {group}, models alternating", flush=True)
    for start in range(done, limit, group):
        docs = order[start : min(limit, start + group)]
        for model in MODELS:
            s = state[model]
            if int(s["n_docs"]) >= start + len(docs):
                continue
            chunks = [c for doc in docs for c in chunkers[model].chunk(doc)]
            began = time.perf_counter()
            vectors = encoders[model].encode_documents([c.text for c in chunks])
            took = time.perf_counter() - began
            old = s.get("docs", np.zeros((0, vectors.shape[1]), np.float32))
            s["docs"] = np.concatenate([old, vectors])
            s["doc_ids"] = np.concatenate([s.get("doc_ids", np.array([], dtype=str)), [c.doc_id for c in chunks]])
            s["n_docs"] = np.array(start + len(docs))
            s["seconds"] = np.array(float(s["seconds"]) + took)
            s["load"] = np.concatenate([s.get("load", np.zeros(0)), [os.getloadavg()[0]]])
            _save(paths[model], **s)
        print(
            f"  {start + len(docs)} docs: "
            + ", ".join(f"{m} {len(state[m]['docs'])} chunks {float(state[m]['seconds']):.0f} s" for m in MODELS)
            + f"; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    return state


def matryoshka(args: argparse.Namespace) -> None:
    from ragloom.eval import load_beir

    data = load_beir(SHARED_DATA / "scifact", "test")
    order = subset_order(data, args.seed)
    limit = min(args.limit_docs, len(order))
    print(f"# scale matryoshka · SciFact test, {limit:,} documents (seed {args.seed}) · {machine()}", flush=True)
    state = encode(data, order, limit, args.seed, args.group)
    if args.encode_only:
        return
    evaluate(args, data, state, limit)


SETTINGS: tuple[tuple[str, FirstStage, Rescore | None, int | None], ...] = (
    ("fp32 exact", "fp32", None, None),
    ("int8 (no rescoring)", "int8", None, None),
    ("binary, Hamming top k (oversample 1)", "binary", "fp32", 1),
    ("binary + fp32 rescoring", "binary", "fp32", 0),  # 0: --subset-oversample
    ("int8 + fp32 rescoring", "int8", "fp32", 0),
)
"""(label, first stage, rescore, oversample). The store refuses a binary first stage without rescoring (Hamming
distance is not a score): its closest setting is oversample 1, the Hamming top k put in exact order."""


def truncated(x: np.ndarray, dim: int, centre: bool = False) -> np.ndarray:
    """The first ``dim`` components, renormalised (``centre``: nomic's recipe, a layer norm over all dims first)."""
    if centre:
        x = x - x.mean(axis=1, keepdims=True)
    y = x[:, :dim]
    out: np.ndarray = (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)
    return out


def _subset(state: dict[str, Any], keep: set[str]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.isin(state["doc_ids"], sorted(keep))
    docs: np.ndarray = state["docs"][rows]
    doc_ids: np.ndarray = state["doc_ids"][rows]
    return docs, doc_ids


def _searcher(store: Any) -> Callable[[np.ndarray], Any]:
    """One single-query search of k=10, as timed."""
    return lambda query: store.search(query, 10)


def evaluate(args: argparse.Namespace, data: Any, state: dict[str, dict[str, Any]], limit: int) -> None:
    """Every (model, dims, setting) through a CompressedVectorStore in a temp dir: quality, RAM, single-query p50."""
    import shutil
    import tempfile

    from benchmarks.scale import _loadavg, _time_alternating, doc_run
    from ragloom.eval import evaluate_run
    from ragloom.stores.compressed import CompressedVectorStore
    from ragloom.types import Chunk

    order = subset_order(data, args.seed)[:limit]
    keep = {d.id for d in order}
    qids = [str(q) for q in state["nomic"]["qids"]]
    over = args.subset_oversample
    for model in MODELS:
        s = state[model]
        n = len(_subset(s, keep)[0])
        per_k = float(s["seconds"]) / len(s["docs"]) * 1000
        print(
            f"- {model}: {n:,} chunks in the subset; encoding {per_k:.0f} s per 1k chunks, "
            f"{float(s['seconds']) / int(s['n_docs']) * 1000:.0f} s per 1k documents "
            f"({int(s['n_docs']):,} documents, {len(s['docs']):,} chunks encoded in alternation, "
            f"mean load {float(np.mean(s['load'])):.1f})"
        )
    ratio = (float(state["nomic"]["seconds"]) / len(state["nomic"]["docs"])) / (
        float(state["minilm"]["seconds"]) / len(state["minilm"]["docs"])
    )
    print(f"- encoding time nomic ÷ MiniLM per chunk (same chunks, alternating groups): {ratio:.1f}×")
    print(f"- load average before search {_loadavg()} (1/5/15 min)\n")
    print(
        "| model | dims | setting | nDCG@10 | Δ vs nomic 768 fp32 | Recall@100 | chunk recall@10 vs fp32 same dims "
        "| first-stage B/vector | RAM B/vector | p50 ms/query |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    reference: float | None = None
    variants = [("nomic", d, False) for d in args.dims] + [("minilm", 384, False)]
    variants += [("nomic", d, True) for d in args.dims if args.centred]
    for model, dims, centre in variants:
        full, doc_ids = _subset(state[model], keep)
        x = truncated(full, dims, centre)
        q = truncated(state[model]["queries"], dims, centre)
        chunks = [Chunk(id=f"c{i}", doc_id=str(d), text="", start=0, end=1) for i, d in enumerate(doc_ids)]
        folder = Path(tempfile.mkdtemp(prefix="rl-matryoshka-", dir=args.workdir))
        stores: dict[str, CompressedVectorStore] = {}
        for label, first, rescore, oversample in SETTINGS if not centre else SETTINGS[:1]:
            store = CompressedVectorStore(
                folder / f"s{len(stores)}",
                dims,
                first_stage=first,
                rescore=rescore,
                oversample=(oversample or over) if rescore else None,
                flush_rows=len(chunks),
            )
            store.replace_documents([], chunks, x)
            stores[label] = store
        systems = {label: _searcher(store) for label, store in stores.items()}
        lat = _time_alternating(systems, q[: args.timed_queries])
        exact10: list[set[str]] | None = None
        for label, store in stores.items():
            top = store.search(q, 20)  # nDCG@10 on documents: 20 chunks cover 10 documents
            deep = store.search(q, 200)  # Recall@100 on documents
            ndcg, _ = evaluate_run(doc_run(qids, top, 10), data.qrels)
            recall, _ = evaluate_run(doc_run(qids, deep, 100), data.qrels)
            top10 = [{c.id for c, _ in row[:10]} for row in top]
            exact10 = exact10 or top10
            overlap = float(np.mean([len(a & b) / 10 for a, b in zip(top10, exact10)]))
            if reference is None:
                reference = ndcg["nDCG@10"]
            ram = sum(store.stats()["bytes_in_ram"].values()) / len(store)
            code = {"fp32": 4 * dims, "int8": dims, "binary": dims / 8}[store.first_stage]
            name = f"{label}{f' ({store.oversample}×)' if store.rescore and store.oversample > 1 else ''}"
            name += " — nomic's recipe: layer norm, then truncate" if centre else ""
            print(
                f"| {model} | {dims} | {name} | {ndcg['nDCG@10']:.4f} | {ndcg['nDCG@10'] - reference:+.4f} | "
                f"{recall['Recall@100']:.4f} | {overlap:.3f} | {code:g} | {ram:.0f} | {median(lat[label]):.2f} |",
                flush=True,
            )
        for store in stores.values():
            store.close()
        shutil.rmtree(folder, ignore_errors=True)
    timed = min(args.timed_queries, len(qids))
    print(f"\n- p50 over {timed} single queries (k=10), settings alternating query by query")
    print(f"- load average at the end {_loadavg()}")


__all__ = ["evaluate", "matryoshka", "subset_order", "truncated"]
