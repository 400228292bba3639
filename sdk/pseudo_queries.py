"""Pseudo-queries: questions made from an index's own chunks, so fusion can be calibrated without labels.

Each generator turns a chunk into a query that the chunk answers; the chunk is then the one relevant item for
that query. Two generators:

- :class:`SalientSpanQueries` (no model): a third of the queries are 1–3 of the chunk's rarest words (keyword
  lookups), a third an independent crop of a few consecutive words (as in Contriever's cropping), a third the
  most salient words (highest IDF within the sample) of one sentence, in order. Cheap and deterministic; it
  leans lexical, so it favours BM25/SPLADE a little — the LLM generator is the fairer judge of dense retrieval.
- :class:`LLMQueries`: any ragloom :class:`~ragloom.protocols.Generator` (the local SmolLM2, an OpenAI-compatible
  endpoint) writes one question the passage answers.

A generator may give up on a chunk (too short, an empty answer): it returns ``None`` there and the calibration
counts it as skipped.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ragloom.errors import ConfigError, RagloomError
from ragloom.protocols import Generator
from ragloom.types import Chunk, Message

__all__ = ["LLMQueries", "PseudoQueryGenerator", "SalientSpanQueries", "pseudo_query_generator"]

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-']+|\d[\d.,]*[A-Za-z]*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having he her
    here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own same she should so some such than that the their theirs
    them themselves then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves may might must shall us via per
    however thus therefore among within without whether either neither""".split()
)


@runtime_checkable
class PseudoQueryGenerator(Protocol):
    """Chunks → one query per chunk (``None`` where the chunk gives none). ``name`` is recorded in reports."""

    @property
    def name(self) -> str: ...

    def generate(self, chunks: Sequence[Chunk], seed: int) -> list[str | None]: ...


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


@dataclass(frozen=True)
class SalientSpanQueries:
    """LLM-free pseudo-queries, one of three shapes per chunk (chosen at random, seeded):

    - *keywords* (``keyword_share``): 1–3 of the chunk's five highest-IDF words, in random order — the short
      entity/attribute lookups where small dense encoders are weakest;
    - *crop* (``crop_share``): ``min_words``–``max_words`` consecutive words (independent cropping);
    - *salient sentence* (the rest): the highest-IDF words of one sentence, in order.
    """

    min_words: int = 3
    max_words: int = 8
    crop_share: float = 1 / 3
    keyword_share: float = 1 / 3

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ConfigError(f"Need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        if self.crop_share < 0 or self.keyword_share < 0 or self.crop_share + self.keyword_share > 1:
            raise ConfigError(
                f"crop_share and keyword_share must be >= 0 and add up to at most 1, got {self.crop_share}, "
                f"{self.keyword_share}"
            )

    @property
    def name(self) -> str:
        return (
            f"salient-spans(words {self.min_words}-{self.max_words}, crops {self.crop_share:.2g}, "
            f"keywords {self.keyword_share:.2g})"
        )

    def generate(self, chunks: Sequence[Chunk], seed: int) -> list[str | None]:
        rng = random.Random(seed)
        docs = [[w.lower() for w in _words(c.text)] for c in chunks]
        df = Counter(w for words in docs for w in set(words))
        n = max(1, len(chunks))
        idf = {w: math.log((n + 1) / (count + 0.5)) for w, count in df.items()}
        queries: list[str | None] = []
        for chunk in chunks:
            length = rng.randint(self.min_words, self.max_words)
            draw = rng.random()
            if draw < self.keyword_share:
                queries.append(self._keywords(chunk.text, idf, rng))
            elif draw < self.keyword_share + self.crop_share:
                queries.append(self._crop(chunk.text, length, rng))
            else:
                queries.append(self._salient(chunk.text, length, idf, rng))
        return queries

    def _keywords(self, text: str, idf: dict[str, float], rng: random.Random) -> str | None:
        words = list(dict.fromkeys(_content(text)))
        if not words:
            return None
        top = sorted(words, key=lambda w: (-idf.get(w.lower(), 0.0), w))[:5]
        return " ".join(rng.sample(top, min(len(top), rng.randint(1, 3))))

    def _crop(self, text: str, length: int, rng: random.Random) -> str | None:
        words = _words(text)
        if len(words) < self.min_words:
            return None
        start = rng.randint(0, max(0, len(words) - length))
        return " ".join(words[start : start + length])

    def _salient(self, text: str, length: int, idf: dict[str, float], rng: random.Random) -> str | None:
        sentences = [s for s in _SENTENCE.split(text) if len(_content(s)) >= self.min_words]
        if not sentences:
            return self._crop(text, length, rng)
        words = _content(rng.choice(sentences))
        ranked = sorted(range(len(words)), key=lambda i: (-idf.get(words[i].lower(), 0.0), i))
        keep = sorted(set(ranked[:length]))
        return " ".join(words[i] for i in keep)


def _content(sentence: str) -> list[str]:
    return [w for w in _words(sentence) if w.lower() not in _STOPWORDS and len(w) > 2]


_PROMPT = (
    "Write one short question that the passage below answers. Use your own words where you can. "
    "Reply with the question only.\n\nPassage:\n{passage}"
)
_PREFIX = re.compile(r"^\s*(?:\d+[.)]\s*|[-*]\s*|(?:question|q)\s*[:.-]\s*)", re.IGNORECASE)


@dataclass(frozen=True)
class LLMQueries:
    """A generator (local or an OpenAI-compatible endpoint) writes a question each chunk answers.

    The first non-empty line of the reply is kept, list markers and a "Question:" prefix removed. A chunk whose
    reply is empty, or whose generator call fails with a ragloom error, yields ``None`` (counted as skipped).
    """

    generator: Generator
    prompt: str = _PROMPT
    max_chars: int = 300

    def __post_init__(self) -> None:
        if "{passage}" not in self.prompt:
            raise ConfigError("The pseudo-query prompt must contain '{passage}'")

    @property
    def name(self) -> str:
        return f"llm({self.generator.name})"

    def generate(self, chunks: Sequence[Chunk], seed: int) -> list[str | None]:
        del seed  # the generator's own decoding decides; local generators decode greedily
        out: list[str | None] = []
        for chunk in chunks:
            try:
                reply = self.generator.generate([Message("user", self.prompt.format(passage=chunk.text))])
            except RagloomError:
                out.append(None)
                continue
            out.append(_clean(reply, self.max_chars))
        return out


def _clean(reply: str, max_chars: int) -> str | None:
    for raw in reply.splitlines():
        line = _PREFIX.sub("", raw).strip().strip('"').strip()
        if len(_words(line)) >= 2:
            return line if len(line) <= max_chars else None
    return None


def pseudo_query_generator(kind: str, generator: Generator | None = None) -> PseudoQueryGenerator:
    """``"spans"`` (LLM-free) or ``"llm"`` (needs ``generator``)."""
    if kind in ("spans", "salient", "salient-spans"):
        return SalientSpanQueries()
    if kind == "llm":
        if generator is None:
            raise ConfigError("The 'llm' pseudo-query generator needs a generator (local or openai)")
        return LLMQueries(generator)
    raise ConfigError(f"Unknown pseudo-query generator {kind!r}; use 'spans' or 'llm'")
