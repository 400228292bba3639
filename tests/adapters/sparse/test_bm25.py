"""BM25Retriever (bm25s): contract suite, stemming and stopwords, rebuild on delete, pickle-free persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragloom.adapters.sparse import BM25Retriever, tokenizer_chunker
from ragloom.chunking import OffsetTokenizer, TokenChunker
from ragloom.errors import ConfigError, EncoderMismatchError, IndexCorruptError
from ragloom.testing import CONTRACT_DOCUMENTS, RetrieverContract
from ragloom.types import Document


class TestBM25(RetrieverContract):
    def make_retriever(self, path: Path) -> BM25Retriever:
        return BM25Retriever(path, chunk_size=24, overlap=4)

    def make_mismatched_retriever(self, path: Path) -> BM25Retriever:
        return BM25Retriever(path, chunk_size=24, overlap=4, stemmer=None)


class TestBM25WithModelChunks(TestBM25):
    @pytest.fixture(autouse=True)
    def _chunker(self, tiny_bert_dir: Path) -> None:
        self.chunker = tokenizer_chunker(tiny_bert_dir, chunk_size=24, overlap=4)

    def make_retriever(self, path: Path) -> BM25Retriever:
        return BM25Retriever(path, chunker=self.chunker)

    def make_mismatched_retriever(self, path: Path) -> BM25Retriever:
        return BM25Retriever(path, chunker=self.chunker, k1=0.9)


def test_stemming_stopwords_and_explanations(tmp_path: Path) -> None:
    with BM25Retriever(tmp_path / "idx") as retriever:
        retriever.add(list(CONTRACT_DOCUMENTS))
        (hit,) = retriever.search("observing galaxies", k=1)
        assert hit.chunk.doc_id == "astro" and hit.score_kind == "bm25" and hit.retriever == "bm25"
        assert hit.explanation.startswith("terms: ") and "galaxi" in hit.explanation  # Snowball stems
        assert retriever.search("the and of which", k=5) == [], "stopwords only"
        assert retriever.search("xyzzy plugh", k=5) == [], "no known terms"
        assert [h.chunk.doc_id for h in retriever.search("Straße crème brûlée", k=2)] == ["unicode"]
        assert [h.chunk.doc_id for h in retriever.search("東京の喫茶店は静かです", k=2)] == ["unicode"]


def test_delete_rebuilds_and_reload_restores(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    with BM25Retriever(path) as retriever:
        retriever.add(list(CONTRACT_DOCUMENTS))
        assert retriever.delete(["astro"]) == 1 and retriever.delete(["astro"]) == 0
        assert retriever.search("galaxy quasars", k=5) == []
        retriever.add([Document(id="bake", text="Sourdough bread needs a starter.")])  # replaces "bake"
        expected = [(h.chunk.id, round(h.score, 5)) for h in retriever.search("bread kitchen court", k=5)]
    with BM25Retriever(path) as reopened:
        assert reopened.doc_ids() == {"bake", "law", "unicode", "paged"}
        assert [(h.chunk.id, round(h.score, 5)) for h in reopened.search("bread kitchen court", k=5)] == expected
        reopened.delete(["bake", "law", "unicode", "paged"])
        assert len(reopened) == 0 and reopened.search("bread", k=3) == []
    assert len(BM25Retriever(path)) == 0


def test_files_are_json_and_npy_only_and_load_without_pickle(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    with BM25Retriever(path) as retriever:
        retriever.add(list(CONTRACT_DOCUMENTS))
    state = json.loads((path / "bm25" / "current.json").read_text())
    generation = path / "bm25" / f"gen-{state['generation']:06d}"
    assert sorted(p.name for p in (path / "bm25").iterdir()) == ["current.json", generation.name]
    for file in generation.iterdir():
        assert file.suffix in (".json", ".jsonl", ".npy")
        if file.suffix == ".npy":
            np.load(file, allow_pickle=False)
    (generation / "chunks.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="sha256"):
        BM25Retriever(path)


def test_settings_are_the_fingerprint(tmp_path: Path) -> None:
    with BM25Retriever(tmp_path / "idx") as retriever:
        retriever.add([CONTRACT_DOCUMENTS[0]])
    with pytest.raises(EncoderMismatchError, match="stopwords"):
        BM25Retriever(tmp_path / "idx", stopwords=["the", "a"])
    manifest = tmp_path / "idx" / "manifest.json"
    data = json.loads(manifest.read_text())
    assert data["encoder"]["stemmer_version"] and data["encoder"]["stopwords"].startswith("en (")
    data["encoder"]["stemmer_version"] = "0.0.1"  # built by another Snowball release: stems differ
    manifest.write_text(json.dumps(data))
    with pytest.raises(EncoderMismatchError, match="stemmer_version"):
        BM25Retriever(tmp_path / "idx")
    with pytest.raises(ConfigError, match="Snowball"):
        BM25Retriever(stemmer="klingon")


def test_model_chunks_match_the_dense_and_splade_chunk_ids(tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    chunker = tokenizer_chunker(tiny_bert_dir)
    assert chunker.chunk_size == 62  # the tiny model's 64 tokens minus [CLS] and [SEP]
    same = TokenChunker(OffsetTokenizer(AutoTokenizer.from_pretrained(tiny_bert_dir)), chunk_size=62, overlap=31)
    text = " ".join(f"galaxy {i} lava flows" for i in range(60))
    document = Document(id="d", text=text)
    retriever = BM25Retriever(chunker=chunker)
    assert [c.id for c in retriever.add([document])] == [c.id for c in same.chunk(document)]
    with pytest.raises(ConfigError, match="capacity"):
        tokenizer_chunker(tiny_bert_dir, chunk_size=100)
