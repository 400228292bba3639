"""Compressed dense store: binary/int8 first stages with rescoring agree with exact search, persist, refuse other
settings; the dense retriever contract runs over it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.errors import ConfigError, IndexCorruptError, InvalidInputError, StoreMismatchError
from ragloom.stores import InMemoryVectorStore
from ragloom.stores.codes import (
    BinaryCodes,
    Int8Calibration,
    Int8Codes,
    Int8Rows,
    hamming,
    int8_scores,
    matvec,
    pack_bits,
)
from ragloom.stores.compressed import CompressedVectorStore
from ragloom.stores.compressed_settings import middle_oversample
from ragloom.testing import RetrieverContract
from ragloom.types import Chunk

SETTINGS = [("binary", "fp32"), ("binary", "int8"), ("int8", "fp32"), ("int8", None), ("fp32", None)]


def _chunks(n: int, start: int = 0, doc_of: int = 1) -> list[Chunk]:
    return [
        Chunk(id=f"d{i // doc_of}#{i}", doc_id=f"d{i // doc_of}", text=f"t{i}", start=0, end=1)
        for i in range(start, start + n)
    ]


def _clustered(rng: np.random.Generator, n: int, dim: int = 64) -> np.ndarray:
    centres = rng.standard_normal((8, dim)).astype(np.float32) + 0.5  # an offset mean, like real embeddings
    x = centres[rng.integers(0, 8, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _ids(results: list[list[tuple[Chunk, float]]]) -> list[list[str]]:
    return [[c.id for c, _ in row] for row in results]


def test_codes_match_their_definitions() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 64)).astype(np.float32)
    threshold = np.zeros(64, np.float32)
    bits = pack_bits(x, threshold)
    assert bits.shape == (300, 8) and bits.dtype == np.uint8
    q = pack_bits(x[:1], threshold)[0]
    expected = ((x > 0) != (x[:1] > 0)).sum(axis=1)
    assert np.array_equal(hamming(bits, q), expected)
    calibration = Int8Calibration.fit(x)
    codes = calibration.encode(x)
    assert codes.dtype == np.int8
    assert np.abs(calibration.decode(codes) - x).max() <= calibration.step.max() * 0.51 + 1e-6
    scores = int8_scores(x[0], codes, calibration, block=64)
    assert np.allclose(scores, calibration.decode(codes) @ x[0], atol=1e-4)


@pytest.mark.parametrize("use_faiss", [False, None])
def test_binary_backends_agree(use_faiss: bool | None) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 128)).astype(np.float32)
    codes = BinaryCodes(16, use_faiss=use_faiss)
    codes.add(pack_bits(x[:250], np.zeros(128, np.float32)))
    codes.add(pack_bits(x[250:], np.zeros(128, np.float32)))
    query = pack_bits(x[7:8], np.zeros(128, np.float32))[0]
    distances = hamming(pack_bits(x, np.zeros(128, np.float32)), query)
    found = codes.search(query, 20)
    assert found[0] == 7
    assert sorted(distances[found].tolist()) == sorted(np.sort(distances)[:20].tolist())
    subset = np.arange(100, 400)
    inside = codes.search(query, 5, subset=subset)
    assert np.all(inside < subset.size)


@pytest.mark.parametrize("use_faiss", [False, None])
def test_int8_backends_agree(use_faiss: bool | None) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((400, 32)).astype(np.float32)
    calibration = Int8Calibration.fit(x)
    codes = Int8Codes(calibration.encode(x), calibration, use_faiss=use_faiss)
    decoded = calibration.decode(calibration.encode(x))
    assert np.allclose(codes.decode(np.array([3, 1, 399])), decoded[[3, 1, 399]], atol=1e-5)
    best = codes.search(x[9], 15)
    assert set(best.tolist()) == set(np.argsort(-(decoded @ x[9]))[:15].tolist())
    assert codes.nbytes == 400 * 32


@pytest.mark.parametrize("use_faiss", [False, None])
@pytest.mark.parametrize(("first_stage", "rescore"), SETTINGS)
def test_rescored_search_matches_exact(
    tmp_path: Path, first_stage: str, rescore: str | None, use_faiss: bool | None
) -> None:
    rng = np.random.default_rng(2)
    data = _clustered(rng, 2000)
    queries = data[:40] + 0.05 * rng.standard_normal((40, 64)).astype(np.float32)
    exact = InMemoryVectorStore(dim=64)
    exact.replace_documents([], _chunks(2000), data)
    store = CompressedVectorStore(
        tmp_path / "c",
        64,
        first_stage=first_stage,
        rescore=rescore,
        oversample=20,
        flush_rows=700,  # type: ignore[arg-type]
    )
    for start in range(0, 2000, 250):  # segments of 750 rows and an unflushed tail of 500
        store.replace_documents([], _chunks(250, start), data[start : start + 250])
    assert len(store) == 2000 and store.stats()["segments"] == 2 and store.stats()["tail_rows"] == 500
    want, got = exact.search(queries, 10), store.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(_ids(want), _ids(got))])
    assert recall >= (0.97 if first_stage != "fp32" else 1.0)
    if rescore == "fp32" or first_stage == "fp32":  # found rows carry their exact scores
        for query, row in zip(queries, got):
            assert all(abs(float(data[int(c.text[1:])] @ query) - s) < 1e-5 for c, s in row)
    assert [s for _, s in got[0]] == sorted((s for _, s in got[0]), reverse=True)


def test_reopen_delete_filter_and_flush(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = _clustered(rng, 600)
    store = CompressedVectorStore(tmp_path, 64, first_stage="binary", rescore="fp32", oversample=50, flush_rows=200)
    store.replace_documents([], _chunks(600, doc_of=3), data)  # 200 documents of 3 chunks
    assert store.stats()["segments"] == 1
    assert store.delete_documents(["d0", "d5", "missing"]) == 6
    store.replace_documents(["d1"], _chunks(1, start=3000, doc_of=1), data[:1])  # d1 replaced by d3000
    store.close()
    again = CompressedVectorStore(tmp_path, 64, first_stage="binary", rescore="fp32", oversample=50, flush_rows=200)
    assert len(again) == 600 - 6 - 3 + 1
    assert "d0" not in again.doc_ids() and "d3000" in again.doc_ids() and "d1" not in again.doc_ids()
    top = again.search(data[0], 3)[0]
    assert top[0][0].doc_id == "d3000" and abs(top[0][1] - 1.0) < 1e-5  # the deleted d0 never comes back
    only = again.search(data[30], 5, filters={"doc_id": "d10"})[0]
    assert {c.doc_id for c, _ in only} == {"d10"} and len(only) == 3
    again.flush()
    assert again.stats()["tail_rows"] == 0 and again.stats()["segments"] == 2
    assert again.search(data[0], 1)[0][0][0].doc_id == "d3000"
    stats = again.stats()
    assert stats["bytes_in_ram"]["codes"] == 601 * 8  # 8 bytes per 64-dim row, deleted rows included
    assert stats["bytes_memory_mapped"] == 601 * 64 * 4 and stats["deleted_rows"] == 9
    assert stats["bytes_on_disk"]["vectors"] > 601 * 64 * 4 and stats["bytes_on_disk"]["sqlite"] > 0
    again.close()


def test_other_settings_are_refused(tmp_path: Path) -> None:
    store = CompressedVectorStore(tmp_path, 16, first_stage="binary", rescore="fp32")
    store.replace_documents([], _chunks(3), np.eye(3, 16, dtype=np.float32))
    store.close()
    with pytest.raises(StoreMismatchError, match="first_stage: index has 'binary', given 'int8'"):
        CompressedVectorStore(tmp_path, 16, first_stage="int8", rescore="fp32")
    with pytest.raises(StoreMismatchError, match="dim"):
        CompressedVectorStore(tmp_path, 32, first_stage="binary", rescore="fp32")
    for bad in [
        {"first_stage": "binary", "rescore": None},
        {"first_stage": "fp32", "rescore": "int8"},
        {"first_stage": "pq"},
        {"oversample": 0},
    ]:
        with pytest.raises(InvalidInputError):
            CompressedVectorStore(None, 16, **bad)  # type: ignore[arg-type]


def test_orphan_segment_files_are_removed(tmp_path: Path) -> None:
    store = CompressedVectorStore(tmp_path, 16, flush_rows=2)
    store.replace_documents([], _chunks(2), np.eye(2, 16, dtype=np.float32))
    orphan = tmp_path / "seg-000099.codes.npy"
    np.save(orphan, np.zeros((1, 2), np.uint8))
    store.recover()
    assert not orphan.exists() and (tmp_path / "seg-000001.codes.npy").exists()
    store.close()


def test_int8_rows_score_what_their_codes_decode_to() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 48)).astype(np.float32)
    calibration = Int8Calibration.fit(x[:1000])  # one calibration for every row, fitted on the first ones
    rows = Int8Rows(calibration, 48)
    for start in range(0, 3000, 700):  # appended a segment at a time: the buffer grows, the rows stay
        rows.add(calibration.encode(x[start : start + 700]))
    assert len(rows) == 3000 and rows.nbytes >= 3000 * 48
    picked = rng.choice(3000, 2500, replace=False)  # more than one matrix-vector block, unsorted
    want = calibration.decode(calibration.encode(x[picked])) @ x[3]
    assert np.allclose(rows.scores(x[3], picked), want, atol=1e-4)
    assert np.allclose(matvec(x[picked], x[3]), x[picked] @ x[3], atol=1e-5)
    assert np.allclose(matvec(calibration.encode(x[:5]), x[3]), calibration.encode(x[:5]).astype(np.float32) @ x[3])


def _three_stage(path: Path | None, **options: Any) -> CompressedVectorStore:
    return CompressedVectorStore(path, 64, middle="int8", flush_rows=500, **options)


def test_three_stage_candidates_grow_with_the_store_until_set() -> None:
    assert [middle_oversample(n) for n in (0, 1_000_000, 2_000_000, 2_000_001, 10_000_000)] == [100, 100, 100, 200, 500]
    store = _three_stage(None)
    assert store.oversample == 100  # empty: the 1M default
    store.oversample = 40
    assert store.oversample == 40  # a value set is kept whatever the size
    with pytest.raises(InvalidInputError, match="oversample"):
        store.oversample = 0
    assert _three_stage(None, oversample=7).oversample == 7


def test_three_stage_search_matches_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    data = _clustered(rng, 1500)
    queries = data[:30] + 0.05 * rng.standard_normal((30, 64)).astype(np.float32)
    store = _three_stage(tmp_path, oversample=200, rescore_oversample=200)  # every row reaches fp32: exact
    for start in range(0, 1500, 300):  # two segments of 600 rows (one middle-code matrix) and a tail of 300
        store.replace_documents([], _chunks(300, start), data[start : start + 300])
    assert store.stats()["segments"] == 2 and store.stats()["tail_rows"] == 300
    exact = InMemoryVectorStore(dim=64)
    exact.replace_documents([], _chunks(1500), data)
    want = exact.search(queries, 10)
    assert _ids(store.search(queries, 10)) == _ids(want)
    store.oversample, store.rescore_oversample = 50, 3  # 500 candidates scored in int8, 30 read in fp32
    got = store.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(_ids(want), _ids(got))])
    assert recall >= 0.97
    for query, row in zip(queries, got):  # found rows carry their exact float32 scores, best first
        assert all(abs(float(data[int(c.text[1:])] @ query) - s) < 1e-5 for c, s in row)
        assert [s for _, s in row] == sorted((s for _, s in row), reverse=True)
    stats = store.stats()
    assert stats["middle"] == "int8" and stats["bytes_in_ram"]["middle_codes"] >= 1200 * 64
    assert stats["bytes_on_disk"]["middle"] > 1200 * 64
    store.close()


def test_three_stage_reopen_delete_filter_and_refusals(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    data = _clustered(rng, 1200)
    store = _three_stage(tmp_path, oversample=30, rescore_oversample=2)
    store.replace_documents([], _chunks(1200, doc_of=3), data)  # 400 documents of 3 chunks, one segment
    assert store.delete_documents(["d0", "d7"]) == 6
    store.close()
    again = _three_stage(tmp_path, oversample=30, rescore_oversample=2)
    assert len(again) == 1194 and len(again._middle) == 1200  # type: ignore[arg-type]
    top = again.search(data[0], 5)[0]
    assert not {c.doc_id for c, _ in top} & {"d0", "d7"}  # deleted rows never come back
    only = again.search(data[60], 5, filters={"doc_id": "d20"})[0]
    assert {c.doc_id for c, _ in only} == {"d20"} and len(only) == 3
    again.replace_documents([], _chunks(600, start=3000), data[:600])  # a second segment, same calibration
    assert again.search(data[1], 1)[0][0][0].text == "t3001"
    again.close()
    with pytest.raises(StoreMismatchError, match="middle: index has 'int8', given None"):
        CompressedVectorStore(tmp_path, 64)
    plain = tmp_path / "plain"
    CompressedVectorStore(plain, 64).replace_documents([], _chunks(3), data[:3])
    with pytest.raises(StoreMismatchError, match="middle: index has None, given 'int8'"):
        _three_stage(plain)
    assert len(CompressedVectorStore(plain, 64)) == 3  # a store built without the key opens unchanged
    (tmp_path / "seg-000001.middle.npy").unlink()
    with pytest.raises(IndexCorruptError, match="missing"):
        _three_stage(tmp_path)
    for bad in [
        {"middle": "int4"},
        {"middle": "int8", "first_stage": "int8"},
        {"middle": "int8", "rescore": "int8"},
        {"middle": "int8", "rescore_oversample": 0},
        {"rescore_oversample": 5},  # needs a middle stage
    ]:
        with pytest.raises(InvalidInputError):
            CompressedVectorStore(None, 16, **bad)  # type: ignore[arg-type]


def test_three_stage_orphans_and_an_in_memory_store(tmp_path: Path) -> None:
    store = _three_stage(tmp_path, oversample=4)
    store.replace_documents([], _chunks(500), _clustered(np.random.default_rng(8), 500))
    orphan = tmp_path / "seg-000042.middle.npy"
    np.save(orphan, np.zeros((1, 64), np.int8))
    store.recover()
    assert not orphan.exists() and (tmp_path / "seg-000001.middle.npy").exists()
    store.close()
    data = _clustered(np.random.default_rng(9), 700)
    memory = _three_stage(None, oversample=20, rescore_oversample=2)
    memory.replace_documents([], _chunks(700), data)
    assert memory.search(data[9], 1)[0][0][0].text == "t9"


class TestDenseBinary(RetrieverContract):
    """The retriever contract over binary codes + fp32 rescoring, flushing segments every few chunks."""

    options: ClassVar[dict[str, Any]] = {"first_stage": "binary", "rescore": "fp32", "flush_rows": 3, "oversample": 50}

    @pytest.fixture(autouse=True)
    def _encoders(self, encoder: TransformersDenseEncoder, other_encoder: TransformersDenseEncoder) -> None:
        self.encoder, self.other = encoder, other_encoder

    def make_retriever(self, path: Path) -> DenseRetriever:
        return DenseRetriever(
            self.encoder, path, store="compressed", store_options=self.options, chunk_size=24, overlap=4
        )

    def make_mismatched_retriever(self, path: Path) -> DenseRetriever:
        return DenseRetriever(
            self.other, path, store="compressed", store_options=self.options, chunk_size=24, overlap=4
        )


class TestDenseThreeStage(TestDenseBinary):
    options: ClassVar[dict[str, Any]] = {"middle": "int8", "flush_rows": 3, "oversample": 20, "rescore_oversample": 2}


class TestDenseInt8(TestDenseBinary):
    options: ClassVar[dict[str, Any]] = {"first_stage": "int8", "rescore": None, "flush_rows": 3}


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="the binary IVF needs faiss: ragloom[compress]")
class TestDenseBinaryIVF(TestDenseBinary):
    options: ClassVar[dict[str, Any]] = {"ivf_lists": 2, "nprobe": 2, "flush_rows": 3, "oversample": 50}


def test_retriever_records_and_refuses_settings(tmp_path: Path, encoder: TransformersDenseEncoder) -> None:
    from ragloom.types import Document

    with DenseRetriever(encoder, tmp_path, store="binary", chunk_size=24) as retriever:
        retriever.add([Document(id="a", text="alpha beta gamma")])
        assert retriever.manifest is not None
        assert retriever.manifest.store["first_stage"] == "binary" and retriever.manifest.store["rescore"] == "fp32"
    with pytest.raises(StoreMismatchError):
        DenseRetriever(encoder, tmp_path, store="int8", chunk_size=24)
    with pytest.raises(ConfigError, match="uses the 'compressed' store"):
        DenseRetriever(encoder, tmp_path, store="memory", chunk_size=24)
    with pytest.raises(ConfigError, match="store_options"):
        DenseRetriever(encoder, None, store="memory", store_options={"oversample": 3})
    with pytest.raises(ConfigError, match="Unknown store option"):
        DenseRetriever(encoder, None, store="binary", store_options={"bogus": 3})
    with DenseRetriever(encoder, tmp_path, store="binary", chunk_size=24) as reopened:
        assert reopened.search("alpha", k=1)[0].chunk.doc_id == "a"
