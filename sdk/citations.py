"""Citations: ``[n]`` markers, post-hoc attribution, the citation validator and the answer's support verdict.

- **Markers**: ``[1]``, ``[1][2]``, ``[1, 2]`` (the forms models write).
- **Attribution** (:func:`attribute_sentences`): when a model answers without markers, each sentence is attached
  to the passage that covers most of its content words. Sentences come from :mod:`ragloom.sentences` (pysbd
  plus guards), and a marker is only ever *inserted* at a sentence end: before the final ``.``/``!``/``?`` when
  the sentence ends in a plain word or number ("… $10,000 [2]."), after the sentence otherwise ("… the U.S. [1]"),
  so no token is split ("1 [1].11 billion" cannot happen) and removing the inserted ``" [n]"`` gives back the
  model's text byte for byte.
- **Repair** (:func:`repair_citations`): a marker whose passage does not support its sentence moves to the
  passage that does; an uncited sentence a passage clearly supports gets that passage's marker. Only markers
  change: the text between them is byte for byte the model's.
- **Validation** (:func:`check_citations`): markers that point at no passage (dangling) and markers whose passage
  does not support the sentence citing them (too few of its content words, or a number none of its cited
  passages contains).
- **Verdict** (:func:`assess`): ``supported`` (every claim cited and supported), ``partly``, ``unsupported``
  (no claim supported, or nothing cited) or ``declined`` (the answer says the documents do not hold it); uncited
  and unsupported claims are listed, and citations pointing only at documents the question does not concern are
  flagged (:func:`off_topic_terms`).

Lexical, cheap and model-free: it catches the common failures of a small model (citing the wrong passage,
inventing a figure, not citing at all, answering from another company's filing), not subtle paraphrase errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from ragloom.sentences import sentence_spans
from ragloom.types import Citation, Hit, Support, Verdict

__all__ = [
    "DECLINE_PATTERN",
    "DocumentTexts",
    "assess",
    "attribute_sentences",
    "check_citations",
    "citation_markers",
    "content_words",
    "has_markers",
    "insert_marker",
    "is_decline",
    "off_topic_terms",
    "repair_citations",
    "strip_inserted_markers",
]

# [1], [1][2], [1, 2], [1,2,3]: the forms models write
_MARKER_GROUP = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_INSERTED = re.compile(r" \[\d{1,3}\]")
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*•])\s+")  # "1. ", "2) ", "- ": numbering, not a figure
_ONLY_MARKERS = re.compile(r"^[\s\[\]\d,.;:!?]*$")
_LEADING_MARKERS = re.compile(r"^\s*(?:\[\d{1,3}(?:\s*,\s*\d{1,3})*\]\s*)+")
_WORD = re.compile(r"[a-z0-9]+")
_DIGITS = re.compile(r"\d+")
_STOP = frozenset(
    "a an and are as at be by for from has have he her his i in is it its of on or our she that the their them "
    "they this to was were what when where which who why will with you your not no do does did can could would "
    "should may might than then there these those also into about over under more most such only".split()
)
_ATTRIBUTION_STOP = _STOP | frozenset("answer question passage passages context provided based".split())
_SUFFIXES = ("ing", "ed", "es", "s")

DECLINE_PATTERN = re.compile(
    r"\b(i don'?t know|i do not know|(does|do) not (contain|provide|mention|say|include|specify|state)|"
    r"not (provided|mentioned|specified|stated|given|included) in|no (information|mention)|"
    r"(cannot|can't|unable to) (answer|determine|find|be determined)|not enough information|"
    r"insufficient information|could not find)\b",
    re.IGNORECASE,
)


def citation_markers(text: str) -> list[int]:
    """Every ``[n]`` marker in ``text`` in order (``[1, 2]`` counts as 1 and 2)."""
    return [int(n) for group in _MARKER_GROUP.findall(text) for n in group.split(",")]


def has_markers(text: str) -> bool:
    """True when the text already carries ``[n]`` markers (``[1, 2]`` included)."""
    return bool(citation_markers(text))


def is_decline(text: str) -> bool:
    """True when the answer says the documents do not hold the answer ("I don't know based on …")."""
    return bool(DECLINE_PATTERN.search(text))


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    """Lower-cased, lightly stemmed words of ``text`` without stop words (what support is measured on)."""
    return _content_words(text)


def _content_words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def _numbers(text: str) -> set[str]:
    """Digit runs, thousands separators removed ("$10,000" -> "10000", "3.5" -> "3", "5")."""
    return set(_DIGITS.findall(re.sub(r"(?<=\d),(?=\d{3})", "", text)))


# -- attribution ------------------------------------------------------------------------------------------------
_PLAIN_END = re.compile(r"(?:^|\s)[^\s.]*[\w%$)][.!?]$")  # last token "word." / "$10,000." / "1.5%." -> False


def _marker_position(sentence: str) -> int:
    """Where a marker goes in ``sentence`` (its trailing whitespace excluded): before a final ``.``/``!``/``?``
    that ends a plain token, else at the very end (after "U.S.", "1.5.", quotes, brackets)."""
    if _PLAIN_END.search(sentence) and sentence[-1] in ".!?":
        return len(sentence) - 1
    return len(sentence)


def insert_marker(sentence: str, number: int) -> str:
    """``sentence`` with `` [number]`` inserted at its end (see the module docs); trailing whitespace kept."""
    body = sentence.rstrip()
    if not body:
        return sentence
    at = _marker_position(body)
    return f"{sentence[:at]} [{number}]{sentence[at:]}"


def attribute_sentences(text: str, context: Sequence[Hit], min_overlap: float = 0.5) -> str:
    """Insert `` [n]`` after each sentence whose content words are at least ``min_overlap`` covered by passage n
    (only passages holding every number the sentence states qualify).

    The text is never rewritten: only `` [n]`` strings are inserted, at sentence ends (see the module docs).
    Sentences no passage supports stay unmarked: an unsupported claim stays visibly uncited.
    """
    if not context or has_markers(text):
        return text
    passages = [_content_words(hit.chunk.text) for hit in context]
    figures = [_numbers(hit.chunk.text) for hit in context]
    out: list[str] = []
    for start, end in sentence_spans(text):
        piece = text[start:end]
        body = piece.rstrip()
        words = {w for w in _content_words(body) if w not in _ATTRIBUTION_STOP}
        stated = _numbers(_LIST_ITEM.sub("", body))
        best, best_score = 0, 0.0
        for number, passage in enumerate(passages, start=1):
            if not stated <= figures[number - 1]:
                continue  # a passage without the sentence's figures cannot support it (the validator agrees)
            score = len(words & passage) / len(words) if words else 0.0
            if score > best_score:
                best, best_score = number, score
        if best and best_score >= min_overlap:
            piece = insert_marker(piece, best)
        out.append(piece)
    return "".join(out)


def strip_inserted_markers(text: str) -> str:
    """Remove the `` [n]`` strings :func:`attribute_sentences` inserts (the inverse of attribution)."""
    return _INSERTED.sub("", text)


# -- repair -----------------------------------------------------------------------------------------------------
def _coverage(claim_text: str, passages: Sequence[set[str]], figures: Sequence[set[str]]) -> list[float]:
    """Share of the claim's content words in each passage; -1 for a passage missing one of its numbers."""
    words = {w for w in _content_words(claim_text) if w not in _ATTRIBUTION_STOP}
    stated = _numbers(_LIST_ITEM.sub("", claim_text))
    return [
        (len(words & passage) / len(words) if words else 0.0) if stated <= numbers else -1.0
        for passage, numbers in zip(passages, figures)
    ]


def repair_citations(
    text: str, context: Sequence[Hit], *, min_overlap: float = 0.2, margin: float = 0.25, uncited: float = 0.5
) -> str:
    """Move each claim's markers to the passage that supports it when the cited one does not.

    A claim's markers are replaced by ``[b]`` (``b`` the passage covering most of its content words, holding
    every number it states) when ``b`` covers at least ``min_overlap`` and either no cited passage supports the
    claim (the validator's rule: ``min_overlap`` and the numbers) or ``b`` covers ``margin`` more of it than the
    best cited one. A claim without markers gets `` [b]`` at its end when ``b`` covers ``uncited`` of it (the
    post-hoc attribution rule). Only markers change: removing every marker group, with the one space or tab
    before it, from the result and from ``text`` gives the same string (line breaks are never touched).
    """
    if not context or not has_markers(text):
        return text
    passages = [_content_words(hit.chunk.text) for hit in context]
    figures = [_numbers(hit.chunk.text) for hit in context]
    claims: list[tuple[str, list[tuple[int, int, list[int]]], int, int]] = []  # (claim, marker groups, span)
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        if not sentence.strip():
            continue
        groups = [
            (start + m.start(), start + m.end(), citation_markers(m.group(0))) for m in _MARKER_GROUP.finditer(sentence)
        ]
        if claims and groups and _ONLY_MARKERS.match(sentence):
            claims[-1][1].extend(groups)
            continue
        leading = _LEADING_MARKERS.match(sentence)
        body = sentence
        if claims and leading:  # "claim. [1] Next claim.": the marker after the full stop is the claim's
            claims[-1][1].extend(g for g in groups if g[1] <= start + leading.end())
            groups = [g for g in groups if g[0] >= start + leading.end()]
            body = sentence[leading.end() :]
        claims.append((_MARKER_GROUP.sub(" ", body).strip(), groups, start, start + len(sentence.rstrip())))
    edits: list[tuple[int, int, str]] = []
    for claim_text, groups, start, end in claims:
        if not _content_words(claim_text):
            continue
        cover = _coverage(claim_text, passages, figures)
        best = max(range(len(cover)), key=lambda i: cover[i]) + 1
        if not groups:
            if cover[best - 1] >= uncited:
                at = start + _marker_position(text[start:end])
                edits.append((at, at, f" [{best}]"))
            continue
        cited = [m for _, _, numbers in groups for m in numbers if 1 <= m <= len(context)]
        if cover[best - 1] < min_overlap or cited == [best]:
            continue
        cited_best = max((cover[m - 1] for m in cited), default=-1.0)
        supported = bool(cited) and bool(_supported(claim_text, cited, context, min_overlap))
        if supported and cover[best - 1] < cited_best + margin:
            continue
        first, *rest = groups
        edits.append((first[0], first[1], f"[{best}]"))
        for start_, end_, _ in rest:  # "[1] [3]" -> "[2]", "grew [3]." -> "grew.": a removed group takes its space
            spaced = start_ >= 1 and text[start_ - 1] in " \t"
            edits.append((start_ - 1 if spaced else start_, end_, ""))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


# -- validation -------------------------------------------------------------------------------------------------
def _claims(text: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, markers) pairs; a fragment of bare markers belongs to the sentence before it."""
    pieces: list[tuple[str, list[int]]] = []
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        if not sentence.strip():
            continue
        markers = citation_markers(sentence)
        if pieces and markers and _ONLY_MARKERS.match(sentence):
            pieces[-1][1].extend(markers)
            continue
        leading = _LEADING_MARKERS.match(sentence)
        if pieces and leading:  # "claim. [1] Next claim.": the marker after the full stop is the claim's
            pieces[-1][1].extend(citation_markers(leading.group(0)))
            sentence = sentence[leading.end() :]
            markers = citation_markers(sentence)
        pieces.append((_MARKER_GROUP.sub(" ", sentence).strip(), markers))
    return pieces


def _supported(claim_text: str, markers: list[int], context: Sequence[Hit], min_overlap: float) -> set[int]:
    claim = _content_words(claim_text)
    if not claim or not markers:
        return set()
    cited_numbers = set().union(*(_numbers(context[m - 1].chunk.text) for m in markers))
    if not _numbers(claim_text) <= cited_numbers:
        return set()
    return {m for m in markers if len(claim & _content_words(context[m - 1].chunk.text)) / len(claim) >= min_overlap}


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
        valid = []
        for marker in markers:
            if not 1 <= marker <= len(context):
                if marker not in dangling:
                    dangling.append(marker)
                continue
            citations.setdefault(marker, Citation(marker, context[marker - 1]))
            valid.append(marker)
        if not _content_words(claim_text) or not valid:
            continue
        checked.update(valid)
        supported |= _supported(claim_text, valid, context, min_overlap)
    return tuple(citations.values()), tuple(dangling), tuple(sorted(checked - supported))


# -- off-topic citations ------------------------------------------------------------------------------------------
_ENTITY = re.compile(r"\b(?:[A-Z][\w&.'-]*[\w&]|[A-Z]{2,})\b")
_QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how is are was were do does did can could should would will may "
    "might in on at for of the a an according list name give tell describe explain compare".split()
)


def _entities(question: str) -> set[str]:
    """Capitalised names and acronyms of the question (its first word and question words excluded)."""
    found = set()
    for match in _ENTITY.finditer(question):
        raw = re.sub(r"'s$", "", match.group(0))
        word = raw.lower()
        if word in _QUESTION_WORDS or word in _STOP:
            continue
        if match.start() == len(question) - len(question.lstrip()) and not raw.isupper():
            continue  # the first word is capitalised anyway
        found.add(word)
    return found


def _acronyms(question: str) -> set[str]:
    """Initials of the question's runs of capitalised words ("Bank Secrecy Act" -> "bsa")."""
    found = set()
    for run in re.finditer(r"\b[A-Z][a-z]+\b(?:\s+[A-Z][a-z]+\b)+", question):
        words = [w for w in run.group(0).split() if w.lower() not in _QUESTION_WORDS]
        if len(words) >= 3:  # two-letter initials ("US") are common words
            found.add("".join(w[0] for w in words).lower())
    return found


def _mentions(names: set[str], acronyms: set[str], texts: Sequence[str]) -> bool:
    haystack = " ".join(texts).lower()
    words = set(re.findall(r"[\w&.'-]+", haystack.replace("_", " ")))
    return any(name in words or name in haystack for name in names) or bool(acronyms & words)


DocumentTexts = Callable[[Sequence[str]], Mapping[str, str]]
"""doc ids -> the whole text of each document found (what the pipeline's document store holds)."""


def off_topic_terms(
    question: str, cited: Sequence[Hit], *, context: Sequence[Hit] = (), documents: DocumentTexts | None = None
) -> tuple[str, ...]:
    """The question's names (capitalised words, acronyms) when *none* of them appears in any cited document;
    empty when one does, or when the question names nothing.

    A cheap check for answers that cite only documents the question does not concern (another company's filing,
    another case). It is a check on *documents*, not passages: a page about the Bank Secrecy Act that never
    spells the name out still belongs to an opinion that does. A cited document counts as mentioning a name when
    the name (or the initials of a multi-word name, "BSA") is in the cited passages' text, source, document id or
    title, in another retrieved passage of the same document (``context``), or in the whole document
    (``documents``, looked up only when the passages do not settle it). It misses a document that mentions the
    name without being about it.
    """
    names = _entities(question)
    if not names or not cited:
        return ()
    acronyms = _acronyms(question)
    cited_ids = list(dict.fromkeys(hit.chunk.doc_id for hit in cited))
    passages = [
        f"{hit.chunk.text} {hit.chunk.source} {hit.chunk.doc_id} {hit.chunk.metadata.get('title', '')}"
        for hit in (*cited, *(h for h in context if h.chunk.doc_id in cited_ids))
    ]
    if _mentions(names, acronyms, passages):
        return ()
    if documents is not None and _mentions(names, acronyms, list(documents(cited_ids).values())):
        return ()
    return tuple(sorted(names))


# -- the verdict ----------------------------------------------------------------------------------------------------
def assess(
    text: str,
    question: str,
    context: Sequence[Hit],
    *,
    min_overlap: float = 0.2,
    declined_reason: str = "",
    documents: DocumentTexts | None = None,
) -> Support:
    """The support verdict of an answer (see the module docs), with its uncited and unsupported claims.

    ``documents`` gives the whole text of cited documents to the off-topic check (:func:`off_topic_terms`).
    """
    if declined_reason or is_decline(text) or not text.strip():
        reason = declined_reason or ("the answer is empty" if not text.strip() else "the answer declines")
        return Support("declined", 0, 0, reason=reason)
    uncited: list[str] = []
    unsupported: list[str] = []
    cited_hits: dict[int, Hit] = {}
    claims = 0
    for claim_text, markers in _claims(text):
        if not _content_words(claim_text):
            continue  # a bare marker, a heading of stop words
        claims += 1
        valid = [m for m in markers if 1 <= m <= len(context)]
        for marker in valid:
            cited_hits.setdefault(marker, context[marker - 1])
        if not valid:
            uncited.append(claim_text)
        elif not _supported(claim_text, valid, context, min_overlap):
            unsupported.append(claim_text)
    supported = claims - len(uncited) - len(unsupported)
    off_topic = off_topic_terms(question, list(cited_hits.values()), context=context, documents=documents)
    verdict: Verdict
    if claims == 0 or supported == 0 or off_topic:
        verdict = "unsupported"  # off-topic: the claims may match their passages, but not the question
    elif supported == claims:
        verdict = "supported"
    else:
        verdict = "partly"
    reasons = []
    if uncited:
        reasons.append(f"{len(uncited)} of {claims} claim(s) cite no passage")
    if unsupported:
        reasons.append(f"{len(unsupported)} of {claims} claim(s) are not supported by the passages they cite")
    if off_topic:
        reasons.append(f"no cited passage mentions {', '.join(off_topic)} from the question")
    return Support(verdict, claims, supported, tuple(uncited), tuple(unsupported), off_topic, "; ".join(reasons))
