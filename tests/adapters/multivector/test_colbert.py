"""ColBERT text retrieval: the retriever contract, encoder behaviour, compression and first stages."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from ragloom.adapters.multivector import ColBERTEncoder, ColBERTRetriever, MultiVectorSettings
from ragloom.errors import ConfigError, TruncationWarning
from ragloom.testing import CONTRACT_DOCUMENTS, RetrieverContract


@pytest.fixture(scope="module")
def colbert(tiny_colbert_dir: Path) -> ColBERTEncoder:
    return ColBERTEncoder(tiny_colbert_dir, device="cpu")


@pytest.fixture(scope="module")
def colbert_other(tiny_colbert_other_dir: Path) -> ColBERTEncoder:
    return ColBERTEncoder(tiny_colbert_other_dir, device="cpu")


class TestColBERTContract(RetrieverContract):
    @pytest.fixture(autouse=True)
    def _encoders(self, colbert: ColBERTEncoder, colbert_other: ColBERTEncoder) -> None:
        self.encoder, self.other = colbert, colbert_other

    def make_retriever(self, path: Path) -> ColBERTRetriever:
        return ColBERTRetriever(self.encoder, path, chunk_size=24, overlap=4)

    def make_mismatched_retriever(self, path: Path) -> ColBERTRetriever:
        return ColBERTRetriever(self.other, path, chunk_size=24, overlap=4)


class TestColBERTMuveraContract(TestColBERTContract):
    """The same contract with the MUVERA first stage (few candidates, so the first stage really filters)."""

    def make_retriever(self, path: Path) -> ColBERTRetriever:
        settings = MultiVectorSettings(first_stage="muvera", candidates=3)
        return ColBERTRetriever(self.encoder, path, chunk_size=24, overlap=4, settings=settings)


def test_encoder_reads_pylate_settings(colbert: ColBERTEncoder) -> None:
    assert (colbert.query_marker, colbert.document_marker) == ("[Q]", "[D]")
    assert (colbert.query_length, colbert.document_length, colbert.dim) == (24, 48, 16)
    (query,) = colbert.encode_queries(["court statute"])
    assert query.shape == (24, 16)  # padded with [MASK] to query_length (query augmentation)
    assert np.allclose(np.linalg.norm(query, axis=1), 1.0, atol=1e-5)
    plain, punctuated = colbert.encode_documents(["the court held", "the court held !!! ;;"])
    assert plain.shape == punctuated.shape == (3 + 3, 16)  # [CLS] [D] three words [SEP]; punctuation skipped


def test_long_inputs_are_never_cut_silently(colbert: ColBERTEncoder) -> None:
    long_text = " ".join(["court statute contracts"] * 40)  # 120 words, well over document_length 48
    (vectors,) = colbert.encode_documents([long_text])
    assert vectors.shape[0] > colbert.document_length  # every window's vectors are kept
    with pytest.warns(TruncationWarning, match="cut"):
        colbert.encode_queries([long_text])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        colbert.encode_queries(["short query"])


def test_pooling_and_pruning(tmp_path: Path, tiny_colbert_dir: Path) -> None:
    pruning = ColBERTEncoder(tiny_colbert_dir, device="cpu", capture_attention=True)
    full = ColBERTRetriever(pruning, chunk_size=24)
    full.add(list(CONTRACT_DOCUMENTS))
    pooled = ColBERTRetriever(pruning, chunk_size=24, settings=MultiVectorSettings(pool_factor=2))
    pooled.add(list(CONTRACT_DOCUMENTS))
    pruned = ColBERTRetriever(pruning, chunk_size=24, settings=MultiVectorSettings(prune_k=0.0, prune_min_tokens=2))
    pruned.add(list(CONTRACT_DOCUMENTS))
    assert len(full) == len(pooled) == len(pruned)
    per_chunk = [s.lengths for s in full.store._segments]
    assert pooled.store.token_count() == sum(int(np.ceil(n / 2)) for lengths in per_chunk for n in lengths)
    assert len(full) * 2 <= pruned.store.token_count() < full.store.token_count()
    assert pruned.search(CONTRACT_DOCUMENTS[2].text, k=1)[0].chunk.doc_id == "law"
    with pytest.raises(ConfigError, match="capture_attention"):
        ColBERTEncoder(tiny_colbert_dir, device="cpu").encode_documents_with_importance(["x"])


def test_colbert_registry_and_memory_estimate(tmp_path: Path, tiny_colbert_dir: Path) -> None:
    from ragloom.recipes.config import RetrieverSpec, build_retriever

    spec = RetrieverSpec(
        name="colbert", kind="colbert", model=str(tiny_colbert_dir), store="memory", chunk_size=24,
        options={"pool_factor": 2, "first_stage": "int8", "candidates": 2, "device": "cpu"},
    )  # fmt: skip
    retriever = build_retriever(spec, tmp_path)
    try:
        retriever.add(list(CONTRACT_DOCUMENTS))
        assert retriever.search(CONTRACT_DOCUMENTS[2].text, k=1)[0].chunk.doc_id == "law"
        estimate = retriever.estimate_memory(100, tokens_per_page=40)  # type: ignore[attr-defined]
        assert estimate.tokens_per_page == 20 and estimate.first_stage_bytes == 100 * 20 * (16 + 4)
    finally:
        retriever.close()  # type: ignore[attr-defined]
