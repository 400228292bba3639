"""``load_file``: one file on disk to one :class:`~ragloom.types.Document`, dispatched by suffix."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from ragloom.errors import DocumentLoadError, InvalidInputError, RagloomError, UnsupportedFormatError
from ragloom.types import Document, MetadataValue, escape_undecodable

__all__ = ["DEFAULT_MAX_BYTES", "SUPPORTED_SUFFIXES", "format_for", "load_file"]

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
SUPPORTED_SUFFIXES: Mapping[str, str] = MappingProxyType(
    {
        ".txt": "text",
        ".text": "text",
        ".rst": "text",
        ".log": "text",
        ".md": "markdown",
        ".markdown": "markdown",
        ".html": "html",
        ".htm": "html",
        ".pdf": "pdf",
    }
)


def format_for(path: str | Path) -> str | None:
    """The loader format for ``path`` by its suffix (case-insensitive), or None when no loader handles it."""
    return SUPPORTED_SUFFIXES.get(Path(path).suffix.lower())


def _unsupported(path: Path) -> UnsupportedFormatError:
    suffix = path.suffix.lower()
    what = f"'{suffix}' files" if suffix else "files without a suffix"
    supported = " ".join(sorted(SUPPORTED_SUFFIXES))
    return UnsupportedFormatError(os.path.abspath(path), f"no loader for {what}; supported: {supported}")


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _read(path: Path, where: str, max_bytes: int) -> bytes:
    """Read a regular file, refusing anything over ``max_bytes`` before reading it whole."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise DocumentLoadError(where, "file not found") from exc
    except OSError as exc:
        raise DocumentLoadError(where, f"cannot stat the file: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise DocumentLoadError(where, "is a folder; use load_folder (or load_paths) for folders")
    if not stat.S_ISREG(info.st_mode):
        raise DocumentLoadError(where, "not a regular file (device, pipe or socket)")
    too_big = DocumentLoadError(
        where, f"file is larger than the {_mib(max_bytes)} limit; pass a larger max_bytes to load it"
    )
    if info.st_size > max_bytes:
        raise too_big
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise DocumentLoadError(where, f"cannot read the file: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:  # grew since stat
        raise too_big
    return data


def _default_id(path: Path, root: str | Path | None) -> str:
    if root is None:
        return path.name
    absolute, base = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError as exc:
        raise InvalidInputError(f"{path} is not inside root {root}; pass doc_id or the right root") from exc


def _parse(fmt: str, data: bytes, where: str, doc_id: str, meta: dict[str, MetadataValue]) -> Document:
    if fmt == "pdf":
        from ragloom.loaders.pdf import extract_pdf_text

        pdf = extract_pdf_text(data, where)
        meta["pages"] = len(pdf.pages)
        meta["empty_pages"] = pdf.empty_pages
        if pdf.ligatures_repaired:  # words whose fi/fl ligature glyphs had lost letters in the PDF's text layer
            meta["ligatures_repaired"] = pdf.ligatures_repaired
        if pdf.title:
            meta["title"] = pdf.title
        return Document.from_pages(doc_id, pdf.pages, source=where, metadata=meta)

    from ragloom.loaders.text import decode_text, split_front_matter

    text, encoding = decode_text(data, where)
    meta["encoding"] = encoding
    if fmt == "markdown":
        text, front = split_front_matter(text)
        meta.update(front)
    elif fmt == "html":
        from ragloom.loaders.html import extract_html

        text, title = extract_html(text, where)
        if title:
            meta["title"] = title
    return Document(id=doc_id, text=text, source=where, metadata=meta)


def load_file(
    path: str | Path,
    *,
    doc_id: str | None = None,
    root: str | Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Document:
    """Load one text, Markdown, HTML or PDF file into a Document.

    The id is ``doc_id`` if given, else the path relative to ``root`` (POSIX form), else the file name;
    ``source`` is the absolute path. Bytes of a file name that are not UTF-8 appear as ``\\xNN`` escapes in the
    id, ``filename`` and ``source`` (see :func:`~ragloom.types.escape_undecodable`). Metadata always holds
    ``filename``, ``format`` and the ``sha256`` of the file's bytes. Every problem with the file raises
    :class:`DocumentLoadError` (:class:`UnsupportedFormatError` for unknown suffixes), so callers need to catch
    one class.
    """
    file = Path(path)
    where = os.path.abspath(file)
    shown = escape_undecodable(where)  # a name that is not UTF-8 must not reach a store, a terminal or JSON
    fmt = format_for(file)
    if fmt is None:
        if file.is_dir() or not os.path.lexists(file):
            _read(file, where, max_bytes)  # raises the "folder" or "not found" error
        raise _unsupported(file)
    data = _read(file, shown, max_bytes)
    identifier = doc_id if doc_id is not None else escape_undecodable(_default_id(file, root))
    meta: dict[str, MetadataValue] = {
        "filename": escape_undecodable(file.name),
        "format": fmt,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    try:
        return _parse(fmt, data, shown, identifier, meta)
    except RagloomError:
        raise
    except Exception as exc:  # a parser bug or an odd file must not escape as a foreign exception
        raise DocumentLoadError(shown, f"the {fmt} parser failed: {type(exc).__name__}: {exc}") from exc
