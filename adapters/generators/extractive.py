"""Extractive answers without an LLM: the passage sentences that best match the question, each cited.

A :class:`ragloom.protocols.Generator` that reads the grounded-QA prompt ragloom builds (numbered passages, then
``Question:``), scores every passage sentence by the idf-weighted share of the question's content words it holds
(a small bonus for better-ranked passages), and answers with the best one or two, verbatim, each followed by its
``[n]``. When no sentence holds enough of the question it declines with the prompt's "I don't know" sentence.

It never invents text, so its citations are right by construction; what it cannot do is rephrase, combine or
compute. Use it where no model fits (tiny machines, CI), or as the fast fallback of a demo.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence

from ragloom.citations import content_words, insert_marker
from ragloom.errors import InvalidInputError
from ragloom.sentences import sentence_spans
from ragloom.types import Message

__all__ = ["DECLINE_TEXT", "ExtractiveGenerator", "parse_grounded_prompt"]

DECLINE_TEXT = "I don't know based on the provided documents."
_HEADER = re.compile(r"^\[(\d{1,3})\] \(.*\)$", re.MULTILINE)  # ragloom.prompting.format_passage's header


def parse_grounded_prompt(messages: Sequence[Message]) -> tuple[str, list[tuple[int, str]]]:
    """(question, [(marker, passage text)]) from a prompt built by :class:`ragloom.prompting.PromptBuilder`."""
    if not messages or not isinstance(messages[-1], Message):
        raise InvalidInputError("messages must be a non-empty sequence of ragloom.Message")
    user = messages[-1].content
    body, sep, question = user.rpartition("\nQuestion:")
    if not sep:
        raise InvalidInputError(
            "The extractive generator answers ragloom's grounded-QA prompts (passages, then 'Question:'); use it "
            "through a Pipeline"
        )
    question = question.rsplit("\nAnswer:", 1)[0].strip()
    headers = list(_HEADER.finditer(body))
    passages = []
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(body)
        passages.append((int(header.group(1)), body[header.end() : end].strip()))
    return question, passages


class ExtractiveGenerator:
    """Answers with the best-matching passage sentences, verbatim and cited (no model; see the module docs).

    ``max_sentences`` sentences at most are taken (the second only if it scores ``0.6`` of the best or more);
    ``min_score`` is the share of the question's (idf-weighted) content words a sentence must hold, else the
    generator declines.
    """

    name = "extractive"
    context_window = 1_000_000

    def __init__(self, *, max_sentences: int = 2, min_score: float = 0.25) -> None:
        if max_sentences < 1:
            raise InvalidInputError("max_sentences must be >= 1")
        if not 0 <= min_score <= 1:
            raise InvalidInputError("min_score must be between 0 and 1")
        self.max_sentences, self.min_score = max_sentences, min_score

    def generate(self, messages: Sequence[Message]) -> str:
        question, passages = parse_grounded_prompt(messages)
        wanted = content_words(question)
        candidates = []
        for rank, (marker, text) in enumerate(passages):
            for start, end in sentence_spans(text):
                sentence = " ".join(text[start:end].split())
                if sentence:
                    candidates.append((rank, marker, sentence, content_words(sentence)))
        if not wanted or not candidates:
            return DECLINE_TEXT
        df = {w: sum(w in words for *_, words in candidates) for w in wanted}
        idf = {w: math.log(1 + len(candidates) / (1 + df[w])) for w in wanted}
        total = sum(idf.values())
        scored = []
        for rank, marker, sentence, words in candidates:
            score = sum(idf[w] for w in wanted & words) / total
            scored.append((score * (1 - 0.03 * rank), marker, sentence))
        scored.sort(key=lambda item: -item[0])
        best = scored[0][0]
        if best < self.min_score:
            return DECLINE_TEXT
        chosen = [s for s in scored[: self.max_sentences] if s[0] >= 0.6 * best]
        return " ".join(insert_marker(sentence, marker) for _, marker, sentence in chosen)

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        yield self.generate(messages)

    def count_tokens(self, text: str) -> int:
        """Whitespace words (there is no model tokenizer; the context budget is then counted in words)."""
        return len(text.split())
