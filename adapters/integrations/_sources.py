"""A ragloom Retriever or Pipeline as one search source, with a sync and a non-blocking async path."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ragloom.errors import InvalidInputError
from ragloom.protocols import Filters
from ragloom.types import Answer, Hit

__all__ = ["SearchSource", "search_source"]


@dataclass(frozen=True)
class SearchSource:
    """A ragloom Retriever or Pipeline behind one ``search``/``asearch`` pair; ``asearch`` never blocks the loop.

    A Pipeline searches with ``retrieve``/``aretrieve`` (fusion and reranking included); a Retriever with
    ``search`` and its native ``asearch`` when it has one, else ``search`` in a worker thread.
    """

    target: Any

    def __post_init__(self) -> None:
        if not (self.is_pipeline or callable(getattr(self.target, "search", None))):
            raise InvalidInputError(
                f"Expected a ragloom Retriever (with .search) or Pipeline (with .retrieve), got "
                f"{type(self.target).__name__}; open an index with ragloom.recipes.config.open_pipeline(DIR)"
            )

    @property
    def is_pipeline(self) -> bool:
        return callable(getattr(self.target, "retrieve", None)) and callable(getattr(self.target, "aretrieve", None))

    @property
    def name(self) -> str:
        if self.is_pipeline:
            return "+".join(r.name for r in self.target.retrievers)
        return str(getattr(self.target, "name", type(self.target).__name__))

    @property
    def default_k(self) -> int:
        return int(getattr(self.target, "k", 5)) if self.is_pipeline else 5

    @property
    def can_answer(self) -> bool:
        """True for a Pipeline that has a generator."""
        return self.is_pipeline and getattr(self.target, "generator", None) is not None

    def search(self, query: str, k: int | None = None, filters: Filters | None = None) -> list[Hit]:
        k = self.default_k if k is None else k  # k=0 is an error downstream, never the default
        if self.is_pipeline:
            return list(self.target.retrieve(query, k, filters))
        return list(self.target.search(query, k, filters))

    async def asearch(self, query: str, k: int | None = None, filters: Filters | None = None) -> list[Hit]:
        k = self.default_k if k is None else k  # k=0 is an error downstream, never the default
        if self.is_pipeline:
            return list(await self.target.aretrieve(query, k, filters))
        native = getattr(self.target, "asearch", None)
        if callable(native):
            return list(await native(query, k, filters))
        return await asyncio.to_thread(self.search, query, k, filters)

    def ask(self, question: str, k: int | None = None, filters: Filters | None = None) -> Answer:
        self._need_answer()
        return self.target.ask(question, k, filters)

    async def aask(self, question: str, k: int | None = None, filters: Filters | None = None) -> Answer:
        self._need_answer()
        return await self.target.aask(question, k, filters)

    def _need_answer(self) -> None:
        if not self.can_answer:
            raise InvalidInputError(
                "Answering needs a ragloom Pipeline with a generator; pass Pipeline(..., generator=...) or "
                "open_pipeline(DIR, with_generator=True)"
            )


def search_source(target: Any) -> SearchSource:
    """Wrap a Retriever or Pipeline (a SearchSource passes through)."""
    return target if isinstance(target, SearchSource) else SearchSource(target)
