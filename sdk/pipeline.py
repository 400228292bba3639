"""Pipeline: ingest → retrieve (every retriever) → fuse → rerank → generate with citations.

A plain class, not a graph engine. Sync and async twins share one implementation of each step; async methods
never block the event loop (native async where a component has it, a worker thread otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragloom.attribution import attribute_sentences, has_markers
from ragloom.errors import ConfigError
from ragloom.fusion import ReciprocalRankFusion
from ragloom.prompting import PromptBuilder, PromptParts, check_citations
from ragloom.protocols import Filters, Fuser, Generator, Reranker, Retriever
from ragloom.retrieval import ProgressCallback, check_query
from ragloom.tokens import default_token_counter
from ragloom.types import Answer, Document, Hit

__all__ = ["IngestReport", "Pipeline"]


@dataclass(frozen=True)
class IngestReport:
    """What an ingest did: documents indexed, chunks per retriever, files that failed or were skipped."""

    documents: tuple[str, ...]
    chunks: dict[str, int]
    failures: tuple[object, ...] = ()
    skipped: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class Pipeline:
    """Retrievers, an optional fuser (RRF by default when there are several), reranker and generator.

    ``candidates`` hits are taken from each retriever before fusion and reranking; ``k`` are kept.
    """

    retrievers: Sequence[Retriever]
    fuser: Fuser | None = None
    reranker: Reranker | None = None
    generator: Generator | None = None
    prompt: PromptBuilder = field(default_factory=PromptBuilder)
    k: int = 5
    candidates: int = 50

    def __post_init__(self) -> None:
        if not self.retrievers:
            raise ConfigError("A Pipeline needs at least one retriever")
        self.retrievers = list(self.retrievers)
        names = [r.name for r in self.retrievers]
        if len(set(names)) != len(names):
            raise ConfigError(f"Retriever names must be unique (fusion weights refer to them), got {names}")
        if self.fuser is None and len(self.retrievers) > 1:
            self.fuser = ReciprocalRankFusion()
        if self.k < 1 or self.candidates < self.k:
            raise ConfigError(f"Need 1 <= k <= candidates, got k={self.k}, candidates={self.candidates}")

    # -- ingest ---------------------------------------------------------------------------------------------------
    def ingest(
        self,
        sources: Sequence[str | Path | Document] | str | Path,
        *,
        strict: bool = False,
        include: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Load files/folders (bad files are reported and skipped unless ``strict``) and index into every retriever.

        ``include`` keeps only files matching these glob patterns (e.g. ``["*.pdf"]``) when walking folders.
        If a retriever fails, the documents already added to the others are removed again, so no document is left
        visible in one index and missing from another.
        """
        started = time.perf_counter()
        if isinstance(sources, (str, Path, Document)):
            sources = [sources]  # type: ignore[list-item]
        documents = [s for s in sources if isinstance(s, Document)]
        paths = [s for s in sources if not isinstance(s, Document)]
        failures: tuple[object, ...] = ()
        skipped: tuple[str, ...] = ()
        if paths:
            from ragloom.loaders import load_paths

            report = load_paths(paths, strict=strict, include=include)
            documents.extend(report.documents)
            failures, skipped = report.failures, report.skipped
        chunks: dict[str, int] = {}
        done: list[Retriever] = []
        try:
            for retriever in self.retrievers:
                chunks[retriever.name] = len(retriever.add(documents, progress=progress))  # type: ignore[call-arg]
                done.append(retriever)
        except BaseException:
            for retriever in done:
                with contextlib.suppress(Exception):
                    retriever.delete([d.id for d in documents])
            raise
        return IngestReport(tuple(d.id for d in documents), chunks, failures, skipped, time.perf_counter() - started)

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Remove documents from every retriever; returns the number of chunks removed."""
        return sum(r.delete(doc_ids) for r in self.retrievers)

    # -- retrieval --------------------------------------------------------------------------------------------------
    def _combine(self, query: str, results: dict[str, list[Hit]], k: int) -> list[Hit]:
        if len(results) == 1:
            hits = next(iter(results.values()))
        else:
            assert self.fuser is not None
            hits = self.fuser.fuse(results, self.candidates)
        if self.reranker is not None and hits:
            hits = self.reranker.rerank(query, hits, k)
        return list(hits[:k])

    def retrieve(self, query: str, k: int | None = None, filters: Filters | None = None) -> list[Hit]:
        """Search every retriever for ``candidates`` hits, fuse, rerank, keep ``k``."""
        k = k or self.k
        check_query(query, k)
        results = {r.name: r.search(query, max(self.candidates, k), filters) for r in self.retrievers}
        return self._combine(query, results, k)

    async def aretrieve(self, query: str, k: int | None = None, filters: Filters | None = None) -> list[Hit]:
        """Async twin of :meth:`retrieve`: retrievers run concurrently, none blocks the loop."""
        k = k or self.k
        check_query(query, k)
        n = max(self.candidates, k)

        async def one(retriever: Retriever) -> list[Hit]:
            asearch = getattr(retriever, "asearch", None)
            if asearch is not None:
                return list(await asearch(query, n, filters))
            return await asyncio.to_thread(retriever.search, query, n, filters)

        lists = await asyncio.gather(*(one(r) for r in self.retrievers))
        results = {r.name: hits for r, hits in zip(self.retrievers, lists)}
        if self.reranker is not None:
            return await asyncio.to_thread(self._combine, query, results, k)
        return self._combine(query, results, k)

    # -- answering ----------------------------------------------------------------------------------------------------
    def _generator(self) -> Generator:
        if self.generator is None:
            raise ConfigError("This pipeline has no generator; pass generator=... to answer questions")
        return self.generator

    def _prompt(self, question: str, hits: list[Hit]) -> PromptParts:
        return self.prompt.build(question, hits, default_token_counter(self.generator))

    @staticmethod
    def _answer(text: str, parts: PromptParts, timings: dict[str, float]) -> Answer:
        text = text.strip()
        inferred = bool(parts.context) and not has_markers(text)
        if inferred:
            text = attribute_sentences(text, parts.context)
        citations, dangling, unsupported = check_citations(text, parts.context)
        return Answer(text, citations, parts.context, timings, dangling, unsupported, inferred and bool(citations))

    def ask(self, question: str, k: int | None = None, filters: Filters | None = None) -> Answer:
        """Retrieve, then answer from the retrieved passages with ``[n]`` citations."""
        generator = self._generator()
        t0 = time.perf_counter()
        hits = self.retrieve(question, k, filters)
        t1 = time.perf_counter()
        parts = self._prompt(question, hits)
        text = generator.generate(parts.messages)
        t2 = time.perf_counter()
        return self._answer(text, parts, {"retrieve_s": t1 - t0, "generate_s": t2 - t1, "total_s": t2 - t0})

    def ask_stream(self, question: str, k: int | None = None, filters: Filters | None = None) -> Iterator[str | Answer]:
        """Yield text pieces as they are generated, then the final :class:`Answer` (always last)."""
        generator = self._generator()
        t0 = time.perf_counter()
        hits = self.retrieve(question, k, filters)
        t1 = time.perf_counter()
        parts = self._prompt(question, hits)
        pieces: list[str] = []
        for piece in generator.stream(parts.messages):
            pieces.append(piece)
            yield piece
        t2 = time.perf_counter()
        yield self._answer("".join(pieces), parts, {"retrieve_s": t1 - t0, "generate_s": t2 - t1, "total_s": t2 - t0})

    async def aask(self, question: str, k: int | None = None, filters: Filters | None = None) -> Answer:
        """Async twin of :meth:`ask`."""
        generator = self._generator()
        t0 = time.perf_counter()
        hits = await self.aretrieve(question, k, filters)
        t1 = time.perf_counter()
        parts = self._prompt(question, hits)
        agenerate = getattr(generator, "agenerate", None)
        if agenerate is not None:
            text = await agenerate(parts.messages)
        else:
            text = await asyncio.to_thread(generator.generate, parts.messages)
        t2 = time.perf_counter()
        return self._answer(text, parts, {"retrieve_s": t1 - t0, "generate_s": t2 - t1, "total_s": t2 - t0})

    async def aask_stream(
        self, question: str, k: int | None = None, filters: Filters | None = None
    ) -> AsyncIterator[str | Answer]:
        """Async twin of :meth:`ask_stream`; a local model streams from a worker thread."""
        generator = self._generator()
        t0 = time.perf_counter()
        hits = await self.aretrieve(question, k, filters)
        t1 = time.perf_counter()
        parts = self._prompt(question, hits)
        pieces: list[str] = []
        astream = getattr(generator, "astream", None)
        source = astream(parts.messages) if astream is not None else _thread_stream(generator, parts)
        async for piece in source:
            pieces.append(piece)
            yield piece
        t2 = time.perf_counter()
        yield self._answer("".join(pieces), parts, {"retrieve_s": t1 - t0, "generate_s": t2 - t1, "total_s": t2 - t0})

    def close(self) -> None:
        for component in (*self.retrievers, self.reranker, self.generator):
            close = getattr(component, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _thread_stream(generator: Generator, parts: PromptParts) -> AsyncIterator[str]:
    """Run a blocking ``stream`` in a thread and hand its pieces to the event loop through a queue."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    stop = threading.Event()

    def produce() -> None:
        try:
            for piece in generator.stream(parts.messages):
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, ("piece", piece))
            loop.call_soon_threadsafe(queue.put_nowait, ("done", None))
        except BaseException as exc:
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

    worker = threading.Thread(target=produce, name="ragloom-stream", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "piece":
                yield str(value)
            elif kind == "error":
                raise value  # type: ignore[misc]
            else:
                break
    finally:
        stop.set()
