"""Pipeline: ingest → retrieve (every retriever) → fuse → rerank → generate with citations.

A plain class, not a graph engine. Sync and async twins share one implementation of each step; async methods
never block the event loop (native async where a component has it, a worker thread otherwise).

Ingest journal: each batch of documents is written to ``ingest-journal.json`` in the directory of every
persistent retriever (one with a ``path``) before any retriever sees it, and removed once all have indexed it.
A process killed in between leaves the journal behind; the next Pipeline built over those retrievers replays the
batch into all of them (once; if the replay dies too, the batch is deleted from all instead), so a kill never
leaves a document in one index and missing from another, and never loses an acknowledged one. Deletes are
journaled the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragloom.attribution import attribute_sentences, has_markers
from ragloom.errors import ConfigError, IndexLockedError, RagloomError, RagloomWarning
from ragloom.fusion import ReciprocalRankFusion
from ragloom.persistence import atomic_write_json, crash_point, read_json, remove_durably
from ragloom.prompting import PromptBuilder, PromptParts, check_citations
from ragloom.protocols import Filters, Fuser, Generator, Reranker, Retriever
from ragloom.retrieval import ProgressCallback, check_query
from ragloom.tokens import default_token_counter
from ragloom.types import Answer, Document, Hit, Page

if TYPE_CHECKING:
    from ragloom.calibration import Calibration
    from ragloom.pseudo_queries import PseudoQueryGenerator

__all__ = ["JOURNAL_NAME", "IngestReport", "Pipeline"]

JOURNAL_NAME = "ingest-journal.json"
_BATCH_CHARS = 32 * 1024 * 1024


def _document_json(doc: Document) -> dict[str, Any]:
    return {
        "id": doc.id,
        "text": doc.text,
        "source": doc.source,
        "pages": [[p.number, p.start, p.end] for p in doc.pages],
        "metadata": dict(doc.metadata),
    }


def _document_from_json(data: Mapping[str, Any]) -> Document:
    return Document(
        id=str(data["id"]),
        text=str(data["text"]),
        source=str(data.get("source", "")),
        pages=tuple(Page(int(n), int(a), int(b)) for n, a, b in data.get("pages") or ()),
        metadata=dict(data.get("metadata") or {}),
    )


def _journal_dirs(retrievers: Sequence[Retriever]) -> list[Path]:
    """Directories of the persistent retrievers (the ones a crash can leave out of step)."""
    dirs = []
    for retriever in retrievers:
        path = getattr(retriever, "path", None)
        if isinstance(path, (str, Path)):
            dirs.append(Path(path))
    return dirs


def _lock_writers(retrievers: Sequence[Retriever]) -> None:
    """Take every retriever's writer lock up front (retrievers that have one), so no journal is written into an
    index another process is writing."""
    for retriever in retrievers:
        acquire = getattr(retriever, "_acquire_writer", None)
        if callable(acquire):
            acquire()


def _ingest_batches(documents: list[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    chars = 0
    for doc in documents:
        if batch and (len(batch) >= size or chars + len(doc.text) > _BATCH_CHARS):
            yield batch
            batch, chars = [], 0
        batch.append(doc)
        chars += len(doc.text)
    if batch:
        yield batch


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
    ``ingest_batch`` documents at most go through all retrievers at a time (the unit of the ingest journal).
    """

    retrievers: Sequence[Retriever]
    fuser: Fuser | None = None
    reranker: Reranker | None = None
    generator: Generator | None = None
    prompt: PromptBuilder = field(default_factory=PromptBuilder)
    k: int = 5
    candidates: int = 50
    ingest_batch: int = 1000

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
        if self.ingest_batch < 1:
            raise ConfigError(f"ingest_batch must be >= 1, got {self.ingest_batch}")
        self.recover()

    # -- the ingest journal -----------------------------------------------------------------------------------------
    def _write_journal(self, dirs: list[Path], entry: dict[str, Any]) -> None:
        for directory in dirs:
            atomic_write_json(directory / JOURNAL_NAME, entry)
            crash_point("pipeline.journal_written")

    @staticmethod
    def _clear_journal(dirs: list[Path]) -> None:
        for directory in dirs:
            remove_durably(directory / JOURNAL_NAME)
            crash_point("pipeline.journal_removed")

    def recover(self) -> int:
        """Finish what a killed ingest or delete left half done (see the module docs); returns the documents
        replayed or deleted. Runs when the Pipeline is built; a journal whose index another process is writing
        (its lock is held) is left to that process."""
        dirs = _journal_dirs(self.retrievers)
        entries: dict[str, dict[str, Any]] = {}
        for directory in dirs:
            path = directory / JOURNAL_NAME
            if not path.exists():
                continue
            try:
                entry = read_json(path)
                entries.setdefault(str(entry["batch"]), entry)
            except (RagloomError, KeyError, TypeError) as exc:
                warnings.warn(f"Ignoring an unreadable ingest journal {path}: {exc}", RagloomWarning, stacklevel=2)
        if not entries:
            return 0
        try:
            _lock_writers(self.retrievers)
        except IndexLockedError:
            return 0  # a live writer owns the journal
        touched = 0
        for entry in sorted(entries.values(), key=lambda e: float(e.get("created", 0.0))):
            ids = [str(i) for i in entry.get("ids", [])]
            replayed = False
            try:
                if entry.get("op") == "add" and int(entry.get("attempts", 0)) == 0:
                    self._write_journal(dirs, {**entry, "attempts": 1})  # a replay that dies is not replayed again
                    docs = [_document_from_json(d) for d in entry["documents"]]
                    with contextlib.suppress(Exception):
                        for retriever in self.retrievers:
                            retriever.add(docs)
                            crash_point("pipeline.replayed")
                        replayed = True
                if not replayed:  # a delete, or a replay that failed: make the batch absent everywhere
                    for retriever in self.retrievers:
                        retriever.delete(ids)
            except Exception as exc:
                warnings.warn(
                    f"Could not finish an interrupted {entry.get('op')} of {len(ids)} document(s) ({exc}); the "
                    f"journal stays in place and is tried again when the pipeline is next opened: {ids[:5]}",
                    RagloomWarning,
                    stacklevel=2,
                )
                continue
            self._clear_journal(dirs)
            touched += len(ids)
            what = "re-indexed in" if replayed else "removed from"
            warnings.warn(
                f"Recovered an interrupted {entry.get('op')}: {len(ids)} document(s) {what} every retriever: {ids[:5]}",
                RagloomWarning,
                stacklevel=2,
            )
        return touched

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
        Documents go through the retrievers ``ingest_batch`` at a time. If a retriever raises, the batch in flight is
        removed again from every retriever that took it (earlier batches stay, in all of them), so no document is
        left visible in one index and missing from another; a killed ingest is finished by the journal (module docs).
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
        chunks = {retriever.name: 0 for retriever in self.retrievers}
        dirs = _journal_dirs(self.retrievers)
        if dirs and documents:
            _lock_writers(self.retrievers)
        total, before = len(documents), 0
        for batch in _ingest_batches(documents, self.ingest_batch):
            ids = [d.id for d in batch]
            if dirs:
                entry = {
                    "op": "add",
                    "batch": uuid.uuid4().hex,
                    "created": time.time(),
                    "retrievers": [r.name for r in self.retrievers],
                    "ids": ids,
                    "attempts": 0,
                    "documents": [_document_json(d) for d in batch],
                }
                self._write_journal(dirs, entry)
            tried: list[Retriever] = []
            try:
                for retriever in self.retrievers:
                    tried.append(retriever)
                    step = _offset_progress(progress, before, total)
                    chunks[retriever.name] += len(retriever.add(batch, progress=step))  # type: ignore[call-arg]
                    crash_point("pipeline.added")
            except BaseException:
                clean = True
                for retriever in tried:  # the failing one too: it may have committed part of the batch
                    try:
                        retriever.delete(ids)
                    except Exception:
                        clean = False
                if dirs and clean:
                    self._clear_journal(dirs)
                raise
            if dirs:
                self._clear_journal(dirs)
            before += len(batch)
        return IngestReport(tuple(d.id for d in documents), chunks, failures, skipped, time.perf_counter() - started)

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Remove documents from every retriever; returns the number of chunks removed (journaled like ingest)."""
        ids = [doc_ids] if isinstance(doc_ids, str) else [str(i) for i in doc_ids]
        dirs = _journal_dirs(self.retrievers)
        if dirs:
            _lock_writers(self.retrievers)
            entry = {"op": "delete", "batch": uuid.uuid4().hex, "created": time.time(), "ids": ids}
            self._write_journal(dirs, entry)
        removed = 0
        for retriever in self.retrievers:
            removed += retriever.delete(ids)
            crash_point("pipeline.deleted")
        if dirs:
            self._clear_journal(dirs)
        return removed

    # -- calibration ------------------------------------------------------------------------------------------------
    def calibrate(
        self,
        generator: PseudoQueryGenerator | str = "spans",
        *,
        sample: int = 300,
        seed: int = 0,
        holdout: float = 0.3,
        route: bool = False,
        apply: bool = True,
        progress: ProgressCallback | None = None,
    ) -> Calibration:
        """Fit the fusion of this pipeline's retrievers on pseudo-queries made from its own index (no labels).

        ``generator``: ``"spans"`` (LLM-free), ``"llm"`` (this pipeline's generator writes the questions) or any
        :class:`~ragloom.pseudo_queries.PseudoQueryGenerator`. ``route=True`` fits a per-query router on top of
        the calibrated fusion. With ``apply`` the fitted fuser replaces ``self.fuser``. Returns the
        :class:`~ragloom.calibration.Calibration` (fuser, config to store, report with the held-out fit score).
        """
        from ragloom.calibration import calibrate
        from ragloom.pseudo_queries import pseudo_query_generator

        if isinstance(generator, str):
            generator = pseudo_query_generator(generator, self.generator)
        result = calibrate(
            self.retrievers,
            generator=generator,
            sample=sample,
            seed=seed,
            holdout=holdout,
            candidates=self.candidates,
            progress=progress,
        )
        if route:
            from ragloom.routing import fit_router

            result = fit_router(result, holdout=holdout)
        if apply:
            self.fuser = result.fuser
        return result

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
        return self.prompt.build(question, hits, default_token_counter(self.generator), self.generator)

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


def _offset_progress(progress: ProgressCallback | None, before: int, total: int) -> ProgressCallback | None:
    if progress is None:
        return None
    return lambda done, _: progress(before + done, total)


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
