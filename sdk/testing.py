"""The retriever contract suite: every retriever (ours or a user's) must pass it.

Use it from pytest by subclassing and supplying factories::

    class TestMyRetriever(RetrieverContract):
        def make_retriever(self, path):            # a retriever persisted under ``path``
            return MyRetriever(encoder, path)
        def make_mismatched_retriever(self, path):  # optional: same kind, different encoder
            return MyRetriever(other_encoder, path)

pytest's ``tmp_path`` fixture provides the directories.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from ragloom.errors import EncoderMismatchError, IndexLockedError, InvalidInputError
from ragloom.protocols import Closeable
from ragloom.types import Document, Hit

__all__ = ["CONTRACT_DOCUMENTS", "RetrieverContract", "profile_documents"]

CONTRACT_DOCUMENTS = (
    Document(
        id="astro",
        text="The telescope observed a distant galaxy cluster bending light from quasars. "
        "Gravitational lensing magnified the faint background sources.",
        source="astro.txt",
        metadata={"topic": "space"},
    ),
    Document(
        id="bake",
        text="Knead the dough for ten minutes, then let the bread rise in a warm kitchen until it doubles in size.",
        source="bake.txt",
        metadata={"topic": "food"},
    ),
    Document(
        id="law",
        text="The court held that the statute did not apply retroactively to contracts signed before its enactment.",
        source="law.txt",
        metadata={"topic": "law"},
    ),
    Document(
        id="unicode",
        text="Zürich's Straße café serves crème brûlée; 東京の喫茶店は静かです。 Ελληνικά κείμενα.",
        source="unicode.txt",
        metadata={"topic": "food"},
    ),
    Document.from_pages(
        "paged",
        ["Page one talks about volcanoes and lava flows.", "Page two describes glaciers carving valleys."],
        source="paged.pdf",
    ),
)


_FIRST = "Ada Ben Cleo Dev Emil Fay Gus Hana Ivo Jo Kai Lena Milo Nia Omar Pia Quin Rosa Sami Tara Uma Vik Wes".split()
_LAST = ["Stone", "Reed"]
_HOBBIES = (
    "knitting chess surfing pottery archery fencing origami baking kayaking juggling sailing climbing rowing "
    "gardening birdwatching calligraphy beekeeping skating cycling painting woodworking fishing hiking dancing "
    "bouldering snorkeling yoga karate judo boxing tennis squash badminton cricket rugby hockey curling bowling "
    "darts billiards poker sudoku crosswords astronomy geocaching skydiving paragliding welding glassblowing "
    "quilting embroidery crochet sewing tailoring cooking brewing winemaking foraging mushrooms camping trekking "
    "running swimming diving rafting canoeing falconry fossils tapestry"
).split()


def profile_documents(seed: int = 0) -> tuple[list[Document], dict[str, set[str]]]:
    """An attribute-conjunction set where small dense encoders collapse: 46 short profiles, each liking 3 of 69
    hobbies, every hobby liked by exactly 2 profiles. Returns the documents and, per hobby, the ids of its fans
    (ask "Who likes HOBBY?")."""
    rng = random.Random(seed)
    names = [f"{f} {last}" for last in _LAST for f in _FIRST][:46]
    blocks = []  # three blocks of 23 hobbies, each hobby twice; a profile takes one slot of each block
    for b in range(3):
        slots = [h for h in _HOBBIES[23 * b : 23 * (b + 1)] for _ in range(2)]
        rng.shuffle(slots)
        blocks.append(slots)
    likes = [[blocks[b][i] for b in range(3)] for i in range(46)]
    docs: list[Document] = []
    fans: dict[str, set[str]] = {}
    for i, (name, hobbies) in enumerate(zip(names, likes)):
        first = name.split()[0]
        text = f"Profile of {name}. {first} lives in town number {i}. {first} likes {', '.join(hobbies)}."
        docs.append(Document(id=f"p{i}", text=text))
        for hobby in hobbies:
            fans.setdefault(hobby, set()).add(f"p{i}")
    return docs, fans


def _close(retriever: Any) -> None:
    if isinstance(retriever, Closeable):
        retriever.close()


class RetrieverContract:
    """Behaviour every Retriever must have. Subclasses define ``make_retriever(path)``."""

    #: whether a query equal to a document's text must rank that document first
    exact_text_ranks_first: bool = True

    def make_retriever(self, path: Path) -> Any:  # pragma: no cover - supplied by subclasses
        raise NotImplementedError

    def make_mismatched_retriever(self, path: Path) -> Any:
        return None

    def _filled(self, path: Path) -> Any:
        retriever = self.make_retriever(path)
        retriever.add(list(CONTRACT_DOCUMENTS))
        return retriever

    @staticmethod
    def _check_hits(hits: list[Hit], k: int) -> None:
        assert len(hits) <= k
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True), "hits must be sorted by score, best first"
        by_id = {d.id: d for d in CONTRACT_DOCUMENTS}
        for hit in hits:
            doc = by_id[hit.chunk.doc_id]
            if hit.chunk.text:
                assert doc.text[hit.chunk.start : hit.chunk.end] == hit.chunk.text, "chunk span must be exact"

    def test_search_returns_ranked_hits(self, tmp_path: Path) -> None:
        retriever = self._filled(tmp_path / "index")
        try:
            hits = retriever.search("distant galaxy cluster quasars", k=3)
            self._check_hits(hits, 3)
            assert hits, "a query sharing words with a document must return hits"
            assert all(h.retriever == retriever.name for h in hits)
            assert retriever.doc_ids() >= {d.id for d in CONTRACT_DOCUMENTS if d.text.strip()}
        finally:
            _close(retriever)

    def test_exact_text_query_finds_its_document(self, tmp_path: Path) -> None:
        retriever = self._filled(tmp_path / "index")
        try:
            doc = CONTRACT_DOCUMENTS[2]
            hits = retriever.search(doc.text, k=3)
            found = [h.chunk.doc_id for h in hits]
            if self.exact_text_ranks_first:
                assert found[0] == doc.id
            else:
                assert doc.id in found
        finally:
            _close(retriever)

    def test_empty_index_returns_nothing(self, tmp_path: Path) -> None:
        retriever = self.make_retriever(tmp_path / "index")
        try:
            assert retriever.search("anything at all", k=5) == []
            assert len(retriever) == 0
        finally:
            _close(retriever)

    def test_delete_and_replace(self, tmp_path: Path) -> None:
        retriever = self._filled(tmp_path / "index")
        try:
            before = len(retriever)
            removed = retriever.delete(["law"])
            assert removed >= 1 and len(retriever) == before - removed
            assert "law" not in retriever.doc_ids()
            assert all(h.chunk.doc_id != "law" for h in retriever.search(CONTRACT_DOCUMENTS[2].text, k=10))
            retriever.add([CONTRACT_DOCUMENTS[0]])  # re-adding replaces, never duplicates
            assert len(retriever) == before - removed
        finally:
            _close(retriever)

    def test_persist_and_reload(self, tmp_path: Path) -> None:
        path = tmp_path / "index"
        retriever = self._filled(path)
        query = "bread dough rise"
        first = [(h.chunk.id, round(h.score, 4)) for h in retriever.search(query, k=3)]
        count = len(retriever)
        _close(retriever)
        reopened = self.make_retriever(path)
        try:
            assert len(reopened) == count
            assert [(h.chunk.id, round(h.score, 4)) for h in reopened.search(query, k=3)] == first
        finally:
            _close(reopened)

    def test_mismatched_encoder_is_refused(self, tmp_path: Path) -> None:
        import pytest

        path = tmp_path / "index"
        _close(self._filled(path))
        with pytest.raises(EncoderMismatchError) as info:
            other = self.make_mismatched_retriever(path)
            if other is None:
                pytest.skip("no mismatched encoder supplied for this retriever")
            _close(other)
        assert "index has" in str(info.value)

    def test_first_write_records_the_encoder(self, tmp_path: Path) -> None:
        """The manifest goes down with the first write, before any vector: an index killed during its first batch
        still refuses another encoder."""
        import pytest

        from ragloom.persistence import Manifest

        path = tmp_path / "index"
        first = self.make_retriever(path)
        try:
            assert first.delete(["not-there"]) == 0  # a write that stores nothing
            assert Manifest.load(path) is not None, "no manifest after the first write"
        finally:
            _close(first)
        with pytest.raises(EncoderMismatchError):
            other = self.make_mismatched_retriever(path)
            if other is None:
                pytest.skip("no mismatched encoder supplied for this retriever")
            _close(other)

    def test_second_writer_is_refused(self, tmp_path: Path) -> None:
        import pytest

        path = tmp_path / "index"
        first = self._filled(path)
        second = self.make_retriever(path)
        try:
            with pytest.raises(IndexLockedError):
                second.add([CONTRACT_DOCUMENTS[1]])
        finally:
            _close(second)
            _close(first)

    def test_search_many_matches_search(self, tmp_path: Path) -> None:
        retriever = self._filled(tmp_path / "index")
        try:
            queries = ["galaxy lensing", "court statute contracts", "glaciers valleys"]
            many = retriever.search_many(queries, k=3)
            for query, hits in zip(queries, many):
                single = retriever.search(query, k=3)
                assert [h.chunk.id for h in hits] == [h.chunk.id for h in single]
        finally:
            _close(retriever)

    def test_async_search_matches_search(self, tmp_path: Path) -> None:
        retriever = self._filled(tmp_path / "index")
        try:
            sync = retriever.search("volcanoes lava", k=3)
            result = asyncio.run(retriever.asearch("volcanoes lava", k=3))
            assert [h.chunk.id for h in result] == [h.chunk.id for h in sync]
        finally:
            _close(retriever)

    def test_filters(self, tmp_path: Path) -> None:
        retriever = self._filled(tmp_path / "index")
        try:
            hits = retriever.search("food kitchen café", k=10, filters={"topic": "food"})
            assert hits and {h.chunk.doc_id for h in hits} <= {"bake", "unicode"}
            hits = retriever.search("anything", k=10, filters={"doc_id": "law"})
            assert {h.chunk.doc_id for h in hits} <= {"law"}
        finally:
            _close(retriever)

    def test_pages_are_kept(self, tmp_path: Path) -> None:
        retriever = self._filled(tmp_path / "index")
        try:
            hits = retriever.search("glaciers carving valleys", k=10, filters={"doc_id": "paged"})
            assert hits and all(h.chunk.page in (1, 2) for h in hits)
        finally:
            _close(retriever)

    def test_bad_input_is_a_typed_error(self, tmp_path: Path) -> None:
        import pytest

        retriever = self._filled(tmp_path / "index")
        try:
            for query, k in (("", 3), ("ok", 0), ("ok", -1)):
                with pytest.raises(InvalidInputError):
                    retriever.search(query, k=k)
            with pytest.raises(InvalidInputError):
                retriever.add(["not a document"])
        finally:
            _close(retriever)
