"""Restore the letters a PDF's text layer loses in ligature glyphs: "signifcant" → "significant".

Some PDFs map the fi/fl ligature glyph to a plain "f" in their ToUnicode table (the U.S. Supreme Court's slip
opinions do: "affrmed", "fled" for "filed", "refect", "bona fde"). PDFium then reports one "f" whose box is as
wide as "fi". :func:`wide_f_glyphs` finds them: an "f" wider than its font's usual "f", measured as width over
height so that the font size does not matter (upright fonts measure ~1.38× for a ligature, italics ~1.12×).
:func:`repair_ligatures` then chooses the letters: the candidate ("fi", "fl", "ffi", "ffl" for each wide glyph of
a word) that makes the most frequent English word (pyspellchecker's frequency list, the ``pdf`` extra); when no
candidate is a known word and the glyph is clearly a ligature, "fi", by far the commonest. A known word changes
only when its glyphs are clearly ligatures ("fled" → "filed", "a fat $10,000" → "a flat $10,000"). A font whose
wide "f"s end words ("of", "if") is stretched text, not ligatures, and is left alone. Only the reported glyphs
change; every other character is kept.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from ragloom._imports import require

__all__ = ["WideGlyph", "english_frequency", "in_word", "repair_ligatures", "require_word_list", "wide_f_glyphs"]

WIDE = 1.08  # an "f" at least this many times its font's usual width/height may be a ligature
CLEAR = 1.25  # ... and at this many times, it is one
LIGATURES = ("fi", "fl", "ffi", "ffl")
STRETCHED = 0.1  # a font is stretched, not ligatured, when this share of its wide "f"s ends a word
MAX_GLYPHS_PER_WORD = 3  # candidates grow as 5 ** glyphs
# PDFium's marks of a word hyphenated across a line end (see ragloom.loaders.pdf): inside a word, not between two
_JOINERS = frozenset("\ufffe\x02\x00")


def in_word(ch: str) -> bool:
    """A letter, or PDFium's mark of a word hyphenated across a line end."""
    return ch.isalpha() or ch in _JOINERS


@dataclass(frozen=True)
class WideGlyph:
    """An "f" glyph (``index`` in its page's text) ``excess`` times wider than its font's usual "f"."""

    index: int
    excess: float


def wide_f_glyphs(samples: Iterable[tuple[int, int, str, float, bool]], pages: int) -> list[list[WideGlyph]]:
    """Per page (``pages`` of them), the "f" glyphs wide enough to be ligatures.

    ``samples``: ``(page, index, font name, width / height, ends a word)`` of every "f" of the document. A font's
    usual ratio is its most common one over the whole document (rounded to 0.01), so a page with few "f"s is judged
    by the others. A font whose wide "f"s end words ("of", "if") is stretched, not ligatured: a ligature glyph
    always has its word's next letters after it. Such a font gives no glyphs (at least :data:`STRETCHED` of its
    wide "f"s end a word).
    """
    rows = list(samples)
    counts: dict[str, Counter[float]] = {}
    for _, _, font, ratio, _ in rows:
        counts.setdefault(font, Counter())[round(ratio, 2)] += 1
    usual = {font: c.most_common(1)[0][0] for font, c in counts.items()}
    wide = [
        (page, index, font, ratio, at_end)
        for page, index, font, ratio, at_end in rows
        if usual[font] > 0 and ratio >= usual[font] * WIDE
    ]
    ends: Counter[str] = Counter(font for _, _, font, _, at_end in wide if at_end)
    total: Counter[str] = Counter(font for _, _, font, _, _ in wide)
    found: list[list[WideGlyph]] = [[] for _ in range(pages)]
    for page, index, font, ratio, _ in wide:
        if ends[font] < STRETCHED * total[font]:
            found[page].append(WideGlyph(index, ratio / usual[font]))
    return found


def require_word_list() -> ModuleType:
    """pyspellchecker, or :class:`~ragloom.errors.MissingExtraError` naming the ``pdf`` extra (cheap: the word
    list itself loads in :func:`english_frequency`)."""
    return require("spellchecker", "pdf", "repairing ligatures in PDF text (pyspellchecker)")


@functools.cache
def english_frequency() -> Callable[[str], int]:
    """How often a lower-case English word occurs (0: unknown), from pyspellchecker's list (loaded once)."""
    words = require_word_list().SpellChecker(language="en", distance=1).word_frequency.dictionary
    return lambda word: int(words.get(word, 0))


def _choose(word: str, offsets: Sequence[int], excess: Sequence[float], frequency: Callable[[str], int]) -> str:
    """The word with its wide glyphs' letters restored, or ``word`` unchanged."""

    def count(text: str) -> int:
        return frequency("".join(ch for ch in text.lower() if ch not in _JOINERS))

    known = count(word) > 0
    clear = all(e >= CLEAR for e in excess)
    best, best_count = word, 0
    for letters in itertools.product(("f", *LIGATURES), repeat=len(offsets)):
        if all(piece == "f" for piece in letters):
            continue
        candidate, last = [], 0
        for offset, piece in zip(offsets, letters):
            candidate += [word[last:offset], piece]
            last = offset + 1
        text = "".join([*candidate, word[last:]])
        found = count(text)
        if found > best_count:
            best, best_count = text, found
    if best_count > 0:  # a known word ("fled", "fat") changes only when its glyphs are clearly ligatures
        return best if not known or clear else word
    if clear and not known:
        return "".join(w if i not in offsets else "fi" for i, w in enumerate(word))
    return word


def repair_ligatures(text: str, glyphs: Sequence[WideGlyph], frequency: Callable[[str], int]) -> tuple[str, int]:
    """``text`` with the letters of its ligature glyphs restored, and how many words changed.

    ``glyphs`` index ``text`` (a page's text as PDFium returned it); one that is not an "f" there is ignored.
    """
    wide = {g.index: g.excess for g in glyphs if 0 <= g.index < len(text) and text[g.index] == "f"}
    if not wide:
        return text, 0
    pieces: list[str] = []
    last = changed = 0
    for index in sorted(wide):
        if index < last:  # already inside a word handled with an earlier glyph
            continue
        start = index
        while start > 0 and in_word(text[start - 1]):
            start -= 1
        end = index + 1
        while end < len(text) and in_word(text[end]):
            end += 1
        offsets = [i - start for i in range(start, end) if i in wide][:MAX_GLYPHS_PER_WORD]
        word = text[start:end]
        repaired = _choose(word, offsets, [wide[start + o] for o in offsets], frequency)
        changed += repaired != word
        pieces += [text[last:start], repaired]
        last = end
    pieces.append(text[last:])
    return "".join(pieces), changed
