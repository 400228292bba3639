"""Label-free calibration of fusion: pseudo-queries from the index's own chunks choose method, weights and RRF k.

1. Sample chunks from the index (one per document first, so long documents do not dominate), seeded.
2. A :class:`~ragloom.pseudo_queries.PseudoQueryGenerator` writes one query per chunk; the chunk is its one
   relevant item.
3. Every retriever searches every pseudo-query once (``candidates`` hits, as the pipeline will).
4. Every candidate fusion — RRF (several k), min-max and z-score, each with every weight vector of a small grid,
   single members included — is scored on nDCG@10 of the source chunk over a *fit* part of the pseudo-queries;
   the best is kept if its paired gain over equal-weight RRF k=60 is beyond noise (> ½ standard error), else
   RRF stays. Because single members are candidates, the fit can always fall back to the best member.
5. The fit score reported is measured on the *held-out* part (never used to choose), beside each member alone
   and equal-weight RRF on the same held-out queries.

Scoring is vectorised: each query's candidate chunks × retrievers contribution matrix is built once per method,
so hundreds of weight vectors cost one matrix product each.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ragloom.errors import ConfigError, IndexTooSmallError
from ragloom.fusion import fuser_from_config
from ragloom.fusion_table import FusionTable
from ragloom.protocols import ChunkListing, Fuser, Retriever
from ragloom.pseudo_queries import PseudoQueryGenerator, SalientSpanQueries
from ragloom.types import Chunk, Hit

__all__ = [
    "Calibration",
    "CalibrationReport",
    "CalibrationSet",
    "FusionCandidate",
    "calibrate",
    "index_chunks",
    "make_calibration_set",
    "sample_chunks",
    "score_candidates",
]

ProgressCallback = Callable[[int, int], None]
DEFAULT_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_RRF_KS: tuple[int, ...] = (10, 30, 60, 100)
MIN_QUERIES = 20


def index_chunks(retrievers: Sequence[Retriever]) -> list[Chunk]:
    """The chunks of the first retriever that can list them (dense, SPLADE and BM25 indexes can)."""
    for retriever in retrievers:
        if isinstance(retriever, ChunkListing):
            try:
                return list(retriever.chunks())
            except ConfigError:
                continue
    names = ", ".join(r.name for r in retrievers)
    raise ConfigError(
        f"None of the retrievers ({names}) can list its chunks; pass chunks=... (e.g. the chunks returned by add())"
    )


def sample_chunks(chunks: Sequence[Chunk], n: int, seed: int, *, repeat: bool = False) -> list[Chunk]:
    """``n`` chunks with text, seeded: round-robin over documents in a shuffled order, so every document gives
    one chunk before any gives two. With ``repeat``, a small index is walked again until ``n`` are picked (each
    pass gets new pseudo-queries from the generator's random draws)."""
    rng = random.Random(seed)
    by_doc: dict[str, list[Chunk]] = {}
    for chunk in sorted((c for c in chunks if c.text.strip()), key=lambda c: c.id):
        by_doc.setdefault(chunk.doc_id, []).append(chunk)
    docs = sorted(by_doc)
    rng.shuffle(docs)
    for doc in docs:
        rng.shuffle(by_doc[doc])
    picked: list[Chunk] = []
    depth = 0
    while len(picked) < n:
        layer = [by_doc[d][depth] for d in docs if depth < len(by_doc[d])]
        if not layer:
            if not repeat or not picked:
                break
            depth = 0
            continue
        picked.extend(layer[: n - len(picked)])
        depth += 1
    return picked


@dataclass(frozen=True)
class CalibrationSet:
    """Pseudo-queries, the chunk each came from, and every retriever's hits for them."""

    queries: tuple[str, ...]
    relevant: tuple[str, ...]
    runs: Mapping[str, Sequence[Sequence[Hit]]]
    generator: str
    seed: int
    requested: int
    skipped: int
    chunks_in_index: int
    candidates: int

    def __len__(self) -> int:
        return len(self.queries)


def make_calibration_set(
    retrievers: Sequence[Retriever],
    *,
    generator: PseudoQueryGenerator | None = None,
    sample: int = 300,
    seed: int = 0,
    candidates: int = 100,
    chunks: Sequence[Chunk] | None = None,
    min_queries: int = MIN_QUERIES,
    progress: ProgressCallback | None = None,
) -> CalibrationSet:
    """Sample chunks, write pseudo-queries for them and search every retriever (see the module docs).

    Raises :class:`~ragloom.errors.IndexTooSmallError` when fewer than ``min_queries`` pseudo-queries result.
    """
    if sample < 1 or candidates < 10:
        raise ConfigError(f"Need sample >= 1 and candidates >= 10, got sample={sample}, candidates={candidates}")
    generator = generator or SalientSpanQueries()
    pool = list(chunks) if chunks is not None else index_chunks(retrievers)
    if len(pool) < min_queries:
        raise IndexTooSmallError(
            f"The index holds {len(pool)} chunks; calibrating fusion needs at least {min_queries} (one pseudo-query "
            "each). Index more documents, or keep the default fusion (RRF) for an index this small."
        )
    picked = sample_chunks(pool, sample, seed, repeat=True)
    total = 2 * len(picked)
    texts: list[str | None] = []
    for begin in range(0, len(picked), 16):
        texts.extend(generator.generate(picked[begin : begin + 16], seed + begin))
        if progress:
            progress(len(texts), total)
    kept = [(q.strip(), c.id) for q, c in zip(texts, picked) if q and q.strip()]
    if len(kept) < min_queries:
        raise IndexTooSmallError(
            f"Only {len(kept)} of {len(picked)} sampled chunks gave a pseudo-query (need {min_queries}); index more "
            f"documents, raise sample (now {sample}), or use another generator than {generator.name}"
        )
    queries = [q for q, _ in kept]
    runs: dict[str, list[list[Hit]]] = {r.name: [] for r in retrievers}
    for begin in range(0, len(queries), 32):
        batch = queries[begin : begin + 32]
        for retriever in retrievers:
            runs[retriever.name].extend(retriever.search_many(batch, candidates))
        if progress:
            progress(len(picked) + round(len(picked) * (begin + len(batch)) / len(queries)), total)
    return CalibrationSet(
        queries=tuple(queries),
        relevant=tuple(c for _, c in kept),
        runs=runs,
        generator=generator.name,
        seed=seed,
        requested=sample,
        skipped=len(picked) - len(kept),
        chunks_in_index=len(pool),
        candidates=candidates,
    )


# -- scoring -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FusionCandidate:
    """One fusion to try: method (rrf, minmax, zscore), RRF k, and one weight per retriever."""

    kind: str
    weights: tuple[float, ...]
    k: int = 60

    def config(self, names: Sequence[str]) -> dict[str, Any]:
        config: dict[str, Any] = {"kind": self.kind, "weights": dict(zip(names, self.weights)), "key": "chunk"}
        if self.kind == "rrf":
            config["k"] = self.k
        return config

    def label(self, names: Sequence[str]) -> str:
        live = [(n, w) for n, w in zip(names, self.weights) if w > 0]
        if len(live) == 1:
            return f"{live[0][0]} alone"
        method = f"rrf k={self.k}" if self.kind == "rrf" else self.kind
        return f"{method} ({', '.join(f'{n} {w:g}' for n, w in live)})"


def _weight_grid(n: int, grid: Sequence[float]) -> list[tuple[float, ...]]:
    """Every weight vector over ``grid`` except all-zero, scaled so the largest weight is 1, without repeats."""
    seen: dict[tuple[float, ...], None] = {}
    for combo in itertools.product(grid, repeat=n):
        top = max(combo)
        if top <= 0:
            continue
        seen.setdefault(tuple(round(w / top, 4) for w in combo), None)
    return sorted(seen, key=lambda w: (-sum(x > 0 for x in w), -sum(w)))  # mixtures first, equal weights first


def per_query_ndcg(data: CalibrationSet, candidates: Sequence[FusionCandidate]) -> np.ndarray:
    """(queries, candidates) nDCG@10 of the source chunk, for paired comparisons."""
    names = list(data.runs)
    table = FusionTable.build(names, data.runs, data.relevant)
    out = np.zeros((len(data), len(candidates)))
    for i, cand in enumerate(candidates):
        fused = table.contributions(cand.kind, cand.k) @ np.asarray(cand.weights, dtype=np.float64)[:, None]
        out[:, i] = table.per_query(fused, data.candidates)[0][:, 0]
    return out


def score_candidates(
    data: CalibrationSet,
    candidates: Sequence[FusionCandidate],
    queries: np.ndarray | None = None,
    *,
    depth: int = 100,
) -> list[tuple[float, float]]:
    """(nDCG@10, Recall@depth) of each candidate on ``queries`` (indices into ``data``; all by default)."""
    names = list(data.runs)
    table = FusionTable.build(names, data.runs, data.relevant)
    chosen = np.arange(len(data)) if queries is None else np.asarray(queries)
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(candidates)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, cand in enumerate(candidates):
        groups.setdefault((cand.kind, cand.k if cand.kind == "rrf" else 0), []).append(i)
    for (kind, k), members in groups.items():
        contrib = table.contributions(kind, k)
        weights = np.array([candidates[i].weights for i in members], dtype=np.float64).T
        ndcg, recall = table.metrics(contrib @ weights, chosen, depth)
        for column, i in enumerate(members):
            out[i] = (float(ndcg[column]), float(recall[column]))
    return out


# -- the fit -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationReport:
    """How a fuser was calibrated, and how it scored on held-out pseudo-queries (never used to choose it)."""

    generator: str
    seed: int
    requested: int
    sample_size: int
    skipped: int
    chunks_in_index: int
    fit_queries: int
    holdout_queries: int
    candidates_tried: int
    chosen: str
    fit_score: float
    fit_recall: float
    train_score: float
    gain_z: float = 0.0
    baselines: dict[str, float] = field(default_factory=dict)
    metric: str = "nDCG@10 of the source chunk"
    seconds: float = 0.0

    @classmethod
    def of(cls, data: CalibrationSet, **figures: Any) -> CalibrationReport:
        """A report on ``data``: its provenance (generator, seed, sizes) read from the set, ``figures`` the rest."""
        return cls(
            generator=data.generator,
            seed=data.seed,
            requested=data.requested,
            sample_size=len(data),
            skipped=data.skipped,
            chunks_in_index=data.chunks_in_index,
            **figures,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("fit_score", "fit_recall", "train_score", "gain_z", "seconds"):
            data[key] = round(float(data[key]), 4)
        data["baselines"] = {k: round(float(v), 4) for k, v in self.baselines.items()}
        return data


@dataclass(frozen=True)
class Calibration:
    """A fitted fuser, the config that rebuilds it (with how it was fitted), the report and the data."""

    fuser: Fuser
    config: dict[str, Any]
    report: CalibrationReport
    data: CalibrationSet


def _split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = n - max(1, round(n * holdout)) if holdout > 0 else n
    return np.sort(order[:cut]), np.sort(order[cut:])


def candidate_set(
    n: int,
    *,
    methods: Sequence[str] = ("rrf", "minmax", "zscore"),
    rrf_ks: Sequence[int] = DEFAULT_RRF_KS,
    grid: Sequence[float] = DEFAULT_GRID,
) -> list[FusionCandidate]:
    """Equal-weight RRF k=60 first (the default wins ties), then every method × k × weight vector."""
    weights = _weight_grid(n, grid)
    out = [FusionCandidate("rrf", tuple([1.0] * n), 60)]
    for kind in methods:
        for k in rrf_ks if kind == "rrf" else (60,):
            out.extend(FusionCandidate(kind, w, k) for w in weights)
    return list(dict.fromkeys(out))


def fit_calibration(
    data: CalibrationSet,
    *,
    holdout: float = 0.3,
    methods: Sequence[str] = ("rrf", "minmax", "zscore"),
    rrf_ks: Sequence[int] = DEFAULT_RRF_KS,
    grid: Sequence[float] = DEFAULT_GRID,
    min_z: float = 0.5,
    started: float | None = None,
) -> Calibration:
    """Choose the fusion with the best nDCG@10 on the fit part of ``data``; report it on the held-out part.

    The best fusion replaces equal-weight RRF k=60 only when its mean paired gain over it on the fit queries
    exceeds ``min_z`` standard errors (small or uninformative pseudo-query sets keep the default).
    """
    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"holdout must be in [0, 1), got {holdout}")
    names = list(data.runs)
    if len(names) < 2:
        raise ConfigError("Calibrating fusion needs at least two retrievers")
    started = time.perf_counter() if started is None else started
    fit, held = _split(len(data), holdout, data.seed)
    candidates = candidate_set(len(names), methods=methods, rrf_ks=rrf_ks, grid=grid)
    train = score_candidates(data, candidates, fit, depth=data.candidates)
    best = max(range(len(candidates)), key=lambda i: (round(train[i][0], 9), round(train[i][1], 9), -i))
    # leave the default (equal-weight RRF) only for a gain beyond noise: mean paired gain > min_z standard errors
    paired = per_query_ndcg(data, [candidates[best], candidates[0]])[fit]
    gain = paired[:, 0] - paired[:, 1]
    spread = float(gain.std(ddof=1)) / np.sqrt(len(gain)) if len(gain) > 1 else 0.0
    gain_z = float(gain.mean() / spread) if spread > 0 else (np.inf if gain.mean() > 0 else 0.0)
    if best != 0 and gain_z <= min_z:
        best = 0
    chosen = candidates[best]
    evaluate = held if held.size else fit
    singles = [
        FusionCandidate("rrf", tuple(1.0 if j == i else 0.0 for j in range(len(names))), 60) for i in range(len(names))
    ]
    baseline_cands = [chosen, candidates[0], *singles]
    scored = score_candidates(data, baseline_cands, evaluate, depth=data.candidates)
    baselines = {"rrf k=60 (equal weights)": scored[1][0], **{f"{n} alone": s[0] for n, s in zip(names, scored[2:])}}
    config = chosen.config(names)
    report = CalibrationReport.of(
        data,
        fit_queries=int(fit.size),
        holdout_queries=int(held.size),
        candidates_tried=len(candidates),
        chosen=chosen.label(names),
        fit_score=scored[0][0],
        fit_recall=scored[0][1],
        train_score=train[best][0],
        gain_z=min(gain_z, 1e6),
        baselines=baselines,
        seconds=time.perf_counter() - started,
    )
    return Calibration(fuser_from_config(config), {**config, "calibration": report.to_dict()}, report, data)


def calibrate(
    retrievers: Sequence[Retriever],
    *,
    generator: PseudoQueryGenerator | None = None,
    sample: int = 300,
    seed: int = 0,
    holdout: float = 0.3,
    candidates: int = 100,
    chunks: Sequence[Chunk] | None = None,
    methods: Sequence[str] = ("rrf", "minmax", "zscore"),
    progress: ProgressCallback | None = None,
) -> Calibration:
    """Pseudo-queries from the index, then the best fusion of ``retrievers`` for them (see the module docs).

    ``candidates`` must match the pipeline's (each retriever's list length before fusion): min-max and z-score
    normalise over that list. Deterministic for a given ``seed`` (and a deterministic generator).
    """
    started = time.perf_counter()
    if len(retrievers) < 2:
        raise ConfigError("Calibrating fusion needs at least two retrievers")
    data = make_calibration_set(
        retrievers,
        generator=generator,
        sample=sample,
        seed=seed,
        candidates=candidates,
        chunks=chunks,
        progress=progress,
    )
    return fit_calibration(data, holdout=holdout, methods=methods, started=started)
