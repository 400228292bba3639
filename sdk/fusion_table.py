"""Fusion candidates scored in bulk: every query's candidate chunks stacked into one table (ranks and raw scores per
retriever), so that each fusion method's per-retriever contributions are computed once and every weight vector
costs one matrix product. Calibration (:mod:`ragloom.calibration`) ranks its candidates with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ragloom.errors import ConfigError
from ragloom.types import Hit

__all__ = ["FusionTable"]


@dataclass(frozen=True)
class FusionTable:
    """All queries' candidate chunks stacked: ranks and raw scores per retriever, the query each row belongs to,
    the row of each query's relevant chunk (-1: no retriever found it) and a tie order (chunk id order)."""

    ranks: np.ndarray  # (rows, retrievers), 0 where absent
    scores: np.ndarray  # (rows, retrievers), nan where absent
    query: np.ndarray  # (rows,)
    relevant: np.ndarray  # (queries,)
    tie: np.ndarray  # (rows,) position of the chunk id among its query's ids

    @classmethod
    def build(
        cls, names: Sequence[str], runs: Mapping[str, Sequence[Sequence[Hit]]], relevant: Sequence[str]
    ) -> FusionTable:
        rank_rows, score_rows, query_rows, tie_rows, rel_rows = [], [], [], [], []
        offset = 0
        for qi, target in enumerate(relevant):
            ids: dict[str, int] = {}
            for name in names:
                for hit in runs[name][qi]:
                    ids.setdefault(hit.chunk.id, len(ids))
            ranks = np.zeros((len(ids), len(names)))
            scores = np.full((len(ids), len(names)), np.nan)
            for j, name in enumerate(names):
                seen: set[str] = set()
                for position, hit in enumerate(runs[name][qi], start=1):
                    if hit.chunk.id in seen:
                        continue
                    seen.add(hit.chunk.id)
                    row = ids[hit.chunk.id]
                    ranks[row, j] = position
                    scores[row, j] = hit.score
            order = sorted(ids, key=lambda key: key)
            tie = np.empty(len(ids))
            for position, key in enumerate(order):
                tie[ids[key]] = position
            rank_rows.append(ranks)
            score_rows.append(scores)
            query_rows.append(np.full(len(ids), qi))
            tie_rows.append(tie)
            rel_rows.append(offset + ids[target] if target in ids else -1)
            offset += len(ids)
        width = len(names)
        return cls(
            ranks=np.vstack(rank_rows) if rank_rows else np.zeros((0, width)),
            scores=np.vstack(score_rows) if score_rows else np.zeros((0, width)),
            query=np.concatenate(query_rows).astype(np.int64) if query_rows else np.zeros(0, np.int64),
            relevant=np.asarray(rel_rows, dtype=np.int64),
            tie=np.concatenate(tie_rows) if tie_rows else np.zeros(0),
        )

    def contributions(self, kind: str, k: int) -> np.ndarray:
        """Per-row, per-retriever contribution under ``kind`` (what the fusers in ``ragloom.fusion`` add up)."""
        if kind == "rrf":
            return np.where(self.ranks > 0, 1.0 / (k + np.maximum(self.ranks, 1)), 0.0)
        out = np.zeros_like(self.scores)
        n_queries = len(self.relevant)
        for j in range(self.scores.shape[1]):
            column = self.scores[:, j]
            present = ~np.isnan(column)
            values = np.where(present, column, 0.0)
            count = np.bincount(self.query, weights=present, minlength=n_queries)
            if kind == "minmax":
                lo = np.full(n_queries, np.inf)
                hi = np.full(n_queries, -np.inf)
                np.minimum.at(lo, self.query[present], column[present])
                np.maximum.at(hi, self.query[present], column[present])
                span = hi - lo
                norm = np.where(
                    span[self.query] < 1e-12,
                    1.0,
                    (values - lo[self.query]) / np.where(span < 1e-12, 1, span)[self.query],
                )
            elif kind == "zscore":
                total = np.bincount(self.query, weights=values, minlength=n_queries)
                mean = total / np.maximum(count, 1)
                sq = np.bincount(
                    self.query, weights=np.where(present, (values - mean[self.query]) ** 2, 0.0), minlength=n_queries
                )
                std = np.sqrt(sq / np.maximum(count, 1))
                norm = np.where(
                    std[self.query] < 1e-12,
                    0.0,
                    (values - mean[self.query]) / np.where(std < 1e-12, 1, std)[self.query],
                )
            else:
                raise ConfigError(f"Unknown fusion kind {kind!r}; use rrf, minmax or zscore")
            out[:, j] = np.where(present, norm, 0.0)
        return out

    def metrics(self, fused: np.ndarray, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean nDCG@10 and Recall@``depth`` of the relevant chunk for each column of ``fused`` (rows × weight
        vectors), over the queries listed in ``queries``."""
        ndcg, recall = self.per_query(fused, depth)
        return ndcg[queries].mean(axis=0), recall[queries].mean(axis=0)

    def per_query(self, fused: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """nDCG@10 and Recall@``depth`` of every query (rows) under every column of ``fused``."""
        n_queries = len(self.relevant)
        found = self.relevant >= 0
        rel_rows = np.where(found, self.relevant, 0)
        target = fused[rel_rows]  # (queries, columns)
        row_target = target[self.query]
        tie_target = self.tie[rel_rows][self.query][:, None]
        ahead = (fused > row_target) | ((fused == row_target) & (self.tie[:, None] < tie_target))
        bounds = np.searchsorted(self.query, np.arange(n_queries + 1))  # rows are grouped by query, in order
        running = np.vstack([np.zeros((1, fused.shape[1])), np.cumsum(ahead, axis=0)])
        rank = running[bounds[1:]] - running[bounds[:-1]] + 1
        ndcg = np.where(found[:, None] & (rank <= 10), 1.0 / np.log2(rank + 1), 0.0)
        recall = np.where(found[:, None] & (rank <= depth), 1.0, 0.0)
        return ndcg, recall
