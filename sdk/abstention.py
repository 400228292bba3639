"""Abstention: decline to answer when retrieval finds no convincing evidence, and say what was searched.

:class:`DeclinePolicy` declines when the best hit's score is under ``min_score`` (no hit at all always declines).
The threshold is fitted without labels by :meth:`DeclinePolicy.fit` from the index's own pseudo-queries:

- *in-index* queries: a handful of content words drawn from one passage (a question that passage answers);
- *off-index* queries: the same number of words, each drawn from a different passage (a question no single
  passage answers).

Both sets are run through the same pipeline (retrievers, fusion, reranker), and the threshold is the score that
best separates their best-hit scores (balanced accuracy), capped so that at most ``max_false_decline`` of the
in-index queries would be declined. Scores are only comparable within one score kind (cosine, BM25, RRF, rerank
logits), so the policy records the kind it was fitted on and refuses hits of another kind.

Retrieval is only half the evidence: a generator that says the passages do not hold the answer also makes the
verdict ``declined`` (:func:`ragloom.citations.is_decline`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ragloom.errors import ConfigError, InvalidInputError
from ragloom.types import Hit

__all__ = ["DeclinePolicy", "describe_search"]

_WORD = re.compile(r"[A-Za-z][A-Za-z-]{3,}")
_COMMON = frozenset(
    "that this with from have were been which their there about would these other into more some than them then "
    "when what also such only over most very where while after before because between through during under".split()
)


def describe_search(
    question: str, hits: Sequence[Hit], retrievers: Sequence[str], *, verdict: str = "were weak matches"
) -> str:
    """One line saying what was searched and what came closest (for a declined answer)."""
    where = ", ".join(retrievers) or "the index"
    if not hits:
        return f'Searched {where} for "{question}": nothing matched.'
    best = hits[0]
    source = best.chunk.source.rsplit("/", 1)[-1] or best.chunk.doc_id
    docs = len({h.chunk.doc_id for h in hits})
    return (
        f'Searched {where} for "{question}": the {len(hits)} best passage(s) from {docs} document(s) {verdict} '
        f"(best: {source}, {best.score_kind} score {best.score:.3f})."
    )


@dataclass(frozen=True)
class DeclinePolicy:
    """Decline when the best hit scores under ``min_score`` (of ``score_kind``); ``None`` never declines on score.

    ``fitted`` says how the threshold was obtained (shown in a declined answer's reason).
    """

    min_score: float | None = None
    score_kind: str | None = None
    fitted: str = ""

    def weak(self, hits: Sequence[Hit]) -> str:
        """Why the evidence is too weak to answer from ("" when it is not)."""
        if not hits:
            return "no passage matched the question"
        if self.min_score is None:
            return ""
        best = hits[0]
        if self.score_kind is not None and best.score_kind != self.score_kind:
            raise ConfigError(
                f"This DeclinePolicy was fitted on {self.score_kind!r} scores but the pipeline returns "
                f"{best.score_kind!r} scores; fit it again on this pipeline (DeclinePolicy.fit)"
            )
        if best.score < self.min_score:
            how = f", {self.fitted}" if self.fitted else ""
            return f"the best passage scores {best.score:.3f}, under the threshold {self.min_score:.3f}{how}"
        return ""

    @classmethod
    def fit(
        cls,
        search: Callable[[str], Sequence[Hit]],
        texts: Sequence[str],
        *,
        samples: int = 200,
        words: int = 6,
        max_false_decline: float = 0.05,
        seed: int = 0,
    ) -> DeclinePolicy:
        """Fit ``min_score`` from pseudo-queries over ``texts`` (the indexed documents' or chunks' texts).

        ``search`` is the pipeline's retrieval (e.g. ``pipeline.retrieve``); it is called ``2 * samples`` times.
        """
        rng = random.Random(seed)
        vocab = [[w for w in dict.fromkeys(_WORD.findall(t)) if w.lower() not in _COMMON] for t in texts if t.strip()]
        vocab = [v for v in vocab if len(v) >= words]
        if len(vocab) < 2:
            raise InvalidInputError(
                f"DeclinePolicy.fit needs at least 2 texts with {words}+ distinct words; pass the indexed texts"
            )
        inside: list[float] = []
        outside: list[float] = []
        kinds: set[str] = set()
        for _ in range(samples):
            own = rng.choice(vocab)
            for query, bucket in (
                (" ".join(rng.sample(own, words)), inside),
                (" ".join(rng.choice(rng.choice(vocab)) for _ in range(words)), outside),
            ):
                hits = list(search(query))
                if hits:
                    bucket.append(hits[0].score)
                    kinds.add(hits[0].score_kind)
        if len(kinds) > 1:
            raise ConfigError(f"The search returned several score kinds {sorted(kinds)}; a threshold needs one")
        if not inside:
            raise InvalidInputError("No pseudo-query found any hit; is the index empty?")
        ranked = sorted(inside)
        cap = ranked[int(max_false_decline * len(ranked))]  # declining under `cap` loses <= the allowed share
        best, best_accuracy = min(ranked), -1.0
        for threshold in sorted(set(inside) | set(outside)):
            if threshold > cap:
                break
            kept = sum(s >= threshold for s in inside) / len(inside)
            declined = sum(s < threshold for s in outside) / max(1, len(outside))
            if (kept + declined) / 2 > best_accuracy:
                best, best_accuracy = threshold, (kept + declined) / 2
        note = (
            f"fitted on {len(inside)} in-index and {len(outside)} off-index pseudo-queries "
            f"(balanced accuracy {best_accuracy:.2f})"
        )
        return cls(best, next(iter(kinds)), note)
