"""Sentence segmentation that respects the text: spans over the original string, never a rewritten copy.

pysbd (rule-based "Golden Rules" segmentation: decimals, abbreviations such as "Inc." and "U.S.", "No. 3", list
items) proposes boundaries when it is installed; a careful rule set does when it is not. Either way two guards
follow, so a boundary never falls inside a token:

- a boundary is kept only where whitespace (or the end of the text) follows it, so "1.11", "1.5%", URLs such as
  "example.com/a.b?c=1" and "e.g.x" stay whole;
- a line break ends a sentence (list items, headings, table rows) unless it is a soft wrap inside one: the line
  before runs on (five words or more, ending in a lower-case word or a comma, not a heading) and the next line
  starts with a word, not a list marker — "...Network is\nJune 30 of each year." stays one claim.

The result is a list of ``(start, end)`` spans that tile the text exactly: ``"".join(text[s:e] for s, e in spans)
== text``, trailing whitespace included in the sentence it follows.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = ["sentence_spans", "split_sentences"]

# Words after which a period rarely ends a sentence (titles, corporate suffixes, months, "No. 3", "e.g.").
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt ft inc ltd co corp llc plc bros dept est fig figs no nos vol vols pp p ed eds "
    "rev gen gov sen rep jan feb mar apr jun jul aug sep sept oct nov dec approx vs etc al cf ca ex e.g i.e u.s "
    "u.k u.n e.u a.m p.m ph.d".split()
)
_CANDIDATE = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)|\n")
_LIST_MARKER = re.compile(r"[-*•+>|#]|\d+[.)](?:\s|$)|[a-z][.)]\s")
"""How a line that starts a new item begins: bullets, quotes, table rows, headings, "1." / "2)" / "a)"."""


def _soft_wrap(text: str, newline: int) -> bool:
    """Whether the line break at ``newline`` wraps a running sentence rather than ending a line of its own."""
    line_start = text.rfind("\n", 0, newline) + 1
    before = text[line_start:newline].rstrip()
    after = text[newline + 1 :].lstrip(" \t")
    if not before or not after or after[0] == "\n" or before.lstrip().startswith("#"):
        return False  # a blank line (paragraph), the end of the text, or a Markdown heading
    if not (before[-1].islower() or before[-1] == ","):
        return False  # the line ends in punctuation, a figure or a capitalised word: a line of its own
    if len(before.split()) < 5 or _LIST_MARKER.match(after):
        return False  # a short line (a heading, a label) or a new list item
    return after[0].isalnum() or after[0] in "$€£(\"'“‘"


def _rule_boundaries(text: str) -> list[int]:
    """Positions just after a sentence end, by a rule set (used when pysbd is not installed)."""
    cuts = []
    for match in _CANDIDATE.finditer(text):
        end = match.end()
        if match.group(0) == "\n":
            cuts.append(end)
            continue
        if match.group(0)[0] == ".":
            before = text[: match.start()]
            word = re.search(r"(\S+)$", before)
            token = word.group(1).lstrip("\"'“‘([").lower() if word else ""
            if token.isdigit() and word and (word.start() == 0 or before[word.start() - 1] == "\n"):
                continue  # "1. First item": a list number at the start of a line
            if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
                continue  # "Inc.", "No.", "J." (an initial)
            if re.fullmatch(r"(?:[a-z]\.)+[a-z]", token):
                continue  # "U.S", "e.g": dotted abbreviations
            nxt = re.match(r"\s+(\S)", text[end:])
            if nxt and nxt.group(1).islower():
                continue  # a lower-case word follows: not a sentence start
        cuts.append(end)
    return cuts


@lru_cache(maxsize=1)
def _pysbd() -> Any:
    try:
        import pysbd
    except ImportError:
        return None
    return pysbd.Segmenter(language="en", clean=False, char_span=False)


def _pysbd_boundaries(text: str, segmenter: Any) -> list[int] | None:
    """Boundaries from pysbd's segments, located in the original text; None when they cannot be located."""
    cuts = []
    position = 0
    for segment in segmenter.segment(text):
        piece = segment.strip()
        if not piece:
            continue
        found = text.find(piece, position)
        if found < 0:
            return None  # pysbd changed the text somewhere: do not trust its segments
        position = found + len(piece)
        cuts.append(position)
    return cuts


def sentence_spans(text: str, *, use_pysbd: bool = True) -> list[tuple[int, int]]:
    """``(start, end)`` spans of the sentences of ``text``; they tile it exactly (whitespace included)."""
    return list(_spans(text, use_pysbd))


@lru_cache(maxsize=512)
def _spans(text: str, use_pysbd: bool) -> tuple[tuple[int, int], ...]:
    """Cached: attribution, validation and the verdict segment the same answer in turn."""
    if not text:
        return ()
    segmenter = _pysbd() if use_pysbd else None
    cuts = None
    if segmenter is not None:
        try:
            cuts = _pysbd_boundaries(text, segmenter)
        except Exception:  # pysbd's regexes on unusual input: the rule set takes over
            cuts = None
    if cuts is None:
        cuts = _rule_boundaries(text)
    cuts += [m.end() for m in re.finditer(r"\n", text)]
    ends = set()
    for cut in cuts:
        wrap = text.find("\n", max(cut - 1, 0))
        if wrap >= 0 and not text[cut:wrap].strip() and _soft_wrap(text, wrap):
            continue  # a cut at (or just before) a soft line wrap: the sentence goes on
        # never inside a token: keep a boundary only where whitespace or the end of the text follows
        if cut >= len(text) or text[cut].isspace() or text[cut - 1] == "\n":
            end = cut
            while end < len(text) and text[end].isspace():
                end += 1  # trailing whitespace belongs to the sentence it follows
            ends.add(end)
    ends.add(len(text))
    spans = []
    start = 0
    for end in sorted(ends):
        if end > start:
            spans.append((start, end))
            start = end
    return tuple(spans)


def split_sentences(text: str, *, use_pysbd: bool = True) -> list[str]:
    """The sentences of ``text`` (whitespace kept, so ``"".join`` gives the text back)."""
    return [text[s:e] for s, e in sentence_spans(text, use_pysbd=use_pysbd)]
