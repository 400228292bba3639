"""The JSON shapes ``ragloom search/ask --json`` print and ``ragloom serve`` returns (one definition for both).

A hit row::

    {"rank": 1, "score": 0.8123, "doc_id": "opinion.pdf", "page": 3, "start": 5120, "end": 6011,
     "text": "...", "source": "/abs/path/opinion.pdf", "chunk_id": "..."}

``doc_id`` is the file's path relative to the ingested folder, extension kept (``reports/q3.pdf``); ``page`` is
1-based (the first page of a PDF is 1) and ``null`` for documents without pages (text, Markdown, HTML);
``start``/``end`` are character offsets into the document's extracted text (``end`` exclusive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["answer_json", "hit_rows"]


def hit_rows(hits: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "rank": h.rank,
            "score": round(h.score, 4),
            "doc_id": h.chunk.doc_id,
            "page": h.chunk.page,
            "start": h.chunk.start,
            "end": h.chunk.end,
            "text": h.chunk.text,
            "source": h.chunk.source,
            "chunk_id": h.chunk.id,
        }
        for h in hits
    ]


def answer_json(answer: Any) -> dict[str, Any]:
    """An Answer as JSON: the text, its citations (marker → doc, page, char span), the context hits, timings."""
    return {
        "answer": answer.text,
        "citations": [
            {
                "marker": c.marker,
                "doc_id": c.doc_id,
                "page": c.page,
                "span": list(c.span),
                "source": c.hit.chunk.source,
            }
            for c in answer.citations
        ],
        "dangling_markers": list(answer.dangling_markers),
        "unsupported_markers": list(answer.unsupported_markers),
        "citations_inferred": answer.citations_inferred,
        "verdict": answer.verdict,
        "support": answer.support.to_dict() if answer.support is not None else None,
        "context": hit_rows(list(answer.context)),
        "timings": dict(answer.timings),
    }
