"""The base of the framework-embedding adapters (LangChain ``Embeddings``, LlamaIndex ``BaseEmbedding``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import numpy as np

from ragloom.adapters.integrations._calls import model_label
from ragloom.errors import InvalidInputError

__all__ = ["ForeignDenseEncoder"]


class ForeignDenseEncoder:
    """Base of the framework-embedding adapters: turns lists of floats into checked float32 matrices.

    Subclasses supply ``_embed_queries`` and ``_embed_documents``. ``dim`` is probed with one query when not
    given. ``normalize`` L2-normalises the vectors so scores are cosines whatever the framework returns.
    Pass ``name`` when the framework object does not name its model: the index manifest records it, and an
    index opened with a different model is refused.
    """

    provider = "external"

    def __init__(
        self,
        model: object,
        *,
        name: str | None = None,
        dim: int | None = None,
        normalize: bool = True,
        token_counter: object | None = None,
        document_capacity: int | None = None,
    ) -> None:
        self.model = model
        self.name = name or model_label(model)
        self.normalize = normalize
        if token_counter is not None:
            self.token_counter = token_counter
        if document_capacity is not None:
            self.document_capacity = document_capacity
        self._dim = dim if dim is not None else len(self._embed_queries(["dimension probe"])[0])
        if self._dim < 1:
            raise InvalidInputError(f"{self.name}: embeddings must have at least one dimension")

    def _embed_queries(self, texts: list[str]) -> list[Sequence[float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _embed_documents(self, texts: list[str]) -> list[Sequence[float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> Mapping[str, object]:
        return {
            "family": "dense",
            "provider": self.provider,  # not the class path: a script's class and the same class imported match
            "model": self.name,
            "dim": self._dim,
            "normalize": self.normalize,
        }

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        return self._matrix(self._embed_queries(texts) if texts else [], len(texts))

    async def aencode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors through the framework's own async embedding method (retrievers' ``asearch`` use it)."""
        texts = list(texts)
        return self._matrix(await self._aembed_queries(texts) if texts else [], len(texts))

    async def _aembed_queries(self, texts: list[str]) -> list[Sequence[float]]:
        return await asyncio.to_thread(self._embed_queries, texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        return self._matrix(self._embed_documents(texts) if texts else [], len(texts))

    def _matrix(self, rows: Sequence[Sequence[float]], n: int) -> np.ndarray:
        if n == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        matrix = np.asarray(rows, dtype=np.float32)
        if matrix.shape != (n, self._dim):
            raise InvalidInputError(
                f"{self.name} returned vectors of shape {matrix.shape} for {n} texts; expected ({n}, {self._dim}). "
                "Pass dim= matching the model, or check the embedding model."
            )
        if not np.all(np.isfinite(matrix)):
            raise InvalidInputError(f"{self.name} returned NaN or infinite values")
        if self.normalize:
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            matrix = matrix / np.maximum(norms, 1e-12)
        return matrix

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim={self._dim})"
