"""Approximate sparse search: with no pruning it is the exact search; with pruning it returns exact scores of a
near-exact top k, respects deletions and filters; the SPLADE retriever runs the contract with it on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragloom.adapters.sparse import SparseRetriever, SpladeEncoder
from ragloom.errors import InvalidInputError
from ragloom.stores.sparse import SparseIndex
from ragloom.stores.sparse_approx import ApproxSearch
from ragloom.testing import RetrieverContract
from ragloom.types import Chunk, SparseVector

VOCAB = 300


def _data(rng: np.random.Generator, n: int) -> list[SparseVector]:
    popularity = 1.0 / (np.arange(VOCAB) + 3.0)
    popularity /= popularity.sum()
    out = []
    for _ in range(n):
        ids = np.unique(rng.choice(VOCAB, size=int(rng.integers(5, 40)), p=popularity))
        out.append(SparseVector(ids, rng.lognormal(0.0, 0.6, ids.size).astype(np.float32)))
    return out


def _chunks(start: int, n: int) -> list[Chunk]:
    return [
        Chunk(id=f"c{i}", doc_id=f"d{i // 2}", text="", start=0, end=1, page=1 + i % 3) for i in range(start, start + n)
    ]


@pytest.fixture(scope="module")
def index_and_queries() -> tuple[SparseIndex, list[SparseVector]]:
    rng = np.random.default_rng(0)
    vectors = _data(rng, 3000)
    index = SparseIndex(merge_factor=0.0)  # keep three segments
    for start in range(0, 3000, 1000):
        index.replace_documents([], _chunks(start, 1000), vectors[start : start + 1000])
    return index, _data(rng, 60)


def _ids(matches: list) -> list[str]:  # type: ignore[type-arg]
    return [m.chunk.id for m in matches]


def test_no_pruning_is_exact(index_and_queries: tuple[SparseIndex, list[SparseVector]]) -> None:
    index, queries = index_and_queries
    assert len(index._segments) == 3
    loose = ApproxSearch(query_terms=None, postings=10**6, rescore=1000)
    exact, approx = index.search(queries, 10, explain=3), index.search(queries, 10, explain=3, approx=loose)
    assert [[(m.chunk.id, m.score, m.terms) for m in row] for row in exact] == [
        [(m.chunk.id, m.score, m.terms) for m in row] for row in approx
    ]


def test_pruned_search_is_near_exact_with_exact_scores(
    index_and_queries: tuple[SparseIndex, list[SparseVector]],
) -> None:
    index, queries = index_and_queries
    exact = index.search(queries, 10)
    recalls = []
    for setting, floor in ((ApproxSearch(query_terms=4, postings=256, rescore=2), 0.6), (ApproxSearch(), 0.95)):
        approx = index.search(queries, 10, approx=setting)
        recalls.append(np.mean([len(set(_ids(a)) & set(_ids(e))) / max(1, len(e)) for a, e in zip(approx, exact)]))
        assert recalls[-1] >= floor
        truth = {m.chunk.id: m.score for row in index.search(queries[:1], 3000) for m in row}
        assert all(abs(truth[m.chunk.id] - m.score) < 1e-9 for m in approx[0])  # rescored exactly
    assert recalls[0] < 1.0  # the tight setting does prune


def test_deletions_and_filters(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vectors = _data(rng, 400)
    index = SparseIndex(tmp_path)
    index.replace_documents([], _chunks(0, 400), vectors)
    setting = ApproxSearch(query_terms=4, postings=256)
    query = vectors[10]
    assert index.search([query], 1, approx=setting)[0][0].chunk.id == "c10"
    index.delete_documents(["d5"])  # c10, c11
    assert "c10" not in _ids(index.search([query], 10, approx=setting)[0])
    only = index.search([query], 10, filters={"page": 3}, approx=setting)[0]
    assert only and all(m.chunk.page == 3 for m in only)
    for bad in ({"query_terms": 0}, {"postings": 0}, {"rescore": 0}):
        with pytest.raises(InvalidInputError):
            ApproxSearch(**bad)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def encoder(lexical_splade_dir: Path) -> SpladeEncoder:
    return SpladeEncoder(lexical_splade_dir)


@pytest.fixture(scope="module")
def other_encoder(lexical_splade_other_dir: Path) -> SpladeEncoder:
    return SpladeEncoder(lexical_splade_other_dir)


class TestApproximateSpladeRetriever(RetrieverContract):
    @pytest.fixture(autouse=True)
    def _encoders(self, encoder: SpladeEncoder, other_encoder: SpladeEncoder) -> None:
        self.encoder, self.other = encoder, other_encoder

    def make_retriever(self, path: Path) -> SparseRetriever:
        return SparseRetriever(self.encoder, path, chunk_size=24, overlap=4, approximate=True)

    def make_mismatched_retriever(self, path: Path) -> SparseRetriever:
        return SparseRetriever(self.other, path, chunk_size=24, overlap=4, approximate=True)
