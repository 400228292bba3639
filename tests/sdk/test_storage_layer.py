"""The core's storage layer: generation directories (what BM25 persists through), durable-file helpers, the checks
every store shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragloom.errors import IndexCorruptError, InvalidInputError
from ragloom.stores.files import file_sha256, folder_sha256, npy_bytes, save_npy, sha256_hex
from ragloom.stores.generations import GenerationStore
from ragloom.stores.rows import check_vectors, chunks_jsonl, read_chunks_jsonl
from ragloom.types import Chunk

CHUNKS = [Chunk(id=f"d{i}#0-3", doc_id=f"d{i}", text="abc", start=0, end=3) for i in range(3)]


def test_generations_commit_reload_and_drop_the_old(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path / "gen")
    assert store.load() is None and not store.committed
    store.commit(CHUNKS[:1], lambda staging: (staging / "extra.json").write_text("{}"))
    final = store.commit(CHUNKS)
    assert store.generation == 2 and final.name == "gen-000002"
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == ["current.json", "gen-000002"]
    reopened = GenerationStore(tmp_path / "gen")
    loaded = reopened.load()
    assert loaded is not None and loaded[0] == final and loaded[1] == CHUNKS and reopened.generation == 2


def test_a_damaged_generation_is_refused(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path)
    final = store.commit(CHUNKS)
    (final / "chunks.jsonl").write_text("tampered\n")
    with pytest.raises(IndexCorruptError, match="sha256"):
        GenerationStore(tmp_path).load()


def test_file_helpers_agree(tmp_path: Path) -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_npy(tmp_path / "a.npy", array)
    (tmp_path / "b.npy").write_bytes(npy_bytes(array))
    assert file_sha256(tmp_path / "a.npy") == sha256_hex(npy_bytes(array))
    assert folder_sha256(tmp_path) == {"a.npy": sha256_hex(npy_bytes(array)), "b.npy": sha256_hex(npy_bytes(array))}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy", allow_pickle=False), array)


def test_rows_helpers() -> None:
    assert read_chunks_jsonl(chunks_jsonl(CHUNKS).decode("utf-8")) == CHUNKS
    assert check_vectors(CHUNKS, np.ones((3, 4)), 4).dtype == np.float32
    with pytest.raises(InvalidInputError, match="dimension 4; this store holds 5"):
        check_vectors(CHUNKS, np.ones((3, 4)), 5)
    with pytest.raises(InvalidInputError, match="NaN"):
        check_vectors(CHUNKS, np.full((3, 4), np.nan), None)
    with pytest.raises(InvalidInputError, match="Duplicate"):
        check_vectors([CHUNKS[0], CHUNKS[0]], np.ones((2, 4)), None)
