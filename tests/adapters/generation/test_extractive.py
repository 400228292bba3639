"""The extractive generator: verbatim best sentences, cited, through the real prompt builder; declines on no match."""

from __future__ import annotations

import pytest

from ragloom.adapters.generators.extractive import DECLINE_TEXT, ExtractiveGenerator, parse_grounded_prompt
from ragloom.citations import assess, check_citations
from ragloom.errors import InvalidInputError
from ragloom.prompting import PromptBuilder
from ragloom.tokens import default_token_counter
from ragloom.types import Chunk, Hit, Message


def make_hit(i: int, text: str) -> Hit:
    chunk = Chunk(id=f"d{i}#0-1", doc_id=f"d{i}", text=text, start=0, end=1, source=f"doc{i}.txt")
    return Hit(chunk, 1.0 - i / 10, "cosine", "dense", i + 1)


HITS = [
    make_hit(0, "Bread rises in a warm kitchen.\n\nKnead the dough for ten minutes."),
    make_hit(1, "Pfizer Inc. reported revenues of $1.11 billion in 2021. The U.S. was its largest market."),
    make_hit(2, "[3] (not a header) The telescope saw a galaxy cluster."),
]


def prompt(question: str) -> tuple[Message, ...]:
    generator = ExtractiveGenerator()
    return PromptBuilder().build(question, HITS, default_token_counter(generator), generator).messages


def test_parses_ragloom_prompts() -> None:
    question, passages = parse_grounded_prompt(prompt("How long to knead the dough?"))
    assert question == "How long to knead the dough?"
    assert [n for n, _ in passages] == [1, 2, 3]
    assert passages[0][1] == "Bread rises in a warm kitchen.\n\nKnead the dough for ten minutes."
    with pytest.raises(InvalidInputError, match="grounded-QA"):
        parse_grounded_prompt([Message("user", "hello")])


def test_answers_with_the_best_sentence_cited_and_supported() -> None:
    question = "What revenues did Pfizer report in 2021?"
    text = ExtractiveGenerator().generate(prompt(question))
    assert text.startswith("Pfizer Inc. reported revenues of $1.11 billion in 2021 [2].")
    citations, dangling, unsupported = check_citations(text, HITS)
    assert citations[0].marker == 2 and not dangling and not unsupported
    assert assess(text, question, HITS).verdict == "supported"


def test_declines_when_nothing_matches() -> None:
    text = ExtractiveGenerator().generate(prompt("Who won the 1998 football world cup?"))
    assert text == DECLINE_TEXT
    assert assess(text, "Who won?", HITS).verdict == "declined"
    assert list(ExtractiveGenerator().stream(prompt("Who won the cup?"))) == [DECLINE_TEXT]
