"""Search at scale: compressed dense search (binary / int8 first stage + rescoring from memory-mapped float32) and
approximate sparse search, each beside its peers in the same run, plus the memory-bandwidth floor.

    python -m benchmarks scale dense --sizes 1000000            # synthetic clustered unit vectors, 384 dims
    python -m benchmarks scale ten-million --sizes 10000000      # streamed to disk: fp32 never held in RAM
    python -m benchmarks scale quality                           # SciFact nDCG@10, MiniLM, per compression setting
    python -m benchmarks scale sparse --docs 1000000             # exact vs approximate SPLADE-like search
    python -m benchmarks scale matryoshka --limit-docs 1000      # nomic 768/512/256/128 × fp32/int8/binary

Synthetic vectors: unit vectors around 2,000 cluster centres that share a common offset (real embedding sets are
anisotropic: their mean is far from zero), generated and written in chunks so the process never holds more than
one chunk of float32. Latency: single queries, p50/p99 over the same queries for every system, alternating
systems query by query. Recall@10 against the exact answer. Timings on a shared, loaded machine: compare ratios
within one run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import machine, median, peak_rss_mib, percentile

CACHE = Path(os.environ.get("RAGLOOM_BENCH_CACHE", "/tmp/ragloom-bench-cache"))


def rss_mib() -> float:
    """Current resident memory of this process (MiB)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bandwidth_gbs(size_mib: int = 512) -> float:
    """Measured read bandwidth (GB/s): a float32 array summed, best of five (what an exact scan is bound by)."""
    data = np.ones(size_mib * 1024 * 1024 // 4, dtype=np.float32)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - started)
    return data.nbytes / best / 1e9


def clustered(dim: int, seed: int = 0, n_centres: int = 2000) -> Callable[[int, int], np.ndarray]:
    """A generator of unit vectors around shared cluster centres: ``draw(n, seed)``."""
    rng = np.random.default_rng(seed)
    offset = rng.standard_normal(dim).astype(np.float32)
    offset *= 0.9 / np.linalg.norm(offset)
    centres = rng.standard_normal((n_centres, dim)).astype(np.float32)
    centres = centres / np.linalg.norm(centres, axis=1, keepdims=True) + offset

    def draw(n: int, part_seed: int) -> np.ndarray:
        part = np.random.default_rng(part_seed)
        x = centres[part.integers(0, n_centres, n)]
        x = x + 0.045 * part.standard_normal((n, dim), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return draw


def _chunks(start: int, n: int) -> list[Any]:
    from ragloom.types import Chunk

    return [Chunk(id=f"d{i}#0-1", doc_id=f"d{i}", text="", start=0, end=1) for i in range(start, start + n)]


def _row(chunk: Any) -> int:
    return int(chunk.doc_id[1:])


def _batches(size: int, step: int) -> Iterator[tuple[int, int]]:
    for start in range(0, size, step):
        yield start, min(step, size - start)


def _exact_topk(read_blocks: Callable[[], Iterator[tuple[int, np.ndarray]]], queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows for all queries by a blocked scan (works on memory-mapped data)."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), k), dtype=np.int64)
    for start, block in read_blocks():
        scores = queries @ np.asarray(block).T
        rows = np.broadcast_to(np.arange(start, start + block.shape[0]), scores.shape)
        merged_s = np.concatenate([best_scores, scores], axis=1)
        merged_r = np.concatenate([best_rows, rows], axis=1)
        keep = np.argpartition(-merged_s, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_s, keep, 1)
        best_rows = np.take_along_axis(merged_r, keep, 1)
    return best_rows


def _recall(found: list[set[int]], exact: np.ndarray, k: int) -> float:
    return float(np.mean([len(f & set(e.tolist())) / k for f, e in zip(found, exact)]))


def _time_alternating(
    systems: dict[str, Callable[[np.ndarray], Any]], queries: np.ndarray, limits: dict[str, int] | None = None
) -> dict[str, list[float]]:
    """Latency (ms) of each system query by query, systems alternating; ``limits``: queries timed per system."""
    for fn in systems.values():
        fn(queries[0])  # warm-up
    lat: dict[str, list[float]] = {name: [] for name in systems}
    for i, q in enumerate(queries):
        for name, fn in systems.items():
            if limits is not None and i >= limits[name]:
                continue
            started = time.perf_counter()
            fn(q)
            lat[name].append((time.perf_counter() - started) * 1000)
    return lat


def _merge_topk(
    best: tuple[np.ndarray, np.ndarray], queries: np.ndarray, block: np.ndarray, start: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fold one block of rows into the running exact top-k of every query (scores, rows)."""
    scores = queries @ np.asarray(block, dtype=np.float32).T
    rows = np.broadcast_to(np.arange(start, start + block.shape[0]), scores.shape)
    merged_s = np.concatenate([best[0], scores], axis=1)
    merged_r = np.concatenate([best[1], rows], axis=1)
    keep = np.argpartition(-merged_s, k - 1, axis=1)[:, :k]
    return np.take_along_axis(merged_s, keep, 1), np.take_along_axis(merged_r, keep, 1)


def _parse_setting(text: str) -> tuple[str, str, int | None, str | None]:
    """``binary:fp32``, ``binary-ivf1024:fp32``, ``int8:fp32``, ``binary-ivf1024:int8:fp32`` (three stages: an
    int8 middle stage) → (first stage, rescore, IVF lists, middle)."""
    stages = text.split(":")
    first, rescore = stages[0], stages[-1]
    middle = stages[1] if len(stages) == 3 else None
    ivf = None
    if "-ivf" in first:
        first, lists = first.split("-ivf")
        ivf = int(lists)
    return first, rescore, ivf, middle


def _grid(text: list[str]) -> list[tuple[int, int, int]]:
    """``nprobe:oversample[:rescore_oversample]`` → (nprobe, oversample, rescore_oversample or 0)."""
    out = []
    for item in text:
        values = [int(v) for v in item.split(":")]
        out.append((values[0], values[1], values[2] if len(values) > 2 else 0))
    return out


def _loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def dense(args: argparse.Namespace) -> None:
    """Every dense system over the same synthetic vectors, timed query by query in alternation."""
    from ragloom.stores.compressed import CompressedVectorStore

    gbs = bandwidth_gbs()
    print(f"# scale dense · dim {args.dim} · k {args.k} · {args.queries} single queries · {machine()}")
    print(
        f"# measured read bandwidth {gbs:.1f} GB/s (float32 sum, 512 MiB, best of 5); machine shared with other "
        f"workers, load average {_loadavg()} (1/5/15 min) at start: compare ratios within this run"
    )
    draw = clustered(args.dim)
    queries = draw(args.queries, 10**9)
    k = args.k
    for size in args.sizes:
        reuse = args.reuse is not None
        folder = Path(args.reuse) if reuse else Path(tempfile.mkdtemp(prefix="rl-scale-", dir=args.workdir))
        print(f"\n## n = {size:,} (index under {folder}{', reopened: built by an earlier run' if reuse else ''})")
        step = args.batch
        stores: dict[str, CompressedVectorStore] = {}
        for text in args.settings:
            first, rescore, ivf, middle = _parse_setting(text)
            label = f"{first}{f'-ivf{ivf}' if ivf else ''}{f'+{middle}' if middle else ''}"
            label += f"+{rescore}" if rescore != "none" else ""
            stores[label] = CompressedVectorStore(
                folder / label,
                args.dim,
                first_stage=first,  # type: ignore[arg-type]
                rescore=None if rescore == "none" else rescore,  # type: ignore[arg-type]
                flush_rows=step,
                ivf_lists=ivf,
                middle=middle,  # type: ignore[arg-type]
            )
        build = dict.fromkeys(stores, 0.0)
        empty = {label for label, store in stores.items() if len(store) == 0}  # --reuse: built here if missing
        best = (np.full((len(queries), k), -np.inf, np.float32), np.zeros((len(queries), k), np.int64))
        matrix = None if args.no_peers else np.empty((size, args.dim), dtype=np.float32)
        started = time.perf_counter()
        for start, n in _batches(size, step):
            x = draw(n, start)
            best = _merge_topk(best, queries, x, start, k)  # the exact answer, streamed as the rows are made
            if matrix is not None:
                matrix[start : start + n] = x
            for label, store in stores.items():
                if label not in empty:
                    continue
                began = time.perf_counter()
                store.replace_documents([], _chunks(start, n), x)
                build[label] += time.perf_counter() - began
        if reuse and any(len(store) != size for store in stores.values()):
            raise SystemExit(f"--reuse {folder}: the stores do not hold {size:,} rows")
        exact = best[1]
        built = "built " + ", ".join(f"{b} in {s:.0f} s" for b, s in build.items() if b in empty)
        built += f"; reopened {', '.join(sorted(set(stores) - empty))}" if reuse else ""
        print(
            f"- generated {size:,} rows and {built} "
            f"({time.perf_counter() - started:.0f} s in all); RSS {rss_mib():,.0f} MiB",
            flush=True,
        )
        systems: dict[str, Callable[[np.ndarray], set[int]]] = {}
        floors: dict[str, float] = {}
        rams: dict[str, float] = {}
        slow: set[str] = set()
        fp32_bytes = size * args.dim * 4
        if matrix is not None:
            m = matrix
            name = "numpy exact (fp32 in RAM)"
            systems[name] = lambda q: set(np.argpartition(-(m @ q), k)[:k].tolist())
            floors[name], rams[name] = fp32_bytes, fp32_bytes
            slow.add(name)
            try:
                import faiss
            except ImportError:
                faiss = None
                print("- faiss not installed: faiss peers skipped (pip install faiss-cpu)")
            if faiss is not None:
                faiss.omp_set_num_threads(1)  # as ragloom's scans: OpenMP spinning on a busy 2-core box costs 20x
                flat = faiss.IndexFlatIP(args.dim)
                flat.add(matrix)
                name = "faiss IndexFlatIP"
                systems[name] = lambda q, f=flat: set(f.search(q[None, :], k)[1][0].tolist())
                floors[name], rams[name] = fp32_bytes, fp32_bytes
                slow.add(name)
                if args.hnsw:
                    began = time.perf_counter()
                    faiss.omp_set_num_threads(2)
                    hnsw = faiss.IndexHNSWFlat(args.dim, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                    hnsw.hnsw.efConstruction = 40
                    hnsw.add(matrix)
                    faiss.omp_set_num_threads(1)
                    print(
                        f"- faiss HNSW (M={args.hnsw_m}, efConstruction 40) built in "
                        f"{time.perf_counter() - began:.0f} s"
                    )
                    for ef in args.hnsw_ef:

                        def run_hnsw(q: np.ndarray, ef: int = ef) -> set[int]:
                            hnsw.hnsw.efSearch = ef
                            return set(hnsw.search(q[None, :], k)[1][0].tolist())

                        name = f"faiss IndexHNSWFlat (M={args.hnsw_m}, efSearch {ef})"
                        systems[name] = run_hnsw
                        floors[name] = float("nan")
                        rams[name] = fp32_bytes + size * args.hnsw_m * 2 * 4
        for label, store in stores.items():
            ram = float(sum(store.stats()["bytes_in_ram"].values()))
            if store.middle:
                grid = _grid(args.middle_grid)
                grid = [g for g in grid if g[0]] if store.ivf_lists else [(0, o, r) for _, o, r in grid]
            elif store.ivf_lists:
                grid = _grid(args.ivf_grid)
            elif store.first_stage == "binary":
                grid = [(0, over, 0) for over in args.oversample]
            else:
                grid = [(0, over, 0) for over in args.int8_oversample]
            for nprobe, over, final in dict.fromkeys(grid):

                def run(
                    q: np.ndarray, store: Any = store, over: int = over, nprobe: int = nprobe, final: int = final
                ) -> set[int]:
                    store.oversample, store.nprobe = over, nprobe or store.nprobe
                    store.rescore_oversample = final or store.rescore_oversample
                    return {_row(c) for c, _ in store.search(q, k)[0]}

                knobs = (f"nprobe {nprobe}, " if nprobe else "") + f"oversample {over}"
                knobs += f", fp32 rescoring of {k * final}" if final else ""
                name = f"ragloom {label} ({knobs})"
                systems[name] = run
                rams[name] = ram
                code_bytes = size * args.dim / 8 if store.first_stage == "binary" else size * args.dim
                if store._ivf is not None:
                    code_bytes *= min(1.0, nprobe / store._ivf.params.nlist)
                if final:  # int8 codes of every candidate, fp32 of the few
                    floors[name] = code_bytes + k * over * args.dim + k * final * args.dim * 4
                else:
                    floors[name] = code_bytes + k * over * args.dim * 4
                if store.first_stage == "int8":
                    slow.add(name)
        for store in stores.values():  # rescoring files read once: every system meets a warm page cache
            assert store.path is not None
            for file in store.path.glob("seg-*.vectors.npy"):
                with open(file, "rb") as handle:
                    while handle.read(1 << 26):
                        pass
        limits = {name: (args.slow_queries if name in slow else len(queries)) for name in systems}
        lat = _time_alternating(systems, queries, limits)
        base = median(lat["numpy exact (fp32 in RAM)"]) if "numpy exact (fp32 in RAM)" in lat else None
        print(
            "\n| system | p50 ms | p95 ms | p99 ms | p50 ÷ numpy exact | recall@10 | bandwidth floor ms | "
            "RAM for search |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, values in lat.items():
            fn = systems[name]
            found = [fn(q) for q in queries[: limits[name]]]
            recall = _recall(found, exact[: limits[name]], k)
            ratio = f"{median(values) / base:.3f}" if base else "-"
            floor = floors[name] / (gbs * 1e9) * 1000
            print(
                f"| {name} | {median(values):.2f} | {percentile(values, 95):.2f} | {percentile(values, 99):.2f} | "
                f"{ratio} | {recall:.3f} | {'-' if np.isnan(floor) else f'{floor:.2f}'} | "
                f"{rams[name] / 2**20:,.0f} MiB |",
                flush=True,
            )
        print(f"- timed {len(queries)} queries ({args.slow_queries} for the full scans: {', '.join(sorted(slow))})")
        print(f"- load average at the end {_loadavg()}")
        for label, store in stores.items():
            stats = store.stats()
            disk = sum(stats["bytes_on_disk"].values()) / 2**20
            print(
                f"- {label}: RAM {sum(stats['bytes_in_ram'].values()) / 2**20:,.0f} MiB "
                f"({', '.join(f'{k} {v / 2**20:,.0f}' for k, v in stats['bytes_in_ram'].items())}), "
                f"memory-mapped {stats['bytes_memory_mapped'] / 2**20:,.0f} MiB, disk {disk:,.0f} MiB, "
                f"build {build[label]:.0f} s, first stage: {stats['first_stage_backend']}"
            )
        for label, store in stores.items():
            if store._ivf is not None:
                _measure_deletes(store, label, size, queries, k, draw, step)
        print(f"- process RSS {rss_mib():,.0f} MiB, peak {peak_rss_mib():,.0f} MiB (includes the peers' fp32 copies)")
        matrix = None  # the peers' float32 copy goes before the next size
        for store in stores.values():
            store.close()
        if not args.keep and not reuse:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)


def _measure_deletes(
    store: Any, label: str, size: int, queries: np.ndarray, k: int, draw: Callable[[int, int], np.ndarray], step: int
) -> None:
    """Deleting from the IVF (faiss ``remove_ids``: one pass over the lists) against re-opening (a rebuild); the
    deleted documents are added back afterwards (into the tail) so a ``--keep`` store stays whole for ``--reuse``."""
    deleted: list[str] = []
    for count in (1, 1000):
        doc_ids = [f"d{i}" for i in range(0, size, max(1, size // count))][:count]
        began = time.perf_counter()
        store.delete_documents(doc_ids)
        took = time.perf_counter() - began
        deleted += doc_ids
        gone = {int(d[1:]) for d in doc_ids}
        leaked = sum(len({_row(c) for c, _ in row} & gone) for row in store.search(queries, k))
        print(
            f"- {label}: delete {count} document(s) {took * 1000:,.0f} ms (tombstone + remove_ids); "
            f"deleted rows returned afterwards: {leaked}"
        )
    began = time.perf_counter()
    store.reload()
    print(f"- {label}: reload (rebuild the IVF from the segments' codes and lists) {time.perf_counter() - began:.1f} s")
    _restore(store, sorted({int(d[1:]) for d in deleted}), draw, step)


def _restore(store: Any, rows: list[int], draw: Callable[[int, int], np.ndarray], step: int) -> None:
    """Add generated rows back (regenerated from their batch's seed), e.g. after ``_measure_deletes``."""
    for start in sorted({row - row % step for row in rows}):
        batch = draw(step, start)
        mine = [row for row in rows if start <= row < start + step]
        for row in mine:
            store.replace_documents([], _chunks(row, 1), batch[row - start : row - start + 1])


def _scifact_embeddings() -> dict[str, Any]:
    """MiniLM chunk vectors and query vectors for SciFact, encoded once and cached under CACHE."""
    from benchmarks._common import SHARED_DATA, offline_model
    from ragloom.eval import load_beir

    CACHE.mkdir(parents=True, exist_ok=True)
    cached = CACHE / "scifact-minilm.npz"
    data = load_beir(SHARED_DATA / "scifact", "test")
    if not cached.exists():
        from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder

        encoder = TransformersDenseEncoder(offline_model("minilm"), batch_size=64)
        retriever = DenseRetriever(encoder, None, store="memory")
        started = time.perf_counter()
        retriever.add(list(data.documents))
        print(f"- encoded {len(retriever)} SciFact chunks in {time.perf_counter() - started:.0f} s (cached)")
        store = retriever.store
        qids = list(data.queries)
        np.savez(
            cached,
            docs=store._matrix,
            doc_ids=np.array([c.doc_id for c in store._chunks]),
            queries=encoder.encode_queries([data.queries[q] for q in qids]),
            qids=np.array(qids),
        )
    loaded = np.load(cached, allow_pickle=False)
    return {"data": data, **{k: loaded[k] for k in loaded.files}}


def doc_run(qids: Any, results: list[list[tuple[Any, float]]], k: int = 100) -> dict[str, dict[str, float]]:
    """A BEIR run from chunk results: each document scored by its best chunk, the top ``k`` documents a query."""
    run: dict[str, dict[str, float]] = {}
    for qid, row in zip(qids, results):
        best: dict[str, float] = {}
        for chunk, score in row:
            best[chunk.doc_id] = max(best.get(chunk.doc_id, -1e9), score)
        run[str(qid)] = dict(sorted(best.items(), key=lambda kv: -kv[1])[:k])
    return run


def quality(args: argparse.Namespace) -> None:
    from ragloom.eval import evaluate_run
    from ragloom.stores.compressed import CompressedVectorStore
    from ragloom.types import Chunk

    emb = _scifact_embeddings()
    docs, doc_ids, queries, qids = emb["docs"], emb["doc_ids"], emb["queries"], emb["qids"]
    print(f"# scale quality · SciFact test ({len(qids)} queries, {len(docs):,} MiniLM chunk vectors) · {machine()}")
    print(
        "| setting | dims | oversample | nDCG@10 | Δ vs fp32 exact | Recall@100 | chunk recall@10 vs exact "
        "| bytes/vector in RAM |"
    )
    print("|---|---|---|---|---|---|---|---|")
    chunks = [Chunk(id=f"c{i}", doc_id=str(d), text="", start=0, end=1) for i, d in enumerate(doc_ids)]
    reference = None
    for dims in args.dims or [384]:
        d = min(dims, docs.shape[1])
        x = docs[:, :d] / np.linalg.norm(docs[:, :d], axis=1, keepdims=True)
        q = queries[:, :d] / np.linalg.norm(queries[:, :d], axis=1, keepdims=True)
        exact_top = None
        for first, rescore in [
            ("fp32", "none"),
            ("int8", "none"),
            ("int8", "fp32"),
            ("binary", "int8"),
            ("binary", "fp32"),
        ]:
            for over in args.quality_oversample if rescore != "none" else [1]:
                store = CompressedVectorStore(
                    None,
                    d,
                    first_stage=first,
                    rescore=None if rescore == "none" else rescore,  # type: ignore[arg-type]
                    oversample=over,
                    flush_rows=len(chunks),
                )
                store.replace_documents([], chunks, x)
                results = store.search(q, 300)
                top10 = [{c.id for c, _ in row[:10]} for row in results]
                if first == "fp32":
                    exact_top = top10
                assert exact_top is not None
                chunk_recall = np.mean([len(a & b) / 10 for a, b in zip(top10, exact_top)])
                means, _ = evaluate_run(doc_run(qids, results), emb["data"].qrels)
                if reference is None:
                    reference = means["nDCG@10"]
                per = {"fp32": 4 * d, "int8": d, "binary": d / 8}[first]
                label = f"{first} + {rescore} rescoring" if rescore != "none" else f"{first} (no rescoring)"
                print(
                    f"| {label} | {d} | {over if rescore != 'none' else '-'} | {means['nDCG@10']:.4f} | "
                    f"{means['nDCG@10'] - reference:+.4f} | {means['Recall@100']:.4f} | {chunk_recall:.3f} | {per:g} |",
                    flush=True,
                )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks scale", description=__doc__)
    parser.add_argument("part", choices=["dense", "ten-million", "quality", "sparse", "matryoshka"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=250_000, help="rows generated and written at a time")
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["binary:fp32", "binary-ivf1024:fp32", "binary-ivf1024:int8:fp32", "int8:fp32"],
        help="first_stage:rescore pairs; binary-ivfN: binary IVF first stage of N lists",
    )
    parser.add_argument("--oversample", type=int, nargs="+", default=[30, 100])
    parser.add_argument("--int8-oversample", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--ivf-grid", nargs="+", default=["8:100", "16:100", "32:100", "64:100", "16:30"], help="nprobe:oversample"
    )
    parser.add_argument(
        "--middle-grid",
        nargs="+",
        default=["16:100:5", "16:100:2", "16:30:3", "16:200:5", "32:200:5"],
        help="three-stage settings (binary:int8:fp32): nprobe:oversample:rescore_oversample (nprobe ignored flat)",
    )
    parser.add_argument("--ivf-lists", type=int, default=1024, help="ten-million: IVF lists")
    parser.add_argument("--vectors", default=None, help="ten-million: an existing .npy of the generated rows")
    parser.add_argument("--slow-queries", type=int, default=30, help="queries timed for the full scans")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--hnsw-ef", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--quality-oversample", type=int, nargs="+", default=[4, 10, 30])
    parser.add_argument("--dims", type=int, nargs="+", default=None, help="quality: 384; matryoshka: 768 512 256 128")
    parser.add_argument("--no-peers", action="store_true", help="skip numpy/faiss peers (they hold fp32 in RAM)")
    parser.add_argument("--hnsw", action="store_true", help="also build faiss HNSW (slow to build at 1M)")
    parser.add_argument("--workdir", default=None, help="where the index is written (default: the temp dir)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", default=None, help="dense: reopen the stores an earlier --keep run left here")
    parser.add_argument("--docs", type=int, default=1_000_000, help="sparse: synthetic documents")
    parser.add_argument("--doc-terms", type=int, default=128, help="sparse: terms kept per document")
    parser.add_argument("--limit-docs", type=int, default=1000, help="matryoshka: SciFact documents in the subset")
    parser.add_argument("--seed", type=int, default=0, help="matryoshka: the distractors' order")
    parser.add_argument("--group", type=int, default=25, help="matryoshka: documents per alternation step")
    parser.add_argument("--encode-only", action="store_true", help="matryoshka: fill the cache and stop")
    parser.add_argument("--subset-oversample", type=int, default=10, help="matryoshka: candidates rescored per hit")
    parser.add_argument("--timed-queries", type=int, default=300, help="matryoshka: single queries timed")
    parser.add_argument("--centred", action="store_true", help="matryoshka: also nomic's layer-norm recipe (fp32)")
    args = parser.parse_args(argv)
    if args.part == "dense":
        dense(args)
    elif args.part == "ten-million":
        from benchmarks.scale_10m import ten_million

        ten_million(args)
    elif args.part == "quality":
        quality(args)
    elif args.part == "matryoshka":
        from benchmarks.scale_matryoshka import matryoshka

        args.dims = args.dims or [768, 512, 256, 128]
        matryoshka(args)
    else:
        from benchmarks.scale_sparse import sparse

        sparse(args)
