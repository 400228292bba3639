"""The write side of a pipeline: writer locks, the ingest journal, roll-forward recovery and batched indexing.

A batch is journaled whole (:mod:`ragloom.journal`), given to every retriever, recorded as acknowledged in the
document store (:mod:`ragloom.docstore`), and only then un-journaled. A writer that stopped in between is rolled
*forward* by the next writer, never back, so an acknowledged document is never lost. If a retriever raises, every
retriever that took the batch gets back the acknowledged version of its documents.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from ragloom.docstore import DOCSTORE_NAME, DocumentStore, document_digest
from ragloom.errors import IndexRecoveryError, RagloomWarning
from ragloom.journal import IngestJournal, JournalEntry
from ragloom.persistence import IndexLock
from ragloom.protocols import PersistentRetriever, Retriever
from ragloom.retrieval import ProgressCallback
from ragloom.stores.files import check_index_tree, crash_point
from ragloom.types import Document

__all__ = ["STATE_LOCK", "IndexWriter"]

_BATCH_CHARS = 32 * 1024 * 1024
STATE_LOCK = ".pipeline.lock"


def _persistent_dirs(retrievers: Sequence[Retriever]) -> list[Path]:
    """Directories of the persistent retrievers (the ones a crash can leave out of step)."""
    return [Path(r.path) for r in retrievers if isinstance(r, PersistentRetriever) and isinstance(r.path, (str, Path))]


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


def _offset_progress(
    progress: ProgressCallback | None, before: int, total: int, position: int, size: int, passes: int
) -> ProgressCallback | None:
    """Report in documents across all retrievers: a batch counts as done once every retriever has indexed it."""
    if progress is None:
        return None
    return lambda done, _: progress(before + (position * size + done) // passes, total)


class IndexWriter:
    """Writes to a pipeline's retrievers through the journal. ``path``: the state folder (document store, journal,
    lock), else the first persistent retriever's folder; in-memory retrievers only: no state on disk.

    The public methods are called by :class:`ragloom.pipeline.Pipeline` (one frame above the user's call: the
    warnings' ``stacklevel`` counts it).
    """

    def __init__(self, retrievers: Sequence[Retriever], path: str | Path | None, batch: int) -> None:
        self.retrievers = list(retrievers)
        self.batch = batch
        dirs = _persistent_dirs(self.retrievers)
        state = Path(path) if path is not None else (dirs[0] if dirs else None)
        self.state_dir = state
        self.journal = IngestJournal(state, dirs) if state is not None else None
        self._state_lock: IndexLock | None = None
        self._recovered = 0
        if state is not None:
            state.mkdir(parents=True, exist_ok=True)
            if path is not None:
                check_index_tree(state)
        self.docstore = DocumentStore(state / DOCSTORE_NAME if state is not None else None)

    @property
    def pending(self) -> bool:
        """True while an interrupted ingest or delete waits for a writer to finish it."""
        return self.journal is not None and self.journal.has_pending()

    # -- lock, recover --------------------------------------------------------------------------------------------
    def begin(self) -> None:
        """Take every writer lock (pipeline state first, then each retriever's) and roll a pending batch forward."""
        if self.state_dir is None:
            return
        self._take_locks(self.state_dir)
        self._roll_forward()

    def _take_locks(self, state_dir: Path) -> None:
        """The pipeline's state lock, then every persistent retriever's writer lock (each held until ``close``)."""
        if self._state_lock is None:
            lock = IndexLock(state_dir, name=STATE_LOCK)
            lock.acquire()
            self._state_lock = lock
        for retriever in self.retrievers:
            if isinstance(retriever, PersistentRetriever):
                retriever.acquire_writer()

    def recover(self) -> int:
        """Finish an interrupted batch; the number of documents re-indexed or deleted (see Pipeline.recover)."""
        if not self.pending:
            return 0
        self.begin()
        return self._recovered

    def _roll_forward(self) -> None:
        assert self.journal is not None
        self._recovered = 0
        for entry in self.journal.pending():
            try:
                self._apply(entry)
            except Exception as exc:
                raise IndexRecoveryError(
                    f"Could not finish an interrupted {entry.op} of {len(entry.ids)} document(s) in "
                    f"{self.state_dir} ({type(exc).__name__}: {exc}). Nothing was removed; the journal stays and is "
                    "tried again by the next write or `ragloom index recover`. If this batch can never succeed, "
                    "`ragloom index recover --discard` puts back the previously indexed versions instead."
                ) from exc
            self.journal.clear()
            self._recovered += len(entry.ids)
            warnings.warn(
                f"Finished an interrupted {entry.op}: {len(entry.ids)} document(s) "
                f"{'re-indexed in' if entry.op == 'add' else 'deleted from'} every retriever: {list(entry.ids[:5])}",
                RagloomWarning,
                stacklevel=5,  # _roll_forward < begin < add/delete/recover < Pipeline's method < the user's call
            )

    def _apply(
        self,
        entry: JournalEntry,
        progress: ProgressCallback | None = None,
        before: int = 0,
        total: int = 0,
        chunks: dict[str, int] | None = None,
    ) -> None:
        """Give one journaled batch to every retriever, then record it in the document store."""
        if entry.op == "add":
            size, passes = len(entry.documents), len(self.retrievers)
            for position, retriever in enumerate(self.retrievers):
                step = _offset_progress(progress, before, total, position, size, passes)
                added = retriever.add(list(entry.documents), progress=step)
                if chunks is not None:
                    chunks[retriever.name] += len(added)
                crash_point("pipeline.added")
            self.docstore.put(entry.documents)
        else:
            for retriever in self.retrievers:
                retriever.delete(list(entry.ids))
                crash_point("pipeline.deleted")
            self.docstore.delete(entry.ids)

    def discard_pending(self) -> int:
        """Give up an interrupted batch that can never succeed (see Pipeline.discard_pending)."""
        if not self.pending:
            return 0
        assert self.journal is not None and self.state_dir is not None  # a journal lives in the state folder
        self._take_locks(self.state_dir)
        touched = 0
        for entry in self.journal.pending():
            if entry.op == "add":
                self._restore(list(entry.ids))
            touched += len(entry.ids)
        self.journal.clear()
        return touched

    def _restore(self, ids: list[str]) -> None:
        """Put the acknowledged version of ``ids`` back into every retriever (remove those never acknowledged)."""
        known = self.docstore.get(ids)
        fresh = [i for i in ids if i not in known]
        for retriever in self.retrievers:
            if known:
                retriever.add(list(known.values()))
            if fresh:
                retriever.delete(fresh)

    # -- add, delete ----------------------------------------------------------------------------------------------
    def add(
        self, documents: list[Document], progress: ProgressCallback | None = None
    ) -> tuple[list[Document], dict[str, int], list[str]]:
        """Index ``documents`` ``batch`` at a time, each batch journaled first; returns the documents indexed,
        chunks per retriever, and the ids skipped because their content was already indexed."""
        chunks = {retriever.name: 0 for retriever in self.retrievers}
        unchanged: list[str] = []
        if documents:
            self.begin()
            documents, unchanged = self._changed(documents)
        total, before = len(documents), 0
        for batch in _ingest_batches(documents, self.batch):
            entry = JournalEntry.add(batch)
            if self.journal is not None:
                self.journal.write(entry)
            try:
                self._apply(entry, progress, before, total, chunks)
            except Exception:
                self._undo(batch)
                raise
            if self.journal is not None:
                self.journal.clear()
            before += len(batch)
        return documents, chunks, unchanged

    def _changed(self, documents: list[Document]) -> tuple[list[Document], list[str]]:
        """Split off documents whose content every retriever already indexed (same digest in the store)."""
        stored = self.docstore.digests(d.id for d in documents)
        if not stored:
            return documents, []
        changed = [d for d in documents if stored.get(d.id) != document_digest(d)]
        return changed, [d.id for d in documents if stored.get(d.id) == document_digest(d)]

    def _undo(self, batch: list[Document]) -> None:
        """After a retriever raised: put the acknowledged versions back so the batch leaves no trace. If that fails
        too, the journal stays and the next writer rolls the batch forward instead."""
        try:
            self._restore([d.id for d in batch])
        except Exception as exc:
            warnings.warn(
                f"Could not undo a failed batch of {len(batch)} document(s) ({exc}); it stays journaled and is "
                "finished by the next write or `ragloom index recover`",
                RagloomWarning,
                stacklevel=4,  # _undo < add < Pipeline.ingest < the user's call
            )
            return
        if self.journal is not None:
            self.journal.clear()

    def delete(self, ids: list[str]) -> int:
        """Remove documents from every retriever and the document store (journaled); the chunks removed."""
        self.begin()
        entry = JournalEntry.delete(ids)
        if self.journal is not None:
            self.journal.write(entry)
        removed = 0
        for retriever in self.retrievers:
            removed += retriever.delete(ids)
            crash_point("pipeline.deleted")
        self.docstore.delete(ids)
        if self.journal is not None:
            self.journal.clear()
        return removed

    def close(self) -> None:
        """Close the document store and release the state lock (retrievers are closed by their owner)."""
        self.docstore.close()
        if self._state_lock is not None:
            self._state_lock.release()
            self._state_lock = None
