"""The JSON shapes ``ragloom search/ask --json`` print and ``ragloom serve`` returns: the value types' own
``to_dict()`` forms (:meth:`ragloom.Hit.to_dict`, :meth:`ragloom.Answer.to_dict`), the same everywhere.

A hit row::

    {"rank": 1, "score": 0.8123, "score_kind": "cosine", "retriever": "dense", "chunk_id": "...",
     "doc_id": "opinion.pdf", "source": "/abs/path/opinion.pdf", "page": 3, "start": 5120, "end": 6011,
     "text": "...", "metadata": {...}, "explanation": ""}

``doc_id`` is the file's path relative to the ingested folder, extension kept (``reports/q3.pdf``); ``page`` is
1-based (the first page of a PDF is 1) and ``null`` for documents without pages (text, Markdown, HTML);
``start``/``end`` are character offsets into the document's extracted text (``end`` exclusive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragloom.types import Answer, Hit

__all__ = ["answer_json", "hit_rows"]


def hit_rows(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """Hits in their JSON form."""
    return [h.to_dict() for h in hits]


def answer_json(answer: Answer) -> dict[str, Any]:
    """An Answer in its JSON form: the text, its citations (marker → doc, page, char span), the context hits,
    timings and the support verdict."""
    return answer.to_dict()
