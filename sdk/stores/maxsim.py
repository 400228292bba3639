"""MaxSim (late interaction): Σ over query tokens of the best dot product with any of a document's tokens.

One entry point, :func:`maxsim_scores`, with two backends:

- ``"numpy"``: one float32 matrix product per (query, document) pair — what a reranker scoring a few dozen hits
  needs, with no torch import;
- ``"torch"``: documents concatenated into one token block and reduced per document with :func:`segment_max`
  (:func:`block_maxsim`), on any device and compute dtype — the step the multi-vector store streams over its
  memory-mapped segments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from ragloom._imports import require
from ragloom.errors import InvalidInputError

__all__ = ["MaxSimBackend", "block_maxsim", "maxsim_scores", "query_indicator", "segment_max", "streamed_maxsim"]

MaxSimBackend = Literal["numpy", "torch"]


def segment_max(torch: Any, sims: Any, lengths: np.ndarray, *, reduceat: bool | None = None) -> Any:
    """Max over consecutive column segments of ``sims`` (query tokens x page tokens) → (query tokens, pages).

    Equal lengths reshape and reduce in place; otherwise numpy's ``maximum.reduceat`` on CPUs and torch's
    ``scatter_reduce`` elsewhere (``reduceat`` forces one or the other, for testing).
    """
    if np.all(lengths == lengths[0]):
        return sims.view(sims.shape[0], len(lengths), int(lengths[0])).amax(dim=2).float()
    if reduceat if reduceat is not None else sims.device.type == "cpu":
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return torch.from_numpy(np.maximum.reduceat(sims.float().cpu().numpy(), starts, axis=1)).to(sims.device)
    page_of = torch.repeat_interleave(
        torch.arange(len(lengths), device=sims.device), torch.from_numpy(np.asarray(lengths)).to(sims.device)
    )
    best = torch.full((sims.shape[0], len(lengths)), -torch.inf, device=sims.device)
    return best.scatter_reduce_(1, page_of.expand(sims.shape[0], -1), sims.float(), "amax")


def query_indicator(torch: Any, queries: Sequence[np.ndarray], device: str) -> Any:
    """(n_queries, total query tokens) 0/1 matrix: sums each query's per-token maxima."""
    total = sum(q.shape[0] for q in queries)
    indicator = torch.zeros((len(queries), total), dtype=torch.float32, device=device)
    start = 0
    for row, q in enumerate(queries):
        indicator[row, start : start + q.shape[0]] = 1.0
        start += q.shape[0]
    return indicator


def block_maxsim(torch: Any, qmat: Any, qsum: Any, block: Any, lengths: np.ndarray) -> np.ndarray:
    """MaxSim of every query against a block of documents: ``qmat`` holds all queries' tokens, ``qsum`` is
    :func:`query_indicator`, ``block`` the documents' tokens one after another (``lengths`` each)."""
    sims = qmat @ block.T  # (query tokens, block tokens)
    scores: np.ndarray = (qsum @ segment_max(torch, sims, lengths)).cpu().numpy()
    return scores


def streamed_maxsim(
    torch: Any,
    seg: Any,
    sel: np.ndarray,
    qmat: Any,
    qsum: Any,
    block_tokens: int,
    *,
    rows: Callable[[Any, int, int], Any] | None = None,
    device: str = "cpu",
    dtype: Any = None,
) -> np.ndarray:
    """MaxSim of every query against documents ``sel`` of a segment (``seg.offsets``: document i owns token rows
    ``offsets[i]:offsets[i + 1]`` of ``seg.tokens``), streamed in blocks of ~``block_tokens`` tokens so a memory-mapped
    segment is never read whole. ``rows(seg, start, end)`` returns decoded token rows as a tensor (a first stage's
    int8/binary codes); without it the fp16 tokens are read and cast to ``dtype`` on ``device``."""
    out = np.empty((qsum.shape[0], len(sel)), dtype=np.float32)
    if len(sel) == 0:
        return out
    starts, ends = seg.offsets[sel], seg.offsets[sel + 1]
    lengths = ends - starts
    cum = np.concatenate([[0], np.cumsum(lengths)])
    i = 0
    while i < len(sel):
        j = max(i + 1, int(np.searchsorted(cum, cum[i] + block_tokens, side="right")) - 1)
        j = min(j, len(sel))
        contiguous = sel[j - 1] - sel[i] == j - 1 - i
        if rows is not None:
            parts = (
                [rows(seg, int(starts[i]), int(ends[j - 1]))]
                if contiguous
                else [rows(seg, int(a), int(b)) for a, b in zip(starts[i:j], ends[i:j])]
            )
            block = parts[0] if len(parts) == 1 else torch.cat(parts)
        else:
            data = (
                seg.tokens[starts[i] : ends[j - 1]]
                if contiguous
                else np.concatenate([seg.tokens[a:b] for a, b in zip(starts[i:j], ends[i:j])])
            )
            block = torch.from_numpy(data).to(device=device, dtype=dtype)
        out[:, i:j] = block_maxsim(torch, qmat, qsum, block, lengths[i:j])
        i = j
    return out


def _check_pair(q: np.ndarray, d: np.ndarray) -> None:
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise InvalidInputError(f"maxsim needs (n, dim) and (m, dim) matrices, got {q.shape} and {d.shape}")


def maxsim_scores(
    queries: Sequence[np.ndarray],
    documents: Sequence[np.ndarray],
    *,
    backend: MaxSimBackend = "numpy",
    device: str = "cpu",
    dtype: str = "float32",
) -> np.ndarray:
    """(n_queries, n_documents) float32 MaxSim scores; a document with no tokens scores 0.

    ``backend="torch"`` computes in ``dtype`` (``float32`` or ``bfloat16``; never float16 on a CPU) on ``device``.
    """
    qs = [np.asarray(q, dtype=np.float32) for q in queries]
    ds = [np.asarray(d, dtype=np.float32) for d in documents]
    for q in qs:
        for d in ds:
            _check_pair(q, d)
    out = np.zeros((len(qs), len(ds)), dtype=np.float32)
    if backend == "numpy":
        for i, q in enumerate(qs):
            for j, d in enumerate(ds):
                if d.shape[0]:
                    out[i, j] = float((q @ d.T).max(axis=1).sum())
        return out
    if backend != "torch":
        raise InvalidInputError(f"Unknown MaxSim backend {backend!r}; use 'numpy' or 'torch'")
    filled = [j for j, d in enumerate(ds) if d.shape[0]]
    if not qs or not filled:
        return out
    torch = require("torch", "multivector", "MaxSim scoring")
    kind = getattr(torch, dtype)  # the torch dtype named by the caller
    qmat = torch.from_numpy(np.concatenate(qs)).to(device=device, dtype=kind)
    block = torch.from_numpy(np.concatenate([ds[j] for j in filled])).to(device=device, dtype=kind)
    lengths = np.array([ds[j].shape[0] for j in filled], dtype=np.int64)
    out[:, filled] = block_maxsim(torch, qmat, query_indicator(torch, qs, device), block, lengths)
    return out
