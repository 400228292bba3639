"""Post-hoc attribution: when a model answers without ``[n]`` markers, attach each sentence to the passage that
supports it best (content-word overlap), so every answer still maps to its sources.

Small local models often ignore the instruction to cite. Inferred citations are marked as such on the Answer
(``citations_inferred``), never passed off as the model's own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragloom.prompting import citation_markers
from ragloom.types import Hit

__all__ = ["attribute_sentences", "has_markers"]

_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
_WORD = re.compile(r"[a-z0-9$%][a-z0-9,.$%]*[a-z0-9%]|[a-z0-9]")
_STOP = frozenset(
    "a an and are as at be by for from has have he her his i in is it its of on or our she that the their them "
    "they this to was were what when where which who why will with you your not no do does did can could would "
    "should may might than then there these those also into about over under more most such only answer "
    "question passage passages context provided based".split()
)


def has_markers(text: str) -> bool:
    """True when the text already carries ``[n]`` markers (``[1, 2]`` included)."""
    return bool(citation_markers(text))


def _content(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def attribute_sentences(text: str, context: Sequence[Hit], min_overlap: float = 0.5) -> str:
    """Append ``[n]`` to each sentence whose content words are at least ``min_overlap`` covered by passage n.

    Sentences no passage supports are left unmarked: an unsupported claim stays visibly uncited.
    """
    if not context or has_markers(text):
        return text
    passages = [_content(hit.chunk.text) for hit in context]
    pieces: list[str] = []
    position = 0
    for match in _SENTENCE.finditer(text):
        sentence = match.group(0)
        pieces.append(text[position : match.start()])
        position = match.end()
        words = _content(sentence)
        best, best_score = 0, 0.0
        for number, passage in enumerate(passages, start=1):
            score = len(words & passage) / len(words) if words else 0.0
            if score > best_score:
                best, best_score = number, score
        if best and best_score >= min_overlap:
            stripped = sentence.rstrip()
            trailing = sentence[len(stripped) :]
            if stripped and stripped[-1] in ".!?":
                stripped = f"{stripped[:-1]} [{best}]{stripped[-1]}"
            else:
                stripped = f"{stripped} [{best}]"
            sentence = stripped + trailing
        pieces.append(sentence)
    pieces.append(text[position:])
    return "".join(pieces)
