"""Chunking by the encoder's own tokens, with overlap, sentence-aware boundaries and exact character spans.

Chunks never cross pages, so a page citation is always exact. Chunk ids derive from (doc id, span), so the same
text chunked the same way gets the same ids in every retriever and fuses exactly.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ragloom.errors import ConfigError
from ragloom.protocols import DigestTokenCounter, NamedTokenCounter, TokenCounter
from ragloom.types import Chunk, Document, chunk_id_for_span

__all__ = [
    "OffsetTokenizer",
    "TokenChunker",
    "WordTokenizer",
    "sentence_boundaries",
    "tokenizer_name",
]

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace, or at a blank line.
_SENTENCE_END = re.compile(r"""[.!?]['")\]]*(?=\s)|\n\s*\n""")
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
SECTION_CHARS = 1 << 20
"""Text longer than this is chunked one section at a time (cut at a blank line, else at a space), so a 40 MB
file never holds all its tokens' offsets at once: memory stays bounded by the section, not the file."""


def sentence_boundaries(text: str) -> list[int]:
    """Character offsets just after each sentence end (sorted)."""
    return [match.end() for match in _SENTENCE_END.finditer(text)]


@dataclass(frozen=True)
class WordTokenizer:
    """A dependency-free token counter: words and punctuation marks. Use an encoder's tokenizer when you can."""

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in _WORD.finditer(text)]

    @property
    def name(self) -> str:
        return "words"


class OffsetTokenizer:
    """Adapts a Hugging Face fast tokenizer (anything returning ``offset_mapping``) to :class:`TokenCounter`."""

    def __init__(self, tokenizer: Any, name: str = "") -> None:
        # ``tokenizer`` is a Hugging Face object: these getattr calls read its optional attributes (not our protocols)
        if not getattr(tokenizer, "is_fast", True):
            raise ConfigError("Chunking needs a fast tokenizer (with offset mapping); load it with use_fast=True")
        self._tokenizer = tokenizer
        self.name = name or str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__))
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        """A digest of everything that decides the tokens (vocabulary, normaliser, pre-tokeniser, special tokens):
        a tokenizer edited in place, with the same weights, must not open an index built with the old one."""
        if self._digest is None:
            backend = getattr(self._tokenizer, "backend_tokenizer", None)
            state = backend.to_str() if backend is not None else repr(sorted(self._tokenizer.get_vocab().items()))
            extra = json.dumps(
                {
                    "special": {
                        k: str(v) for k, v in sorted(getattr(self._tokenizer, "special_tokens_map", {}).items())
                    },
                    "lowercase": bool(getattr(self._tokenizer, "do_lower_case", False)),
                },
                sort_keys=True,
            )
            self._digest = hashlib.sha256((state + extra).encode("utf-8")).hexdigest()[:16]
        return self._digest

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        if not text:
            return []
        encoded = self._tokenizer(
            text,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            verbose=False,
        )
        return [(int(s), int(e)) for s, e in encoded["offset_mapping"] if e > s]


def tokenizer_name(tokenizer: TokenCounter) -> str:
    """The name a manifest records for ``tokenizer``: its own, else its class name."""
    return str(tokenizer.name) if isinstance(tokenizer, NamedTokenCounter) else type(tokenizer).__name__


@dataclass(frozen=True)
class TokenChunker:
    """Split documents into chunks of at most ``chunk_size`` tokens with ``overlap`` tokens shared.

    With ``sentence_aware`` a chunk ends at the last sentence boundary in its second half when there is one, and
    the next chunk starts at a sentence boundary inside the overlap when there is one. Pages are chunked
    independently. Whitespace-only text yields no chunks.
    """

    tokenizer: TokenCounter
    chunk_size: int = 256
    overlap: int = 32
    sentence_aware: bool = True

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not 0 <= self.overlap < self.chunk_size:
            raise ConfigError(f"overlap must be in [0, chunk_size), got {self.overlap} for {self.chunk_size}")

    @property
    def config(self) -> Mapping[str, object]:
        """What the manifest records: chunks made with another config must not mix into the same index."""
        config: dict[str, object] = {
            "kind": "tokens",
            "tokenizer": tokenizer_name(self.tokenizer),
            "chunk_size": self.chunk_size,
            "overlap": self.overlap,
            "sentence_aware": self.sentence_aware,
        }
        if isinstance(self.tokenizer, DigestTokenCounter):
            config["tokenizer_sha256"] = self.tokenizer.digest
        return config

    def chunk(self, document: Document) -> list[Chunk]:
        """The chunks of one document, in reading order."""
        segments = (
            [(p.start, p.end, p.number) for p in document.pages] if document.pages else [(0, len(document.text), None)]
        )
        chunks: list[Chunk] = []
        for seg_start, seg_end, page in segments:
            segment = document.text[seg_start:seg_end]
            for start, end in self.spans(segment):
                a, b = seg_start + start, seg_start + end
                chunks.append(
                    Chunk(
                        id=chunk_id_for_span(document.id, a, b),
                        doc_id=document.id,
                        text=document.text[a:b],
                        start=a,
                        end=b,
                        page=page,
                        source=document.source,
                        metadata=document.metadata,
                    )
                )
        return chunks

    def chunk_many(self, documents: Sequence[Document]) -> Iterator[tuple[Document, list[Chunk]]]:
        for document in documents:
            yield document, self.chunk(document)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the chunks of ``text``; each holds at most ``chunk_size`` tokens.

        Chunks start and end on word boundaries (never inside a word split into sub-word tokens), so a chunk
        re-tokenised on its own yields the same tokens. Text over ``SECTION_CHARS`` is chunked section by
        section (no chunk crosses a section cut) so that memory stays bounded.
        """
        spans: list[tuple[int, int]] = []
        for first, last in _sections(text, SECTION_CHARS):
            spans.extend((first + a, first + b) for a, b in self._section_spans(text[first:last]))
        return spans

    def _section_spans(self, text: str) -> list[tuple[int, int]]:
        tokens = self.tokenizer.token_spans(text)
        n = len(tokens)
        if n == 0:
            return []
        starts = [s for s, _ in tokens]
        word_start = [i == 0 or _is_word_start(text, tokens[i - 1], tokens[i]) for i in range(n)]
        boundary_tokens: list[int] = []
        if self.sentence_aware:
            boundary_tokens = sorted({bisect.bisect_left(starts, c) for c in sentence_boundaries(text)})
        spans: list[tuple[int, int]] = []
        first = 0
        while first < n:
            last = min(first + self.chunk_size, n)  # exclusive token index
            if last < n:
                last = self._choose_end(first, last, boundary_tokens, word_start)
            spans.append((tokens[first][0], tokens[last - 1][1]))
            if last >= n:
                break
            first = self._choose_next_start(first, last, boundary_tokens, word_start)
        return spans

    def _choose_end(self, first: int, last: int, boundaries: list[int], word_start: list[bool]) -> int:
        limit = first + max(1, self.chunk_size // 2)
        i = bisect.bisect_right(boundaries, last) - 1
        if i >= 0 and boundaries[i] > limit:
            return boundaries[i]
        end = last
        while end > first + 1 and not word_start[end]:
            end -= 1
        return end if word_start[end] else last

    def _choose_next_start(self, first: int, last: int, boundaries: list[int], word_start: list[bool]) -> int:
        start = max(last - self.overlap, first + 1)
        if boundaries and self.overlap:
            j = bisect.bisect_left(boundaries, start)
            if j < len(boundaries) and boundaries[j] < last:
                return boundaries[j]
        candidate = start
        while candidate > first + 1 and not word_start[candidate]:
            candidate -= 1
        if word_start[candidate]:
            return candidate
        while start < last and not word_start[start]:
            start += 1
        return start


def _sections(text: str, size: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` cuts of ``text`` at most ``size`` characters long, at a blank line, else a space."""
    start, n = 0, len(text)
    while n - start > size:
        limit = start + size
        cut = text.rfind("\n\n", start + size // 2, limit)
        if cut < 0:
            cut = max(text.rfind(" ", start + size // 2, limit), text.rfind("\n", start + size // 2, limit))
        cut = cut + 1 if cut >= 0 else limit
        yield start, cut
        start = cut
    yield start, n


def _is_word_start(text: str, previous: tuple[int, int], current: tuple[int, int]) -> bool:
    """False when ``current`` continues the word of ``previous`` (a sub-word piece)."""
    if current[0] > previous[1]:
        return True
    before, here = text[current[0] - 1], text[current[0]]
    return not (before.isalnum() and here.isalnum())
