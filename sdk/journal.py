"""The ingest journal: a write-ahead record that makes a multi-retriever write finish whole.

Before a batch reaches any retriever, the whole batch (documents included) is written to ``ingest-journal.json``
in the pipeline's state folder; it is removed once every retriever and the document store committed it. A journal
left behind means a writer stopped in between (killed, Ctrl-C, a full disk). The next *writer* — an ingest, a
delete, ``Pipeline.recover()`` or ``ragloom index recover`` — rolls it forward: it replays the batch into every
retriever (adding a document replaces its earlier version, so a replay is idempotent) and only then removes the
journal. Recovery never deletes an acknowledged document and survives any number of interruptions of itself:
until it completes, the journal stays and the next writer replays it again. Readers never recover.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragloom.docstore import document_from_json, document_to_json
from ragloom.errors import IndexCorruptError
from ragloom.stores.files import atomic_write_json, crash_point, read_json, remove_durably
from ragloom.types import Document

__all__ = ["JOURNAL_NAME", "IngestJournal", "JournalEntry"]

JOURNAL_NAME = "ingest-journal.json"
JOURNAL_MAX_BYTES = 1 << 30
"""A journal holds one batch (at most ~32 MB of text, JSON-escaped): anything larger is not ragloom's."""


@dataclass(frozen=True)
class JournalEntry:
    """One pending batch: ``op`` is ``add`` (with the documents) or ``delete`` (ids only)."""

    op: str
    batch: str
    created: float
    ids: tuple[str, ...]
    documents: tuple[Document, ...] = ()

    @classmethod
    def add(cls, documents: Sequence[Document]) -> JournalEntry:
        return cls("add", uuid.uuid4().hex, time.time(), tuple(d.id for d in documents), tuple(documents))

    @classmethod
    def delete(cls, doc_ids: Sequence[str]) -> JournalEntry:
        return cls("delete", uuid.uuid4().hex, time.time(), tuple(doc_ids))

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "batch": self.batch,
            "created": self.created,
            "ids": list(self.ids),
            "documents": [document_to_json(d) for d in self.documents],
        }

    @classmethod
    def from_json(cls, data: Any, where: Path) -> JournalEntry:
        try:
            op = str(data["op"])
            if op not in ("add", "delete"):
                raise ValueError(f"unknown op {op!r}")
            documents = tuple(document_from_json(d) for d in data.get("documents") or ())
            return cls(op, str(data["batch"]), float(data.get("created", 0.0)), tuple(map(str, data["ids"])), documents)
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptError(
                f"{where} is not a ragloom ingest journal ({exc}). Move it away and run `ragloom index verify` on the "
                "index; re-ingest the sources of the last batch if documents are missing."
            ) from exc


class IngestJournal:
    """The journal file of a pipeline: written in ``state_dir``; also read (and cleared) in ``legacy_dirs``, where
    earlier ragloom versions wrote one copy per retriever."""

    def __init__(self, state_dir: Path, legacy_dirs: Sequence[Path] = ()) -> None:
        self.state_dir = Path(state_dir)
        self._dirs = [self.state_dir, *[Path(d) for d in legacy_dirs if Path(d) != self.state_dir]]

    def _paths(self) -> list[Path]:
        return [d / JOURNAL_NAME for d in self._dirs if os.path.lexists(d / JOURNAL_NAME)]

    def pending(self) -> list[JournalEntry]:
        """Batches a writer left unfinished, oldest first (one per batch, wherever its copies are)."""
        entries: dict[str, JournalEntry] = {}
        for path in self._paths():
            entry = JournalEntry.from_json(read_json(path, max_bytes=JOURNAL_MAX_BYTES), path)
            entries.setdefault(entry.batch, entry)
        return sorted(entries.values(), key=lambda e: e.created)

    def has_pending(self) -> bool:
        return bool(self._paths())

    def write(self, entry: JournalEntry) -> None:
        atomic_write_json(self.state_dir / JOURNAL_NAME, entry.to_json())
        crash_point("pipeline.journal_written")

    def clear(self) -> None:
        for path in self._paths():
            remove_durably(path)
            crash_point("pipeline.journal_removed")
