"""IndexFolder: the manifest and writer lock every retriever keeps its directory with."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragloom.errors import EncoderMismatchError, IndexLockedError
from ragloom.index_folder import IndexFolder, stored_chunk_size
from ragloom.persistence import Manifest

ENCODER = {"family": "dense", "model": "a", "dim": 8}
UNITS = {"kind": "tokens", "chunk_size": 24, "overlap": 4}


class FlakyStore:
    """A store whose interrupted write cannot be finished the first time (e.g. chroma's free-space check)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failures = 1
        self.recovered = 0

    def recover(self) -> int:
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        self.recovered += 1
        return 1


def test_first_acquire_writes_the_manifest_and_a_second_writer_is_refused(tmp_path: Path) -> None:
    folder = IndexFolder(tmp_path, kind="vector", fingerprint=ENCODER, units=UNITS)
    assert folder.manifest is None and not folder.writing
    folder.acquire(None, {"kind": "memory"}, lambda: {"chunks": 0})
    assert folder.writing and Manifest.load(tmp_path) is not None and stored_chunk_size(tmp_path) == 24
    other = IndexFolder(tmp_path, kind="vector", fingerprint=ENCODER, units=UNITS)
    with pytest.raises(IndexLockedError):
        other.acquire(None, {"kind": "memory"}, lambda: {"chunks": 0})
    folder.release()
    other.acquire(None, {"kind": "memory"}, lambda: {"chunks": 0})
    other.release()


def test_a_failed_recovery_gives_the_lock_back_and_is_retried(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "store")
    folder = IndexFolder(tmp_path, kind="vector", fingerprint=ENCODER, units=UNITS)
    with pytest.raises(OSError, match="No space"):
        folder.acquire(store, {"kind": "flaky"}, lambda: {"chunks": 0})
    assert not folder.writing  # nothing half-done counts as holding the folder
    IndexFolder(tmp_path, kind="vector", fingerprint=ENCODER, units=UNITS).acquire(store, {}, dict)  # lock free
    assert store.recovered == 1


def test_an_index_created_by_another_process_after_opening_is_checked(tmp_path: Path) -> None:
    """Both opened the empty folder; the other one wrote first with another model: this one must not mix in."""
    late = IndexFolder(tmp_path, kind="vector", fingerprint=ENCODER, units=UNITS)
    first = IndexFolder(tmp_path, kind="vector", fingerprint={**ENCODER, "model": "b"}, units=UNITS)
    first.acquire(None, {"kind": "memory"}, lambda: {"chunks": 3})
    first.release()
    with pytest.raises(EncoderMismatchError, match="model"):
        late.acquire(None, {"kind": "memory"}, lambda: {"chunks": 0})
    assert not late.writing and Manifest.load(tmp_path).encoder["model"] == "b"  # type: ignore[union-attr]


def test_reopening_without_chunk_size_uses_the_stored_one(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
    from ragloom.types import Document

    encoder = TransformersDenseEncoder(tiny_bert_dir, dtype="float32")
    with DenseRetriever(encoder, tmp_path / "idx", chunk_size=24, overlap=4) as built:
        built.add([Document(id="d", text="late chunking keeps context " * 20)])
    with DenseRetriever(encoder, tmp_path / "idx", overlap=4) as reopened:
        assert reopened.chunker.chunk_size == 24 and len(reopened.search("context", k=3)) == 3
