"""Per-query routing (RouterRetriever-style): weight each retriever per query from cheap features of its results.

For every query and retriever, four features of the retriever's own list: its top-1 margin (top-1 minus top-2
score over the spread of its top 10), the entropy of a softmax over its z-scored top-10 scores, its agreement
with the other retrievers (share of its top 10 that another retriever also ranks in its top 10) and how full the
list is. A ridge regression per retriever, fitted on the calibration pseudo-queries (the target is that
retriever's own nDCG@10 for the pseudo-query's source chunk — no labels), predicts how well it will do on this
query; the calibrated weights are scaled by that prediction to the power ``gamma`` (``gamma`` chosen on the fit
pseudo-queries; 0 means static fusion). Adds well under a millisecond per query (features of at most 10 hits
per retriever, one dot product each).

The query text itself is not a feature: a :class:`~ragloom.protocols.Fuser` sees ranked lists only.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragloom.errors import ConfigError
from ragloom.fusion import MinMaxFusion, ReciprocalRankFusion, ZScoreFusion, fuser_from_config
from ragloom.types import Hit

__all__ = ["FEATURES", "RoutedFusion", "fit_router", "route_features"]

FEATURES = ("bias", "margin", "entropy", "agreement", "fill")
_TOP = 10
GAMMAS = (0.0, 0.5, 1.0, 2.0, 4.0)


def route_features(results: Mapping[str, Sequence[Hit]], names: Sequence[str]) -> np.ndarray:
    """(retrievers, features) matrix for one query's result lists (see the module docs)."""
    tops = {name: [h.chunk.id for h in list(results.get(name, ()))[:_TOP]] for name in names}
    out = np.zeros((len(names), len(FEATURES)))
    for i, name in enumerate(names):
        hits = list(results.get(name, ()))[:_TOP]
        out[i, 0] = 1.0
        if not hits:
            continue
        scores = np.array([h.score for h in hits], dtype=np.float64)
        spread = float(scores[0] - scores[-1])
        out[i, 1] = (scores[0] - scores[1]) / spread if len(scores) > 1 and spread > 1e-12 else 0.0
        std = float(scores.std())
        z = (scores - scores.mean()) / std if std > 1e-12 else np.zeros_like(scores)
        p = np.exp(z - z.max())
        p /= p.sum()
        out[i, 2] = float(-(p * np.log(p + 1e-12)).sum() / math.log(_TOP))
        others = set().union(*(set(tops[n]) for n in names if n != name)) if len(names) > 1 else set()
        out[i, 3] = sum(c in others for c in tops[name]) / _TOP
        out[i, 4] = len(hits) / _TOP
    return out


@dataclass(frozen=True)
class RoutedFusion:
    """A calibrated fusion whose per-retriever weights are rescaled per query by the router's predictions."""

    base: Mapping[str, Any]
    models: Mapping[str, Sequence[float]]
    gamma: float = 1.0
    floor: float = 0.02
    _base_fuser: ReciprocalRankFusion | MinMaxFusion | ZScoreFusion = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.gamma < 0 or not 0 < self.floor <= 1:
            raise ConfigError(f"Need gamma >= 0 and 0 < floor <= 1, got gamma={self.gamma}, floor={self.floor}")
        for name, coef in self.models.items():
            if len(coef) != len(FEATURES):
                raise ConfigError(f"Router model for {name!r} has {len(coef)} coefficients, expected {len(FEATURES)}")
        object.__setattr__(self, "base", dict(self.base))
        object.__setattr__(self, "models", {k: [float(x) for x in v] for k, v in self.models.items()})
        base = fuser_from_config(self.base)
        if isinstance(base, RoutedFusion):
            raise ConfigError("A routed fusion's base must be rrf, minmax or zscore, not another routed fusion")
        object.__setattr__(self, "_base_fuser", base)

    def weights_for(self, results: Mapping[str, Sequence[Hit]]) -> dict[str, float]:
        """The weights this query gets."""
        names = [n for n in results if n in self.models]
        base = dict(self._base_fuser.weights)
        weights = {n: float(base.get(n, 1.0)) for n in results}
        if not names or self.gamma == 0:
            return weights
        features = route_features(results, names)
        for name, row in zip(names, features):
            predicted = min(1.0, max(self.floor, float(np.dot(self.models[name], row))))
            weights[name] *= predicted**self.gamma
        return weights

    def fuse(self, results: Mapping[str, Sequence[Hit]], k: int) -> list[Hit]:
        return self._base_fuser.with_weights(self.weights_for(results)).fuse(results, k)

    def to_config(self) -> dict[str, Any]:
        return {
            "kind": "routed",
            "base": dict(self.base),
            "models": {k: list(v) for k, v in self.models.items()},
            "features": list(FEATURES),
            "gamma": self.gamma,
            "floor": self.floor,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RoutedFusion:
        features = list(config.get("features") or FEATURES)
        if features != list(FEATURES):
            raise ConfigError(f"This router was fitted on features {features}; this ragloom computes {list(FEATURES)}")
        try:
            return cls(
                base=dict(config["base"]),
                models={str(k): list(v) for k, v in dict(config["models"]).items()},
                gamma=float(config.get("gamma", 1.0)),
                floor=float(config.get("floor", 0.02)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"Malformed routed fusion config ({exc}); re-run `ragloom tune --route`") from exc


def _member_ndcg(hits: Sequence[Hit], target: str) -> float:
    for position, hit in enumerate(hits[:10], start=1):
        if hit.chunk.id == target:
            return 1.0 / math.log2(position + 1)
    return 0.0


def _ndcg(fuser: Any, data: Any, queries: np.ndarray, depth: int) -> float:
    names = list(data.runs)
    total = 0.0
    for qi in queries:
        fused = fuser.fuse({n: data.runs[n][qi] for n in names}, depth)
        total += _member_ndcg(fused, data.relevant[qi])
    return total / max(1, len(queries))


def fit_router(calibration: Any, *, holdout: float = 0.3, ridge: float = 1.0) -> Any:
    """A :class:`RoutedFusion` on top of ``calibration`` (a :class:`~ragloom.calibration.Calibration`), fitted
    on the same fit/held-out split; returns a new Calibration whose report compares routed and static fusion."""
    from ragloom.calibration import Calibration, _split

    started = time.perf_counter()
    data = calibration.data
    names = list(data.runs)
    fit, held = _split(len(data), holdout, data.seed)
    feats = {n: [] for n in names}  # type: dict[str, list[np.ndarray]]
    targets = {n: [] for n in names}  # type: dict[str, list[float]]
    for qi in fit:
        results = {n: data.runs[n][qi] for n in names}
        matrix = route_features(results, names)
        for i, name in enumerate(names):
            feats[name].append(matrix[i])
            targets[name].append(_member_ndcg(results[name], data.relevant[qi]))
    models: dict[str, list[float]] = {}
    for name in names:
        x, y = np.array(feats[name]), np.array(targets[name])
        penalty = ridge * np.eye(x.shape[1])
        penalty[0, 0] = 0.0  # the bias is not shrunk
        models[name] = np.linalg.solve(x.T @ x + penalty, x.T @ y).tolist()
    base = {k: v for k, v in calibration.config.items() if k != "calibration"}
    depth = data.candidates
    scored = [(g, _ndcg(RoutedFusion(base, models, g), data, fit, depth)) for g in GAMMAS]
    gamma = max(scored, key=lambda item: (round(item[1], 9), -item[0]))[0]
    router = RoutedFusion(base, models, gamma)
    evaluate = held if held.size else fit
    routed_score = _ndcg(router, data, evaluate, depth)
    report = dataclasses.replace(
        calibration.report,
        chosen=f"routed (gamma {gamma:g}) over {calibration.report.chosen}",
        fit_score=routed_score,
        baselines={**calibration.report.baselines, f"static {calibration.report.chosen}": calibration.report.fit_score},
        seconds=calibration.report.seconds + time.perf_counter() - started,
    )
    config = {**router.to_config(), "calibration": report.to_dict()}
    return Calibration(router, config, report, data)
