"""MUVERA fixed-dimensional encodings (Dhulipala et al., NeurIPS 2024) for a fast multi-vector first stage.

A set of token vectors becomes one vector whose inner product with a query's encoding approximates the Chamfer
(MaxSim) similarity of the two sets. Each of ``repetitions`` SimHash partitions (``k_sim`` random hyperplanes,
``2**k_sim`` buckets) sums a query's tokens per bucket and averages a document's; a document's empty buckets take
the token nearest in Hamming distance. Tokens are first projected to ``d_proj`` dimensions with a random ±1 sketch.
The encoding is only a first stage: candidates are rescored with exact MaxSim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ragloom.errors import ConfigError, InvalidInputError

__all__ = ["Muvera", "MuveraConfig"]

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)


@dataclass(frozen=True)
class MuveraConfig:
    """Encoding size: ``repetitions * 2**k_sim * d_proj`` floats (defaults: 20 * 16 * 16 = 5120)."""

    k_sim: int = 4
    d_proj: int = 16
    repetitions: int = 20
    seed: int = 42
    fill_empty: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.k_sim <= 8:
            raise ConfigError(f"k_sim must be in 1..8, got {self.k_sim}")
        if self.d_proj < 1 or self.repetitions < 1:
            raise ConfigError("d_proj and repetitions must be >= 1")

    @property
    def buckets(self) -> int:
        return 1 << self.k_sim

    @property
    def output_dim(self) -> int:
        return self.repetitions * self.buckets * self.d_proj

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Muvera:
    """Encodes token-vector sets of dimension ``dim`` into fixed-dimensional vectors (deterministic per seed)."""

    def __init__(self, config: MuveraConfig, dim: int) -> None:
        if dim < 1:
            raise ConfigError(f"dim must be >= 1, got {dim}")
        self.config = config
        self.dim = dim
        rng = np.random.default_rng(config.seed)
        reps, k, dp = config.repetitions, config.k_sim, config.d_proj
        self._planes = rng.standard_normal((dim, reps * k)).astype(np.float32)
        signs = rng.integers(0, 2, size=(dim, reps * dp)).astype(np.float32) * 2.0 - 1.0
        self._sketch = signs / np.float32(math.sqrt(dp))
        self._weights = (1 << np.arange(k)).astype(np.int64)

    @property
    def output_dim(self) -> int:
        return self.config.output_dim

    def encode_queries(self, items: Sequence[np.ndarray]) -> np.ndarray:
        """Query encodings: per bucket, the sum of the query's projected tokens."""
        return self._encode_many(items, query=True)

    def encode_documents(self, items: Sequence[np.ndarray]) -> np.ndarray:
        """Document encodings: per bucket, the mean (empty buckets filled from the nearest token)."""
        return self._encode_many(items, query=False)

    def _encode_many(self, items: Sequence[np.ndarray], query: bool) -> np.ndarray:
        out = np.zeros((len(items), self.output_dim), dtype=np.float32)
        for row, item in enumerate(items):
            out[row] = self._encode(item, query)
        return out

    def _encode(self, vectors: np.ndarray, query: bool) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvalidInputError(f"MUVERA expects (tokens, {self.dim}) matrices, got shape {x.shape}")
        reps, k, dp, buckets = self.config.repetitions, self.config.k_sim, self.config.d_proj, self.config.buckets
        n = x.shape[0]
        if n == 0:
            return np.zeros(self.output_dim, dtype=np.float32)
        bits = (x @ self._planes > 0).reshape(n, reps, k)
        codes = (bits * self._weights).sum(axis=2)  # (n, reps) bucket of each token in each repetition
        projected = (x @ self._sketch).reshape(n, reps, dp)
        flat = (codes + np.arange(reps)[None, :] * buckets).ravel()
        values = projected.reshape(n * reps, dp)
        sums = np.stack(  # per-bucket sums, one bincount per projected dimension (much faster than np.add.at)
            [np.bincount(flat, weights=values[:, j], minlength=reps * buckets) for j in range(dp)], axis=1
        ).astype(np.float32)
        if query:
            return sums.ravel()
        counts = np.bincount(flat, minlength=reps * buckets).astype(np.float32)
        means = sums / np.maximum(counts, 1.0)[:, None]
        if self.config.fill_empty:
            empty = (counts == 0).reshape(reps, buckets)
            all_buckets = np.arange(buckets)
            means = means.reshape(reps, buckets, dp)
            for rep in np.nonzero(empty.any(axis=1))[0]:
                distance = _POPCOUNT[(codes[:, rep][:, None] ^ all_buckets[None, :]) & 0xFF]  # (n, buckets)
                nearest = distance.argmin(axis=0)
                holes = np.nonzero(empty[rep])[0]
                means[rep, holes] = projected[nearest[holes], rep]
        return means.ravel()
