"""Loading many files: ``load_folder`` walks one folder, ``load_paths`` mixes files and folders.

A bad file never stops the walk: it becomes a :class:`LoadFailure` in the report (``strict=True`` raises
instead), files no loader handles are listed in ``skipped``, and symlinks never lead outside the folder.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragloom.errors import DocumentLoadError, RagloomError
from ragloom.loaders.files import DEFAULT_MAX_BYTES, format_for, load_file
from ragloom.types import Document, escape_undecodable

__all__ = ["LoadFailure", "LoadReport", "load_folder", "load_paths"]


@dataclass(frozen=True)
class LoadFailure:
    """A file that could not be loaded: its absolute path, why, and the exception class name."""

    path: str
    reason: str
    error_type: str


@dataclass(frozen=True)
class LoadReport:
    """What a folder or multi-path load produced.

    ``skipped`` lists files not loaded by design (absolute paths): unsupported suffixes, and symlinks inside
    the folder when ``follow_symlinks`` is False (their targets are reached by the walk itself).
    """

    documents: tuple[Document, ...]
    failures: tuple[LoadFailure, ...]
    skipped: tuple[str, ...]


@dataclass
class _Collector:
    strict: bool
    max_bytes: int
    documents: list[Document] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def fail(self, path: str, exc: Exception) -> None:
        """Record a failure, or raise it (as a DocumentLoadError unless it is already a ragloom error)."""
        if self.strict:
            if isinstance(exc, RagloomError):
                raise exc
            raise DocumentLoadError(path, f"{type(exc).__name__}: {exc}") from exc
        reason = exc.reason if isinstance(exc, DocumentLoadError) else str(exc) or type(exc).__name__
        shown = escape_undecodable(path)
        self.failures.append(LoadFailure(shown, escape_undecodable(reason), type(exc).__name__))

    def load(self, path: Path, root: Path | None) -> None:
        try:
            self.documents.append(load_file(path, root=root, max_bytes=self.max_bytes))
        except Exception as exc:
            self.fail(os.path.abspath(path), exc)

    def report(self) -> LoadReport:
        skipped = tuple(escape_undecodable(path) for path in self.skipped)
        return LoadReport(tuple(self.documents), tuple(self.failures), skipped)


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _included(rel: str, name: str, include: Sequence[str] | None) -> bool:
    """Case-insensitive glob match: patterns with a ``/`` match the relative path, others the file name."""
    if include is None:
        return True
    return any(fnmatch.fnmatchcase((rel if "/" in pattern else name).lower(), pattern.lower()) for pattern in include)


def _entries(folder: str, out: _Collector) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as listing:
            return sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        out.fail(folder, DocumentLoadError(folder, f"cannot list the folder: {exc.strerror or exc}"))
        return []


def _walk(base: Path, out: _Collector, recursive: bool, include: Sequence[str] | None, follow_symlinks: bool) -> None:
    real_base = os.path.realpath(base)
    visited = {real_base}
    stack = [iter(_entries(str(base), out))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith("."):
            continue
        where = os.path.abspath(entry.path)
        is_dir = os.path.isdir(entry.path)  # follows symlinks
        rel = Path(entry.path).relative_to(base).as_posix()
        if (is_dir and not recursive) or (not is_dir and not _included(rel, entry.name, include)):
            continue
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if not _inside(target, real_base):
                out.fail(where, DocumentLoadError(where, f"symlink outside the folder (points to {target})"))
                continue
            if not os.path.exists(target):
                out.fail(where, DocumentLoadError(where, f"broken symlink (points to {target})"))
                continue
            if not follow_symlinks or (is_dir and target in visited):
                out.skipped.append(where)
                continue
        if is_dir:
            visited.add(os.path.realpath(entry.path))
            stack.append(iter(_entries(entry.path, out)))
        elif format_for(entry.name) is None:
            out.skipped.append(where)
        else:
            out.load(Path(entry.path), base)


def _as_list(value: Sequence[str] | str | None) -> Sequence[str] | None:
    return [value] if isinstance(value, str) else value


def load_folder(
    root: str | Path,
    *,
    recursive: bool = True,
    strict: bool = False,
    include: Sequence[str] | None = None,
    follow_symlinks: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadReport:
    """Load every supported file under ``root`` (sorted, hidden files and folders skipped).

    Document ids are paths relative to ``root``. ``include`` keeps only files matching one of its glob
    patterns (``"*.pdf"``; a pattern with ``/`` matches the relative path). Symlinks pointing outside ``root``
    are never followed and are reported as failures; symlinks inside it are followed only with
    ``follow_symlinks=True``.
    A file that fails to load is reported and the walk goes on; ``strict=True`` raises the first failure.
    """
    base = Path(root)
    if not base.is_dir():
        reason = "not a folder; use load_file for single files" if base.exists() else "folder not found"
        raise DocumentLoadError(os.path.abspath(base), reason)
    out = _Collector(strict, max_bytes)
    _walk(base, out, recursive, _as_list(include), follow_symlinks)
    return out.report()


def load_paths(
    paths: Sequence[str | Path] | str | Path,
    *,
    recursive: bool = True,
    strict: bool = False,
    include: Sequence[str] | None = None,
    follow_symlinks: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadReport:
    """Load a mix of files and folders into one report (folders as in :func:`load_folder`).

    A named file is loaded whatever ``include`` says, and an unsupported or missing one is a failure (you
    asked for it). A file reached twice is loaded once; two different files that would get the same document
    id (e.g. ``a/x.txt`` and ``b/x.txt`` passed as files) make the second a failure rather than silently
    replacing the first.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = _Collector(strict, max_bytes)
    for item in paths:
        path = Path(item)
        if path.is_dir():
            _walk(path, out, recursive, _as_list(include), follow_symlinks)
        elif path.exists():
            out.load(path, None)
        else:
            where = os.path.abspath(path)
            out.fail(where, DocumentLoadError(where, "file or folder not found"))
    documents: list[Document] = []
    seen_sources: set[str] = set()
    ids: dict[str, str] = {}
    for doc in out.documents:
        if doc.source in seen_sources:
            continue
        seen_sources.add(doc.source)
        if doc.id in ids:
            out.fail(
                doc.source,
                DocumentLoadError(
                    doc.source,
                    f"duplicate document id {doc.id!r} (already used by {ids[doc.id]}); load the two "
                    "separately or give them distinct ids with load_file(..., doc_id=...)",
                ),
            )
            continue
        ids[doc.id] = doc.source
        documents.append(doc)
    out.documents = documents
    return out.report()
