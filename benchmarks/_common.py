"""Shared helpers for benchmarks: timing with warm-up and alternation, medians, peak memory, data paths."""

from __future__ import annotations

import gzip
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RAGLOOM_SHARED_DATA", REPO.parent / "shared" / "data"))


def offline_model(name: str) -> Path:
    """A real model folder from ../shared/tools/offline-models (or ragloom's own cache via the alias)."""
    from ragloom.models import resolve_model

    return resolve_model(name)


def scifact_texts(limit: int | None = None) -> list[str]:
    path = SHARED_DATA / "scifact" / "corpus.jsonl.gz"
    texts = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            texts.append(f"{record.get('title', '')}\n\n{record.get('text', '')}".strip())
            if limit and len(texts) >= limit:
                break
    return texts


def alternate(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run each callable ``warmup`` times, then ``repeats`` rounds alternating between them; seconds per run."""
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
