"""Safe loading: nothing ragloom writes is a pickle, planted pickles never run, model code never runs unasked,
pickle-only weights are refused, and NaN/Inf vectors never enter an index."""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.errors import ConfigError, IndexCorruptError, InvalidInputError, ModelNotFoundError
from ragloom.pipeline import Pipeline
from ragloom.testing import CONTRACT_DOCUMENTS
from ragloom.types import Chunk

SQLITE = b"SQLite format 3\x00"
WAL_MAGIC = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")
CHROMA_HNSW = {"header.bin", "data_level0.bin", "length.bin", "link_lists.bin"}


def is_pickle(data: bytes) -> bool:
    """A protocol-2+ header, or a byte string that parses as a complete pickle program."""
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return True
    try:
        ops = list(pickletools.genops(io.BytesIO(data)))
    except Exception:
        return False
    return bool(ops) and ops[-1][0].name == "STOP"


def classify(path: Path) -> str:
    data = path.read_bytes()
    if is_pickle(data):
        return "pickle"
    if data.startswith(SQLITE):
        return "sqlite"
    if data[:4] in WAL_MAGIC:
        return "sqlite-wal"
    if path.name.endswith("-shm"):
        return "sqlite-shm"
    if path.name in CHROMA_HNSW:
        return "hnsw-binary"
    if path.name in (".lock", ".pipeline.lock") and not data:
        return "lock"
    try:
        json.loads(data)
        return "json"
    except ValueError:
        return "unknown"


def _build(tmp_path: Path, encoder: Any) -> Path:
    """A two-retriever pipeline (memory + chroma) with adds, a re-add and a delete: every file kind gets written."""
    index = tmp_path / "index"
    retrievers = [
        DenseRetriever(encoder, index / "a", store="memory", name="a"),
        DenseRetriever(encoder, index / "b", store="chroma", name="b"),
    ]
    with Pipeline(retrievers) as pipeline:
        pipeline.ingest(list(CONTRACT_DOCUMENTS))
        pipeline.ingest([CONTRACT_DOCUMENTS[0]])
        pipeline.delete([CONTRACT_DOCUMENTS[1].id])
        # chroma persists its HNSW segment (and its id map) after 1000 vectors: write 1100 through its store
        rng = np.random.default_rng(0)
        bulk = [Chunk(id=f"bulk{i}#0-4", doc_id=f"bulk{i}", text="lava", start=0, end=4) for i in range(1100)]
        vectors = rng.standard_normal((len(bulk), encoder.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        retrievers[1].store.replace_documents([c.doc_id for c in bulk], bulk, vectors)
    return index


def test_no_pickle_in_anything_an_index_writes(tmp_path: Path, encoder: Any, record: Any) -> None:
    index = _build(tmp_path, encoder)
    kinds = {str(p.relative_to(index)): classify(p) for p in sorted(index.rglob("*")) if p.is_file()}
    unknown = {k: v for k, v in kinds.items() if v == "unknown"}
    assert not unknown, unknown
    pickles = sorted(k for k, v in kinds.items() if v == "pickle")
    # ragloom's own files: never a pickle
    assert not [k for k in pickles if not k.startswith("b/chroma/")], pickles
    # chromadb 1.x writes one pickle-format file per HNSW segment (its id map). Its Rust core reads it with a
    # data-only decoder (serde-pickle) and ragloom pins that core (see the planted-payload test below).
    assert all(Path(k).name == "index_metadata.pickle" for k in pickles), pickles
    assert pickles, "the scan should see chroma's segment file (else this test checks less than it claims)"
    assert (index / "a" / "manifest.json").exists() and (index / "b" / "manifest.json").exists()
    record(
        "index files scanned for pickle",
        runs=len(kinds),
        ragloom_pickles=0,
        chroma_index_metadata_pickles=len(pickles),
        kinds=", ".join(sorted(set(kinds.values()))),
    )


class _Payload:
    """Unpickling this creates a directory: proof that a planted pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_planted_pickles_never_run(tmp_path: Path, encoder: Any, monkeypatch: pytest.MonkeyPatch, record: Any) -> None:
    """Payloads at every plausible place in an index (including chroma's own pickle, with CHROMA_API_IMPL set to
    chroma's legacy Python segment API, which would unpickle it) never execute when ragloom opens, searches,
    writes and recovers the index."""
    index = _build(tmp_path, encoder)
    markers = []

    def plant(path: Path) -> None:
        marker = tmp_path / f"RAN-{len(markers)}"
        markers.append(marker)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(_Payload(marker)))

    for name in ("vectors.pkl", "index.pickle", "model.pt", "pytorch_model.bin", "memory/state.pkl", "chroma.pkl"):
        plant(index / "a" / name)
        plant(index / "b" / name)
    segments = sorted((index / "b" / "chroma").glob("*/index_metadata.pickle"))
    assert segments
    for segment in segments:
        plant(segment)
        plant(segment.parent / "extra.pickle")
    plant(index / "a" / "ingest-journal.json")  # a journal that is a pickle: a writer refuses it, never loads it
    monkeypatch.setenv("CHROMA_API_IMPL", "chromadb.api.segment.SegmentAPI")
    with pytest.warns(Warning, match="interrupted"):
        pipeline = Pipeline(
            [
                DenseRetriever(encoder, index / "a", store="memory", name="a"),
                DenseRetriever(encoder, index / "b", store="chroma", name="b"),
            ]
        )
    with pipeline:
        assert pipeline.retrieve("galaxy", k=2)
        with pytest.raises(IndexCorruptError, match=r"ingest-journal\.json"):
            pipeline.ingest([CONTRACT_DOCUMENTS[2]])
        (index / "a" / "ingest-journal.json").unlink()
        pipeline.ingest([CONTRACT_DOCUMENTS[2]])
    assert not [m for m in markers if m.exists()], "a planted pickle was executed"
    # a vector row replaced by a pickle is bytes to numpy, never unpickled
    with sqlite3.connect(index / "a" / "memory" / "vectors.sqlite") as db:
        db.execute(
            "UPDATE chunks SET vector = ? WHERE rowid = (SELECT min(rowid) FROM chunks)",
            (pickle.dumps(_Payload(tmp_path / "RAN-row")),),
        )
    with pytest.raises(IndexCorruptError):
        DenseRetriever(encoder, index / "a", store="memory", name="a")
    # a manifest replaced by a pickle is a corrupt manifest
    (index / "a" / "manifest.json").write_bytes(pickle.dumps(_Payload(tmp_path / "RAN-manifest")))
    with pytest.raises(IndexCorruptError):
        DenseRetriever(encoder, index / "a", store="memory", name="a")
    assert not (tmp_path / "RAN-row").exists() and not (tmp_path / "RAN-manifest").exists()
    record("planted pickle payloads", runs=len(markers) + 2, executed=0)


def _model_folder(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.iterdir():
        if path.suffix in (".json", ".txt", ".safetensors"):
            (target / path.name).write_bytes(path.read_bytes())
    return target


def test_model_code_runs_only_when_trusted(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record: Any
) -> None:
    folder = _model_folder(tiny_bert_dir, tmp_path / "custom")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evilbert", auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "MODEL-CODE-RAN"
    (folder / "evil.py").write_text(
        f"import os\nos.makedirs({str(marker)!r}, exist_ok=True)\n"
        "from transformers import BertConfig, BertModel\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evilbert'\n"
        "class EvilModel(BertModel):\n    config_class = EvilConfig\n"
    )
    with pytest.raises(ConfigError, match="trust_remote_code=True"):
        TransformersDenseEncoder(folder)
    assert not marker.exists()
    TransformersDenseEncoder(folder, trust_remote_code=True)  # the gate is the flag, and only the flag
    assert marker.exists()
    record("trust_remote_code", runs=2, refused_without_flag=1, ran_with_flag=1)


def test_pickle_only_weights_are_refused(tiny_bert_dir: Path, tmp_path: Path, record: Any) -> None:
    folder = _model_folder(tiny_bert_dir, tmp_path / "pickled")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "WEIGHTS-RAN"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ModelNotFoundError, match="safetensors only"):
        TransformersDenseEncoder(folder)
    assert not marker.exists()
    record("pickle-only model weights", runs=1, refused=1, executed=0)


class _PoisonedEncoder:
    """The tiny encoder, but one document vector (or every query vector) comes back NaN or Inf."""

    def __init__(self, inner: Any, bad: float, where: str) -> None:
        self.inner, self.bad, self.where = inner, bad, where
        self.dim, self.fingerprint = inner.dim, inner.fingerprint
        self.token_counter, self.document_capacity = inner.token_counter, inner.document_capacity

    def encode_documents(self, texts: Any) -> np.ndarray:
        out = self.inner.encode_documents(texts)
        if self.where == "documents":
            out[-1, 0] = self.bad
        return out

    def encode_queries(self, texts: Any) -> np.ndarray:
        out = self.inner.encode_queries(texts)
        if self.where == "queries":
            out[:, 0] = self.bad
        return out


@pytest.mark.parametrize("store", ["memory", "chroma"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_vectors_are_rejected(tmp_path: Path, encoder: Any, store: str, bad: float, record: Any) -> None:
    index = tmp_path / "index"
    with DenseRetriever(encoder, index, store=store) as clean:
        clean.add(list(CONTRACT_DOCUMENTS[:2]))
    with DenseRetriever(_PoisonedEncoder(encoder, bad, "documents"), index, store=store) as poisoned:
        with pytest.raises(InvalidInputError, match="NaN or Inf"):
            poisoned.add([CONTRACT_DOCUMENTS[2]])
        assert poisoned.doc_ids() == {d.id for d in CONTRACT_DOCUMENTS[:2]}
    with (
        DenseRetriever(_PoisonedEncoder(encoder, bad, "queries"), index, store=store) as asking,
        pytest.raises(InvalidInputError, match="NaN or Inf"),
    ):
        asking.search("galaxy", k=2)
    record("NaN/Inf vectors", runs=2, rejected=2)
