"""SPLADE encoder and SparseRetriever: contract suite on tiny masked LMs, pooling arithmetic, query modes, and the
real splade-tiny checkpoint."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from ragloom.adapters.sparse import SparseRetriever, SpladeEncoder
from ragloom.errors import ConfigError, EncoderMismatchError, InputTooLongError, TruncationWarning
from ragloom.testing import CONTRACT_DOCUMENTS, RetrieverContract
from ragloom.types import Document


@pytest.fixture(scope="module")
def encoder(lexical_splade_dir: Path) -> SpladeEncoder:
    return SpladeEncoder(lexical_splade_dir, batch_size=2)


@pytest.fixture(scope="module")
def other_encoder(lexical_splade_other_dir: Path) -> SpladeEncoder:
    return SpladeEncoder(lexical_splade_other_dir, batch_size=2)


class TestSpladeRetriever(RetrieverContract):
    @pytest.fixture(autouse=True)
    def _encoders(self, encoder: SpladeEncoder, other_encoder: SpladeEncoder) -> None:
        self.encoder, self.other = encoder, other_encoder

    def make_retriever(self, path: Path) -> SparseRetriever:
        return SparseRetriever(self.encoder, path, chunk_size=24, overlap=4)

    def make_mismatched_retriever(self, path: Path) -> SparseRetriever:
        return SparseRetriever(self.other, path, chunk_size=24, overlap=4)


def _terms(encoder: SpladeEncoder, vector) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {encoder.term(int(i)): float(w) for i, w in zip(vector.indices, vector.values)}


def test_lexical_model_weighs_each_wordpiece(encoder: SpladeEncoder) -> None:
    (vector,) = encoder.encode_documents(["The cat sat on the mat"])
    terms = _terms(encoder, vector)
    assert set(terms) == {"the", "cat", "sat", "on", "mat"}, "special tokens are dropped"
    assert len(set(np.round(list(terms.values()), 4))) == 1


def _reference(model_dir: Path, texts: list[str]) -> list[dict[int, float]]:
    """SPLADE straight from the definition, one text at a time: full logits, log(1 + ReLU), max over tokens."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    out = []
    for text in texts:
        with torch.inference_mode():
            logits = model(**tokenizer(text, return_tensors="pt")).logits[0]
        weights = torch.log1p(torch.relu(logits)).max(dim=0).values
        weights[tokenizer.all_special_ids] = 0
        out.append({int(i): float(weights[i]) for i in torch.nonzero(weights).flatten()})
    return out


def test_sorted_batched_encoding_matches_the_definition(random_mlm_dir: Path) -> None:
    encoder = SpladeEncoder(random_mlm_dir, batch_size=2)
    texts = ["a cat sat", "the telescope observed a distant galaxy cluster bending light", "bread", "lava flows"]
    for reference, vector in zip(_reference(random_mlm_dir, texts), encoder.encode_documents(texts)):
        assert vector.indices.tolist() == sorted(reference)
        np.testing.assert_allclose(vector.values, [reference[i] for i in sorted(reference)], rtol=1e-5, atol=1e-6)
    assert encoder.encode_documents([]) == []


def test_top_k_pruning_keeps_the_largest_weights(random_mlm_dir: Path) -> None:
    full = SpladeEncoder(random_mlm_dir).encode_documents(["galaxy lensing bread"])[0]
    pruned_encoder = SpladeEncoder(random_mlm_dir, doc_top_k=5, query_top_k=3)
    pruned = pruned_encoder.encode_documents(["galaxy lensing bread"])[0]
    assert len(pruned) == 5 and set(pruned.indices) <= set(full.indices)
    assert pruned.values.min() >= np.sort(full.values)[-5] - 1e-6
    assert len(pruned_encoder.encode_queries(["galaxy lensing bread"])[0]) == 3
    assert pruned_encoder.fingerprint["doc_top_k"] == 5
    with pytest.raises(ConfigError):
        SpladeEncoder(random_mlm_dir, doc_top_k=0)


def test_inference_free_query_mode(lexical_splade_dir: Path, tmp_path: Path) -> None:
    plain = SpladeEncoder(lexical_splade_dir, query_mode="tokens")
    (vector,) = plain.encode_queries(["galaxy galaxy lensing xyzzy"])
    terms = _terms(plain, vector)
    assert terms["galaxy"] == terms["lensing"] == 1.0 and "[UNK]" not in terms and "[CLS]" not in terms
    assert plain.fingerprint["query_weights"] == "uniform"
    idf = tmp_path / "idf.json"
    idf.write_text(json.dumps({"galaxy": 3.5, "lensing": 0.5}), encoding="utf-8")
    weighted = SpladeEncoder(lexical_splade_dir, query_mode="tokens", query_weights=idf)
    terms = _terms(weighted, weighted.encode_queries(["galaxy lensing cat"])[0])
    assert terms == {"galaxy": 3.5, "lensing": 0.5, "cat": 1.0}
    assert weighted.fingerprint["query_weights"] != plain.fingerprint["query_weights"]
    with pytest.raises(ConfigError):
        SpladeEncoder(lexical_splade_dir, query_mode="tokens", query_model=lexical_splade_dir)


def test_separate_query_model(lexical_splade_dir: Path, lexical_splade_other_dir: Path, random_mlm_dir: Path) -> None:
    encoder = SpladeEncoder(lexical_splade_dir, query_model=random_mlm_dir)
    assert encoder.fingerprint["query_model"].startswith(random_mlm_dir.name)
    query = encoder.encode_queries(["galaxy"])[0]
    assert query == SpladeEncoder(random_mlm_dir).encode_queries(["galaxy"])[0]
    assert encoder.encode_documents(["galaxy"])[0] == SpladeEncoder(lexical_splade_dir).encode_documents(["galaxy"])[0]
    assert SpladeEncoder(lexical_splade_dir, query_model=lexical_splade_other_dir).fingerprint != encoder.fingerprint


def test_too_long_document_is_an_error_and_query_warns(encoder: SpladeEncoder) -> None:
    long_text = " ".join(["galaxy"] * 200)
    with pytest.raises(InputTooLongError, match="limit of 64 tokens"):
        encoder.encode_documents([long_text])
    with pytest.warns(TruncationWarning, match="cut"):
        (vector,) = encoder.encode_queries([long_text])
    assert _terms(encoder, vector).keys() == {"galaxy"}


def test_long_document_is_chunked_not_cut(encoder: SpladeEncoder) -> None:
    text = " ".join(f"galaxy {i} lava" for i in range(120)) + " quarks"
    retriever = SparseRetriever(encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        chunks = retriever.add([Document(id="long", text=text)])
    assert len(chunks) > 3 and all(text[c.start : c.end] == c.text for c in chunks)
    (hit,) = retriever.search("quarks", k=1)
    assert hit.chunk.end == len(text), "the last words are indexed"


def test_hits_explain_their_terms_and_unknown_queries_find_nothing(encoder: SpladeEncoder, tmp_path: Path) -> None:
    with SparseRetriever(encoder, tmp_path / "idx") as retriever:
        retriever.add(list(CONTRACT_DOCUMENTS))
        (hit, *_) = retriever.search("galaxy quasars", k=3)
        assert hit.chunk.doc_id == "astro" and hit.score_kind == "splade" and hit.retriever == "splade"
        assert hit.explanation.startswith("terms: ") and "galaxy" in hit.explanation and "quasars" in hit.explanation
        assert retriever.search("quarks gluons", k=5) == [], "no document holds these terms"
        (hit, *_) = retriever.search("Zürich café", k=2)
        assert hit.chunk.doc_id == "unicode" and "café" in hit.chunk.text


def test_delete_reload_and_compact(encoder: SpladeEncoder, tmp_path: Path) -> None:
    path = tmp_path / "idx"
    with SparseRetriever(encoder, path, chunk_size=24, overlap=4) as retriever:
        retriever.add(list(CONTRACT_DOCUMENTS))
        retriever.delete(["astro", "law"])
        expected = [(h.chunk.id, round(h.score, 5)) for h in retriever.search("bread court galaxy volcanoes", k=5)]
    with SparseRetriever(encoder, path, chunk_size=24, overlap=4) as reopened:
        assert reopened.doc_ids() == {"bake", "unicode", "paged"}
        assert [
            (h.chunk.id, round(h.score, 5)) for h in reopened.search("bread court galaxy volcanoes", k=5)
        ] == expected
        reopened.compact()
        assert reopened.store.stats["segments"] == 1
        assert [
            (h.chunk.id, round(h.score, 5)) for h in reopened.search("bread court galaxy volcanoes", k=5)
        ] == expected


def test_chunker_settings_are_part_of_the_manifest(encoder: SpladeEncoder, tmp_path: Path) -> None:
    with SparseRetriever(encoder, tmp_path / "idx", chunk_size=24) as retriever:
        retriever.add([CONTRACT_DOCUMENTS[0]])
    with pytest.raises(EncoderMismatchError, match="chunk_size"):
        SparseRetriever(encoder, tmp_path / "idx", chunk_size=30)
    with pytest.raises(ConfigError):
        SparseRetriever(encoder, chunk_size=500)


@pytest.mark.realmodel
def test_real_splade_tiny(splade_tiny_dir: Path) -> None:
    encoder = SpladeEncoder(splade_tiny_dir)
    assert len(encoder.tokenizer) == 30522 and encoder.fingerprint["vocab_size"] == 30522
    (query,) = encoder.encode_queries(["what causes diabetes"])
    top = [encoder.term(int(i)) for i in query.indices[np.argsort(-query.values)][:3]]
    assert {"diabetes", "causes"} <= set(top), "SPLADE expands the query with its own terms, largest first"
    retriever = SparseRetriever(encoder)
    retriever.add(list(CONTRACT_DOCUMENTS))
    (hit, *_) = retriever.search("gravitational lensing of galaxies", k=3)
    assert hit.chunk.doc_id == "astro" and "galaxy" in hit.explanation
