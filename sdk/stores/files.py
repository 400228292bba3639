"""Durable files: atomic writes (temp file, fsync, rename, fsync the directory), sha256 checksums, ``.npy`` without
pickle, hardened reads of index files, and the crash points the crash-safety tests stop at.

Every store and index file goes through here, so there is one definition of "written durably": a crash leaves
either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import sqlite3
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ragloom.errors import IndexCorruptError

__all__ = [
    "JSON_MAX_BYTES",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_index_tree",
    "connect_sqlite",
    "crash_point",
    "file_sha256",
    "folder_sha256",
    "fsync_dir",
    "fsync_tree",
    "npy_bytes",
    "read_json",
    "read_regular_bytes",
    "remove_durably",
    "remove_stale_temp_files",
    "save_npy",
    "sha256_hex",
]

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
        interrupt = os.environ.get("RAGLOOM_CRASH_SIGNAL") == "INT"
        if interrupt and threading.current_thread() is threading.main_thread():
            # a process started in the background by a non-interactive shell inherits SIGINT ignored, and Python
            # then leaves it ignored: restore the Ctrl-C handler so the simulated Ctrl-C is one
            signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), signal.SIGINT if interrupt else signal.SIGKILL)
        time.sleep(1.0)  # SIGINT is raised as KeyboardInterrupt at the next bytecode


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory (its entries: a rename or an unlink in it becomes durable)."""
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
    fsync_dir(target.parent)


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
    fsync_dir(target.parent)
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
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` as hex (the checksums recorded in state files)."""
    return hashlib.sha256(data).hexdigest()


def folder_sha256(directory: str | os.PathLike[str]) -> dict[str, str]:
    """The sha256 of every regular file directly in ``directory``, by name (sorted)."""
    return {f.name: file_sha256(f) for f in sorted(Path(directory).iterdir()) if f.is_file()}


def fsync_tree(directory: str | os.PathLike[str]) -> None:
    """fsync every file directly in ``directory``, then the directory itself (its entries)."""
    for file in Path(directory).iterdir():
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(directory)


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file (no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a ``.npy`` atomically (temp file in the same folder, fsync, rename; no pickle), streamed rather than
    built in memory. The caller fsyncs the directory once after a batch of files (:func:`fsync_dir`)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def connect_sqlite(file: str | os.PathLike[str] | None) -> sqlite3.Connection:
    """A SQLite connection for a store's commit log, usable from any thread: WAL with ``synchronous=FULL`` (a
    committed transaction survives a crash or a power cut); ``None`` gives an in-memory database."""
    if file is None:
        return sqlite3.connect(":memory:", check_same_thread=False)
    db = sqlite3.connect(file, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db
