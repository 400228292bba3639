"""Pipeline: ingest → retrieve (every retriever) → fuse → rerank → generate with citations.

A plain class, not a graph engine. Sync and async twins share one implementation of each step; async methods
never block the event loop (native async where a component has it, a worker thread otherwise).

Writes go through the ingest journal (:mod:`ragloom.journal`) and the document store (:mod:`ragloom.docstore`) in
the pipeline's state folder (``path``, else the first persistent retriever's folder): a batch is journaled whole,
given to every retriever, recorded as acknowledged, and only then un-journaled. A writer that stopped in between is
rolled *forward* by the next writer, never back, so an acknowledged document is never lost. Readers (search, ask)
take no lock and never recover. Re-ingesting a document whose content is unchanged does no work.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ragloom.abstention import DeclinePolicy, describe_search
from ragloom.citations import assess, attribute_sentences, check_citations, has_markers, repair_citations
from ragloom.concurrency import iterate_in_thread
from ragloom.docstore import DocumentStore
from ragloom.errors import ConfigError, RagloomWarning
from ragloom.fusion import MinMaxFusion
from ragloom.grouping import GroupBy, check_group_by, group_by_page
from ragloom.ingest import STATE_LOCK, IndexWriter
from ragloom.journal import JOURNAL_NAME
from ragloom.prompting import PromptBuilder, PromptParts
from ragloom.protocols import (
    AsyncGenerator,
    AsyncRetriever,
    Closeable,
    Filters,
    Fuser,
    Generator,
    Reranker,
    Retriever,
)
from ragloom.retrieval import ProgressCallback, check_query
from ragloom.tokens import default_token_counter
from ragloom.types import Answer, Document, Hit, Support

if TYPE_CHECKING:
    from ragloom.answerability import AnswerabilityCheck
    from ragloom.calibration import Calibration
    from ragloom.loaders.folder import LoadFailure
    from ragloom.pseudo_queries import PseudoQueryGenerator

__all__ = ["JOURNAL_NAME", "IngestReport", "Pipeline"]

_STATE_LOCK = STATE_LOCK  # re-exported: `ragloom index` takes the same lock


@dataclass(frozen=True)
class IngestReport:
    """What an ingest did: documents indexed, chunks per retriever, documents skipped because their content was
    already indexed (``unchanged``), files that failed or were skipped."""

    documents: tuple[str, ...]
    chunks: dict[str, int]
    failures: tuple[LoadFailure, ...] = ()
    skipped: tuple[str, ...] = ()
    seconds: float = 0.0
    unchanged: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures


def _timings(started: float, retrieved: float, checked: dict[str, float]) -> dict[str, float]:
    """An answer's timings: retrieval, the answerability check (``check_s``, ``answerable_p``), generation."""
    now = time.perf_counter()
    generated = now - retrieved - checked.get("check_s", 0.0)
    return {"retrieve_s": retrieved - started, **checked, "generate_s": generated, "total_s": now - started}


@dataclass
class Pipeline:
    """Retrievers, an optional fuser (equal-weight min-max by default when there are several), reranker and generator.

    ``candidates`` hits are taken from each retriever before fusion and reranking; ``k`` are kept.
    ``ingest_batch`` documents at most go through all retrievers at a time (the unit of the ingest journal).
    ``group_by="page"`` returns one hit per (document, page) (see :func:`ragloom.grouping.group_by_page`); hits
    without a page stay one per chunk.
    ``path`` is the index folder that keeps the pipeline's own state (document store, ingest journal); without it
    the first persistent retriever's folder does; a pipeline of in-memory retrievers keeps none.
    ``decline`` (a :class:`ragloom.abstention.DeclinePolicy`) makes ``ask`` decline, without calling the
    generator, when retrieval evidence is weak. ``answerability`` (a :class:`ragloom.answerability.AnswerabilityCheck`)
    asks the generator whether the passages answer the question and declines, without generating, when it judges
    not. ``repair_citations`` moves a marker whose passage does not support its sentence to the passage that does
    (:func:`ragloom.citations.repair_citations`; only markers change, never the model's words).
    """

    retrievers: Sequence[Retriever]
    fuser: Fuser | None = None
    reranker: Reranker | None = None
    generator: Generator | None = None
    prompt: PromptBuilder = field(default_factory=PromptBuilder)
    k: int = 5
    candidates: int = 50
    ingest_batch: int = 1000
    path: str | Path | None = None
    group_by: GroupBy = "chunk"
    decline: DeclinePolicy | None = None
    answerability: AnswerabilityCheck | None = None
    repair_citations: bool = False

    def __post_init__(self) -> None:
        if not self.retrievers:
            raise ConfigError("A Pipeline needs at least one retriever")
        self.retrievers = list(self.retrievers)
        names = [r.name for r in self.retrievers]
        if len(set(names)) != len(names):
            raise ConfigError(f"Retriever names must be unique (fusion weights refer to them), got {names}")
        if self.fuser is None and len(self.retrievers) > 1:
            self.fuser = MinMaxFusion()  # beat RRF on every set measured (docs/hybrid.md)
        if self.k < 1 or self.candidates < self.k:
            raise ConfigError(f"Need 1 <= k <= candidates, got k={self.k}, candidates={self.candidates}")
        if self.ingest_batch < 1:
            raise ConfigError(f"ingest_batch must be >= 1, got {self.ingest_batch}")
        check_group_by(self.group_by)
        self._writer = IndexWriter(self.retrievers, self.path, self.ingest_batch)
        if self._writer.pending:
            state = self._writer.state_dir
            warnings.warn(
                f"A write to the index at {state} was interrupted; its batch is finished by the next ingest or "
                f"delete, or by `ragloom index recover {state}`. Until then a replaced document may show its old "
                "version in some retrievers.",
                RagloomWarning,
                stacklevel=3,
            )

    @property
    def pending_write(self) -> bool:
        """True while an interrupted ingest or delete waits for a writer to finish it."""
        return self._writer.pending

    @property
    def documents(self) -> DocumentStore:
        """The store of acknowledged documents (kept in memory for a pipeline of in-memory retrievers)."""
        return self._writer.docstore

    # -- writing (ragloom.ingest.IndexWriter: locks, journal, recovery) ----------------------------------------------
    def recover(self) -> int:
        """Finish what an interrupted ingest or delete left half done (see the module docs); returns the number of
        documents re-indexed or deleted. Takes the writer locks (raises IndexLockedError while another process
        writes); a failure leaves the journal for the next try and raises IndexRecoveryError."""
        return self._writer.recover()

    def discard_pending(self) -> int:
        """Give up an interrupted batch that can never succeed: every retriever gets back the acknowledged version
        of its documents (documents never acknowledged are removed). Returns the documents touched."""
        return self._writer.discard_pending()

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
        Documents whose content is already indexed are skipped (``IngestReport.unchanged``). The rest go through the
        retrievers ``ingest_batch`` at a time, each batch journaled first. If a retriever raises, every retriever that
        took the batch gets back the acknowledged version of its documents; an interruption (Ctrl-C, a kill) leaves
        the journal, and the next write finishes the batch (module docs). An acknowledged document is never lost.
        """
        started = time.perf_counter()
        if isinstance(sources, (str, Path, Document)):
            sources = [sources]
        documents = [s for s in sources if isinstance(s, Document)]
        paths = [s for s in sources if not isinstance(s, Document)]
        failures: tuple[LoadFailure, ...] = ()
        skipped: tuple[str, ...] = ()
        if paths:
            from ragloom.loaders import load_paths

            report = load_paths(paths, strict=strict, include=include)
            documents.extend(report.documents)
            failures, skipped = report.failures, report.skipped
        indexed, chunks, unchanged = self._writer.add(documents, progress)
        return IngestReport(
            tuple(d.id for d in indexed), chunks, failures, skipped, time.perf_counter() - started, tuple(unchanged)
        )

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Remove documents from every retriever and the document store; returns the number of chunks removed
        (journaled like an ingest, so an interrupted delete is finished by the next writer)."""
        return self._writer.delete([doc_ids] if isinstance(doc_ids, str) else [str(i) for i in doc_ids])

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
        strategy: str = "robust",
        progress: ProgressCallback | None = None,
    ) -> Calibration:
        """Fit the fusion of this pipeline's retrievers on pseudo-queries made from its own index (no labels).

        ``generator``: ``"spans"`` (LLM-free), ``"llm"`` (this pipeline's generator writes the questions) or any
        :class:`~ragloom.pseudo_queries.PseudoQueryGenerator`. ``route=True`` fits a per-query router on top of
        the calibrated fusion. With ``apply`` the fitted fuser replaces ``self.fuser``. Returns the
        :class:`~ragloom.calibration.Calibration` (fuser, config to store, report with the held-out fit score).
        ``strategy``: ``"robust"`` (equal weights, method chosen over pseudo-query families; see
        :mod:`ragloom.robust_calibration`) or ``"grid"`` (weights fitted on the pseudo-queries; leans lexical).
        """
        from ragloom.calibration import calibrate
        from ragloom.pseudo_queries import pseudo_query_generator
        from ragloom.robust_calibration import families_from, robust_calibrate

        if strategy not in ("robust", "grid"):
            raise ConfigError(f"Calibration strategy must be 'robust' or 'grid', got {strategy!r}")
        if isinstance(generator, str):
            generator = pseudo_query_generator(generator, self.generator)
        if strategy == "robust":
            result = robust_calibrate(
                self.retrievers,
                families=families_from(generator),
                sample=sample,
                seed=seed,
                holdout=holdout,
                candidates=self.candidates,
                progress=progress,
            )
        else:
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
    def _combine(self, query: str, results: dict[str, list[Hit]], k: int, group_by: GroupBy) -> list[Hit]:
        if len(results) == 1:
            hits = next(iter(results.values()))
        else:
            assert self.fuser is not None
            hits = self.fuser.fuse(results, self.candidates)
        grouped = group_by == "page"
        if self.reranker is not None and hits:
            hits = self.reranker.rerank(query, hits, len(hits) if grouped else k)
        if grouped:
            hits = group_by_page(hits)
        return list(hits[:k])

    def retrieve(
        self, query: str, k: int | None = None, filters: Filters | None = None, *, group_by: GroupBy | None = None
    ) -> list[Hit]:
        """Search every retriever for ``candidates`` hits, fuse, rerank, keep ``k`` (chunks, or pages with
        ``group_by="page"``; default: the pipeline's ``group_by``)."""
        k = self.k if k is None else k
        check_query(query, k)
        group = check_group_by(group_by or self.group_by)
        results = {r.name: r.search(query, max(self.candidates, k), filters) for r in self.retrievers}
        return self._combine(query, results, k, group)

    async def aretrieve(
        self, query: str, k: int | None = None, filters: Filters | None = None, *, group_by: GroupBy | None = None
    ) -> list[Hit]:
        """Async twin of :meth:`retrieve`: retrievers run concurrently, none blocks the loop."""
        k = self.k if k is None else k
        check_query(query, k)
        group = check_group_by(group_by or self.group_by)
        n = max(self.candidates, k)

        async def one(retriever: Retriever) -> list[Hit]:
            if isinstance(retriever, AsyncRetriever):
                return list(await retriever.asearch(query, n, filters))
            return await asyncio.to_thread(retriever.search, query, n, filters)

        lists = await asyncio.gather(*(one(r) for r in self.retrievers))
        results = {r.name: hits for r, hits in zip(self.retrievers, lists)}
        if self.reranker is not None:
            return await asyncio.to_thread(self._combine, query, results, k, group)
        return self._combine(query, results, k, group)

    # -- answering ----------------------------------------------------------------------------------------------------
    def _generator(self) -> Generator:
        if self.generator is None:
            raise ConfigError("This pipeline has no generator; pass generator=... to answer questions")
        return self.generator

    def _prompt(self, question: str, hits: list[Hit]) -> PromptParts:
        return self.prompt.build(question, hits, default_token_counter(self.generator), self.generator)

    def _answer(self, question: str, text: str, parts: PromptParts, timings: dict[str, float]) -> Answer:
        text = text.strip()
        inferred = bool(parts.context) and not has_markers(text)
        if inferred:
            text = attribute_sentences(text, parts.context)
        elif self.repair_citations:
            text = repair_citations(text, parts.context)
        citations, dangling, unsupported = check_citations(text, parts.context)
        support = assess(text, question, parts.context, documents=self._document_texts)
        if support.verdict == "declined":
            searched = describe_search(question, list(parts.context), [r.name for r in self.retrievers])
            support = replace(support, reason=f"{support.reason}. {searched}")
        return Answer(
            text, citations, parts.context, timings, dangling, unsupported, inferred and bool(citations), support
        )

    def _document_texts(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """Stored documents' source, title and whole text: what the off-topic citation check reads when the cited
        passages do not name what the question asks about (a page of an opinion need not name the Act it
        discusses; the opinion does)."""
        return {
            doc_id: f"{doc.source} {doc.metadata.get('title', '')} {doc.text}"
            for doc_id, doc in self.documents.get(doc_ids).items()
        }

    def _declined(self, question: str, hits: list[Hit], timings: dict[str, float]) -> Answer | None:
        """The answer when retrieval evidence is too weak to generate from (see ``decline``), else None."""
        why = self.decline.weak(hits) if self.decline is not None else ("" if hits else "no passage matched")
        if not why:
            return None
        searched = describe_search(question, hits, [r.name for r in self.retrievers])
        text = f"I could not find the answer in the indexed documents. {searched}"
        support = Support("declined", reason=f"declined before generation: {why}. {searched}")
        return Answer(text, (), tuple(hits), {**timings, "generate_s": 0.0}, support=support)

    def _unanswerable(
        self, question: str, parts: PromptParts, timings: dict[str, float]
    ) -> tuple[Answer | None, dict[str, float]]:
        """(the declined answer when the answerability check judges the passages do not answer, else None; the
        check's timings: ``check_s`` and its score ``answerable_p``, empty without a check)."""
        if self.answerability is None or not parts.context:
            return None, {}
        started = time.perf_counter()
        score = self.answerability.score(question, parts.messages, self.prompt.instructions)
        checked = {"check_s": time.perf_counter() - started, "answerable_p": score}
        if score >= self.answerability.threshold:
            return None, checked
        timings = {**timings, **checked, "total_s": timings["total_s"] + checked["check_s"]}
        hits = list(parts.context)
        searched = describe_search(
            question, hits, [r.name for r in self.retrievers], verdict="do not answer it, judged by the model"
        )
        why = f"P(the passages answer) {score:.2f} < {self.answerability.threshold:.2f}"
        text = f"I could not find the answer in the indexed documents. {searched}"
        support = Support("declined", reason=f"declined before generation: {why}. {searched}")
        return Answer(text, (), tuple(hits), {**timings, "generate_s": 0.0}, support=support), checked

    def ask(
        self, question: str, k: int | None = None, filters: Filters | None = None, *, group_by: GroupBy | None = None
    ) -> Answer:
        """Retrieve, then answer from the retrieved passages with ``[n]`` citations (or decline, see ``decline``)."""
        generator = self._generator()
        t0 = time.perf_counter()
        hits = self.retrieve(question, k, filters, group_by=group_by)
        t1 = time.perf_counter()
        declined = self._declined(question, hits, {"retrieve_s": t1 - t0, "total_s": t1 - t0})
        if declined is not None:
            return declined
        parts = self._prompt(question, hits)
        unanswerable, checked = self._unanswerable(question, parts, {"retrieve_s": t1 - t0, "total_s": t1 - t0})
        if unanswerable is not None:
            return unanswerable
        text = generator.generate(parts.messages)
        return self._answer(question, text, parts, _timings(t0, t1, checked))

    def ask_stream(
        self, question: str, k: int | None = None, filters: Filters | None = None, *, group_by: GroupBy | None = None
    ) -> Iterator[str | Answer]:
        """Yield text pieces as they are generated, then the final :class:`Answer` (always last)."""
        generator = self._generator()
        t0 = time.perf_counter()
        hits = self.retrieve(question, k, filters, group_by=group_by)
        t1 = time.perf_counter()
        declined = self._declined(question, hits, {"retrieve_s": t1 - t0, "total_s": t1 - t0})
        if declined is not None:
            yield declined.text
            yield declined
            return
        parts = self._prompt(question, hits)
        unanswerable, checked = self._unanswerable(question, parts, {"retrieve_s": t1 - t0, "total_s": t1 - t0})
        if unanswerable is not None:
            yield unanswerable.text
            yield unanswerable
            return
        pieces: list[str] = []
        for piece in generator.stream(parts.messages):
            pieces.append(piece)
            yield piece
        yield self._answer(question, "".join(pieces), parts, _timings(t0, t1, checked))

    async def aask(
        self, question: str, k: int | None = None, filters: Filters | None = None, *, group_by: GroupBy | None = None
    ) -> Answer:
        """Async twin of :meth:`ask`."""
        generator = self._generator()
        t0 = time.perf_counter()
        hits = await self.aretrieve(question, k, filters, group_by=group_by)
        t1 = time.perf_counter()
        declined = self._declined(question, hits, {"retrieve_s": t1 - t0, "total_s": t1 - t0})
        if declined is not None:
            return declined
        parts = self._prompt(question, hits)
        timings = {"retrieve_s": t1 - t0, "total_s": t1 - t0}
        unanswerable, checked = await asyncio.to_thread(self._unanswerable, question, parts, timings)
        if unanswerable is not None:
            return unanswerable
        if isinstance(generator, AsyncGenerator):
            text = await generator.agenerate(parts.messages)
        else:
            text = await asyncio.to_thread(generator.generate, parts.messages)
        return self._answer(question, text, parts, _timings(t0, t1, checked))

    async def aask_stream(
        self, question: str, k: int | None = None, filters: Filters | None = None, *, group_by: GroupBy | None = None
    ) -> AsyncIterator[str | Answer]:
        """Async twin of :meth:`ask_stream`; a local model streams from a worker thread."""
        generator = self._generator()
        t0 = time.perf_counter()
        hits = await self.aretrieve(question, k, filters, group_by=group_by)
        t1 = time.perf_counter()
        declined = self._declined(question, hits, {"retrieve_s": t1 - t0, "total_s": t1 - t0})
        if declined is not None:
            yield declined.text
            yield declined
            return
        parts = self._prompt(question, hits)
        timings = {"retrieve_s": t1 - t0, "total_s": t1 - t0}
        unanswerable, checked = await asyncio.to_thread(self._unanswerable, question, parts, timings)
        if unanswerable is not None:
            yield unanswerable.text
            yield unanswerable
            return
        pieces: list[str] = []
        source = (
            generator.astream(parts.messages)
            if isinstance(generator, AsyncGenerator)
            else iterate_in_thread(lambda: map(str, generator.stream(parts.messages)), name="ragloom-stream")
        )
        async for piece in source:
            pieces.append(piece)
            yield piece
        yield self._answer(question, "".join(pieces), parts, _timings(t0, t1, checked))

    def close(self) -> None:
        for component in (*self.retrievers, self.reranker, self.generator):
            if isinstance(component, Closeable):
                component.close()
        self._writer.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
