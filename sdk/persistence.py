"""A single-writer lock per index directory, and the JSON manifest every index carries.

The durable-file primitives (atomic writes, checksums, hardened reads, crash points) live in
:mod:`ragloom.stores.files`; they are re-exported here for code that imported them from this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragloom.errors import EncoderMismatchError, IndexCorruptError, IndexLockedError
from ragloom.stores.files import (
    atomic_write_bytes,
    atomic_write_json,
    check_index_tree,
    crash_point,
    file_sha256,
    read_json,
    read_regular_bytes,
    remove_durably,
    remove_stale_temp_files,
)

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "IndexLock",
    "Manifest",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_index_tree",
    "compare_fingerprints",
    "crash_point",
    "file_sha256",
    "read_json",
    "read_regular_bytes",
    "remove_durably",
    "remove_stale_temp_files",
]

FORMAT_VERSION = 1
LATER_KEYS = frozenset({"chunker.tokenizer_sha256"})
"""Fingerprint keys added after format version 1: a manifest that lacks one is not a mismatch."""
RETIRED_KEYS = frozenset({"encoder.class"})
"""Fingerprint keys no longer recorded (a framework embedder's Python class path): a manifest holding one still
opens."""
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"


class IndexLock:
    """Exclusive writer lock on an index directory (an OS file lock, released if the process dies).

    A second writer is refused at once with :class:`IndexLockedError` unless ``timeout`` says to wait.
    """

    def __init__(self, directory: str | os.PathLike[str], timeout: float = 0.0, name: str = LOCK_NAME) -> None:
        from filelock import FileLock

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.directory / name))
        self.timeout = timeout

    def acquire(self) -> None:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=self.timeout)
        except Timeout as exc:
            raise IndexLockedError(
                f"Another process is writing to the index at {self.directory}. Wait for it to finish; searching "
                "needs no lock, so readers may go on meanwhile."
            ) from exc

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


def compare_fingerprints(
    stored: Mapping[str, object], given: Mapping[str, object], prefix: str = ""
) -> dict[str, tuple[object, object]]:
    """Keys whose values differ between two fingerprints (missing keys count as differences)."""
    differences: dict[str, tuple[object, object]] = {}
    for key in sorted(set(stored) | set(given)):
        a, b = stored.get(key), given.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            differences.update(compare_fingerprints(a, b, f"{prefix}{key}."))
        elif _normalise(a) != _normalise(b):
            differences[f"{prefix}{key}"] = (a, b)
    return differences


def _normalise(value: object) -> object:
    # JSON turns tuples into lists; compare by JSON form so a reloaded manifest matches a live fingerprint
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@dataclass
class Manifest:
    """The JSON manifest of an index directory."""

    kind: str
    encoder: dict[str, Any]
    chunker: dict[str, Any]
    store: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    generation: int = 0
    """Counts the manifest's saves: a process that loaded generation g and finds another on disk reloads its store
    before writing (no lost update) or searching (readers see later commits)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "generation": self.generation,
            "kind": self.kind,
            "encoder": self.encoder,
            "chunker": self.chunker,
            "store": self.store,
            "counts": self.counts,
            "extra": self.extra,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def save(self, directory: str | os.PathLike[str]) -> None:
        self.updated_at = time.time()
        self.generation += 1
        atomic_write_json(Path(directory) / MANIFEST_NAME, self.to_dict())

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Manifest | None:
        """The manifest in ``directory``, or None when the directory holds no index yet."""
        path = Path(directory) / MANIFEST_NAME
        if not os.path.lexists(path):
            return None
        data = read_json(path)
        if not isinstance(data, dict) or "kind" not in data:
            raise IndexCorruptError(f"{path} is not a ragloom manifest")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexCorruptError(
                f"{path} has format version {version}; this ragloom reads version {FORMAT_VERSION}. "
                "Upgrade ragloom or re-index."
            )
        return cls(
            kind=str(data["kind"]),
            encoder=dict(data.get("encoder") or {}),
            chunker=dict(data.get("chunker") or {}),
            store=dict(data.get("store") or {}),
            counts=dict(data.get("counts") or {}),
            extra=dict(data.get("extra") or {}),
            format_version=int(version),
            created_at=float(data.get("created_at", 0.0)),
            updated_at=float(data.get("updated_at", 0.0)),
            generation=int(data.get("generation", 0)),
        )

    def check_compatible(
        self,
        directory: str | os.PathLike[str],
        kind: str,
        encoder: Mapping[str, object],
        chunker: Mapping[str, object],
    ) -> None:
        """Raise EncoderMismatchError naming both sides if the index was built differently."""
        differences: dict[str, tuple[object, object]] = {}
        if self.kind != kind:
            differences["kind"] = (self.kind, kind)
        differences.update(compare_fingerprints(self.encoder, encoder, "encoder."))
        differences.update(compare_fingerprints(self.chunker, chunker, "chunker."))
        for key in LATER_KEYS:  # indexes written before ragloom recorded these keys still open
            if key in differences and differences[key][0] is None:
                del differences[key]
        for key in RETIRED_KEYS:  # nor do indexes holding keys ragloom stopped recording
            if key in differences and differences[key][1] is None:
                del differences[key]
        if differences:
            raise EncoderMismatchError(str(directory), differences)
