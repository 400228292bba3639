"""The binary IVF first stage (faiss ``IndexBinaryIVF``) of the compressed store: exhaustive probing equals exact
search, deletes never come back, the trained index persists and is verified, settings and the extra are checked
(the retriever contract over it is ``TestDenseBinaryIVF`` in test_compressed_store.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("faiss")

from ragloom.errors import IndexCorruptError, InvalidInputError, MissingExtraError, StoreMismatchError
from ragloom.stores.binary_ivf import BinaryIVF, IVFParams
from ragloom.stores.compressed import CompressedVectorStore
from ragloom.types import Chunk

DIM = 32


def _chunks(n: int, start: int = 0) -> list[Chunk]:
    return [Chunk(id=f"d{i}#0", doc_id=f"d{i}", text=f"t{i}", start=0, end=1) for i in range(start, start + n)]


def _clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, DIM)).astype(np.float32) + 0.5
    x = centres[rng.integers(0, 6, n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _store(path: Path | None, **options: Any) -> CompressedVectorStore:
    return CompressedVectorStore(path, DIM, ivf_lists=4, flush_rows=300, **options)


def _build(path: Path, data: np.ndarray) -> CompressedVectorStore:
    store = _store(path)
    for start in range(0, len(data), 300):  # segments of 300 rows (the first one trains the IVF)
        store.replace_documents([], _chunks(min(300, len(data) - start), start), data[start : start + 300])
    return store


def _exact(data: np.ndarray, alive: np.ndarray, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    scores = queries @ data.T
    scores[:, ~alive] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(int(r), float(scores[i, r])) for r in row] for i, row in enumerate(order)]


def _found(results: list[list[tuple[Chunk, float]]]) -> list[list[tuple[int, float]]]:
    return [[(int(c.doc_id[1:]), s) for c, s in row] for row in results]


def _assert_same(got: list[list[tuple[int, float]]], want: list[list[tuple[int, float]]]) -> None:
    for row, ref in zip(got, want, strict=True):
        assert [r for r, _ in row] == [r for r, _ in ref]
        assert np.allclose([s for _, s in row], [s for _, s in ref], atol=1e-5)


def test_exhaustive_probing_equals_exact_search(tmp_path: Path) -> None:
    data = _clustered(1000)
    store = _build(tmp_path, data)
    assert store._ivf is not None and store._ivf.params.nlist == 4 and len(store._ivf) == 900  # + a tail of 100
    store.nprobe, store.oversample = 4, 100  # every list probed, every row rescored: the numpy exact answer
    queries = data[:25] + 0.05 * np.random.default_rng(1).standard_normal((25, DIM)).astype(np.float32)
    _assert_same(_found(store.search(queries, 10)), _exact(data, np.ones(1000, bool), queries, 10))
    assert store.stats()["first_stage_backend"] == "faiss IndexBinaryIVF (nlist 4, nprobe 4)"
    store.nprobe = 1  # one list: fewer candidates, still their exact float32 scores, best first
    for query, row in zip(queries, _found(store.search(queries, 10))):
        assert len(row) == 10 and all(abs(float(data[r] @ query) - s) < 1e-5 for r, s in row)
        assert [s for _, s in row] == sorted((s for _, s in row), reverse=True)
    store.close()


def test_deletes_and_reopen_stay_consistent(tmp_path: Path) -> None:
    data = _clustered(900, seed=2)
    store = _build(tmp_path, data)
    store.nprobe, store.oversample = 4, 100
    gone = [f"d{i}" for i in range(0, 900, 7)]
    assert store.delete_documents(gone) == len(gone)
    alive = np.ones(900, bool)
    alive[::7] = False
    assert len(store._ivf) == alive.sum() == len(store)  # type: ignore[arg-type]
    queries = data[:20]
    _assert_same(_found(store.search(queries, 10)), _exact(data, alive, queries, 10))
    store.replace_documents([], _chunks(1, start=0), data[:1])  # d0 is back (in the tail until the next flush)
    alive[0] = True
    store.close()
    again = _store(tmp_path)
    again.nprobe, again.oversample = 4, 100
    assert len(again) == alive.sum() and len(again._ivf) == alive.sum() - 1  # type: ignore[arg-type]
    found = _found(again.search(queries, 10))
    assert [[r for r, _ in row] for row in found] == [[r for r, _ in row] for row in _exact(data, alive, queries, 10)]
    assert not {r for row in found for r, _ in row} & {i for i in range(7, 900, 7)}
    again.flush()  # the tail's row goes into a new segment: assigned to the trained lists, not retrained
    assert len(again._ivf) == alive.sum() and again.stats()["segments"] == 4  # type: ignore[arg-type]
    filtered = again.search(data[14], 5, filters={"doc_id": "d15"})[0]
    assert [c.doc_id for c, _ in filtered] == ["d15"]
    again.close()


def test_trained_index_is_persisted_verified_and_refused_on_mismatch(tmp_path: Path) -> None:
    store = _build(tmp_path, _clustered(600, seed=3))
    store.close()
    file = tmp_path / "binary-ivf.faiss"
    assert file.exists() and (tmp_path / "seg-000001.lists.npy").exists()
    assert CompressedVectorStore(tmp_path, DIM, ivf_lists=4).stats()["bytes_on_disk"]["ivf"] == file.stat().st_size
    with pytest.raises(StoreMismatchError, match="ivf_lists: index has 4, given None"):
        CompressedVectorStore(tmp_path, DIM)
    with pytest.raises(StoreMismatchError, match="ivf_lists: index has 4, given 8"):
        CompressedVectorStore(tmp_path, DIM, ivf_lists=8)
    original = file.read_bytes()
    file.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # same size, other bytes
    with pytest.raises(IndexCorruptError, match="checksum"):
        _store(tmp_path)
    file.write_bytes(original[:20])
    with pytest.raises(IndexCorruptError, match="wrong size"):
        _store(tmp_path)
    file.write_bytes(original)
    assert len(_store(tmp_path)) == 600


def test_a_foreign_faiss_file_is_refused(tmp_path: Path) -> None:
    import faiss

    params = IVFParams(DIM, DIM, 1)
    with pytest.raises(IndexCorruptError, match="expected IndexFlatIP centres"):
        BinaryIVF.from_bytes(bytes(faiss.serialize_index(faiss.IndexFlatL2(DIM))), params, "x.faiss")
    with pytest.raises(IndexCorruptError, match="not a faiss index"):
        BinaryIVF.from_bytes(bytes(faiss.serialize_index_binary(faiss.IndexBinaryFlat(DIM))), params, "x.faiss")
    wrong = BinaryIVF.train(_clustered(256), 2).to_bytes()  # 2 centres, the store recorded 1
    with pytest.raises(IndexCorruptError, match="holds 2 centres of dimension 32"):
        BinaryIVF.from_bytes(wrong, params, "x.faiss")


def test_crash_after_training_before_commit_retrains(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import numpy as np
        from ragloom.stores.compressed import CompressedVectorStore
        from ragloom.types import Chunk
        store = CompressedVectorStore({str(tmp_path)!r}, {DIM}, ivf_lists=4, flush_rows=300)
        x = np.random.default_rng(0).standard_normal((300, {DIM})).astype(np.float32)
        store.replace_documents([], [Chunk(id=f"d{{i}}#0", doc_id=f"d{{i}}", text="", start=0, end=1)
                                     for i in range(300)], x)
        """
    )
    env = {**os.environ, "RAGLOOM_CRASH_AT": "compressed.ivf_written:1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == -9, done.stderr.decode()
    assert (tmp_path / "binary-ivf.faiss").exists()  # written, never committed
    store = _store(tmp_path)
    assert len(store) == 0 and store._ivf is None
    store.recover()
    data = _clustered(300, seed=4)
    store.replace_documents([], _chunks(300), data)  # retrains and overwrites the uncommitted file
    store.close()
    again = _store(tmp_path)
    assert len(again) == 300 and again.search(data[5], 1)[0][0][0].doc_id == "d5"


def test_missing_faiss_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    with pytest.raises(MissingExtraError, match=r"ragloom\[compress\]"):
        CompressedVectorStore(None, DIM, ivf_lists=4)
    for bad in [{"first_stage": "int8", "ivf_lists": 4}, {"ivf_lists": 0}, {"nprobe": 0}]:
        with pytest.raises(InvalidInputError):
            CompressedVectorStore(None, DIM, **bad)  # type: ignore[arg-type]
