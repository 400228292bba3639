"""Grounded-QA prompting: context packing within a token budget, ``[n]`` citations, and a citation validator.

Packing counts tokens with the generator's own tokenizer when it has one (``count_tokens``), else tiktoken, and
fits the generator's context window when it states one (``context_window`` less the reply's ``max_new_tokens``
/ ``max_tokens``); a generator that can measure a whole templated prompt (``prompt_tokens``) gets an exact final
check. Passages are kept whole or left out (counted in ``dropped``), never cut mid-way.

The validator flags markers that point at no passage (dangling) and markers whose passage does not support the
sentence citing them (unsupported): too few of the sentence's content words in the passage, or a number in the
sentence that none of its cited passages contains. Lexical, cheap and model-free; it catches the common failures
of a model citing the wrong passage or inventing a figure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ragloom.errors import InvalidInputError
from ragloom.tokens import TextTokenCounter
from ragloom.types import Citation, Hit, Message

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "PromptBuilder",
    "PromptParts",
    "check_citations",
    "citation_markers",
    "format_passage",
]

DEFAULT_SYSTEM_PROMPT = (
    "You answer questions using only the numbered context passages. "
    "Cite every claim with the passage number in square brackets, like [1] or [2][3]. "
    'If the passages do not contain the answer, say "I don\'t know based on the provided documents." '
    "Do not use outside knowledge. Be concise."
)

# [1], [1][2], [1, 2], [1,2,3]: the forms models write
_MARKER_GROUP = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_SENTENCE = re.compile(r".+?(?:[.!?]+(?=\s|$)|\n|$)")  # "3.5" and "e.g.x" do not end a sentence
_ONLY_MARKERS = re.compile(r"^[\s\[\]\d,.;:!?]*$")
_WORD = re.compile(r"[a-z0-9]+")
_DIGITS = re.compile(r"\d+")
_STOP = frozenset(
    "a an and are as at be by for from has have he her his i in is it its of on or our she that the their them "
    "they this to was were what when where which who why will with you your not no do does did can could would "
    "should may might than then there these those also into about over under more most such only".split()
)
_SUFFIXES = ("ing", "ed", "es", "s")
_TEMPLATE_SLACK = 16  # tokens a chat template adds around messages, when it cannot be measured exactly


def format_passage(number: int, hit: Hit) -> str:
    """``[n] (source, page p)`` header followed by the passage text."""
    chunk = hit.chunk
    where = chunk.source.rsplit("/", 1)[-1] if chunk.source else chunk.doc_id
    page = f", page {chunk.page}" if chunk.page is not None else ""
    return f"[{number}] ({where}{page})\n{chunk.text.strip()}"


@dataclass(frozen=True)
class PromptParts:
    """The messages sent to the generator and the hits that made it into the context, in marker order.

    ``budget`` is the number of context tokens the passages were packed into.
    """

    messages: tuple[Message, ...]
    context: tuple[Hit, ...]
    dropped: int
    budget: int = 0


def _reply_tokens(generator: object) -> int:
    for attribute in ("max_new_tokens", "max_tokens"):
        value = getattr(generator, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


@dataclass(frozen=True)
class PromptBuilder:
    """Builds the grounded-QA chat: system rules, numbered passages (best first) within the budget, question.

    ``context_tokens`` caps the tokens spent on passages. Given the ``generator``, the budget also shrinks to
    what its context window leaves after the rest of the prompt and the reply, so a prompt never overflows the
    model. A passage that does not fit whole is left out (counted in ``dropped``), never cut mid-way.
    """

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    context_tokens: int = 1500

    def __post_init__(self) -> None:
        if self.context_tokens < 1:
            raise InvalidInputError(f"context_tokens must be positive, got {self.context_tokens}")

    def _messages(self, question: str, blocks: Sequence[str]) -> tuple[Message, ...]:
        context = "\n\n".join(blocks) if blocks else "(no passages were found)"
        user = f"Context passages:\n\n{context}\n\nQuestion: {question}\nAnswer:"
        return (Message("system", self.system_prompt), Message("user", user))

    def budget(self, question: str, counter: TextTokenCounter, generator: object | None = None) -> int:
        """Tokens available for passages: ``context_tokens``, or less when the generator's window is smaller."""
        window = getattr(generator, "context_window", None)
        if not isinstance(window, int) or window <= 0:
            return self.context_tokens
        scaffold = self._messages(question, [])
        measure = getattr(generator, "prompt_tokens", None)
        if callable(measure):
            fixed = int(measure(scaffold))
        else:
            fixed = sum(counter.count(m.content) for m in scaffold) + _TEMPLATE_SLACK
        return max(0, min(self.context_tokens, window - _reply_tokens(generator) - fixed))

    def build(
        self, question: str, hits: Sequence[Hit], counter: TextTokenCounter, generator: object | None = None
    ) -> PromptParts:
        """Pack ``hits`` (best first) into the budget and return the messages and the passages used."""
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError("The question is empty")
        question = question.strip()
        budget = self.budget(question, counter, generator)
        used: list[Hit] = []
        blocks: list[str] = []
        spent = 0
        for hit in hits:
            block = format_passage(len(used) + 1, hit)
            cost = counter.count(block) + 2
            if spent + cost > budget:
                continue
            used.append(hit)
            blocks.append(block)
            spent += cost
        messages = self._messages(question, blocks)
        measure = getattr(generator, "prompt_tokens", None)
        window = getattr(generator, "context_window", None)
        if callable(measure) and isinstance(window, int) and window > 0:
            limit = window - _reply_tokens(generator)
            while used and int(measure(messages)) > limit:  # the estimate was short: drop from the tail
                used.pop()
                blocks.pop()
                messages = self._messages(question, blocks)
        return PromptParts(messages, tuple(used), len(hits) - len(used), budget)


def citation_markers(text: str) -> list[int]:
    """Every ``[n]`` marker in ``text`` in order (``[1, 2]`` counts as 1 and 2)."""
    return [int(n) for group in _MARKER_GROUP.findall(text) for n in group.split(",")]


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _content_words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def _numbers(text: str) -> set[str]:
    """Digit runs, thousands separators removed ("$10,000" -> "10000", "3.5" -> "3", "5")."""
    return set(_DIGITS.findall(re.sub(r"(?<=\d),(?=\d{3})", "", text)))


def _claims(text: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, markers) pairs; a fragment of bare markers belongs to the sentence before it."""
    pieces: list[tuple[str, list[int]]] = []
    for match in _SENTENCE.finditer(text):
        sentence = match.group(0)
        markers = citation_markers(sentence)
        if pieces and markers and _ONLY_MARKERS.match(sentence):
            pieces[-1][1].extend(markers)
            continue
        pieces.append((_MARKER_GROUP.sub(" ", sentence), markers))
    return pieces


def check_citations(
    text: str, context: Sequence[Hit], min_overlap: float = 0.2
) -> tuple[tuple[Citation, ...], tuple[int, ...], tuple[int, ...]]:
    """Resolve ``[n]`` markers against the context.

    Returns (citations in first-use order, dangling markers, unsupported markers). In a sentence citing a
    passage, the marker is supported when at least ``min_overlap`` of the sentence's content words appear in
    the passage and every number in the sentence appears in one of the passages it cites. A marker is
    unsupported when no sentence citing it is supported.
    """
    citations: dict[int, Citation] = {}
    dangling: list[int] = []
    checked: set[int] = set()
    supported: set[int] = set()
    for claim_text, markers in _claims(text):
        claim = _content_words(claim_text)
        valid = []
        for marker in markers:
            if not 1 <= marker <= len(context):
                if marker not in dangling:
                    dangling.append(marker)
                continue
            citations.setdefault(marker, Citation(marker, context[marker - 1]))
            valid.append(marker)
        if not claim or not valid:
            continue
        cited_numbers = set().union(*(_numbers(context[m - 1].chunk.text) for m in valid))
        numbers_ok = _numbers(claim_text) <= cited_numbers
        for marker in valid:
            checked.add(marker)
            overlap = len(claim & _content_words(context[marker - 1].chunk.text)) / len(claim)
            if numbers_ok and overlap >= min_overlap:
                supported.add(marker)
    return tuple(citations.values()), tuple(dangling), tuple(sorted(checked - supported))
