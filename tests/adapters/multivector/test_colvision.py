"""ColPali / ColQwen2 through transformers' native classes: encode, index PDFs, search, delete, reload, refuse."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

from ragloom.adapters.multivector import ColPaliRetriever, ColVisionEncoder, MultiVectorSettings, RenderSettings
from ragloom.errors import EncoderMismatchError, IndexLockedError, RagloomWarning
from ragloom.fusion import ReciprocalRankFusion
from ragloom.loaders import load_file
from ragloom.types import Chunk, Document, Hit

RENDER = RenderSettings(dpi=24)


@pytest.fixture(scope="module", params=["colpali", "colqwen2"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"tiny_{request.param}_dir")


@pytest.fixture(scope="module")
def encoder(model_dir: Path) -> ColVisionEncoder:
    return ColVisionEncoder(model_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def documents(small_pdfs: list[Path]) -> list[Document]:
    return [load_file(p) for p in small_pdfs]


def test_encoder_outputs_unit_vectors_without_padding(encoder: ColVisionEncoder) -> None:
    from PIL import Image

    queries = encoder.encode_queries(["what did the court hold", "statute"])
    assert [q.shape[1] for q in queries] == [16, 16] and queries[0].shape[0] > queries[1].shape[0]
    images = [Image.new("RGB", (40, 60), "white"), Image.new("L", (70, 30), 128)]
    pages = encoder.encode_documents(images)
    assert len(pages) == 2 and all(p.dtype == np.float32 and p.shape[1] == 16 for p in pages)
    for matrix in (*queries, *pages):
        assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)
    assert encoder.fingerprint["family"] in ("colpali", "colqwen2") and encoder.dim == 16


def test_index_search_delete_reload(tmp_path: Path, encoder: ColVisionEncoder, documents: list[Document]) -> None:
    path = tmp_path / "index"
    retriever = ColPaliRetriever(encoder, path, render=RENDER)
    added = retriever.add(documents)
    assert len(added) == 6 and len(retriever) == 6
    first = added[0]
    assert first.id == f"{documents[0].id}#p1" and first.page == 1
    assert first.text == documents[0].page_text(1) and first.metadata["unit"] == "page_image"
    hits = retriever.search("what did the court hold", k=4)
    assert len(hits) == 4 and [h.rank for h in hits] == [1, 2, 3, 4]
    assert all(h.score_kind == "maxsim" and h.chunk.page in (1, 2) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    many = retriever.search_many(["what did the court hold", "statute"], k=4)
    assert [h.chunk.id for h in many[0]] == [h.chunk.id for h in hits]
    assert [h.chunk.id for h in asyncio.run(retriever.asearch("statute", k=4))] == [h.chunk.id for h in many[1]]
    assert retriever.delete([documents[1].id]) == 2
    assert documents[1].id not in retriever.doc_ids() and len(retriever) == 4
    kept = [(h.chunk.id, round(h.score, 4)) for h in retriever.search("statute", k=3)]
    retriever.close()
    reopened = ColPaliRetriever(encoder, path, render=RENDER)
    try:
        assert len(reopened) == 4
        assert [(h.chunk.id, round(h.score, 4)) for h in reopened.search("statute", k=3)] == kept
        reopened.add(documents[:1])  # re-adding replaces, never duplicates
        assert len(reopened) == 4
    finally:
        reopened.close()


def test_mismatch_is_refused(
    tmp_path: Path, encoder: ColVisionEncoder, documents: list[Document], tiny_colpali_other_dir: Path, model_dir: Path
) -> None:
    path = tmp_path / "index"
    with ColPaliRetriever(encoder, path, render=RENDER) as retriever:
        retriever.add(documents[:1])
    if model_dir.name.startswith("tiny-colpali"):
        other = ColVisionEncoder(tiny_colpali_other_dir, device="cpu")  # same shapes, other weights
        with pytest.raises(EncoderMismatchError, match="weights"):
            ColPaliRetriever(other, path, render=RENDER)
    with pytest.raises(EncoderMismatchError, match="dpi"):
        ColPaliRetriever(encoder, path, render=RenderSettings(dpi=48))
    with pytest.raises(EncoderMismatchError, match="pool_factor"):
        ColPaliRetriever(encoder, path, render=RENDER, settings=MultiVectorSettings(pool_factor=2))


def test_pooling_keeps_the_expected_fraction(encoder: ColVisionEncoder, documents: list[Document]) -> None:
    from ragloom.adapters.multivector.pages import iter_pdf_pages

    full = [encoder.encode_documents([p.image])[0].shape[0] for p in iter_pdf_pages(documents[0].source, RENDER)]
    retriever = ColPaliRetriever(encoder, render=RENDER, settings=MultiVectorSettings(pool_factor=3))
    retriever.add(documents[:1])
    assert retriever.store.token_count() == sum(math.ceil(n / 3) for n in full)
    assert retriever.search("court", k=1)[0].chunk.doc_id == documents[0].id


def test_attention_pruning(model_dir: Path, documents: list[Document]) -> None:
    encoder = ColVisionEncoder(model_dir, device="cpu", capture_attention=True)
    ((vectors, importance),) = encoder.encode_documents_with_importance([_first_page(documents[0])])
    assert importance.shape == (vectors.shape[0],) and np.all(importance >= 0)
    settings = MultiVectorSettings(prune_k=0.0, prune_min_tokens=4)
    retriever = ColPaliRetriever(encoder, render=RENDER, settings=settings)
    retriever.add(documents[:1])
    assert 8 <= retriever.store.token_count() < 2 * vectors.shape[0]


def _first_page(document: Document) -> object:
    from ragloom.adapters.multivector.pages import iter_pdf_pages

    return next(iter(iter_pdf_pages(document.source, RENDER))).image


def test_page_hits_fuse_with_text_hits(encoder: ColVisionEncoder, documents: list[Document]) -> None:
    retriever = ColPaliRetriever(encoder, render=RENDER)
    retriever.add(documents)
    page_hits = retriever.search("court", k=6)
    doc = documents[0]
    page = doc.pages[1]
    text_chunk = Chunk(
        id=f"{doc.id}#{page.start}-{page.start + 40}", doc_id=doc.id, text=doc.text[page.start : page.start + 40],
        start=page.start, end=page.start + 40, page=2, source=doc.source,
    )  # fmt: skip
    text_hits = [Hit(chunk=text_chunk, score=3.0, score_kind="cosine", retriever="dense", rank=1)]
    fused = ReciprocalRankFusion(key="page").fuse({"pages": page_hits, "dense": text_hits}, k=10)
    assert len(fused) == 6  # the text chunk merged into its page instead of adding a seventh hit
    merged = next(h for h in fused if h.chunk.doc_id == doc.id and h.chunk.page == 2)
    assert "pages#" in merged.explanation and "dense#" in merged.explanation
    assert fused[0] is merged or merged.score > min(h.score for h in fused)


def test_non_pdf_documents_are_skipped_with_a_warning(encoder: ColVisionEncoder, documents: list[Document]) -> None:
    retriever = ColPaliRetriever(encoder, render=RENDER)
    with pytest.warns(RagloomWarning, match="not a PDF"):
        added = retriever.add([Document(id="notes", text="plain text", source="notes.txt"), documents[0]])
    assert len(added) == 2 and retriever.doc_ids() == {documents[0].id}


def test_second_writer_is_refused(tmp_path: Path, encoder: ColVisionEncoder, documents: list[Document]) -> None:
    with ColPaliRetriever(encoder, tmp_path / "i", render=RENDER) as first:
        first.add(documents[:1])
        with ColPaliRetriever(encoder, tmp_path / "i", render=RENDER) as second:
            assert len(second) == 2  # readers are fine
            with pytest.raises(IndexLockedError):
                second.add(documents[1:2])


def test_registry_builds_the_retriever(tmp_path: Path, model_dir: Path, documents: list[Document]) -> None:
    from ragloom.recipes.config import RetrieverSpec, build_retriever

    spec = RetrieverSpec(
        name="pages", kind="colqwen2", model=str(model_dir), store="multivector",
        options={"dpi": 24, "first_stage": "muvera", "candidates": 2, "device": "cpu"},
    )  # fmt: skip
    retriever = build_retriever(spec, tmp_path)
    try:
        retriever.add(documents)
        hits = retriever.search("court", k=2)
        assert len(hits) == 2 and (tmp_path / "pages" / "manifest.json").exists()
    finally:
        retriever.close()  # type: ignore[attr-defined]


def test_other_model_types_and_missing_models_are_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from ragloom.errors import ConfigError, ModelNotFoundError

    with pytest.raises(ConfigError, match="colqwen2"):
        ColVisionEncoder(tiny_bert_dir, device="cpu")
    with pytest.raises(ModelNotFoundError):
        ColVisionEncoder("vidore/colqwen2-v1.0-hf")  # not cached, downloads not allowed: no network touched
