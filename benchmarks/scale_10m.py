"""Ten million dense vectors on one machine: the binary IVF first stage + float32 rescoring from a memory-mapped file,
and the three-stage search (binary IVF → int8 codes in RAM → float32 rescoring of the few best).

    python -m benchmarks scale ten-million --sizes 10000000 --queries 100 --workdir /tmp
    python -m benchmarks scale ten-million --vectors /tmp/v.npy --settings binary-ivf1024:int8:fp32 \
        --middle-grid 16:300:5 32:1000:5        # reuse a generated file; three stages only

The float32 matrix (15.4 GB at 10M × 384) is generated and written to disk in chunks and never held in RAM; the
exact answer of every query is folded in chunk by chunk as the rows are made (a streamed scan, no second read).
The first stage is the compressed store's own components (``BinaryIVF``, ``pack_bits``, the memory-mapped
rescoring with ``MADV_RANDOM``; for three stages the store-wide int8 calibration and ``Int8Rows``, 384 B a row
in RAM, fitted on the first chunk as the store fits it on its first segment); the chunk table in SQLite is left
out (inserting 10M chunk rows takes ~25 min on this machine and does not change the search: the 1M table measures
the whole store). Prints p50/p95 ms,
recall@10 against exact, the IVF's bytes in RAM and the process's peak RSS (``resource.getrusage``).
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

from benchmarks._common import machine, median, peak_rss_mib, percentile
from benchmarks.scale import (
    _batches,
    _grid,
    _loadavg,
    _merge_topk,
    _parse_setting,
    _recall,
    _time_alternating,
    bandwidth_gbs,
    clustered,
    rss_mib,
)


def ten_million(args: argparse.Namespace) -> None:
    from ragloom.stores.binary_ivf import BinaryIVF
    from ragloom.stores.codes import Int8Calibration, Int8Rows, matvec, pack_bits
    from ragloom.stores.compressed_segments import map_random

    size, dim, k, step = args.sizes[0], args.dim, args.k, args.batch
    gbs = bandwidth_gbs()
    print(f"# scale ten-million · n {size:,} · dim {dim} · k {k} · {args.queries} single queries · {machine()}")
    print(
        f"# measured read bandwidth {gbs:.1f} GB/s; machine shared with other workers, load average {_loadavg()} "
        "at start: compare ratios within this run"
    )
    folder = Path(tempfile.mkdtemp(prefix="rl-10m-", dir=args.workdir))
    file = Path(args.vectors) if args.vectors else folder / "vectors.npy"
    draw = clustered(dim)
    queries = draw(args.queries, 10**9)
    try:
        if not args.vectors:
            _write_vectors(file, draw, size, dim, step)
        offset = np.load(file, mmap_mode="r").offset
        best = (np.full((len(queries), k), -np.inf, np.float32), np.zeros((len(queries), k), np.int64))
        threshold, ivf, middle = None, None, None
        settings = [_parse_setting(text) for text in args.settings]
        two_stage = any(ivf_lists and not mid for _, _, ivf_lists, mid in settings)
        three_stage = any(ivf_lists and mid == "int8" for _, _, ivf_lists, mid in settings)
        started, trained = time.perf_counter(), 0.0
        with open(file, "rb") as handle:  # plain reads, not a memory map: the RSS figure stays the process's own
            handle.seek(offset)
            for start, n in _batches(size, step):
                x = np.fromfile(handle, dtype=np.float32, count=n * dim, offset=0).reshape(n, dim)
                if ivf is None:  # as the store: the first segment sets the sign threshold and trains the centres
                    threshold = x.mean(axis=0).astype(np.float32)
                    began = time.perf_counter()
                    ivf = BinaryIVF.train(x, args.ivf_lists)
                    trained = time.perf_counter() - began
                    if three_stage:
                        middle = Int8Rows(Int8Calibration.fit(x), dim)
                        middle.reserve(size)
                assert threshold is not None
                if middle is not None:
                    middle.add(middle.calibration.encode(x))
                ivf.add(pack_bits(x, threshold), np.arange(start, start + n, dtype=np.int64), ivf.assign(x))
                best = _merge_topk(best, queries, x, start, k)
                if (start // step) % 8 == 0:
                    print(
                        f"  {start + n:,} rows indexed, {time.perf_counter() - started:.0f} s, RSS {rss_mib():,.0f} MiB"
                    )
        assert ivf is not None and threshold is not None and offset > 0
        exact = best[1]
        print(
            f"- IVF (nlist {ivf.params.nlist}) centres trained on the first {step:,} rows in {trained:.0f} s; "
            f"{size:,} rows read back, assigned, added and scanned for the exact answers in "
            f"{time.perf_counter() - started:.0f} s; centres file {len(ivf.to_bytes()) / 1024:,.0f} KiB"
        )
        vectors = map_random(np.load(file, mmap_mode="r", allow_pickle=False))

        def search(q: np.ndarray, nprobe: int, over: int, final: int) -> set[int]:
            slots = ivf.search(q, pack_bits(q[None, :], threshold)[0], k * over, nprobe)
            if final and slots.size > k * final:  # the int8 middle stage, as the store runs it
                assert middle is not None
                slots = slots[np.argpartition(-middle.scores(q, slots), k * final - 1)[: k * final]]
            slots = np.sort(slots)
            scores = matvec(np.asarray(vectors[slots]), q)  # ascending reads from the memory map
            return set(slots[np.argpartition(-scores, k - 1)[:k]].tolist())

        grid = (_grid(args.ivf_grid) if two_stage else []) + (_grid(args.middle_grid) if three_stage else [])
        systems = {
            (
                f"binary IVF + int8 ({k * o} candidates) + fp32 rescoring of {k * f} (nprobe {p})"
                if f
                else f"binary IVF + fp32 rescoring (nprobe {p}, oversample {o})"
            ): (lambda q, p=p, o=o, f=f: search(q, p, o, f))
            for p, o, f in grid
        }
        lat = _time_alternating(systems, queries)
        print("\n| system | p50 ms | p95 ms | p99 ms | recall@10 | bytes scanned floor ms | index RAM |")
        print("|---|---|---|---|---|---|---|")
        index_ram = ivf.nbytes + (middle.nbytes if middle is not None else 0)
        for (name, fn), (nprobe, over, final) in zip(systems.items(), grid):
            recall = _recall([fn(q) for q in queries], exact, k)
            read = k * over * dim + k * final * dim * 4 if final else k * over * dim * 4
            floor = (size * dim / 8 * nprobe / ivf.params.nlist + read) / (gbs * 1e9) * 1000
            ram = ivf.nbytes + (middle.nbytes if final and middle is not None else 0)
            print(
                f"| {name} | {median(lat[name]):.2f} | {percentile(lat[name], 95):.2f} | "
                f"{percentile(lat[name], 99):.2f} | {recall:.3f} | {floor:.2f} | {ram / 2**20:,.0f} MiB |",
                flush=True,
            )
        exact_floor = size * dim * 4 / (gbs * 1e9) * 1000
        print(
            f"- exact float32 scan floor at {gbs:.1f} GB/s: {exact_floor:,.0f} ms a query "
            f"({size * dim * 4 / 1e9:.1f} GB per query)"
        )
        print(
            f"- IVF in RAM {ivf.nbytes / 2**20:,.0f} MiB (codes + ids + centres), int8 middle-stage codes "
            f"{(middle.nbytes if middle is not None else 0) / 2**20:,.0f} MiB (index RAM in all "
            f"{index_ram / 2**20:,.0f} MiB); float32 vectors memory-mapped "
            f"{vectors.nbytes / 2**30:.1f} GiB; process RSS now {rss_mib():,.0f} MiB (includes mapped pages the "
            f"rescoring touched), peak RSS {peak_rss_mib():,.0f} MiB (getrusage); load average {_loadavg()}"
        )
    finally:
        if not args.keep:  # a --vectors file is the caller's: only the temp folder goes
            shutil.rmtree(folder, ignore_errors=True)


def _write_vectors(file: Path, draw: Any, size: int, dim: int, step: int) -> None:
    """Generate the rows chunk by chunk into a .npy file through a plain file handle (never all in RAM)."""
    header = np.lib.format.open_memmap(file, mode="w+", dtype=np.float32, shape=(size, dim))
    offset = header.offset
    del header  # a sparse file with the .npy header
    started = time.perf_counter()
    with open(file, "r+b") as handle:
        for start, n in _batches(size, step):
            handle.seek(offset + start * dim * 4)
            handle.write(draw(n, start).tobytes())
        handle.flush()
        os.fsync(handle.fileno())
    print(
        f"- generated and wrote {size:,} rows ({file.stat().st_size / 1e9:.1f} GB) in "
        f"{time.perf_counter() - started:.0f} s"
    )
