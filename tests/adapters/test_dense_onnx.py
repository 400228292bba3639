"""backend="onnx": a tiny random BERT exported through torch.onnx, run in ONNX Runtime, against the torch backend."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="backend='onnx' needs onnxruntime: pip install 'ragloom[onnx]'")
pytest.importorskip("onnxscript", reason="exporting to ONNX needs onnxscript: pip install 'ragloom[onnx]'")

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.adapters.dense_onnx import onnx_cache_dir
from ragloom.errors import ConfigError, InputTooLongError, MissingExtraError, TruncationWarning
from ragloom.stores.files import file_sha256, read_json
from ragloom.testing import RetrieverContract
from ragloom.types import Document

TEXTS = [
    "a cat sat",
    "the telescope observed a distant galaxy cluster bending light",
    "bread",
    "lava flows downhill and cools into basalt",
    "rivers and mountains " * 3,
]


@pytest.fixture(scope="module")
def onnx_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-home")


@pytest.fixture(scope="module")
def onnx_encoder(tiny_bert_dir: Path, onnx_home: Path) -> TransformersDenseEncoder:
    """The tiny BERT through ONNX Runtime, its export cached in a module-wide ragloom home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAGLOOM_HOME", str(onnx_home))
        return TransformersDenseEncoder(tiny_bert_dir, batch_size=2, backend="onnx")


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


class TestDenseOnnx(RetrieverContract):
    @pytest.fixture(autouse=True)
    def _encoders(self, onnx_encoder: TransformersDenseEncoder, other_encoder: TransformersDenseEncoder) -> None:
        self.encoder, self.other = onnx_encoder, other_encoder

    def make_retriever(self, path: Path) -> DenseRetriever:
        return DenseRetriever(self.encoder, path, store="memory", chunk_size=24, overlap=4)

    def make_mismatched_retriever(self, path: Path) -> DenseRetriever:
        return DenseRetriever(self.other, path, store="memory", chunk_size=24, overlap=4)


def test_onnx_matches_torch(onnx_encoder: TransformersDenseEncoder, encoder: TransformersDenseEncoder) -> None:
    for got, want in (
        (onnx_encoder.encode_documents(TEXTS), encoder.encode_documents(TEXTS)),
        (onnx_encoder.encode_queries(TEXTS[:1]), encoder.encode_queries(TEXTS[:1])),  # a batch of one
    ):
        assert got.dtype == np.float32 and got.shape == want.shape
        assert _cosine(got, want).min() >= 0.9999
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert onnx_encoder.fingerprint == encoder.fingerprint  # the backend is not part of an index's identity
    assert onnx_encoder.dim == encoder.dim and onnx_encoder.document_capacity == encoder.document_capacity


def test_prefixes_and_truncation_dim_apply(tiny_bert_dir: Path, onnx_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAGLOOM_HOME", str(onnx_home))
    options = {"query_prefix": "query: ", "truncate_dim": 16, "pooling": "cls"}
    got = TransformersDenseEncoder(tiny_bert_dir, backend="onnx", **options).encode_queries(TEXTS)  # type: ignore[arg-type]
    want = TransformersDenseEncoder(tiny_bert_dir, dtype="float32", **options).encode_queries(TEXTS)  # type: ignore[arg-type]
    assert got.shape == (len(TEXTS), 16)
    assert _cosine(got, want).min() >= 0.9999


def test_too_long_document_is_an_error_and_query_warns(onnx_encoder: TransformersDenseEncoder) -> None:
    long_text = " ".join(["galaxy"] * 200)
    with pytest.raises(InputTooLongError, match=r"limit of 64 tokens"):
        onnx_encoder.encode_documents([long_text])
    with pytest.warns(TruncationWarning, match=r"cut"):
        vectors = onnx_encoder.encode_queries([long_text])
    assert vectors.shape == (1, 32)


def test_long_document_is_chunked_not_cut(onnx_encoder: TransformersDenseEncoder) -> None:
    text = " ".join(f"galaxy {i} lava" for i in range(60))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        chunks = DenseRetriever(onnx_encoder).add([Document(id="long", text=text)])
    assert len(chunks) > 2 and all(text[c.start : c.end] == c.text for c in chunks)


@pytest.mark.parametrize("threads", [1, 2, "auto"])
def test_thread_settings_give_the_same_vectors(
    tiny_bert_dir: Path, onnx_home: Path, onnx_encoder: TransformersDenseEncoder, monkeypatch, threads: int | str
) -> None:
    monkeypatch.setenv("RAGLOOM_HOME", str(onnx_home))
    tuned = TransformersDenseEncoder(tiny_bert_dir, batch_size=2, backend="onnx", threads=threads)  # type: ignore[arg-type]
    texts = [f"passage {i} about {'rivers ' * (i % 7)}and mountains" for i in range(9)]
    for _ in range(2):  # the second call runs on what the tuner learned in the first
        np.testing.assert_allclose(tuned.encode_documents(texts), onnx_encoder.encode_documents(texts), atol=1e-5)
    if threads == "auto":
        assert tuned._tuner is not None and tuned._tuner.best in tuned._tuner.candidates


def test_export_is_cached_with_its_sha256_and_redone_when_it_does_not_match(
    tiny_bert_dir: Path, onnx_home: Path, onnx_encoder: TransformersDenseEncoder, monkeypatch
) -> None:
    monkeypatch.setenv("RAGLOOM_HOME", str(onnx_home))
    folder = onnx_cache_dir(onnx_encoder._name, onnx_encoder._weights)
    model, record = folder / "model.onnx", folder / "model.onnx.json"
    assert read_json(record)["sha256"] == file_sha256(model)
    import onnx

    graph = onnx.load(str(model))
    declared = {opset.domain for opset in graph.opset_import}
    assert {node.domain for node in graph.graph.node} <= declared, "fused operators' domain is declared"
    written = model.stat().st_mtime_ns
    TransformersDenseEncoder(tiny_bert_dir, backend="onnx")
    assert model.stat().st_mtime_ns == written, "a verified export is reused, not redone"

    model.write_bytes(model.read_bytes()[:-16] + b"\0" * 16)  # corrupted on disk
    again = TransformersDenseEncoder(tiny_bert_dir, backend="onnx")
    assert read_json(record)["sha256"] == file_sha256(model)
    assert _cosine(again.encode_documents(TEXTS), onnx_encoder.encode_documents(TEXTS)).min() >= 0.9999
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "cuda"}, "runs on the CPU"),
        ({"dtype": "bfloat16"}, "computes in float32"),
        ({"backend": "tensorrt"}, "backend must be"),
    ],
)
def test_bad_settings_are_config_errors(tiny_bert_dir: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TransformersDenseEncoder(tiny_bert_dir, **{"backend": "onnx", **options})


def test_missing_onnxruntime_names_the_extra(tiny_bert_dir: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an environment without it raises on import
    with pytest.raises(MissingExtraError, match=r"ragloom\[onnx\]"):
        TransformersDenseEncoder(tiny_bert_dir, backend="onnx")
