"""Fit the answerability check's threshold without labels, from questions the index itself answers.

:func:`ragloom.answerability.fit_threshold` needs labelled answerable and unanswerable questions, which users
rarely have. The index can stand in for them. For a sampled chunk, a question generator (by default the answering
model itself, :class:`ragloom.pseudo_queries.LLMQueries`) writes a question the chunk answers, and the question is
searched as a user's would be:

- **answerable pair**: the retrieved top ``k`` holds the source chunk, so the passages answer the question;
- **unanswerable pair**: the same question over the top ``k`` with every chunk of the source's *document* removed.
  The passages are on the question's topic but lack its answer, which is the hard case. ClapNQ's unanswerable
  questions come with such a passage, and retrieval scores cannot tell it apart (docs/generators.md).

The check scores both pairs, and the threshold is the one that declines the most unanswerable pairs while
declining at most ``max_false_decline`` of the answerable ones. A question whose source chunk was not retrieved
into the top ``k``, or that has no passage left once its document is removed, is skipped and counted.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ragloom.answerability import AnswerabilityCheck, fit_threshold
from ragloom.errors import InvalidInputError
from ragloom.prompting import PromptBuilder
from ragloom.pseudo_queries import LLMQueries, PseudoQueryGenerator
from ragloom.tokens import default_token_counter
from ragloom.types import Chunk, Hit

__all__ = ["MIN_PAIRS", "CheckFit", "fit_check_threshold"]

MIN_PAIRS = 5
"""Fewer answerable/unanswerable pairs than this and no threshold is fitted."""


@dataclass(frozen=True)
class CheckFit:
    """The fitted threshold and its evidence: each pair's score, how many chunks were tried and skipped."""

    threshold: float
    answerable: tuple[float, ...]
    unanswerable: tuple[float, ...]
    tried: int
    skipped: int
    generator: str
    seconds: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, for reports and manifests."""
        return {
            "threshold": self.threshold,
            "pairs": len(self.answerable),
            "tried": self.tried,
            "skipped": self.skipped,
            "generator": self.generator,
            "answerable_scores": list(self.answerable),
            "unanswerable_scores": list(self.unanswerable),
            "seconds": self.seconds,
        }


def _pair(question: str, source: Chunk, hits: Sequence[Hit], k: int) -> tuple[list[Hit], list[Hit]] | None:
    """(the top ``k`` holding the source chunk, the top ``k`` without the source's document), or None."""
    top = list(hits[:k])
    if source.id not in {h.chunk.id for h in top}:
        return None
    elsewhere = [h for h in hits if h.chunk.doc_id != source.doc_id][:k]
    return (top, elsewhere) if elsewhere else None


def fit_check_threshold(
    check: AnswerabilityCheck,
    prompt: PromptBuilder,
    search: Callable[[str], Sequence[Hit]],
    chunks: Sequence[Chunk],
    *,
    questions: PseudoQueryGenerator | None = None,
    sample: int = 30,
    k: int = 3,
    max_false_decline: float = 0.1,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> CheckFit:
    """Fit ``check``'s threshold on answerable/unanswerable pairs made from ``chunks`` (see the module docs).

    ``prompt`` is the answer prompt the pipeline uses (the check reads its decline phrase or its passages);
    ``search`` is the pipeline's retrieval and must return more than ``k`` hits (e.g.
    ``lambda q: pipeline.retrieve(q, k=20)``). ``sample`` chunks are drawn (seeded); each costs one question and
    two check scores. Raises :class:`~ragloom.errors.InvalidInputError` when fewer than :data:`MIN_PAIRS`
    pairs could be made.
    """
    if sample < 1 or k < 1:
        raise InvalidInputError(f"sample and k must be positive, got {sample} and {k}")
    if len({c.doc_id for c in chunks}) < 2:
        raise InvalidInputError(
            "Fitting the check needs chunks from at least two documents (an unanswerable pair "
            "is a question over other documents' passages)"
        )
    started = time.perf_counter()
    writer = questions if questions is not None else LLMQueries(check.generator)
    drawn = random.Random(seed).sample(list(chunks), min(sample, len(chunks)))
    counter = default_token_counter(check.generator)
    answerable: list[float] = []
    unanswerable: list[float] = []
    for done, chunk in enumerate(drawn, start=1):
        question = writer.generate([chunk], seed)[0]
        pair = _pair(question, chunk, search(question), k) if question else None
        if question and pair:
            for hits, bucket in zip(pair, (answerable, unanswerable)):
                messages = prompt.build(question, hits, counter, check.generator).messages
                bucket.append(check.score(question, messages, prompt.instructions))
        if progress:
            progress(done, len(drawn))
    if len(answerable) < MIN_PAIRS:
        raise InvalidInputError(
            f"Only {len(answerable)} of {len(drawn)} sampled chunks gave a question whose source was retrieved in the "
            f"top {k} (need {MIN_PAIRS}); raise sample, or index more documents"
        )
    return CheckFit(
        threshold=fit_threshold(answerable, unanswerable, max_false_decline),
        answerable=tuple(answerable),
        unanswerable=tuple(unanswerable),
        tried=len(drawn),
        skipped=len(drawn) - len(answerable),
        generator=writer.name,
        seconds=time.perf_counter() - started,
    )
