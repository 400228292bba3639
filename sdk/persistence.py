"""Atomic files, a single-writer lock per index directory, and the JSON manifest every index carries.

Atomic write: temp file in the same directory, fsync, rename over the target, fsync the directory — a crash
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragloom.errors import EncoderMismatchError, IndexCorruptError, IndexLockedError

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


CRASH_ENV = "RAGLOOM_CRASH_AT"
CRASH_TRACE_ENV = "RAGLOOM_CRASH_TRACE"
_crash_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    """A named step of a write, for the crash-safety tests; does nothing unless the environment asks.

    ``RAGLOOM_CRASH_AT=name:n`` kills this process with SIGKILL the n-th time (1-based) it reaches ``name``
    (``RAGLOOM_CRASH_SIGNAL=INT`` sends SIGINT instead: a Ctrl-C at that step); ``RAGLOOM_CRASH_TRACE=FILE`` appends
    every step reached to FILE (how the tests enumerate the steps).
    """
    at, trace = os.environ.get(CRASH_ENV), os.environ.get(CRASH_TRACE_ENV)
    if not at and not trace:
        return
    count = _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if trace:
        with open(trace, "a", encoding="utf-8") as handle:
            handle.write(f"{name}:{count}\n")
    if at == f"{name}:{count}":
        os.kill(os.getpid(), signal.SIGINT if os.environ.get("RAGLOOM_CRASH_SIGNAL") == "INT" else signal.SIGKILL)
        time.sleep(1.0)  # SIGINT is raised as KeyboardInterrupt at the next bytecode


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            crash_point("atomic.written")
            os.fsync(handle.fileno())
        crash_point("atomic.synced")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    crash_point("atomic.renamed")
    _fsync_dir(target.parent)


def remove_stale_temp_files(directory: str | os.PathLike[str]) -> int:
    """Delete the temp files of atomic writes that a crash interrupted (call only while holding the writer lock)."""
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def remove_durably(path: str | os.PathLike[str]) -> bool:
    """Delete a file (if present) and fsync its directory; True when something was removed."""
    target = Path(path)
    try:
        os.unlink(target)
    except FileNotFoundError:
        return False
    _fsync_dir(target.parent)
    return True


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Atomically write ``data`` as indented UTF-8 JSON (NaN refused)."""
    atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False).encode("utf-8") + b"\n")


JSON_MAX_BYTES = 16 * 1024 * 1024
"""The largest index JSON file read by default (manifests and specs are a few KB; a bigger one is hostile)."""


def read_regular_bytes(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of an index file that must be a regular file of at most ``max_bytes``.

    Index folders may come from someone else: a symlink (to /dev/zero, or out of the folder), a FIFO (which would
    block for ever) or an oversized file raises :class:`IndexCorruptError` instead of being followed or read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # POSIX-only flags
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:  # ELOOP: a symlink refused by O_NOFOLLOW
        raise IndexCorruptError(f"{path} cannot be opened as an index file ({exc}); it must be a regular file") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IndexCorruptError(f"{path} is not a regular file; remove it and restore the index from a backup")
        if info.st_size > max_bytes:
            raise IndexCorruptError(
                f"{path} is {info.st_size} bytes, more than the {max_bytes} an index file of this kind may hold"
            )
        chunks: list[bytes] = []
        remaining = max_bytes + 1
        while remaining > 0:
            block = os.read(fd, min(remaining, 1 << 20))
            if not block:
                break
            chunks.append(block)
            remaining -= len(block)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise IndexCorruptError(f"{path} grew past {max_bytes} bytes while being read")
        return data
    finally:
        os.close(fd)


def read_json(path: str | os.PathLike[str], max_bytes: int = JSON_MAX_BYTES) -> Any:
    """Read a JSON index file (a regular file, at most ``max_bytes``); a malformed one raises IndexCorruptError."""
    data = read_regular_bytes(path, max_bytes)
    try:
        return json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # binary junk (a pickle, say) too
        raise IndexCorruptError(f"{path} is not valid JSON ({exc}); restore it from a backup or re-index") from exc


def check_index_tree(directory: str | os.PathLike[str]) -> None:
    """Refuse an index folder that holds symlinks or special files: writes must never leave the folder (a linked
    ``vectors.sqlite`` would modify a database elsewhere) and reads must never block on a FIFO. The folder itself
    may be a symlink (an index kept on another disk)."""
    root = Path(directory)
    if not root.exists():
        return
    for current, dirs, files in os.walk(root, followlinks=False):
        for name in (*dirs, *files):
            entry = Path(current) / name
            try:
                mode = os.lstat(entry).st_mode
            except FileNotFoundError:  # a writer's temp file renamed or removed meanwhile: readers run beside it
                continue
            if stat.S_ISLNK(mode):
                raise IndexCorruptError(
                    f"{entry} is a symbolic link; an index folder holds only regular files and folders (writes must "
                    "never leave it). Replace the link with the file it points to, or re-index."
                )
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise IndexCorruptError(f"{entry} is not a regular file; remove it and re-index")


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
