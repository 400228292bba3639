"""An index directory's manifest and writer lock: the persistence every ragloom retriever shares.

Opening checks an existing manifest against the retriever's kind, encoder fingerprint and unit (chunker) config,
so an index is never read or extended with vectors made another way. The first write takes the writer lock,
clears temp files a killed writer left, lets the store finish an interrupted write, and puts the manifest down
before the first vector: an index killed during its first batch still names the encoder that made it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ragloom.errors import IndexCorruptError
from ragloom.persistence import MANIFEST_NAME, IndexLock, Manifest
from ragloom.protocols import RecoverableStore
from ragloom.stores.files import check_index_tree, remove_stale_temp_files

__all__ = ["IndexFolder", "stored_chunk_size"]


def stored_chunk_size(path: str | Path | None) -> int | None:
    """The chunk size an existing index was built with (so reopening it needs no ``chunk_size``), else None."""
    if path is None:
        return None
    manifest = Manifest.load(path)
    size = manifest.chunker.get("chunk_size") if manifest is not None else None
    return int(size) if isinstance(size, int) and not isinstance(size, bool) else None


class IndexFolder:
    """The manifest and writer lock of one retriever's directory (created if missing)."""

    def __init__(
        self,
        path: str | Path,
        *,
        kind: str,
        fingerprint: Mapping[str, Any],
        units: Mapping[str, Any],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.kind = kind
        self._fingerprint, self._units, self._extra = dict(fingerprint), dict(units), dict(extra or {})
        self._lock: IndexLock | None = None
        self.path.mkdir(parents=True, exist_ok=True)
        check_index_tree(self.path)
        self._stamp = self._manifest_stamp()
        self.manifest = Manifest.load(self.path)
        if self.manifest is not None:
            self.manifest.check_compatible(self.path, kind, fingerprint, units)
        self.generation = self.manifest.generation if self.manifest is not None else 0
        """The manifest generation this process's store reflects."""

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path / MANIFEST_NAME, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def refresh(self, reload: Callable[[], None]) -> bool:
        """For readers: when another process committed since this one loaded (the manifest's generation moved),
        call ``reload`` so searches see the new state. One ``stat`` when nothing changed. True if reloaded."""
        if self._lock is not None:
            return False  # the writer is the only one changing the index
        stamp = self._manifest_stamp()
        if stamp == self._stamp:
            return False
        manifest = Manifest.load(self.path)
        self._stamp = stamp
        if manifest is None or manifest.generation == self.generation:
            return False
        manifest.check_compatible(self.path, self.kind, self._fingerprint, self._units)
        reload()
        self.manifest, self.generation = manifest, manifest.generation
        return True

    def check_not_emptied(self, stored_chunks: int, missing: str | None) -> None:
        """Cheap check on open: the manifest counts chunks but the store's files are gone or empty."""
        counted = int((self.manifest.counts if self.manifest is not None else {}).get("chunks", 0) or 0)
        if counted > 0 and stored_chunks == 0 and missing:
            raise IndexCorruptError(
                f"{missing} is missing or empty, but the manifest of {self.path} counts {counted} chunks. The index "
                "was damaged: restore the folder from a backup, or delete it and re-ingest the sources "
                "(`ragloom index verify` checks every retriever of an index)."
            )

    @property
    def writing(self) -> bool:
        """Whether this process holds the writer lock."""
        return self._lock is not None

    def acquire(
        self,
        store: Any,
        store_config: Mapping[str, Any],
        counts: Callable[[], Mapping[str, int]],
        reload: Callable[[], None] | None = None,
    ) -> None:
        """Take the writer lock (once; raises IndexLockedError while another writer holds it) and make the folder
        consistent: the manifest re-read and checked (another process may have created the index since this one
        opened it), the store reloaded with ``reload`` when another process committed since this one loaded it (a
        stale in-memory state written back would lose that process's documents), stale temp files removed, the
        store's interrupted write finished, the manifest on disk. If any of that fails the lock is given back."""
        if self._lock is not None:
            return
        lock = IndexLock(self.path)
        lock.acquire()
        try:
            self.manifest = Manifest.load(self.path)
            if self.manifest is not None:
                self.manifest.check_compatible(self.path, self.kind, self._fingerprint, self._units)
                if self.manifest.generation != self.generation and reload is not None:
                    reload()
                self.generation = self.manifest.generation
            for folder in {p for p in (self.path, store.path if store is not None else None) if p is not None}:
                remove_stale_temp_files(folder)  # left by a writer killed mid atomic write
            if isinstance(store, RecoverableStore):
                store.recover()
            if self.manifest is None:
                self.save(store_config, counts())
        except BaseException:
            lock.release()
            raise
        self._lock = lock

    def save(self, store_config: Mapping[str, Any], counts: Mapping[str, int]) -> None:
        """Write the manifest with the current counts (atomically)."""
        if self.manifest is None:
            self.manifest = Manifest(
                kind=self.kind,
                encoder=self._fingerprint,
                chunker=self._units,
                store=dict(store_config),
                extra=self._extra,
            )
        self.manifest.counts = dict(counts)
        self.manifest.save(self.path)
        self.generation = self.manifest.generation
        self._stamp = self._manifest_stamp()

    def release(self) -> None:
        """Give the writer lock back (every write is already committed)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
