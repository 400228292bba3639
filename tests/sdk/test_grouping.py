"""group_by="page": one hit per page, best chunk shown, the page scored from all its chunks."""

from __future__ import annotations

import pytest

from ragloom.errors import ConfigError
from ragloom.grouping import group_by_page
from ragloom.pipeline import Pipeline
from ragloom.types import Chunk, Document, Hit, Page


def _hit(doc: str, page: int | None, start: int, rank: int, score: float) -> Hit:
    chunk = Chunk(id=f"{doc}#{start}-{start + 5}", doc_id=doc, text="words", start=start, end=start + 5, page=page)
    return Hit(chunk=chunk, score=score, score_kind="cosine", retriever="dense", rank=rank)


def test_pages_gather_their_chunks_and_keep_the_best_one() -> None:
    hits = [
        _hit("a.pdf", 1, 0, 1, 0.9),
        _hit("a.pdf", 2, 100, 2, 0.8),
        _hit("a.pdf", 2, 110, 3, 0.7),
        _hit("a.pdf", 2, 120, 4, 0.6),
        _hit("notes.txt", None, 0, 5, 0.5),
        _hit("notes.txt", None, 50, 6, 0.4),
    ]
    grouped = group_by_page(hits, score="rrf")
    assert [(h.chunk.doc_id, h.chunk.page) for h in grouped][:2] == [("a.pdf", 2), ("a.pdf", 1)], (
        "three supporting chunks outrank one slightly better chunk"
    )
    assert grouped[0].chunk.start == 100, "the page's best-ranked chunk represents it"
    assert "3 chunk(s) at ranks 2, 3, 4" in grouped[0].explanation
    assert [h.rank for h in grouped] == [1, 2, 3, 4]
    assert sum(1 for h in grouped if h.chunk.doc_id == "notes.txt") == 2, "chunks without a page stay apart"
    expected = 1 / 62 + 1 / 63 + 1 / 64
    assert grouped[0].score == pytest.approx(expected) and grouped[0].score_kind == "rrf"


def test_max_score_is_the_default_and_plain_deduplication() -> None:
    hits = [_hit("a.pdf", 1, 0, 1, 0.9), _hit("a.pdf", 2, 100, 2, 0.8), _hit("a.pdf", 1, 10, 3, 0.7)]
    grouped = group_by_page(hits)
    assert [(h.chunk.page, h.score) for h in grouped] == [(1, 0.9), (2, 0.8)]
    assert "2 chunk(s) at ranks 1, 3" in grouped[0].explanation
    assert grouped[0].score_kind == "cosine"
    with pytest.raises(ConfigError, match="page score"):
        group_by_page(hits, score="sum")  # type: ignore[arg-type]


def test_pipeline_group_by_page(tiny_bert_dir) -> None:  # type: ignore[no-untyped-def]
    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder

    text = "Knead the dough. " * 30 + "The court held the statute. " * 30
    half = len("Knead the dough. " * 30)
    doc = Document(id="book.pdf", text=text, pages=(Page(1, 0, half), Page(2, half, len(text))))
    retriever = DenseRetriever(TransformersDenseEncoder(tiny_bert_dir), chunk_size=16)
    pipeline = Pipeline([retriever], k=5, candidates=20)
    pipeline.ingest([doc])
    by_chunk = pipeline.retrieve("knead the dough", k=5)
    by_page = pipeline.retrieve("knead the dough", k=5, group_by="page")
    assert len(by_chunk) == 5 and len({h.chunk.page for h in by_chunk}) < 5
    assert sorted(h.chunk.page for h in by_page) == [1, 2]
    with pytest.raises(ConfigError, match="group_by"):
        pipeline.retrieve("knead", group_by="doc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="group_by"):
        Pipeline([retriever], group_by="section")  # type: ignore[arg-type]
