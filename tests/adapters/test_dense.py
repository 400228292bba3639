"""Dense encoder and retriever: contract suite on tiny random BERTs (memory and chroma stores) + real MiniLM."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.errors import ConfigError, EncoderMismatchError, InputTooLongError, TruncationWarning
from ragloom.testing import CONTRACT_DOCUMENTS, RetrieverContract
from ragloom.types import Document


class TestDenseMemory(RetrieverContract):
    @pytest.fixture(autouse=True)
    def _encoders(self, encoder: TransformersDenseEncoder, other_encoder: TransformersDenseEncoder) -> None:
        self.encoder, self.other = encoder, other_encoder

    def make_retriever(self, path: Path) -> DenseRetriever:
        return DenseRetriever(self.encoder, path, store="memory", chunk_size=24, overlap=4)

    def make_mismatched_retriever(self, path: Path) -> DenseRetriever:
        return DenseRetriever(self.other, path, store="memory", chunk_size=24, overlap=4)


class TestDenseChroma(TestDenseMemory):
    def make_retriever(self, path: Path) -> DenseRetriever:
        return DenseRetriever(self.encoder, path, store="chroma", chunk_size=24, overlap=4)

    def make_mismatched_retriever(self, path: Path) -> DenseRetriever:
        return DenseRetriever(self.other, path, store="chroma", chunk_size=24, overlap=4)


def _reference(model_dir: Path, texts: list[str], pooling: str = "mean") -> np.ndarray:
    """Straightforward per-text encoding, no batching tricks: what sorted batching must reproduce."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    rows = []
    with torch.inference_mode():
        for text in texts:
            features = tokenizer(text, return_tensors="pt")
            hidden = model(**features).last_hidden_state[0]
            vector = hidden[0] if pooling == "cls" else hidden.mean(dim=0)
            rows.append(torch.nn.functional.normalize(vector, dim=0).numpy())
    return np.stack(rows)


def test_batched_sorted_encoding_matches_reference(tiny_bert_dir: Path, encoder: TransformersDenseEncoder) -> None:
    texts = [
        "a cat sat",
        "the telescope observed a distant galaxy cluster bending light",
        "bread",
        "lava flows",
    ]
    got = encoder.encode_documents(texts)
    assert got.dtype == np.float32 and got.shape == (4, 32)
    np.testing.assert_allclose(got, _reference(tiny_bert_dir, texts), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_cls_pooling_and_prefixes(tiny_bert_dir: Path) -> None:
    enc = TransformersDenseEncoder(
        tiny_bert_dir, pooling="cls", query_prefix="query: ", document_prefix="", dtype="float32"
    )
    np.testing.assert_allclose(
        enc.encode_documents(["the cat"]), _reference(tiny_bert_dir, ["the cat"], "cls"), atol=1e-5
    )
    assert not np.allclose(enc.encode_queries(["the cat"]), enc.encode_documents(["the cat"]))
    assert enc.fingerprint["query_prefix"] == "query: "


def test_matryoshka_truncation(tiny_bert_dir: Path) -> None:
    enc = TransformersDenseEncoder(tiny_bert_dir, truncate_dim=8)
    vectors = enc.encode_documents(["the cat sat on the mat"])
    assert vectors.shape == (1, 8) and enc.dim == 8
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError):
        TransformersDenseEncoder(tiny_bert_dir, truncate_dim=999)


def test_too_long_document_is_an_error_and_query_warns(encoder: TransformersDenseEncoder) -> None:
    long_text = " ".join(["galaxy"] * 200)
    with pytest.raises(InputTooLongError, match=r"limit of 64 tokens"):
        encoder.encode_documents([long_text])
    with pytest.warns(TruncationWarning, match=r"cut"):
        vectors = encoder.encode_queries([long_text])
    assert vectors.shape == (1, 32)


def test_long_document_is_chunked_not_cut(encoder: TransformersDenseEncoder) -> None:
    text = " ".join(f"galaxy {i} lava" for i in range(120))
    retriever = DenseRetriever(encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        chunks = retriever.add([Document(id="long", text=text)])
    assert len(chunks) > 3
    covered = np.zeros(len(text), dtype=bool)
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        covered[chunk.start : chunk.end] = True
    assert covered[[i for i, ch in enumerate(text) if not ch.isspace()]].all(), "every character is indexed"


def test_same_dimension_other_weights_is_refused(tmp_path: Path, encoder, other_encoder) -> None:
    with DenseRetriever(encoder, tmp_path / "idx") as retriever:
        retriever.add(list(CONTRACT_DOCUMENTS[:2]))
    with pytest.raises(EncoderMismatchError) as info:
        DenseRetriever(other_encoder, tmp_path / "idx")
    message = str(info.value)
    assert "encoder.weights" in message and "index has" in message


def test_other_chunker_is_refused(tmp_path: Path, encoder) -> None:
    with DenseRetriever(encoder, tmp_path / "idx", chunk_size=24) as retriever:
        retriever.add(list(CONTRACT_DOCUMENTS[:2]))
    with pytest.raises(EncoderMismatchError, match=r"chunker\.chunk_size"):
        DenseRetriever(encoder, tmp_path / "idx", chunk_size=20)


def test_store_kind_must_match(tmp_path: Path, encoder) -> None:
    with DenseRetriever(encoder, tmp_path / "idx", store="memory") as retriever:
        retriever.add(list(CONTRACT_DOCUMENTS[:1]))
    with pytest.raises(ConfigError, match="memory"):
        DenseRetriever(encoder, tmp_path / "idx", store="chroma")


@pytest.mark.realmodel
def test_minilm_matches_reference_and_ranks_sensibly(minilm_dir: Path) -> None:
    enc = TransformersDenseEncoder(minilm_dir, dtype="float32")
    assert enc.dim == 384 and enc.max_length == 256 and enc.pooling == "mean" and enc.normalize
    texts = ["A man is eating food.", "A monkey is playing drums.", "Quarks are bound by gluons in hadrons."]
    np.testing.assert_allclose(enc.encode_documents(texts), _reference(minilm_dir, texts), atol=1e-4)
    retriever = DenseRetriever(enc)
    retriever.add([Document(id=str(i), text=t) for i, t in enumerate(texts)])
    assert retriever.search("What holds hadrons together?", k=1)[0].chunk.doc_id == "2"


def test_bf16_stays_close_to_fp32(tiny_bert_dir: Path, encoder: TransformersDenseEncoder) -> None:
    texts = ["the telescope observed a distant galaxy", "knead the dough", "lava flows"]
    bf16 = TransformersDenseEncoder(tiny_bert_dir, dtype="bfloat16").encode_documents(texts)
    assert bf16.dtype == np.float32
    cosines = np.sum(bf16 * encoder.encode_documents(texts), axis=1)
    assert cosines.min() > 0.99
    assert TransformersDenseEncoder(tiny_bert_dir, dtype="bfloat16").fingerprint == encoder.fingerprint


@pytest.mark.parametrize("threads", [1, 2, "auto"])
def test_thread_settings_match_fp32_and_restore_torchs_count(
    tiny_bert_dir: Path, encoder: TransformersDenseEncoder, threads: int | str
) -> None:
    import torch

    texts = [f"passage {i} about {'rivers ' * (i % 7)}and mountains" for i in range(9)]
    before = torch.get_num_threads()
    tuned = TransformersDenseEncoder(tiny_bert_dir, batch_size=2, dtype="float32", threads=threads)  # type: ignore[arg-type]
    untouched = TransformersDenseEncoder(tiny_bert_dir, batch_size=2, dtype="float32", threads=None)
    for _ in range(2):  # the second call runs on what the tuner learned in the first
        np.testing.assert_allclose(tuned.encode_documents(texts), untouched.encode_documents(texts), atol=1e-5)
        assert torch.get_num_threads() == before
    if threads == "auto":
        assert tuned._tuner is not None and tuned._tuner.best in tuned._tuner.candidates


@pytest.mark.parametrize("threads", [0, -2, "fast", True, 1.5])
def test_bad_thread_setting_is_a_config_error(tiny_bert_dir: Path, threads: object) -> None:
    with pytest.raises(ConfigError, match="threads must be"):
        TransformersDenseEncoder(tiny_bert_dir, dtype="float32", threads=threads)  # type: ignore[arg-type]


def test_bf16_on_a_cpu_without_native_bf16_warns(tiny_bert_dir: Path) -> None:
    from ragloom.errors import RagloomWarning
    from ragloom.hf import cpu_has_bf16

    if cpu_has_bf16():
        pytest.skip("this CPU computes bf16 natively; the warning is for CPUs that emulate it")
    with pytest.warns(RagloomWarning, match="no native bf16"):
        TransformersDenseEncoder(tiny_bert_dir, dtype="bfloat16", device="cpu")
