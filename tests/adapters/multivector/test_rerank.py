"""The MaxSim reranker over text hits (ColBERT) and page hits (ColPali)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragloom.adapters.multivector import ColBERTEncoder, ColVisionEncoder, MaxSimReranker, RenderSettings, maxsim
from ragloom.errors import InvalidInputError
from ragloom.loaders import load_file
from ragloom.protocols import Reranker
from ragloom.testing import CONTRACT_DOCUMENTS
from ragloom.types import Chunk, Hit


def _hits(chunks: list[Chunk]) -> list[Hit]:
    return [
        Hit(chunk=c, score=1.0 / rank, score_kind="cosine", retriever="dense", rank=rank)
        for rank, c in enumerate(chunks, start=1)
    ]


def test_maxsim_function() -> None:
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    d = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert maxsim(q, d) == pytest.approx(1.0 + 0.5)
    with pytest.raises(InvalidInputError):
        maxsim(q, np.zeros((2, 3)))


def test_colbert_reranks_text_hits(tiny_colbert_dir: Path) -> None:
    reranker = MaxSimReranker(ColBERTEncoder(tiny_colbert_dir, device="cpu"))
    assert isinstance(reranker, Reranker)
    docs = [d for d in CONTRACT_DOCUMENTS if not d.pages]
    chunks = [Chunk(id=d.id, doc_id=d.id, text=d.text, start=0, end=len(d.text)) for d in reversed(docs)]
    long_text = " ".join(["court statute contracts"] * 40)  # longer than the encoder's document length
    chunks.append(Chunk(id="long", doc_id="long", text=long_text, start=0, end=len(long_text)))
    reranked = reranker.rerank(CONTRACT_DOCUMENTS[2].text, _hits(chunks), k=3)
    assert [h.rank for h in reranked] == [1, 2, 3] and reranked[0].chunk.doc_id in ("law", "long")
    assert all(h.score_kind == "maxsim" and "dense #" in h.explanation for h in reranked)
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)
    assert reranker.rerank("anything", [], k=3) == []


def test_colpali_reranks_page_hits(tiny_colpali_dir: Path, small_pdfs: list[Path]) -> None:
    reranker = MaxSimReranker(ColVisionEncoder(tiny_colpali_dir, device="cpu"), render=RenderSettings(dpi=24))
    docs = [load_file(p) for p in small_pdfs[:2]]
    chunks = [
        Chunk(id=f"{d.id}#{p.start}-{p.end}", doc_id=d.id, text=d.text[p.start : p.end], start=p.start, end=p.end,
              page=p.number, source=d.source)
        for d in docs for p in d.pages
    ]  # fmt: skip
    reranked = reranker.rerank("what did the court hold", _hits(chunks), k=3)
    assert len(reranked) == 3 and {h.chunk.page for h in reranked} <= {1, 2}
    no_page = Chunk(id="x", doc_id="x", text="t", start=0, end=1, source="notes.txt")
    with pytest.raises(InvalidInputError, match="page"):
        reranker.rerank("court", _hits([no_page]), k=1)
