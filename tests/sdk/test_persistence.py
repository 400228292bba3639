"""Atomic writes, the writer lock, manifests and fingerprint comparison."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from ragloom.errors import EncoderMismatchError, IndexCorruptError, IndexLockedError
from ragloom.persistence import IndexLock, Manifest, atomic_write_json, compare_fingerprints


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "data.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert [p.name for p in target.parent.iterdir()] == ["data.json"], "no temp files left behind"


def test_atomic_write_refuses_nan_and_keeps_old(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    atomic_write_json(target, {"x": 1})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"x": float("nan")})
    assert json.loads(target.read_text()) == {"x": 1}


def _hold_lock(path: str, ready, release) -> None:  # type: ignore[no-untyped-def]
    lock = IndexLock(path)
    lock.acquire()
    ready.set()
    release.wait(10)
    lock.release()


def test_second_writer_process_is_refused(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    proc.start()
    try:
        assert ready.wait(30)
        with pytest.raises(IndexLockedError, match="Another process"):
            IndexLock(tmp_path).acquire()
    finally:
        release.set()
        proc.join(10)
    with IndexLock(tmp_path).held():
        pass


def test_manifest_round_trip_and_mismatch(tmp_path: Path) -> None:
    manifest = Manifest(
        kind="dense", encoder={"model": "a", "dim": 4, "prefixes": ("q: ", "")}, chunker={"chunk_size": 8}
    )
    manifest.save(tmp_path)
    loaded = Manifest.load(tmp_path)
    assert loaded is not None and loaded.kind == "dense"
    loaded.check_compatible(tmp_path, "dense", {"model": "a", "dim": 4, "prefixes": ["q: ", ""]}, {"chunk_size": 8})
    with pytest.raises(EncoderMismatchError) as info:
        loaded.check_compatible(tmp_path, "dense", {"model": "b", "dim": 4, "prefixes": ("q: ", "")}, {"chunk_size": 8})
    assert "encoder.model: index has 'a', given 'b'" in str(info.value)


def test_corrupt_and_future_manifests(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorruptError, match="not valid JSON"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "dense", "format_version": 99}))
    with pytest.raises(IndexCorruptError, match="format version 99"):
        Manifest.load(tmp_path)
    assert Manifest.load(tmp_path / "missing") is None


def test_compare_fingerprints_nested() -> None:
    diff = compare_fingerprints({"a": 1, "n": {"x": 1}}, {"a": 1, "n": {"x": 2}, "extra": True})
    assert set(diff) == {"n.x", "extra"}


def test_no_pickle_in_index_files(tmp_path: Path) -> None:
    manifest = Manifest(kind="dense", encoder={}, chunker={})
    manifest.save(tmp_path)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            head = path.read_bytes()[:2]
            assert head not in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"), f"{path} looks like a pickle"
    assert os.listdir(tmp_path) == ["manifest.json"]
