"""The multi-vector store: exact MaxSim, append/delete/compaction, persistence, crash safety, first stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragloom.compression import MultiVectorSettings
from ragloom.errors import ConfigError, InvalidInputError
from ragloom.stores.multivector import MultiVectorStore
from ragloom.types import Chunk, chunk_id_for_page

DIM = 16


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_pages(n_docs: int, pages: int = 2, seed: int = 0, equal: bool = False) -> tuple[list[Chunk], list[np.ndarray]]:
    """Pages built around a per-page topic so that queries have one clear best page."""
    rng = np.random.default_rng(seed)
    chunks, vectors = [], []
    for d in range(n_docs):
        for p in range(1, pages + 1):
            n = 12 if equal else int(rng.integers(5, 20))
            topic = rng.standard_normal(DIM)
            chunks.append(
                Chunk(id=chunk_id_for_page(f"d{d}", p), doc_id=f"d{d}", text="", start=0, end=0, page=p,
                      metadata={"group": "even" if d % 2 == 0 else "odd"})
            )  # fmt: skip
            vectors.append(_normalise(topic + 0.8 * rng.standard_normal((n, DIM))))
    return chunks, vectors


def reference(query: np.ndarray, vectors: list[np.ndarray]) -> np.ndarray:
    """Plain MaxSim on fp16-rounded page vectors (what the store keeps)."""
    return np.array([(query @ v.astype(np.float16).astype(np.float32).T).max(1).sum() for v in vectors])


def query_for(vectors: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return _normalise(vectors[:4] + 0.3 * rng.standard_normal((4, DIM)))


@pytest.mark.parametrize("equal", [True, False])
def test_exact_maxsim_matches_reference(tmp_path: Path, equal: bool) -> None:
    chunks, vectors = make_pages(10, equal=equal)
    store = MultiVectorStore(tmp_path, DIM, MultiVectorSettings(block_tokens=256))  # many small blocks
    store.replace_documents(sorted({c.doc_id for c in chunks}), chunks, vectors)
    query = query_for(vectors[7], 1)
    hits = store.search([query], k=5)[0]
    expected = reference(query, vectors)
    order = np.argsort(-expected, kind="stable")[:5]
    assert [c.id for c, _ in hits] == [chunks[i].id for i in order]
    assert np.allclose([s for _, s in hits], expected[order], atol=1e-4)
    assert hits[0][0].id == chunks[7].id


def test_delete_compact_reload(tmp_path: Path) -> None:
    chunks, vectors = make_pages(6)
    store = MultiVectorStore(tmp_path, DIM, compact_ratio=0.9)
    store.replace_documents([], chunks[:6], vectors[:6])
    store.replace_documents([], chunks[6:], vectors[6:])
    assert len(store) == 12 and store.doc_ids() == {f"d{i}" for i in range(6)}
    assert store.delete_documents(["d1"]) == 2
    assert "d1" not in store.doc_ids() and len(store) == 10
    query = query_for(vectors[2], 3)
    before = store.search([query], k=10)[0]
    assert all(c.doc_id != "d1" for c, _ in before)
    store.compact()
    assert len(list(tmp_path.glob("seg-*.tokens.npy"))) == 1
    assert store.search([query], k=10)[0] == before
    reopened = MultiVectorStore(tmp_path, DIM)
    assert len(reopened) == 10 and reopened.token_count() == store.token_count()
    assert reopened.search([query], k=10)[0] == before
    # replacing a document drops its old pages in the same commit
    reopened.replace_documents(["d2"], chunks[4:5], vectors[4:5])
    assert len(reopened) == 9


def test_automatic_compaction_on_dead_tokens(tmp_path: Path) -> None:
    chunks, vectors = make_pages(4)
    store = MultiVectorStore(tmp_path, DIM, compact_ratio=0.25)
    store.replace_documents([], chunks, vectors)
    store.delete_documents(["d0", "d1"])
    assert store.token_count() == sum(v.shape[0] for v in vectors[4:])
    state = (tmp_path / "state.json").read_text()
    assert '"dead": []' in state  # compacted: no tombstones left


def test_crash_leftovers_are_ignored_then_removed(tmp_path: Path) -> None:
    chunks, vectors = make_pages(2)
    store = MultiVectorStore(tmp_path, DIM)
    store.replace_documents([], chunks[:2], vectors[:2])
    # a writer killed after writing a segment but before committing state.json
    np.save(tmp_path / "seg-000099.tokens.npy", np.zeros((3, DIM), np.float16))
    (tmp_path / ".seg-000100.tokens.npy.abc.tmp").write_bytes(b"partial")
    reopened = MultiVectorStore(tmp_path, DIM)
    assert len(reopened) == 2
    reopened.replace_documents([], chunks[2:], vectors[2:])
    assert not (tmp_path / "seg-000099.tokens.npy").exists()
    assert not list(tmp_path.glob(".seg-*.tmp"))
    assert len(MultiVectorStore(tmp_path, DIM)) == 4


def test_filters_and_in_memory(tmp_path: Path) -> None:
    chunks, vectors = make_pages(4)
    store = MultiVectorStore(None, DIM)
    store.replace_documents([], chunks, vectors)
    hits = store.search([query_for(vectors[0], 0)], k=10, filters={"group": "odd"})[0]
    assert hits and {c.doc_id for c, _ in hits} == {"d1", "d3"}
    assert store.search([query_for(vectors[0], 0)], k=10, filters={"page": 2, "doc_id": "d0"})[0][0][0].page == 2
    assert store.search([query_for(vectors[0], 0)], k=3, filters={"group": "none"})[0] == []


def test_bad_input_is_refused(tmp_path: Path) -> None:
    chunks, vectors = make_pages(1)
    store = MultiVectorStore(tmp_path, DIM)
    with pytest.raises(InvalidInputError):
        store.replace_documents([], chunks, [vectors[0], np.full((3, DIM), np.nan)])
    with pytest.raises(InvalidInputError):
        store.replace_documents([], chunks, [vectors[0], np.full((3, DIM), 1e6)])  # beyond float16
    with pytest.raises(InvalidInputError):
        store.replace_documents([], chunks, [vectors[0], np.zeros((0, DIM))])
    with pytest.raises(InvalidInputError):
        store.replace_documents([], chunks[:1], [np.zeros((3, DIM + 1))])
    store.replace_documents([], chunks, vectors)
    with pytest.raises(InvalidInputError):
        store.search([np.zeros((2, DIM + 1))], k=3)
    with pytest.raises(ConfigError):
        MultiVectorStore(tmp_path, DIM, MultiVectorSettings(first_stage="int8"))  # built exact
    with pytest.raises(ConfigError):
        MultiVectorStore(tmp_path, DIM * 2)


@pytest.mark.parametrize("first_stage", ["muvera", "int8", "binary"])
def test_first_stage_with_rescoring_returns_exact_top_k(tmp_path: Path, first_stage: str) -> None:
    chunks, vectors = make_pages(60, pages=2, seed=5)  # 120 pages
    settings = MultiVectorSettings(first_stage=first_stage, candidates=30)  # type: ignore[arg-type]
    store = MultiVectorStore(tmp_path, DIM, settings)
    store.replace_documents([], chunks, vectors)
    queries = [query_for(vectors[i], i) for i in (3, 50, 111)]
    approx = store.search(queries, k=5)
    exact = store.search(queries, k=5, exact=True)
    assert [[c.id for c, _ in row] for row in approx] == [[c.id for c, _ in row] for row in exact]
    for row_a, row_e in zip(approx, exact):
        assert np.allclose([s for _, s in row_a], [s for _, s in row_e])
    # batching queries never changes a query's own result
    assert [[c.id for c, _ in r] for r in store.search(queries[1:2], k=5)] == [[c.id for c, _ in approx[1]]]
    reopened = MultiVectorStore(tmp_path, DIM, settings)
    assert [[c.id for c, _ in r] for r in reopened.search(queries, k=5)] == [[c.id for c, _ in r] for r in approx]


def test_bfloat16_compute_ranks_like_float32(tmp_path: Path) -> None:
    chunks, vectors = make_pages(10, seed=2)
    exact = MultiVectorStore(None, DIM)
    fast = MultiVectorStore(None, DIM, MultiVectorSettings(compute_dtype="bfloat16"))
    for store in (exact, fast):
        store.replace_documents([], chunks, vectors)
    query = query_for(vectors[5], 9)
    a, b = exact.search([query], k=3)[0], fast.search([query], k=3)[0]
    assert a[0][0].id == b[0][0].id == chunks[5].id
    assert abs(a[0][1] - b[0][1]) < 0.05 * abs(a[0][1])
    half = MultiVectorStore(None, DIM, MultiVectorSettings(compute_dtype="float16"), device="cpu")
    half.replace_documents([], chunks, vectors)
    with pytest.raises(ConfigError, match="float16"):
        half.search([query], k=1)


@pytest.mark.parametrize("reduceat", [True, False])
def test_segment_max_paths_agree(reduceat: bool) -> None:
    import torch

    from ragloom.stores.multivector import segment_max

    lengths = np.array([3, 1, 5, 2])
    sims = torch.randn(4, int(lengths.sum()))
    expected = torch.stack([part.amax(dim=1) for part in torch.split(sims, lengths.tolist(), dim=1)], dim=1)
    assert torch.allclose(segment_max(torch, sims, lengths, reduceat=reduceat), expected)
    equal = np.array([2, 2, 2])
    sims = torch.randn(3, 6)
    assert torch.allclose(segment_max(torch, sims, equal), sims.view(3, 3, 2).amax(dim=2))


def test_adaptive_batches_back_off_on_out_of_memory() -> None:
    from ragloom.adapters.multivector._torch import AdaptiveBatcher
    from ragloom.errors import RagloomError, RagloomWarning

    seen: list[int] = []

    def encode(batch: list[int]) -> list[int]:
        seen.append(len(batch))
        if len(batch) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in batch]

    batcher = AdaptiveBatcher(8, "pages")
    with pytest.warns(RagloomWarning, match="batch size 4"):
        assert batcher.run(list(range(7)), encode) == [x * 10 for x in range(7)]
    assert batcher.batch_size == 2 and seen[:3] == [7, 4, 2]
    with pytest.raises(ValueError):
        AdaptiveBatcher(2).run([1], lambda batch: (_ for _ in ()).throw(ValueError("bad input")))
    with pytest.raises(RagloomError, match="single"):
        AdaptiveBatcher(1).run([1], lambda batch: (_ for _ in ()).throw(MemoryError()))


def test_many_appends_merge_the_newest_segments(tmp_path: Path) -> None:
    chunks, vectors = make_pages(10, pages=1)
    store = MultiVectorStore(tmp_path, DIM, max_segments=4)
    for chunk, matrix in zip(chunks, vectors):
        store.replace_documents([], [chunk], [matrix])
    assert len(store._segments) <= 4 and len(store) == 10
    assert store.doc_ids() == {c.doc_id for c in chunks}
    assert len(list(tmp_path.glob("seg-*.tokens.npy"))) == len(store._segments)
    query = query_for(vectors[6], 0)
    assert store.search([query], k=1)[0][0][0].id == chunks[6].id
    assert [c.id for c, _ in MultiVectorStore(tmp_path, DIM).search([query], k=10)[0]] == [
        c.id for c, _ in store.search([query], k=10)[0]
    ]
