"""Robust label-free calibration: pseudo-query families choose the fusion *method*; weights stay equal.

Why not fit weights on pseudo-queries (``ragloom.calibration.fit_calibration``, the "grid" strategy)? LLM-free
pseudo-queries share words with their chunk, so BM25 looks best on every family of them — keywords, crops,
salient sentences, even sentences with their rarest words removed — on every set measured, including those
whose real queries it loses (DBPedia subset: BM25 0.84–0.99 on pseudo-queries, 0.658 on the real ones, where
dense scored 0.776). Weights fitted on them follow that bias (the grid chose BM25 alone there) and member
agreement does not correct it (where dense collapses on the real queries it does *better* on pseudo-queries).
The *method* ranking was the stable signal: min-max ≥ z-score/RRF on every family and on the real queries of
every set (docs/hybrid.md). So this strategy:

1. makes pseudo-queries in families (by default the three shapes of
   :class:`~ragloom.pseudo_queries.SalientSpanQueries`, one family each; or any generators, e.g. an LLM's), and
   searches every member once per query;
2. tries equal-weight fusions only — min-max, z-score, RRF with several k — plus, for a member that *fails* on
   every family, the same fusions without it. Failing means a broken or mismatched index, not a weaker model:
   the member's nDCG@10 above chance (a random ranking of the index) is below ``floor`` (0.15) × the best
   member's above chance, on each family. Real but weaker members score far higher than that on these lexical
   pseudo-queries — dense MiniLM 0.27–0.44 of BM25 on long meeting transcripts (QMSum), where it is within 0.01
   of the best member on the real queries, and 0.36–0.97 on SciFact, DBPedia and generated profiles — while a
   random ranking scores ~0 on any index past a few hundred chunks (an earlier floor of 0.5 dropped dense on
   QMSum and lost 5 points there);
3. picks the candidate with the best ratio to the best single member, averaged over families (``objective=
   "mean"``; ``"worst"`` takes the worst family instead — on SciFact it chose RRF k=10 over min-max on one
   family's evidence, 0.828 vs 0.839 on the real queries), on the fit part of the queries; it replaces
   equal-weight min-max (the untuned default) only when ahead by more than ``margin``; the held-out part reports.

The result is a :class:`~ragloom.calibration.Calibration` like the grid's (its ``data`` merges the families, so
:func:`~ragloom.routing.fit_router` works on it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ragloom.calibration import (
    DEFAULT_RRF_KS,
    MIN_QUERIES,
    Calibration,
    CalibrationReport,
    CalibrationSet,
    FusionCandidate,
    ProgressCallback,
    _split,
    index_chunks,
    make_calibration_set,
    per_query_ndcg,
    score_candidates,
)
from ragloom.errors import ConfigError, IndexTooSmallError
from ragloom.fusion import fuser_from_config
from ragloom.protocols import Retriever
from ragloom.pseudo_queries import PseudoQueryGenerator, SalientSpanQueries
from ragloom.types import Chunk

__all__ = [
    "chance_ndcg",
    "default_families",
    "families_from",
    "fit_robust",
    "merge_sets",
    "robust_calibrate",
    "robust_candidates",
]

DEFAULT_FLOOR = 0.15


def chance_ndcg(chunks: int) -> float:
    """Expected nDCG@10 of one relevant chunk under a random ranking of ``chunks`` chunks."""
    if chunks <= 0:
        return 0.0
    return float(sum(1.0 / np.log2(rank + 1) for rank in range(1, min(10, chunks) + 1)) / chunks)


DEFAULT_MARGIN = 0.01


def default_families() -> dict[str, PseudoQueryGenerator]:
    """The LLM-free families: rare keywords, independent crops, salient sentences."""
    return {
        "keywords": SalientSpanQueries(keyword_share=1.0, crop_share=0.0),
        "crops": SalientSpanQueries(keyword_share=0.0, crop_share=1.0),
        "sentences": SalientSpanQueries(keyword_share=0.0, crop_share=0.0),
    }


def merge_sets(sets: Mapping[str, CalibrationSet]) -> CalibrationSet:
    """One :class:`CalibrationSet` holding every family's queries (in family order)."""
    parts = list(sets.values())
    if not parts:
        raise ConfigError("No pseudo-query families to merge")
    names = list(parts[0].runs)
    return CalibrationSet(
        queries=tuple(q for p in parts for q in p.queries),
        relevant=tuple(r for p in parts for r in p.relevant),
        runs={n: [row for p in parts for row in p.runs[n]] for n in names},
        generator=" + ".join(f"{family}: {p.generator}" for family, p in sets.items()),
        seed=parts[0].seed,
        requested=sum(p.requested for p in parts),
        skipped=sum(p.skipped for p in parts),
        chunks_in_index=parts[0].chunks_in_index,
        candidates=parts[0].candidates,
    )


def robust_candidates(
    n: int, drop: Sequence[int] = (), rrf_ks: Sequence[int] = DEFAULT_RRF_KS
) -> list[FusionCandidate]:
    """Equal-weight min-max first (the default), z-score, RRF for each k; then the same without ``drop``."""
    masks = [tuple([1.0] * n)]
    if drop and len(drop) < n:
        masks.append(tuple(0.0 if j in drop else 1.0 for j in range(n)))
    out: list[FusionCandidate] = []
    for weights in masks:
        out.append(FusionCandidate("minmax", weights))
        out.append(FusionCandidate("zscore", weights))
        out.extend(FusionCandidate("rrf", weights, k) for k in rrf_ks)
    return list(dict.fromkeys(out))


def _singles(n: int) -> list[FusionCandidate]:
    return [FusionCandidate("rrf", tuple(1.0 if j == i else 0.0 for j in range(n)), 60) for i in range(n)]


def fit_robust(
    sets: Mapping[str, CalibrationSet],
    *,
    holdout: float = 0.3,
    floor: float = DEFAULT_FLOOR,
    margin: float = DEFAULT_MARGIN,
    rrf_ks: Sequence[int] = DEFAULT_RRF_KS,
    objective: str = "mean",
    started: float | None = None,
) -> Calibration:
    """Choose an equal-weight fusion by its ratio to the best member across families (see the module docs)."""
    if not sets:
        raise ConfigError("fit_robust needs at least one pseudo-query family")
    if not 0.0 <= holdout < 1.0 or floor < 0 or margin < 0:
        raise ConfigError(f"Need 0 <= holdout < 1, floor >= 0, margin >= 0; got {holdout}, {floor}, {margin}")
    started = time.perf_counter() if started is None else started
    names = list(next(iter(sets.values())).runs)
    if len(names) < 2:
        raise ConfigError("Calibrating fusion needs at least two retrievers")
    n = len(names)
    singles = _singles(n)
    splits = {family: _split(len(data), holdout, data.seed) for family, data in sets.items()}
    # a member is dropped only if it fails on every family (fit part): its nDCG above chance is below floor x
    # the best member's above chance (chance matters on small indexes: 10 of 40 chunks fill a top 10)
    chance = {f: chance_ndcg(d.chunks_in_index) for f, d in sets.items()}
    member_fit = {f: per_query_ndcg(d, singles)[splits[f][0]].mean(axis=0) - chance[f] for f, d in sets.items()}
    failing = [j for j in range(n) if all(s[j] < floor * max(s.max(), 1e-9) for s in member_fit.values())]
    candidates = robust_candidates(n, failing, rrf_ks)
    ratios = np.zeros((len(sets), len(candidates)))
    held_scores = np.zeros((len(sets), len(candidates) + n))
    held_counts = np.zeros(len(sets))
    for i, (family, data) in enumerate(sets.items()):
        fit, held = splits[family]
        per_query = per_query_ndcg(data, [*candidates, *singles])
        fit_means = per_query[fit].mean(axis=0)
        best_member = max(float(fit_means[len(candidates) :].max()), 1e-9)
        ratios[i] = fit_means[: len(candidates)] / best_member
        rows = held if held.size else fit
        held_scores[i] = per_query[rows].sum(axis=0)
        held_counts[i] = rows.size
    if objective not in ("mean", "worst"):
        raise ConfigError(f"objective must be 'mean' or 'worst', got {objective!r}")
    value = ratios.min(axis=0) if objective == "worst" else ratios.mean(axis=0)
    best = int(np.argmax(value))
    if value[best] <= value[0] + margin:
        best = 0  # equal-weight min-max, the untuned default, unless clearly beaten
    chosen = candidates[best]
    held_mean = held_scores.sum(axis=0) / max(held_counts.sum(), 1)
    merged = merge_sets(sets)
    config = chosen.config(names)
    rrf_equal = candidates.index(FusionCandidate("rrf", tuple([1.0] * n), 60)) if 60 in rrf_ks else None
    baselines = {"min-max (equal weights)": float(held_mean[0])}
    if rrf_equal is not None:
        baselines["rrf k=60 (equal weights)"] = float(held_mean[rrf_equal])
    baselines.update({f"{name} alone": float(held_mean[len(candidates) + j]) for j, name in enumerate(names)})
    baselines.update({f"{objective}-family ratio, {candidates[i].label(names)}": float(value[i]) for i in (0, best)})
    fit_total = sum(int(s[0].size) for s in splits.values())
    offsets = np.cumsum([0, *(len(d) for d in sets.values())])[:-1]
    held_rows = np.concatenate([o + (s[1] if s[1].size else s[0]) for o, s in zip(offsets, splits.values())])
    recall = score_candidates(merged, [chosen], held_rows, depth=merged.candidates)[0][1]
    report = CalibrationReport.of(
        merged,
        fit_queries=fit_total,
        holdout_queries=len(merged) - fit_total if holdout > 0 else 0,
        candidates_tried=len(candidates),
        chosen=chosen.label(names)
        + (f"; dropped as failing: {', '.join(names[j] for j in failing)}" if failing else ""),
        fit_score=float(held_mean[best]),
        fit_recall=float(recall),
        train_score=float(value[best]),
        gain_z=float(value[best] - value[0]),
        baselines=baselines,
        metric=f"held-out nDCG@10 of the source chunk; chosen by the {objective} family ratio to the best member",
        seconds=time.perf_counter() - started,
    )
    return Calibration(fuser_from_config(config), {**config, "calibration": report.to_dict()}, report, merged)


def robust_calibrate(
    retrievers: Sequence[Retriever],
    *,
    families: Mapping[str, PseudoQueryGenerator] | None = None,
    sample: int = 300,
    seed: int = 0,
    holdout: float = 0.3,
    candidates: int = 100,
    chunks: Sequence[Chunk] | None = None,
    floor: float = DEFAULT_FLOOR,
    margin: float = DEFAULT_MARGIN,
    progress: ProgressCallback | None = None,
) -> Calibration:
    """Pseudo-queries in ``families`` (``sample`` in all, split evenly), then :func:`fit_robust`.

    Deterministic for a given ``seed``; raises :class:`~ragloom.errors.IndexTooSmallError` like
    :func:`~ragloom.calibration.calibrate` when the index (or a family) yields too few pseudo-queries.
    """
    started = time.perf_counter()
    if len(retrievers) < 2:
        raise ConfigError("Calibrating fusion needs at least two retrievers")
    families = dict(families or default_families())
    pool = list(chunks) if chunks is not None else index_chunks(retrievers)
    if len(pool) < MIN_QUERIES:
        raise IndexTooSmallError(
            f"The index holds {len(pool)} chunks; calibrating fusion needs at least {MIN_QUERIES} (one pseudo-query "
            "each). Index more documents, or keep the default fusion (min-max) for an index this small."
        )
    count = len(families)
    sizes = [sample // count + (1 if i < sample % count else 0) for i in range(count)]
    if min(sizes) < 1:
        raise ConfigError(f"sample ({sample}) must give each of the {count} pseudo-query families one query")
    sets: dict[str, CalibrationSet] = {}
    for i, (family, generator) in enumerate(families.items()):

        def step(done: int, total: int, i: int = i) -> None:
            if progress:
                progress(i * total + done, total * count)

        sets[family] = make_calibration_set(
            retrievers,
            generator=generator,
            sample=sizes[i],
            seed=seed + 7919 * i,
            candidates=candidates,
            chunks=pool,
            min_queries=1,
            progress=step,
        )
    kept = sum(len(data) for data in sets.values())
    if kept < MIN_QUERIES:
        raise IndexTooSmallError(
            f"Only {kept} sampled chunks gave a pseudo-query (need {MIN_QUERIES}); index more documents or raise "
            f"sample (now {sample})"
        )
    return fit_robust(sets, holdout=holdout, floor=floor, margin=margin, started=started)


def families_from(generator: PseudoQueryGenerator | None) -> dict[str, Any] | None:
    """Families for a user's generator: the default LLM-free ones for ``None`` or plain salient spans, else the
    generator alone (e.g. LLM questions)."""
    if generator is None or generator == SalientSpanQueries():
        return None
    return {"custom": generator}
