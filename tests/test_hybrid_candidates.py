"""The hybrid_candidates benchmark's real-query column ranks each query by its own fused order."""

from __future__ import annotations

from benchmarks.hybrid_candidates import _ranked, copy_rate, fuse
from ragloom.eval import aggregate_to_documents
from ragloom.types import Chunk, Hit


def _hit(chunk: Chunk, score: float, rank: int, member: str = "bm25") -> Hit:
    return Hit(chunk, score, "bm25", member, rank)


def test_ranked_keeps_each_querys_fused_order_when_a_chunk_recurs_with_other_scores() -> None:
    a, b = Chunk("a#0", "a", "alpha text", 0, 10), Chunk("b#0", "b", "beta text", 0, 9)
    # query 0 ranks a over b; query 1 holds a again, with a score far above query 0's
    runs = {"bm25": [[_hit(a, 2.0, 1), _hit(b, 1.0, 2)], [_hit(b, 9.0, 1), _hit(a, 8.0, 2)]]}
    ids = fuse("minmax", {"bm25": runs["bm25"][0]})
    assert ids == ["a#0", "b#0"]
    docs = aggregate_to_documents(_ranked(ids, runs, 0), 10)
    assert list(docs) == ["a", "b"]
    assert list(aggregate_to_documents(_ranked(fuse("minmax", {"bm25": runs["bm25"][1]}), runs, 1), 10)) == ["b", "a"]


def test_copy_rate_counts_content_words_found_in_the_chunk() -> None:
    text = "Point Pelee National Park is a national park in Essex County, Ontario."
    assert copy_rate("What is Point Pelee National Park?", text) == 1.0
    assert copy_rate("Which protected area lies at Canada's southern tip?", text) == 0.0
    assert copy_rate("Which park lies in Ontario?", text) == 2 / 3
