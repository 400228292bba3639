"""Grounded-QA prompting: context packing within a token budget, ``[n]`` citations, and a citation validator.

The validator flags markers that point at no passage (dangling) and markers whose passage shares too little with
the sentence that cites it (unsupported): a lexical check, cheap and model-free, that catches the common failure
of a model citing the wrong passage or inventing a number.
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
    "format_passage",
]

DEFAULT_SYSTEM_PROMPT = (
    "You answer questions using only the numbered context passages. "
    "Cite every claim with the passage number in square brackets, like [1] or [2][3]. "
    'If the passages do not contain the answer, say "I don\'t know based on the provided documents." '
    "Do not use outside knowledge. Be concise."
)

_MARKER = re.compile(r"\[(\d{1,3})\]")
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "she",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "not",
        "no",
        "do",
        "does",
        "did",
        "can",
        "could",
        "would",
        "should",
        "may",
        "might",
        "than",
        "then",
        "there",
        "these",
        "those",
        "also",
        "into",
        "about",
        "over",
        "under",
        "more",
        "most",
        "such",
        "only",
    ]
)


def format_passage(number: int, hit: Hit) -> str:
    """``[n] (source, page p)`` header followed by the passage text."""
    chunk = hit.chunk
    where = chunk.source.rsplit("/", 1)[-1] if chunk.source else chunk.doc_id
    page = f", page {chunk.page}" if chunk.page is not None else ""
    return f"[{number}] ({where}{page})\n{chunk.text.strip()}"


@dataclass(frozen=True)
class PromptParts:
    """The messages sent to the generator and the hits that made it into the context, in marker order."""

    messages: tuple[Message, ...]
    context: tuple[Hit, ...]
    dropped: int


@dataclass(frozen=True)
class PromptBuilder:
    """Builds the grounded-QA chat: system rules, numbered passages (best first) within the budget, question.

    ``context_tokens`` is the budget for passages; a passage that does not fit whole is left out (and counted in
    ``dropped``), never cut mid-way.
    """

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    context_tokens: int = 1500

    def build(self, question: str, hits: Sequence[Hit], counter: TextTokenCounter) -> PromptParts:
        if not question.strip():
            raise InvalidInputError("The question is empty")
        used: list[Hit] = []
        blocks: list[str] = []
        spent = 0
        dropped = 0
        for hit in hits:
            block = format_passage(len(used) + 1, hit)
            cost = counter.count(block) + 2
            if spent + cost > self.context_tokens:
                dropped += 1
                continue
            used.append(hit)
            blocks.append(block)
            spent += cost
        context = "\n\n".join(blocks) if blocks else "(no passages were found)"
        user = (
            f"Context passages:\n\n{context}\n\nQuestion: {question.strip()}\nAnswer (cite passages as [n]):"
        )
        messages = (Message("system", self.system_prompt), Message("user", user))
        return PromptParts(messages, tuple(used), dropped)


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def check_citations(
    text: str, context: Sequence[Hit], min_overlap: float = 0.2
) -> tuple[tuple[Citation, ...], tuple[int, ...], tuple[int, ...]]:
    """Resolve ``[n]`` markers against the context.

    Returns (citations in first-use order, dangling markers, unsupported markers). A marker is unsupported when
    fewer than ``min_overlap`` of the content words of the sentence citing it appear in its passage.
    """
    citations: dict[int, Citation] = {}
    dangling: list[int] = []
    checked: set[int] = set()
    supported: set[int] = set()
    for sentence_match in _SENTENCE.finditer(text):
        sentence = sentence_match.group(0)
        claim = _content_words(_MARKER.sub(" ", sentence))
        for marker in (int(m) for m in _MARKER.findall(sentence)):
            if not 1 <= marker <= len(context):
                if marker not in dangling:
                    dangling.append(marker)
                continue
            hit = context[marker - 1]
            citations.setdefault(marker, Citation(marker, hit))
            if not claim:
                continue
            checked.add(marker)
            if len(claim & _content_words(hit.chunk.text)) / len(claim) >= min_overlap:
                supported.add(marker)
    # a marker is unsupported only if no sentence citing it is supported by its passage
    return tuple(citations.values()), tuple(dangling), tuple(sorted(checked - supported))
