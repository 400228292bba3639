"""Post-hoc attribution for answers written without markers."""

from __future__ import annotations

from ragloom.attribution import attribute_sentences, has_markers
from ragloom.types import Chunk, Hit


def make_hit(i: int, text: str) -> Hit:
    return Hit(Chunk(id=f"d{i}#0-1", doc_id=f"d{i}", text=text, start=0, end=1), 1.0, "cosine", "dense", i + 1)


CONTEXT = [
    make_hit(0, "Bread rises in a warm kitchen after kneading."),
    make_hit(1, "The statute imposes a maximum $10,000 penalty for nonwillful violations."),
]


def test_sentences_get_the_supporting_passage() -> None:
    text = "The maximum penalty for nonwillful violations is $10,000. Bears hibernate in winter."
    out = attribute_sentences(text, CONTEXT)
    assert out == "The maximum penalty for nonwillful violations is $10,000 [2]. Bears hibernate in winter."


def test_existing_markers_are_left_alone() -> None:
    text = "Bread rises [1]."
    assert has_markers(text) and attribute_sentences(text, CONTEXT) == text
    assert attribute_sentences("anything", []) == "anything"
