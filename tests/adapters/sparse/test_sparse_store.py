"""The sparse inverted index: exact scores against a dense reference, pruning, tombstones, merges, crash safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragloom.errors import IndexCorruptError, InvalidInputError
from ragloom.stores.sparse import SparseIndex, sparse_matrix
from ragloom.types import Chunk, SparseVector

VOCAB = 400


def _chunks(prefix: str, n: int, per_doc: int = 2) -> list[Chunk]:
    return [
        Chunk(id=f"{prefix}{i}#0-1", doc_id=f"{prefix}{i // per_doc}", text="Zürich café 東京", start=0, end=1)
        for i in range(n)
    ]


def _vectors(rng: np.random.Generator, n: int, terms: int = 30) -> list[SparseVector]:
    popularity = 1.0 / (np.arange(VOCAB) + 5.0)
    popularity /= popularity.sum()
    out = []
    for _ in range(n):
        ids = np.unique(rng.choice(VOCAB, size=rng.integers(1, terms), p=popularity))
        out.append(SparseVector(ids, rng.random(ids.size).astype(np.float32) + 0.01))
    return out


def _reference(live: list[tuple[Chunk, SparseVector]], query: SparseVector, k: int) -> list[str]:
    matrix = sparse_matrix([v for _, v in live], VOCAB).toarray().astype(np.float64)
    scores = matrix @ sparse_matrix([query], VOCAB).toarray()[0].astype(np.float64)
    order = np.lexsort((np.arange(len(live)), -scores))
    return [live[i][0].id for i in order[:k] if scores[i] > 0]


@pytest.fixture()
def filled(tmp_path: Path) -> tuple[SparseIndex, list[tuple[Chunk, SparseVector]]]:
    rng = np.random.default_rng(0)
    index = SparseIndex(tmp_path / "sparse")
    live: list[tuple[Chunk, SparseVector]] = []
    for batch in range(12):
        chunks, vectors = _chunks(f"b{batch}-", 40), _vectors(rng, 40)
        index.replace_documents([], chunks, vectors)
        live.extend(zip(chunks, vectors))
    return index, live


def test_search_matches_a_dense_reference(filled) -> None:
    index, live = filled
    queries = _vectors(np.random.default_rng(1), 25, terms=12)
    for query, matches in zip(queries, index.search(queries, k=7)):
        assert [m.chunk.id for m in matches] == _reference(live, query, 7)
        scores = [m.score for m in matches]
        assert scores == sorted(scores, reverse=True)


def test_explanations_sum_to_the_score(filled) -> None:
    index, _ = filled
    query = _vectors(np.random.default_rng(2), 1, terms=20)[0]
    for match in index.search([query], k=5, explain=100)[0]:
        assert match.terms and sum(w for _, w in match.terms) == pytest.approx(match.score, rel=1e-6)
        assert set(t for t, _ in match.terms) <= set(query.indices.tolist())
        weights = [w for _, w in match.terms]
        assert weights == sorted(weights, reverse=True)


def test_pruned_search_equals_exhaustive_search(monkeypatch: pytest.MonkeyPatch) -> None:
    import ragloom.stores.sparse_search as module  # the search kernels (pruning included) live here

    pruned_queries = []
    candidates = module._candidates

    def counting(*args: object, **kwargs: object) -> object:
        found = candidates(*args, **kwargs)  # type: ignore[arg-type]
        pruned_queries.append(found is not None)
        return found

    monkeypatch.setattr(module, "_candidates", counting)
    rng = np.random.default_rng(3)
    n = 20_000
    index = SparseIndex()
    chunks = [Chunk(id=f"d{i}#0-1", doc_id=f"d{i}", text="", start=0, end=1) for i in range(n)]
    index.replace_documents([], chunks, _vectors(rng, n, terms=40))
    index.delete_documents([f"d{i}" for i in range(0, n, 11)])
    queries = _vectors(rng, 30, terms=25)
    for k in (1, 10, 50):
        pruned = index.search(queries, k, prune=True)
        full = index.search(queries, k, prune=False)
        assert [[m.chunk.id for m in r] for r in pruned] == [[m.chunk.id for m in r] for r in full]
    assert any(pruned_queries), "the pruned path ran"
    filtered = index.search(queries[:5], 10, filters={"doc_id": "d7"})
    assert all({m.chunk.doc_id for m in r} <= {"d7"} for r in filtered)


def test_delete_replace_reload_and_compaction_keep_results(filled, tmp_path: Path) -> None:
    index, live = filled
    dropped = {f"b3-{i}" for i in range(20)} | {"b7-1", "b9-4"}
    removed = index.delete_documents(sorted(dropped))
    assert removed == sum(c.doc_id in dropped for c, _ in live)
    live = [(c, v) for c, v in live if c.doc_id not in dropped]
    replacement = _chunks("b5-", 2)[:1]
    new_vector = SparseVector([1, 2], [5.0, 5.0])
    index.replace_documents(["b5-0"], replacement, [new_vector])
    live = [(c, v) for c, v in live if c.doc_id != "b5-0"] + [(replacement[0], new_vector)]
    assert len(index) == len(live) and index.doc_ids() == {c.doc_id for c, _ in live}
    queries = _vectors(np.random.default_rng(4), 10, terms=12)
    expected = [_reference(live, q, 6) for q in queries]
    reopened = SparseIndex(tmp_path / "sparse")
    assert [[m.chunk.id for m in r] for r in reopened.search(queries, 6)] == expected
    before = [[round(m.score, 5) for m in r] for r in reopened.search(queries, 6)]
    reopened.compact()
    assert reopened.stats["segments"] == 1 and reopened.stats["deleted_rows"] == 0
    assert [[round(m.score, 5) for m in r] for r in reopened.search(queries, 6)] == before
    again = SparseIndex(tmp_path / "sparse")
    assert [[m.chunk.id for m in r] for r in again.search(queries, 6)] == expected
    assert again.search(queries[:1], 3)[0][0].chunk.text == "Zürich café 東京"


def test_segments_stay_few_and_files_are_cleaned(filled, tmp_path: Path) -> None:
    index, _ = filled
    assert index.stats["segments"] <= 3  # binary-counter merging: 12 batches → popcount(12) = 2 segments
    state = json.loads((tmp_path / "sparse" / "state.json").read_text())
    named = {name for seg in state["segments"] for name in seg["files"]}
    on_disk = {p.name for p in (tmp_path / "sparse").iterdir()} - {"state.json"}
    assert on_disk == named, "files no longer referenced are removed after each commit"
    assert all(name.endswith((".npy", ".jsonl")) for name in on_disk), "JSON and .npy only, no pickle"


def test_a_crash_before_commit_leaves_the_previous_state(filled, tmp_path: Path, monkeypatch) -> None:
    index, live = filled
    query = _vectors(np.random.default_rng(5), 1)[0]
    before = [m.chunk.id for m in index.search([query], 5)[0]]
    import ragloom.stores.sparse as module

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(module, "atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        index.replace_documents(["b0-0"], _chunks("new-", 3), _vectors(np.random.default_rng(6), 3))
    monkeypatch.undo()
    reopened = SparseIndex(tmp_path / "sparse")
    assert len(reopened) == len(live)
    assert [m.chunk.id for m in reopened.search([query], 5)[0]] == before


def test_a_damaged_file_is_reported(filled, tmp_path: Path) -> None:
    weights = sorted((tmp_path / "sparse").glob("*.weights.npy"))[0]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="sha256"):
        SparseIndex(tmp_path / "sparse")


def test_empty_index_unknown_terms_and_bad_input(tmp_path: Path) -> None:
    index = SparseIndex(tmp_path / "sparse")
    assert index.search([SparseVector([1], [1.0])], 5) == [[]] and len(index) == 0
    index.replace_documents([], _chunks("a", 2), [SparseVector([1, 3], [1.0, 2.0]), SparseVector([2], [1.0])])
    assert index.search([SparseVector([99_999], [1.0]), SparseVector([], [])], 5) == [[], []]
    with pytest.raises(InvalidInputError):
        index.replace_documents([], _chunks("b", 2), [SparseVector([1], [1.0])])
    with pytest.raises(InvalidInputError):
        index.replace_documents([], _chunks("c", 1), [np.array([1.0])])  # type: ignore[list-item]
    index.delete_documents(["a0"])
    assert len(SparseIndex(tmp_path / "sparse")) == 0
