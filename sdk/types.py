"""The core value types: Document, Page, Chunk, Hit, Citation, Answer, SparseVector, Message.

All are frozen dataclasses validated on construction, so a malformed value fails where it is made rather than
deep inside an index. Metadata values are JSON scalars (str, int, float, bool) so they survive every store.

Document, Chunk, Hit, Citation, Support and Answer have one JSON form each (``to_dict``/``from_dict``, exact round
trip, InvalidInputError naming a bad field) that every surface speaks: CLI, server, tools, MCP, journal, docstore.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from ragloom import _fields
from ragloom._fields import _SURROGATE, check_metadata, check_text
from ragloom.errors import InvalidInputError

__all__ = [
    "Answer",
    "Chunk",
    "Citation",
    "Document",
    "Hit",
    "Message",
    "MetadataValue",
    "Page",
    "ScoreKind",
    "SparseVector",
    "Support",
    "Verdict",
    "chunk_id_for_page",
    "chunk_id_for_span",
    "escape_undecodable",
]

MetadataValue = str | int | float | bool
ScoreKind = Literal["cosine", "dot", "bm25", "splade", "maxsim", "rrf", "fused", "rerank", "distance"]
Role = Literal["system", "user", "assistant"]
Verdict = Literal["supported", "partly", "unsupported", "declined"]
_SCORE_KINDS: tuple[ScoreKind, ...] = get_args(ScoreKind)
_VERDICTS: tuple[Verdict, ...] = get_args(Verdict)


def escape_undecodable(text: str) -> str:
    """``text`` with each lone surrogate written as an escape: ``\\xNN`` for a byte that was not UTF-8 (what
    ``os.fsdecode`` makes of a non-UTF-8 file name), ``\\uNNNN`` for any other. Such text can be stored, printed
    and sent as JSON; text without surrogates comes back unchanged."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"

    return _SURROGATE.sub(escape, text)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a paged document: its 1-based number and where its text sits in the document's text."""

    number: int
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.number < 1:
            raise InvalidInputError(f"Page numbers start at 1, got {self.number}")
        if not 0 <= self.start <= self.end:
            raise InvalidInputError(f"Page {self.number}: bad span {self.start}..{self.end}")


@dataclass(frozen=True, slots=True)
class Document:
    """A source document: a stable id, where it came from, its text, and (for PDFs) its pages.

    ``pages`` index into ``text``: page *n*'s text is ``text[page.start:page.end]``. A document without pages is
    one flow of text.
    """

    id: str
    text: str
    source: str = ""
    pages: tuple[Page, ...] = ()
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise InvalidInputError("Document.id must be a non-empty string")
        if not isinstance(self.text, str):
            raise InvalidInputError(f"Document {self.id!r}: text must be str, got {type(self.text).__name__}")
        check_text(self.id, f"Document.id {self.id!r}")
        check_text(self.source, f"Document {self.id!r}: source")
        check_text(self.text, f"Document {self.id!r}: text")
        object.__setattr__(self, "pages", tuple(self.pages))
        object.__setattr__(self, "metadata", check_metadata(self.metadata, f"Document {self.id!r}"))
        previous_end = 0
        for page in self.pages:
            if page.start < previous_end or page.end > len(self.text):
                raise InvalidInputError(
                    f"Document {self.id!r}: page {page.number} span {page.start}..{page.end} overlaps another "
                    f"page or runs past the text (length {len(self.text)})"
                )
            previous_end = page.end

    def page_text(self, number: int) -> str:
        """The text of page ``number`` (1-based)."""
        for page in self.pages:
            if page.number == number:
                return self.text[page.start : page.end]
        raise InvalidInputError(f"Document {self.id!r} has no page {number}")

    def page_at(self, offset: int) -> int | None:
        """The page number holding character ``offset``, or None for unpaged documents."""
        for page in self.pages:
            if page.start <= offset < max(page.end, page.start + 1):
                return page.number
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (pages as ``[number, start, end]`` triples); what the journal and document store keep."""
        return {
            "id": self.id,
            "text": self.text,
            "source": self.source,
            "pages": [[p.number, p.start, p.end] for p in self.pages],
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Document:
        """Inverse of :meth:`to_dict`."""
        data = _fields.mapping(data, "Document")
        where = f"Document {data.get('id')!r}"
        pages = tuple(Page(*triple) for triple in _fields.int_triples(data, "pages", where))
        return cls(
            id=_fields.text(data, "id", "Document"),
            text=_fields.text(data, "text", where),
            source=_fields.text(data, "source", where, ""),
            pages=pages,
            metadata=dict(_fields.submapping(data, "metadata", where)),
        )

    @classmethod
    def from_pages(
        cls,
        id: str,
        page_texts: list[str],
        source: str = "",
        metadata: Mapping[str, MetadataValue] | None = None,
        separator: str = "\n\n",
    ) -> Document:
        """Build a paged document from per-page texts, joined by ``separator``."""
        parts: list[str] = []
        pages: list[Page] = []
        offset = 0
        for number, page_text in enumerate(page_texts, start=1):
            if parts:
                parts.append(separator)
                offset += len(separator)
            pages.append(Page(number, offset, offset + len(page_text)))
            parts.append(page_text)
            offset += len(page_text)
        return cls(id=id, text="".join(parts), source=source, pages=tuple(pages), metadata=metadata or {})


def chunk_id_for_span(doc_id: str, start: int, end: int) -> str:
    """Stable id of a text chunk: the same span of the same document always gets the same id."""
    return f"{doc_id}#{start}-{end}"


def chunk_id_for_page(doc_id: str, page: int) -> str:
    """Stable id of a whole-page unit (e.g. a page image)."""
    return f"{doc_id}#p{page}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """The query-independent retrievable unit: a span of a document's text, or a whole page.

    ``start``/``end`` are character offsets into the parent document's text, so ``doc.text[start:end] == text``
    for text chunks. ``page`` is the 1-based page the chunk lies on (chunks never cross pages).
    """

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    page: int | None = None
    source: str = ""
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id or not self.doc_id:
            raise InvalidInputError("Chunk.id and Chunk.doc_id must be non-empty")
        if not 0 <= self.start <= self.end:
            raise InvalidInputError(f"Chunk {self.id!r}: bad span {self.start}..{self.end}")
        if self.page is not None and self.page < 1:
            raise InvalidInputError(f"Chunk {self.id!r}: page numbers start at 1")
        object.__setattr__(self, "metadata", check_metadata(self.metadata, f"Chunk {self.id!r}"))

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the on-disk form of a chunk)."""
        return {
            "id": self.id,
            "doc_id": self.doc_id,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "page": self.page,
            "source": self.source,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Chunk:
        """Inverse of :meth:`to_dict`."""
        data = _fields.mapping(data, "Chunk")
        where = f"Chunk {data.get('id')!r}"
        return cls(
            id=_fields.text(data, "id", "Chunk"),
            doc_id=_fields.text(data, "doc_id", where),
            text=_fields.text(data, "text", where, ""),
            start=_fields.integer(data, "start", where),
            end=_fields.integer(data, "end", where),
            page=_fields.optional_integer(data, "page", where),
            source=_fields.text(data, "source", where, ""),
            metadata=dict(_fields.submapping(data, "metadata", where)),
        )


def _location(chunk: Chunk) -> dict[str, Any]:
    """Where a chunk is, in the JSON form a hit and a citation share."""
    where = {"chunk_id": chunk.id, "doc_id": chunk.doc_id, "source": chunk.source, "page": chunk.page}
    return {**where, "start": chunk.start, "end": chunk.end}


@dataclass(frozen=True, slots=True)
class Hit:
    """One chunk scored for one query by one retriever (or by fusion or a reranker)."""

    chunk: Chunk
    score: float
    score_kind: ScoreKind
    retriever: str
    rank: int
    explanation: str = ""

    def __post_init__(self) -> None:
        if not math.isfinite(self.score):
            raise InvalidInputError(f"Hit for {self.chunk.id!r}: score is {self.score}")
        if self.rank < 1:
            raise InvalidInputError("Hit.rank starts at 1")

    @property
    def fusion_key(self) -> str:
        """What fusion merges on: the chunk id (identical chunks from different retrievers fuse exactly)."""
        return self.chunk.id

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the score, then where the chunk is (document, source, page, character span) and its text."""
        chunk = self.chunk
        return {
            "rank": self.rank,
            "score": self.score,
            "score_kind": self.score_kind,
            "retriever": self.retriever,
            **_location(chunk),
            "text": chunk.text,
            "metadata": dict(chunk.metadata),
            "explanation": self.explanation,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hit:
        """Inverse of :meth:`to_dict`."""
        data = _fields.mapping(data, "Hit")
        where = f"Hit {data.get('chunk_id')!r}"
        kind: ScoreKind = _fields.choice(data, "score_kind", _SCORE_KINDS, where)
        chunk = Chunk.from_dict({**data, "id": _fields.text(data, "chunk_id", "Hit"), "text": data.get("text")})
        return cls(
            chunk=chunk,
            score=_fields.number(data.get("score"), "score", where),
            score_kind=kind,
            retriever=_fields.text(data, "retriever", where),
            rank=_fields.integer(data, "rank", where),
            explanation=_fields.text(data, "explanation", where, ""),
        )


@dataclass(frozen=True, slots=True)
class Citation:
    """Maps an ``[n]`` marker in an answer to the passage it cites."""

    marker: int
    hit: Hit

    @property
    def doc_id(self) -> str:
        return self.hit.chunk.doc_id

    @property
    def page(self) -> int | None:
        return self.hit.chunk.page

    @property
    def span(self) -> tuple[int, int]:
        return (self.hit.chunk.start, self.hit.chunk.end)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the marker and where the cited passage is. The passage itself (score, text) is in the
        answer's ``context``, which a citation always points into."""
        return {"marker": self.marker, **_location(self.hit.chunk)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], context: Sequence[Hit]) -> Citation:
        """Inverse of :meth:`to_dict`: the cited hit is found in ``context`` (the answer's passages) by chunk id."""
        data = _fields.mapping(data, "Citation")
        marker = _fields.integer(data, "marker", "Citation")
        chunk_id = _fields.text(data, "chunk_id", f"Citation [{marker}]")
        for hit in context:
            if hit.chunk.id == chunk_id:
                return cls(marker=marker, hit=hit)
        raise InvalidInputError(
            f"Citation [{marker}] cites chunk {chunk_id!r}, which is not among the answer's context passages; "
            "pass the answer's whole JSON form (its context holds every cited passage)"
        )


@dataclass(frozen=True, slots=True)
class Support:
    """How well an answer is supported by the passages it cites (see ragloom.citations).

    ``verdict``: ``supported`` (every claim cites a passage that supports it), ``partly``, ``unsupported`` (no
    claim supported, or the citations concern other documents than the question's) or ``declined`` (the answer
    says the documents do not hold it, or ragloom declined on weak retrieval evidence). ``uncited`` and
    ``unsupported`` hold the claim sentences at fault; ``off_topic`` the question's names that no cited passage
    mentions; ``reason`` says it in words (for a decline: why, and what was searched).
    """

    verdict: Verdict
    claims: int = 0
    supported_claims: int = 0
    uncited: tuple[str, ...] = ()
    unsupported: tuple[str, ...] = ()
    off_topic: tuple[str, ...] = ()
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "verdict": self.verdict,
            "claims": self.claims,
            "supported_claims": self.supported_claims,
            "uncited_claims": list(self.uncited),
            "unsupported_claims": list(self.unsupported),
            "off_topic_terms": list(self.off_topic),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Support:
        """Inverse of :meth:`to_dict`."""
        data = _fields.mapping(data, "Support")
        return cls(
            verdict=_fields.choice(data, "verdict", _VERDICTS, "Support"),
            claims=_fields.integer(data, "claims", "Support"),
            supported_claims=_fields.integer(data, "supported_claims", "Support"),
            uncited=_fields.texts(data, "uncited_claims", "Support"),
            unsupported=_fields.texts(data, "unsupported_claims", "Support"),
            off_topic=_fields.texts(data, "off_topic_terms", "Support"),
            reason=_fields.text(data, "reason", "Support", ""),
        )


@dataclass(frozen=True, slots=True)
class Answer:
    """A generated answer with its citations, the context it was given, and timings in seconds.

    ``dangling_markers`` lists ``[n]`` markers in the text that point at no context passage; ``unsupported``
    lists markers whose passage shares too little with the sentence citing it (see ragloom.prompting).
    ``citations_inferred`` is True when the model wrote no markers and ragloom attached them by lexical support
    (see ragloom.citations). ``support`` is the validator's verdict on the whole answer.
    """

    text: str
    citations: tuple[Citation, ...]
    context: tuple[Hit, ...]
    timings: Mapping[str, float] = field(default_factory=dict)
    dangling_markers: tuple[int, ...] = ()
    unsupported_markers: tuple[int, ...] = ()
    citations_inferred: bool = False
    support: Support | None = None

    @property
    def verdict(self) -> Verdict:
        """The support verdict; ``unsupported`` for an answer no validator has checked."""
        return self.support.verdict if self.support is not None else "unsupported"

    @property
    def is_grounded(self) -> bool:
        """True when every marker resolves to a passage and none is flagged unsupported."""
        return not self.dangling_markers and not self.unsupported_markers

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``answer`` (the text), ``citations``, ``context`` (the passages given, in marker order),
        ``timings``, the marker checks, and ``grounded``/``verdict`` (derived: ignored by :meth:`from_dict`)."""
        return {
            "answer": self.text,
            "citations": [c.to_dict() for c in self.citations],
            "context": [h.to_dict() for h in self.context],
            "timings": dict(self.timings),
            "dangling_markers": list(self.dangling_markers),
            "unsupported_markers": list(self.unsupported_markers),
            "citations_inferred": self.citations_inferred,
            "grounded": self.is_grounded,
            "verdict": self.verdict,
            "support": self.support.to_dict() if self.support is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Answer:
        """Inverse of :meth:`to_dict`."""
        data = _fields.mapping(data, "Answer")
        timings = _fields.submapping(data, "timings", "Answer")
        support = data.get("support")
        context = tuple(Hit.from_dict(h) for h in _fields.items(data, "context", "Answer"))
        return cls(
            text=_fields.text(data, "answer", "Answer"),
            citations=tuple(Citation.from_dict(c, context) for c in _fields.items(data, "citations", "Answer")),
            context=context,
            timings={str(k): _fields.number(v, f"timings.{k}", "Answer") for k, v in timings.items()},
            dangling_markers=_fields.integers(data, "dangling_markers", "Answer"),
            unsupported_markers=_fields.integers(data, "unsupported_markers", "Answer"),
            citations_inferred=_fields.flag(data, "citations_inferred", "Answer", False),
            support=Support.from_dict(support) if support is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message for a Generator."""

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ("system", "user", "assistant"):
            raise InvalidInputError(f"Message.role must be system, user or assistant, got {self.role!r}")


@dataclass(frozen=True, slots=True, eq=False)
class SparseVector:  # noqa: PLW1641 - arrays are mutable, so not hashable
    """A sparse vector: sorted unique int32 term ids with float32 weights."""

    indices: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        indices = np.asarray(self.indices, dtype=np.int32).ravel()
        values = np.asarray(self.values, dtype=np.float32).ravel()
        if indices.shape != values.shape:
            raise InvalidInputError("SparseVector: indices and values differ in length")
        if not np.all(np.isfinite(values)):
            raise InvalidInputError("SparseVector: values contain NaN or Inf")
        order = np.argsort(indices, kind="stable")
        indices, values = indices[order], values[order]
        if indices.size and np.any(np.diff(indices) == 0):
            raise InvalidInputError("SparseVector: duplicate indices")
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseVector):
            return NotImplemented
        return np.array_equal(self.indices, other.indices) and np.array_equal(self.values, other.values)

    def dot(self, other: SparseVector) -> float:
        """Sparse dot product."""
        common, ia, ib = np.intersect1d(self.indices, other.indices, assume_unique=True, return_indices=True)
        return float(np.dot(self.values[ia], other.values[ib])) if common.size else 0.0
