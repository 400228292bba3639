"""Compression of multi-vector (late-interaction) embeddings, and a memory estimate before indexing.

Each step is optional and measured (``python -m benchmarks maxsim``):

- hierarchical token pooling at index time (Clavié et al. 2024; Light-ColPali, Ma et al. 2025): Ward clustering
  of a page's token vectors into ``ceil(n / pool_factor)`` clusters, each replaced by its mean;
- attention-based adaptive pruning (DocPruner, 2025): keep the tokens whose attention from the model's global
  token exceeds ``mean + k * std`` of that page's attention, so each page keeps as many as its content needs;
- int8 / binary quantisation of the token matrix, used by an approximate first stage whose candidates are then
  rescored exactly from the fp16 matrix.

numpy only; scipy (for Ward linkage) loads when pooling is first used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ragloom._imports import require
from ragloom.errors import ConfigError, InvalidInputError
from ragloom.muvera import MuveraConfig

__all__ = [
    "FirstStage",
    "MemoryEstimate",
    "MultiVectorSettings",
    "dequantize_int8",
    "estimate_memory",
    "pool_tokens",
    "pooled_count",
    "prune_by_importance",
    "quantize_binary",
    "quantize_int8",
    "unpack_binary",
]

FirstStage = Literal["exact", "int8", "binary", "muvera"]
ComputeDType = Literal["auto", "float32", "bfloat16", "float16"]


@dataclass(frozen=True)
class MultiVectorSettings:
    """How a multi-vector index stores and searches pages.

    ``pool_factor``: hierarchical pooling keeps ``ceil(n / pool_factor)`` vectors per page (1 = off).
    ``prune_k``: DocPruner threshold ``mean + prune_k * std`` of attention importance (None = off);
    ``prune_min_tokens`` is the floor a page never goes under.
    ``first_stage``: ``exact`` scores every page with exact MaxSim; ``int8``/``binary`` score quantised tokens
    and ``muvera`` fixed-dimensional encodings, then the best ``candidates`` pages are rescored exactly.
    ``compute_dtype``: ``auto`` is float32 on CPUs and float16 on GPUs; ``bfloat16`` is faster on CPUs with
    bf16 units at ~3 significant digits. float16 math on a CPU is refused (it is very slow there).
    """

    pool_factor: int = 1
    prune_k: float | None = None
    prune_min_tokens: int = 8
    first_stage: FirstStage = "exact"
    candidates: int = 128
    muvera: MuveraConfig = field(default_factory=MuveraConfig)
    compute_dtype: ComputeDType = "auto"
    block_tokens: int = 65536

    def __post_init__(self) -> None:
        if not isinstance(self.pool_factor, int) or self.pool_factor < 1:
            raise ConfigError(f"pool_factor must be an integer >= 1, got {self.pool_factor!r}")
        if self.prune_k is not None and not math.isfinite(self.prune_k):
            raise ConfigError(f"prune_k must be finite, got {self.prune_k}")
        if self.prune_min_tokens < 1:
            raise ConfigError("prune_min_tokens must be >= 1")
        if self.first_stage not in ("exact", "int8", "binary", "muvera"):
            raise ConfigError(f"first_stage must be exact, int8, binary or muvera, got {self.first_stage!r}")
        if self.candidates < 1:
            raise ConfigError("candidates must be >= 1")
        if self.compute_dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"compute_dtype must be auto, float32, bfloat16 or float16, got {self.compute_dtype!r}")
        if self.block_tokens < 256:
            raise ConfigError("block_tokens must be >= 256")

    @property
    def index_config(self) -> dict[str, object]:
        """What changes the stored vectors (recorded in the manifest; a different value is a mismatch)."""
        return {"pool_factor": self.pool_factor, "prune_k": self.prune_k, "prune_min_tokens": self.prune_min_tokens}

    def to_dict(self) -> dict[str, object]:
        return {
            **self.index_config,
            "first_stage": self.first_stage,
            "candidates": self.candidates,
            "muvera": self.muvera.to_dict(),
            "compute_dtype": self.compute_dtype,
            "block_tokens": self.block_tokens,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> MultiVectorSettings:
        values: dict[str, Any] = dict(data)  # each field is checked by __post_init__
        muvera = values.pop("muvera", None)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"Unknown multi-vector settings {unknown}; known: {sorted(known)}")
        config = MuveraConfig(**muvera) if isinstance(muvera, dict) else MuveraConfig()
        return cls(muvera=config, **values)


# -- pooling ------------------------------------------------------------------------------------------------------
def pooled_count(n_tokens: int, pool_factor: int) -> int:
    """How many vectors hierarchical pooling keeps out of ``n_tokens``: ``ceil(n / pool_factor)``."""
    return max(1, math.ceil(n_tokens / pool_factor)) if n_tokens else 0


def pool_tokens(vectors: np.ndarray, pool_factor: int) -> np.ndarray:
    """Ward-cluster a page's token vectors into :func:`pooled_count` clusters and return the cluster means.

    Means are not renormalised, so a pooled vector's score is the average of its members' scores.
    """
    vectors = _check_matrix(vectors)
    if pool_factor < 1:
        raise ConfigError(f"pool_factor must be >= 1, got {pool_factor}")
    n = vectors.shape[0]
    target = pooled_count(n, pool_factor)
    if pool_factor == 1 or target >= n:
        return vectors.astype(np.float32, copy=False)
    hierarchy = require("scipy.cluster.hierarchy", "multivector", "hierarchical token pooling")
    data = vectors.astype(np.float64)
    labels = hierarchy.fcluster(hierarchy.linkage(data, method="ward"), t=target, criterion="maxclust") - 1
    counts = np.bincount(labels).astype(np.float64)
    sums = np.zeros((counts.shape[0], vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, data)
    keep = counts > 0
    return (sums[keep] / counts[keep, None]).astype(np.float32)


# -- pruning ------------------------------------------------------------------------------------------------------
def prune_by_importance(
    vectors: np.ndarray, importance: np.ndarray, k: float = 0.0, min_tokens: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """DocPruner-style adaptive pruning: keep tokens with ``importance > mean + k * std``.

    ``importance`` is one score per token (e.g. the attention the model's global token pays it). At least
    ``min_tokens`` tokens are kept (the most important). Returns the kept vectors and the boolean keep-mask.
    """
    vectors = _check_matrix(vectors)
    importance = np.asarray(importance, dtype=np.float64).ravel()
    if importance.shape[0] != vectors.shape[0]:
        raise InvalidInputError(f"{vectors.shape[0]} token vectors but {importance.shape[0]} importance scores")
    if not np.all(np.isfinite(importance)):
        raise InvalidInputError("importance scores contain NaN or Inf")
    if vectors.shape[0] == 0:
        return vectors, np.zeros(0, dtype=bool)
    threshold = importance.mean() + k * importance.std()
    keep = importance > threshold
    floor = min(min_tokens, vectors.shape[0])
    if int(keep.sum()) < floor:
        keep = np.zeros_like(keep)
        keep[np.argsort(-importance, kind="stable")[:floor]] = True
    return vectors[keep], keep


# -- quantisation -------------------------------------------------------------------------------------------------
def quantize_int8(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-token int8: ``vectors ≈ codes * scales[:, None]``."""
    vectors = _check_matrix(vectors)
    peak = np.abs(vectors).max(axis=1).astype(np.float32) if vectors.size else np.zeros(vectors.shape[0], np.float32)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(vectors * (1.0 / scales)[:, None]), -127, 127).astype(np.int8)
    return codes, scales


def dequantize_int8(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return codes.astype(np.float32) * np.asarray(scales, dtype=np.float32)[:, None]


def quantize_binary(vectors: np.ndarray) -> np.ndarray:
    """One bit per dimension (the sign), packed 8 to a byte: shape ``(n, ceil(dim / 8))`` uint8."""
    return np.packbits(_check_matrix(vectors) > 0, axis=1)


def unpack_binary(packed: np.ndarray, dim: int) -> np.ndarray:
    """±1 float32 vectors from :func:`quantize_binary` codes (queries stay float: asymmetric scoring)."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1, count=dim)
    return bits.astype(np.float32) * 2.0 - 1.0


def _check_matrix(vectors: np.ndarray) -> np.ndarray:
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise InvalidInputError(f"Expected a (tokens, dim) matrix, got shape {array.shape}")
    return array


# -- memory estimate ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes an index of ``n_pages`` needs: on disk, and read per query (what should fit in RAM to be fast)."""

    n_pages: int
    tokens_per_page: float
    disk_bytes: int
    scan_bytes_per_query: int
    first_stage_bytes: int

    @property
    def disk_bytes_per_page(self) -> float:
        return self.disk_bytes / self.n_pages if self.n_pages else 0.0

    @property
    def scan_bytes_per_page(self) -> float:
        return self.scan_bytes_per_query / self.n_pages if self.n_pages else 0.0

    def __str__(self) -> str:
        return (
            f"{self.n_pages} pages x {self.tokens_per_page:.0f} vectors: {_human(self.disk_bytes)} on disk, "
            f"{_human(self.scan_bytes_per_query)} read per query ({_human(self.first_stage_bytes)} first stage)"
        )


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def estimate_memory(
    n_pages: int,
    settings: MultiVectorSettings | None = None,
    *,
    tokens_per_page: int = 1030,
    dim: int = 128,
    prune_keep_fraction: float = 0.5,
    chunk_json_bytes: int = 300,
) -> MemoryEstimate:
    """Estimate an index's size before building it (ColPali defaults: 1030 vectors of 128 dims per page).

    Pruning is adaptive, so its effect is an assumption: ``prune_keep_fraction`` of the tokens (DocPruner keeps
    roughly half at ``k = 0``). Measure a sample of your pages for a precise figure.
    """
    settings = settings or MultiVectorSettings()
    if n_pages < 0 or tokens_per_page < 1 or dim < 1:
        raise InvalidInputError("n_pages must be >= 0 and tokens_per_page, dim >= 1")
    tokens = float(tokens_per_page)
    if settings.prune_k is not None:
        tokens = max(float(settings.prune_min_tokens), tokens * prune_keep_fraction)
    if settings.pool_factor > 1:
        tokens = float(pooled_count(math.ceil(tokens), settings.pool_factor))
    fp16 = tokens * dim * 2
    first = {
        "exact": 0.0,
        "int8": tokens * (dim + 4),
        "binary": tokens * math.ceil(dim / 8),
        "muvera": settings.muvera.output_dim * 2.0,
    }[settings.first_stage]
    per_page_disk = fp16 + 8 + first + chunk_json_bytes
    if settings.first_stage == "exact":
        scan = n_pages * fp16
    else:
        scan = n_pages * first + min(settings.candidates, n_pages) * fp16
    return MemoryEstimate(
        n_pages=n_pages,
        tokens_per_page=tokens,
        disk_bytes=int(n_pages * per_page_disk),
        scan_bytes_per_query=int(scan),
        first_stage_bytes=int(n_pages * first),
    )
