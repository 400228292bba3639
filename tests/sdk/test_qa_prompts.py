"""The guided QA prompt: rules after the passages, one worked turn, budgets that count the example."""

from __future__ import annotations

import pytest

from ragloom.citations import is_decline
from ragloom.errors import InvalidInputError
from ragloom.prompting import PromptBuilder
from ragloom.qa_prompts import DECLINE_PHRASE, GUIDED_INSTRUCTIONS, GUIDED_PROMPT
from ragloom.tokens import default_token_counter
from ragloom.types import Chunk, Hit, Message


def hit(i: int, text: str) -> Hit:
    return Hit(Chunk(id=f"d{i}#0-1", doc_id=f"d{i}", text=text, start=0, end=1, source=f"doc{i}.txt"), 1.0,
               "cosine", "dense", i + 1)  # fmt: skip


HITS = [hit(1, "The Eiffel Tower is 330 metres tall."), hit(2, "Bread rises after kneading.")]


def test_guided_prompt_puts_the_rules_after_the_passages() -> None:
    parts = GUIDED_PROMPT.build("how tall is the eiffel tower", HITS, default_token_counter(None))
    roles = [m.role for m in parts.messages]
    assert roles == ["system", "user", "assistant", "user"]
    last = parts.messages[-1].content
    assert last.index("[1] (doc1.txt)") < last.index(GUIDED_INSTRUCTIONS) < last.index("Question: how tall")
    assert parts.messages[2].content.endswith("[1].")  # the worked answer: a sentence, its marker at the end
    assert is_decline(DECLINE_PHRASE) and DECLINE_PHRASE in GUIDED_INSTRUCTIONS
    assert parts.context == tuple(HITS)


def test_default_prompt_is_unchanged() -> None:
    parts = PromptBuilder().build("q?", HITS[:1], default_token_counter(None))
    assert [m.role for m in parts.messages] == ["system", "user"]
    assert parts.messages[-1].content.endswith("Question: q?\nAnswer:")


def test_the_example_counts_against_the_budget() -> None:
    counter = default_token_counter(None)

    class Window:  # a generator that states its context window and measures whole prompts
        context_window = 400
        max_new_tokens = 50

        def prompt_tokens(self, messages: tuple[Message, ...]) -> int:
            return sum(counter.count(m.content) + 4 for m in messages)

    plain = PromptBuilder().budget("q?", counter, Window())
    guided = GUIDED_PROMPT.budget("q?", counter, Window())
    assert 0 < guided < plain


def test_examples_must_be_user_assistant_pairs() -> None:
    with pytest.raises(InvalidInputError, match="pairs"):
        PromptBuilder(examples=(Message("assistant", "hi"),))
    with pytest.raises(InvalidInputError, match="pairs"):
        PromptBuilder(examples=(Message("user", "hi"),))
