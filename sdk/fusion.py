"""Fusion of ranked lists: reciprocal rank fusion and score fusion (min-max, z-score, convex).

Every fuser honours per-retriever weights (LlamaIndex's RRF ignores them) and merges on chunk ids, not on text
(LangChain's EnsembleRetriever dedups by text). With ``key="page"`` hits merge on the (document, page) they share,
so a page-image hit and a text-chunk hit from the same page fuse into one.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np

from ragloom.errors import ConfigError, InvalidInputError
from ragloom.protocols import ConfigurableFuser
from ragloom.types import Hit

if TYPE_CHECKING:
    from ragloom.routing import RoutedFusion

__all__ = [
    "ConvexFusion",
    "FusionKey",
    "MinMaxFusion",
    "ReciprocalRankFusion",
    "ZScoreFusion",
    "fit_weights",
    "fuser_from_config",
]

FusionKey = Literal["chunk", "page"]


def _key(hit: Hit, mode: FusionKey) -> str:
    chunk = hit.chunk
    if mode == "page" and chunk.page is not None:
        return f"{chunk.doc_id}\x00p{chunk.page}"
    return chunk.id


def _weight(weights: Mapping[str, float], name: str) -> float:
    return float(weights.get(name, 1.0))


def _check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    clean = {str(k): float(v) for k, v in weights.items()}
    if any(not np.isfinite(v) or v < 0 for v in clean.values()):
        raise ConfigError(f"Fusion weights must be finite and >= 0, got {clean}")
    return clean


def _assemble(
    contributions: dict[str, list[tuple[str, Hit, float]]], totals: dict[str, float], k: int, kind: str
) -> list[Hit]:
    """Turn per-key totals into ranked Hits; the representative chunk is the best-contributing text chunk."""
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:k]
    fused: list[Hit] = []
    for rank, (key, score) in enumerate(ranked, start=1):
        parts = sorted(contributions[key], key=lambda p: -p[2])
        with_text = [p for p in parts if p[1].chunk.text]
        representative = (with_text or parts)[0][1]
        explanation = " + ".join(f"{name}#{hit.rank}({contrib:.4g})" for name, hit, contrib in parts)
        fused.append(
            Hit(
                chunk=representative.chunk,
                score=float(score),
                score_kind="rrf" if kind == "rrf" else "fused",
                retriever="fusion",
                rank=rank,
                explanation=explanation,
            )
        )
    return fused


@dataclass(frozen=True)
class ReciprocalRankFusion:
    """RRF: score = Σ_r weight_r / (k + rank_r). ``k=60`` as in Cormack et al. (2009)."""

    k: int = 60
    weights: Mapping[str, float] = field(default_factory=dict)
    key: FusionKey = "chunk"

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ConfigError("RRF k must be >= 0")
        object.__setattr__(self, "weights", _check_weights(self.weights))

    def fuse(self, results: Mapping[str, Sequence[Hit]], k: int) -> list[Hit]:
        totals: dict[str, float] = {}
        contributions: dict[str, list[tuple[str, Hit, float]]] = {}
        for name, hits in results.items():
            weight = _weight(self.weights, name)
            seen: set[str] = set()
            for position, hit in enumerate(hits, start=1):
                key = _key(hit, self.key)
                if key in seen:  # a page reached twice by one retriever counts once, at its best rank
                    continue
                seen.add(key)
                contrib = weight / (self.k + position)
                totals[key] = totals.get(key, 0.0) + contrib
                contributions.setdefault(key, []).append((name, hit, contrib))
        return _assemble(contributions, totals, k, "rrf")

    def with_weights(self, weights: Mapping[str, float]) -> ReciprocalRankFusion:
        return dataclasses.replace(self, weights=dict(weights))


def _normalise_minmax(scores: np.ndarray) -> np.ndarray:
    lo, hi = float(scores.min()), float(scores.max())
    return np.ones_like(scores) if hi - lo < 1e-12 else (scores - lo) / (hi - lo)


def _normalise_zscore(scores: np.ndarray) -> np.ndarray:
    std = float(scores.std())
    return np.zeros_like(scores) if std < 1e-12 else (scores - scores.mean()) / std


_S = TypeVar("_S", bound="_ScoreFusion")


@dataclass(frozen=True)
class _ScoreFusion:
    """Shared body of score-based fusion: normalise each list, then add weighted scores."""

    weights: Mapping[str, float] = field(default_factory=dict)
    key: FusionKey = "chunk"

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _check_weights(self.weights))

    def _normalise(self, scores: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fuse(self, results: Mapping[str, Sequence[Hit]], k: int) -> list[Hit]:
        totals: dict[str, float] = {}
        contributions: dict[str, list[tuple[str, Hit, float]]] = {}
        for name, hits in results.items():
            best: dict[str, Hit] = {}
            for hit in hits:
                key = _key(hit, self.key)
                if key not in best or hit.score > best[key].score:
                    best[key] = hit
            if not best:
                continue
            keys = list(best)
            normalised = self._normalise(np.array([best[key].score for key in keys], dtype=np.float64))
            weight = _weight(self.weights, name)
            for key, value in zip(keys, normalised):
                contrib = weight * float(value)
                totals[key] = totals.get(key, 0.0) + contrib
                contributions.setdefault(key, []).append((name, best[key], contrib))
        return _assemble(contributions, totals, k, "score")

    def with_weights(self: _S, weights: Mapping[str, float]) -> _S:
        return dataclasses.replace(self, weights=dict(weights))


@dataclass(frozen=True)
class MinMaxFusion(_ScoreFusion):
    """Weighted sum of min-max normalised scores (a hit missing from a list contributes 0 there)."""

    def _normalise(self, scores: np.ndarray) -> np.ndarray:
        return _normalise_minmax(scores)


@dataclass(frozen=True)
class ZScoreFusion(_ScoreFusion):
    """Weighted sum of z-score normalised scores."""

    def _normalise(self, scores: np.ndarray) -> np.ndarray:
        return _normalise_zscore(scores)


@dataclass(frozen=True)
class ConvexFusion:
    """Convex combination of two retrievers' min-max scores: α·first + (1-α)·second."""

    first: str
    second: str
    alpha: float = 0.5
    key: FusionKey = "chunk"

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"ConvexFusion alpha must be in [0, 1], got {self.alpha}")

    def fuse(self, results: Mapping[str, Sequence[Hit]], k: int) -> list[Hit]:
        unknown = set(results) - {self.first, self.second}
        if unknown:
            raise InvalidInputError(
                f"ConvexFusion combines {self.first!r} and {self.second!r}; got results from {sorted(unknown)}"
            )
        weights = {self.first: self.alpha, self.second: 1.0 - self.alpha}
        return MinMaxFusion(weights=weights, key=self.key).fuse(results, k)

    @property
    def weights(self) -> dict[str, float]:
        return {self.first: self.alpha, self.second: 1.0 - self.alpha}

    def with_weights(self, weights: Mapping[str, float]) -> ConvexFusion:
        total = weights[self.first] + weights[self.second]
        return dataclasses.replace(self, alpha=weights[self.first] / total if total else 0.5)


def fit_weights(
    fuser: ReciprocalRankFusion | MinMaxFusion | ZScoreFusion | ConvexFusion,
    runs: Mapping[str, Sequence[Sequence[Hit]]],
    score: Callable[[list[list[Hit]]], float],
    grid: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0),
    k: int = 100,
) -> tuple[dict[str, float], float]:
    """Grid search over per-retriever weights, maximising ``score`` (e.g. nDCG@10 on labelled queries).

    ``runs[name][i]`` are retriever ``name``'s hits for query ``i``; ``score`` receives the fused lists in query
    order. Weights are searched relative to the first retriever (fixed at 1), which keeps the grid small.
    Returns the best weights and their score.
    """
    names = list(runs)
    if not names:
        raise InvalidInputError("fit_weights needs at least one run")
    n_queries = {len(v) for v in runs.values()}
    if len(n_queries) != 1:
        raise InvalidInputError("Every run must cover the same queries")
    (count,) = n_queries
    best_weights: dict[str, float] = {name: 1.0 for name in names}
    best_score = -1.0
    for combo in itertools.product(grid, repeat=len(names) - 1):
        weights = {names[0]: 1.0, **dict(zip(names[1:], combo))}
        candidate = fuser.with_weights(weights)
        fused = [candidate.fuse({name: runs[name][i] for name in names}, k) for i in range(count)]
        value = score(fused)
        if value > best_score + 1e-12:
            best_weights, best_score = weights, value
    return best_weights, best_score


def _config_weights(config: Mapping[str, object]) -> dict[str, float]:
    raw = config.get("weights") or {}
    weights: dict[str, float] = {}
    if isinstance(raw, Mapping):
        for name, weight in raw.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                break
            weights[str(name)] = float(weight)
        else:
            return weights
    raise ConfigError(f"Fusion weights must map retriever names to numbers, got {raw!r}")


def fuser_from_config(
    config: Mapping[str, object],
) -> ReciprocalRankFusion | MinMaxFusion | ZScoreFusion | RoutedFusion:
    """Rebuild a fuser from the dict stored with an index (see ``fuser_to_config``)."""
    kind = config.get("kind", "rrf")
    weights = _config_weights(config)
    key_name = config.get("key", "chunk")
    if key_name not in ("chunk", "page"):
        raise ConfigError(f"Fusion key must be 'chunk' or 'page', got {key_name!r}")
    key: FusionKey = "page" if key_name == "page" else "chunk"
    if kind == "rrf":
        k = config.get("k", 60)
        if isinstance(k, bool) or not isinstance(k, int):
            raise ConfigError(f"RRF k must be an integer, got {k!r}")
        return ReciprocalRankFusion(k=k, weights=weights, key=key)
    if kind == "minmax":
        return MinMaxFusion(weights=weights, key=key)
    if kind == "zscore":
        return ZScoreFusion(weights=weights, key=key)
    if kind == "routed":  # a per-query router over a calibrated fusion (``ragloom tune --route``)
        from ragloom.routing import RoutedFusion

        return RoutedFusion.from_config(config)
    raise ConfigError(f"Unknown fusion kind {kind!r}; use rrf, minmax, zscore or routed")


def fuser_to_config(fuser: object) -> dict[str, object]:
    """The JSON form of a fuser, saved with a pipeline."""
    if isinstance(fuser, ReciprocalRankFusion):
        return {"kind": "rrf", "k": fuser.k, "weights": dict(fuser.weights), "key": fuser.key}
    if isinstance(fuser, MinMaxFusion):
        return {"kind": "minmax", "weights": dict(fuser.weights), "key": fuser.key}
    if isinstance(fuser, ZScoreFusion):
        return {"kind": "zscore", "weights": dict(fuser.weights), "key": fuser.key}
    if isinstance(fuser, ConvexFusion):
        return {"kind": "minmax", "weights": fuser.weights, "key": fuser.key}
    if isinstance(fuser, ConfigurableFuser):
        return dict(fuser.to_config())
    raise ConfigError(f"Cannot serialise fuser of type {type(fuser).__name__}")
