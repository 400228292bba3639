"""Ask the model itself whether the retrieved passages answer the question, before it answers.

Retrieval scores cannot tell an on-topic passage that answers from one that does not (ClapNQ's unanswerable
questions come with a passage on their topic; see docs/generators.md). The generator can read them:
:class:`AnswerabilityCheck` puts the grounded-QA prompt's passages and the question to the model with "Do the
passages above contain the answer to the question? Reply yes or no." and reads the log-probabilities of its first
reply token (``yes``/``no``; :class:`ragloom.protocols.LogprobGenerator`, no text is generated). The score is
``P(yes) / (P(yes) + P(no))``; under ``threshold`` the pipeline declines without generating
(``Pipeline(answerability=...)``) and says what was searched.

The check's prompt starts exactly like the answer's (system prompt, worked examples, passages), so a generator
with a prompt cache (llama.cpp) evaluates the passages once for both: the check costs a few dozen tokens.

``mode="decline-phrase"`` asks nothing extra: the score is ``1 - P(the answer starts with the decline phrase)``
on the answer prompt itself (a prompt that tells the model to reply with an exact phrase when the passages do
not hold the answer, such as :data:`ragloom.qa_prompts.GUIDED_PROMPT`); with a prompt cache it is free, the
generation that follows reuses the whole prompt.

``threshold=0.5`` is the model's own choice (yes more likely than no): no labels. :func:`fit_threshold` fits it
on labelled questions instead (a split you do not report on); the decline-phrase score needs such a fit (the
phrase's first token is rarely the likeliest even when the passages lack the answer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ragloom.errors import ConfigError, InvalidInputError
from ragloom.protocols import LogprobGenerator, TokenizingGenerator
from ragloom.qa_prompts import DECLINE_PHRASE
from ragloom.types import Message

__all__ = ["CHECK_QUESTION", "DECLINE_PHRASE", "AnswerabilityCheck", "fit_threshold", "yes_no_token_ids"]


CHECK_QUESTION = "Do the passages above contain the answer to the question? Reply yes or no."
_YES = ("yes", "Yes", "YES", " yes", " Yes")
_NO = ("no", "No", "NO", " no", " No")


def _tokenize(generator: object, text: str) -> list[int]:
    if not isinstance(generator, TokenizingGenerator):
        raise ConfigError(
            f"{type(generator).__name__} has no tokenize(text) method (ragloom.protocols.TokenizingGenerator); the "
            "answerability check needs the model's own token ids to read yes/no log-probabilities"
        )
    return [int(t) for t in generator.tokenize(text)]


def yes_no_token_ids(generator: object) -> tuple[list[int], list[int]]:
    """First-token ids of "yes" and "no" (and their capitalised / spaced forms) in the generator's tokenizer.

    An id that starts both a yes-form and a no-form is dropped; a tokenizer left without either side is refused.
    """
    yes = {ids[0] for ids in (_tokenize(generator, w) for w in _YES) if ids}
    no = {ids[0] for ids in (_tokenize(generator, w) for w in _NO) if ids}
    yes, no = yes - no, no - yes
    if not yes or not no:
        raise ConfigError("The generator's tokenizer does not tell 'yes' from 'no' by their first token")
    return sorted(yes), sorted(no)


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


@dataclass
class AnswerabilityCheck:
    """Score ``P(the passages answer the question)`` with the generator's yes/no log-probabilities.

    ``generator`` must offer ``next_token_logprobs`` (a local model: ``TransformersGenerator``,
    ``LlamaCppGenerator``). ``threshold``: decline under it (0.5: the model's own yes/no choice). ``mode``:
    ``"yes-no"`` (ask :attr:`question`) or ``"decline-phrase"`` (``1 - P(the reply starts with
    decline_phrase)`` on the answer prompt itself; see the module docs).
    """

    generator: Any
    threshold: float = 0.5
    question: str = CHECK_QUESTION
    mode: Literal["yes-no", "decline-phrase"] = "yes-no"
    decline_phrase: str = DECLINE_PHRASE
    _ids: tuple[list[int], list[int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.generator, LogprobGenerator):
            raise ConfigError(
                f"{type(self.generator).__name__} cannot score next-token log-probabilities; the answerability "
                "check needs a local model (TransformersGenerator or LlamaCppGenerator)"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be between 0 and 1, got {self.threshold}")
        if not self.question.strip() or not self.decline_phrase.strip():
            raise ConfigError("question and decline_phrase must not be empty")
        if self.mode == "yes-no":
            self._ids = yes_no_token_ids(self.generator)
        elif self.mode == "decline-phrase":
            first = _tokenize(self.generator, self.decline_phrase)[:1]
            if not first:
                raise ConfigError("The generator's tokenizer gives no token for the decline phrase")
            self._ids = (first, [])
        else:
            raise ConfigError(f"mode must be 'yes-no' or 'decline-phrase', got {self.mode!r}")

    def messages(self, question: str, prompt: Sequence[Message], instructions: str = "") -> tuple[Message, ...]:
        """The check's conversation: ``prompt`` (a grounded-QA prompt from :class:`ragloom.prompting.PromptBuilder`)
        with its last user turn cut after the passages and ended by the question and :attr:`question`.

        ``instructions`` are the prompt builder's own (placed after the passages); they are left out. In
        ``"decline-phrase"`` mode the conversation is ``prompt`` itself.
        """
        if not prompt or prompt[-1].role != "user":
            raise InvalidInputError("prompt must end with the user's turn holding the passages")
        if self.mode == "decline-phrase":
            return tuple(prompt)
        body = prompt[-1].content.rsplit("\n\nQuestion:", 1)[0]
        if instructions and body.endswith(instructions):
            body = body[: -len(instructions)].rstrip()
        user = f"{body}\n\nQuestion: {question.strip()}\n\n{self.question}"
        return (*prompt[:-1], Message("user", user))

    def score(self, question: str, prompt: Sequence[Message], instructions: str = "") -> float:
        """``P(yes) / (P(yes) + P(no))`` for the first reply token of the check's conversation (``"yes-no"``), or
        ``1 - P(the first token of the decline phrase)`` (``"decline-phrase"``)."""
        return self.score_conversation(self.messages(question, prompt, instructions))

    def score_conversation(self, conversation: Sequence[Message]) -> float:
        """:meth:`score` of a conversation built by the caller (e.g. the answer prompt, the answer, and a question
        about that answer): the first reply token's ``P(yes) / (P(yes) + P(no))``, or ``1 - P(decline phrase)``."""
        yes, no = self._ids
        row = self.generator.next_token_logprobs([conversation], yes + no)[0]
        if self.mode == "decline-phrase":
            return 1.0 - math.exp(_logsumexp(row))
        p_yes, p_no = _logsumexp(row[: len(yes)]), _logsumexp(row[len(yes) :])
        return 1.0 / (1.0 + math.exp(p_no - p_yes))


def fit_threshold(answerable: Sequence[float], unanswerable: Sequence[float], max_false_decline: float = 0.1) -> float:
    """The threshold that declines the most ``unanswerable`` scores while declining at most ``max_false_decline``
    of the ``answerable`` ones (labelled scores from a split you do not report on)."""
    if not answerable or not unanswerable:
        raise InvalidInputError("fit_threshold needs scores of answerable and of unanswerable questions")
    if not 0.0 <= max_false_decline < 1.0:
        raise InvalidInputError(f"max_false_decline must be in [0, 1), got {max_false_decline}")
    ranked = sorted(answerable)
    allowed = int(max_false_decline * len(ranked))  # answerable scores that may fall under the threshold
    return ranked[allowed]  # declining below it declines exactly the `allowed` lowest (ties kept)
