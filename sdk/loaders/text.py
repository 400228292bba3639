"""Text decoding and the plain-text and Markdown loaders.

Decoding is deliberately conservative: UTF-8 (BOM stripped), UTF-16/32 when a BOM says so, and cp1252 for
legacy files that are not valid UTF-8. Files with NUL bytes are binary, not text, and are refused rather than
turned into garbage that would pollute an index.
"""

from __future__ import annotations

import codecs
import math
import re

from ragloom.errors import DocumentLoadError
from ragloom.types import MetadataValue

__all__ = ["decode_text", "normalise_newlines", "split_front_matter"]

# cp1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined; map them to the C1 controls (as WHATWG's
# windows-1252 does) so decoding never fails and never drops a byte.
_CP1252_FIXUP = {b: bytes([b]).decode("cp1252") for b in range(0x80, 0xA0) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}
_CP1252_TABLE = str.maketrans({chr(b): c for b, c in _CP1252_FIXUP.items()})


def normalise_newlines(text: str) -> str:
    """Turn ``\\r\\n`` and lone ``\\r`` into ``\\n`` so offsets mean the same on every platform."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode_text(data: bytes, path: str) -> tuple[str, str]:
    """Decode a text file's bytes; returns ``(text, encoding)`` with newlines normalised.

    Raises :class:`DocumentLoadError` for binary files (NUL bytes) and malformed UTF-16/32.
    """
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return normalise_newlines(data.decode(encoding)), encoding
            except UnicodeDecodeError as exc:
                raise DocumentLoadError(
                    path,
                    f"starts with a {encoding.upper()} byte-order mark but is not valid {encoding.upper()} "
                    f"(bad bytes at offset {exc.start}); re-save it as UTF-8",
                ) from exc
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DocumentLoadError(
            path, f"binary file (NUL byte at offset {nul}); only text, Markdown, HTML and PDF can be loaded"
        )
    try:
        return normalise_newlines(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        return normalise_newlines(data.decode("latin-1").translate(_CP1252_TABLE)), "cp1252"


_FRONT_MATTER = re.compile(r"---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FM_LINE = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.-]*)[ \t]*:(?:[ \t]+(.*))?")
_INT = re.compile(r"[-+]?[0-9]{1,18}")
_COMMENT = re.compile(r"[ \t]#")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _scalar(raw: str) -> MetadataValue | None:
    """A YAML scalar we can read without a YAML parser, or None when it is anything more complex."""
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        return None if value[0] == '"' and "\\" in inner else inner
    comment = _COMMENT.search(value)  # a trailing comment; found without backtracking over long blank runs
    if comment is not None:
        value = value[: comment.start()].rstrip(" \t")
    if not value or value[0] in "[{|>&*!%@`'\"#" or value in ("~", "null", "Null", "NULL"):
        return None
    if value in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return value.lower() == "true"
    if _INT.fullmatch(value):
        return int(value)
    if _FLOAT.fullmatch(value):
        number = float(value)
        return number if math.isfinite(number) else value
    return value


def split_front_matter(text: str) -> tuple[str, dict[str, MetadataValue]]:
    """Drop a leading YAML front-matter block; return the body and its top-level ``key: scalar`` pairs.

    Keys come back prefixed ``fm.``. Nested values, lists, block scalars and anything else that needs a real
    YAML parser are ignored rather than guessed at. Text without front matter is returned unchanged.
    """
    match = _FRONT_MATTER.match(text)
    if match is None:
        return text, {}
    metadata: dict[str, MetadataValue] = {}
    for line in (match.group(1) or "").split("\n"):
        pair = _FM_LINE.fullmatch(line.rstrip())
        if pair is None or pair.group(2) is None:
            continue
        value = _scalar(pair.group(2))
        if value is not None:
            metadata[f"fm.{pair.group(1)}"] = value
    return text[match.end() :].lstrip("\n"), metadata
