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

from collections.abc import Sequence
from dataclasses import dataclass

from ragloom.citations import check_citations, citation_markers
from ragloom.errors import InvalidInputError
from ragloom.protocols import ContextWindowAware, PromptMeasuringGenerator, ReplyLimited
from ragloom.tokens import TextTokenCounter
from ragloom.types import Hit, Message

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
    """Tokens the generator's reply may take (0 when it sets no cap)."""
    value = generator.reply_tokens if isinstance(generator, ReplyLimited) else None
    return value if isinstance(value, int) and value > 0 else 0


def _window(generator: object) -> int | None:
    """The generator's context window in tokens, when it declares a positive one."""
    window = generator.context_window if isinstance(generator, ContextWindowAware) else None
    return window if isinstance(window, int) and window > 0 else None


@dataclass(frozen=True)
class PromptBuilder:
    """Builds the grounded-QA chat: system rules, numbered passages (best first) within the budget, question.

    ``context_tokens`` caps the tokens spent on passages. Given the ``generator``, the budget also shrinks to
    what its context window leaves after the rest of the prompt and the reply, so a prompt never overflows the
    model. A passage that does not fit whole is left out (counted in ``dropped``), never cut mid-way.

    ``instructions`` (placed after the passages, right before the question, where a small model still reads
    them) and ``examples`` (worked chat turns placed before the question's turn) are empty by default; see
    :mod:`ragloom.qa_prompts` for a prompt built with them for small instruct models.
    """

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    context_tokens: int = 1500
    instructions: str = ""
    examples: tuple[Message, ...] = ()

    def __post_init__(self) -> None:
        if self.context_tokens < 1:
            raise InvalidInputError(f"context_tokens must be positive, got {self.context_tokens}")
        object.__setattr__(self, "examples", tuple(self.examples))
        roles = [m.role if isinstance(m, Message) else None for m in self.examples]
        if roles != ["user", "assistant"] * (len(roles) // 2):
            raise InvalidInputError("examples must be ragloom.Message pairs: a user turn, then the assistant's reply")

    def _messages(self, question: str, blocks: Sequence[str]) -> tuple[Message, ...]:
        context = "\n\n".join(blocks) if blocks else "(no passages were found)"
        if self.instructions:
            user = f"Context passages:\n\n{context}\n\n{self.instructions}\n\nQuestion: {question}"
        else:
            user = f"Context passages:\n\n{context}\n\nQuestion: {question}\nAnswer:"
        return (Message("system", self.system_prompt), *self.examples, Message("user", user))

    def budget(self, question: str, counter: TextTokenCounter, generator: object | None = None) -> int:
        """Tokens available for passages: ``context_tokens``, or less when the generator's window is smaller."""
        window = _window(generator)
        if window is None:
            return self.context_tokens
        scaffold = self._messages(question, [])
        if isinstance(generator, PromptMeasuringGenerator):
            fixed = int(generator.prompt_tokens(scaffold))
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
        window = _window(generator)
        if isinstance(generator, PromptMeasuringGenerator) and window is not None:
            limit = window - _reply_tokens(generator)
            while used and int(generator.prompt_tokens(messages)) > limit:  # the estimate was short: drop from the tail
                used.pop()
                blocks.pop()
                messages = self._messages(question, blocks)
        return PromptParts(messages, tuple(used), len(hits) - len(used), budget)
