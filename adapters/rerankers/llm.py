"""LLM rerankers: pointwise (does this passage answer the query? yes/no) and listwise (RankGPT's sliding window).

Pointwise scores each passage alone. With a local model (anything offering ``next_token_logprobs``, such as
:class:`~ragloom.adapters.generators.local.TransformersGenerator`) the score is the log-odds of "yes" over "no"
as the next token: one forward pass per passage, no sampling, fine-grained scores. With any other generator
(an HTTP endpoint) the reply text is parsed: yes 1.0, no 0.0, anything else 0.5 with a note in the explanation.

Listwise shows the model a window of numbered passages and asks for a permutation such as ``[3] > [1] > [2]``,
sliding the window from the bottom of the list to the top so good passages bubble up. Replies are parsed
leniently; a reply with no usable identifiers leaves that window in its input order, and the hits say so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from ragloom.adapters.rerankers._base import check_rerank, ranked_hits, text_windows
from ragloom.chunking import OffsetTokenizer, WordTokenizer
from ragloom.errors import ConfigError
from ragloom.protocols import Generator, LogprobGenerator
from ragloom.types import Hit, Message

__all__ = [
    "LISTWISE_SYSTEM_PROMPT",
    "POINTWISE_SYSTEM_PROMPT",
    "LLMListwiseReranker",
    "LLMPointwiseReranker",
    "parse_permutation",
    "parse_yes_no",
]

POINTWISE_SYSTEM_PROMPT = "You judge whether a passage answers a search query. Reply with exactly one word: yes or no."
LISTWISE_SYSTEM_PROMPT = (
    "You are RankGPT, an intelligent assistant that ranks passages by their relevance to a search query."
)
_YES = ("yes", "Yes", " yes", " Yes", "YES")
_NO = ("no", "No", " no", " No", "NO")
_BRACKETED = re.compile(r"\[\s*(\d{1,4})\s*\]")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,4})(?![\w.])")
_VERDICT = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_yes_no(text: str) -> bool | None:
    """True for a reply that says yes, False for no, None when it says neither (or both, yes first wins)."""
    match = _VERDICT.search(text or "")
    return None if match is None else match.group(1).lower() == "yes"


def parse_permutation(text: str, n: int) -> list[int] | None:
    """0-based order from a reply like ``[3] > [1] > [2]`` over ``n`` passages, or None when nothing parses.

    Bracketed identifiers are preferred; bare numbers ("3 > 1 > 2", "3, 1, 2") are accepted when there are
    none. Out-of-range and repeated identifiers are dropped; passages the reply leaves out follow in their
    input order.
    """
    named = _named(text, n)
    if not named:
        return None
    return named + [i for i in range(n) if i not in named]


def _named(text: str, n: int) -> list[int]:
    """The 0-based identifiers a reply names, in order of first mention, in range."""
    found = [int(m) for m in _BRACKETED.findall(text or "")] or [int(m) for m in _NUMBER.findall(text or "")]
    order: list[int] = []
    for number in found:
        if 1 <= number <= n and number - 1 not in order:
            order.append(number - 1)
    return order


def _token_spans(generator: object) -> tuple[Callable[[str], list[tuple[int, int]]], float]:
    """Token spans with the generator's own tokenizer when it has a fast one; else words (~4/3 tokens each)."""
    tokenizer = getattr(generator, "tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "is_fast", False):
        return OffsetTokenizer(tokenizer).token_spans, 1.0
    return WordTokenizer().token_spans, 0.75


class LLMPointwiseReranker:
    """Scores each passage by asking a generator whether it answers the query (see the module docstring).

    ``mode``: ``"logits"`` (needs ``next_token_logprobs``), ``"text"`` (any generator) or ``"auto"``. A
    passage over ``max_passage_tokens`` is judged in overlapping windows and keeps its best window's score;
    its explanation says so. ``concurrency`` > 1 sends text-mode judgements in parallel (HTTP endpoints).
    """

    def __init__(
        self,
        generator: Generator,
        *,
        name: str = "llm-pointwise",
        mode: Literal["auto", "logits", "text"] = "auto",
        system_prompt: str = POINTWISE_SYSTEM_PROMPT,
        max_passage_tokens: int = 384,
        overlap: int = 32,
        batch_size: int = 4,
        concurrency: int = 1,
    ) -> None:
        has_logits = isinstance(generator, LogprobGenerator)
        if mode == "auto":
            mode = "logits" if has_logits else "text"
        if mode not in ("logits", "text"):
            raise ConfigError(f"mode must be 'auto', 'logits' or 'text', got {mode!r}")
        if mode == "logits" and not has_logits:
            raise ConfigError(
                f"{type(generator).__name__} cannot score next-token logits; use mode='text' (reads the reply) "
                "or a local TransformersGenerator"
            )
        if max_passage_tokens < 16 or not 0 <= overlap < max_passage_tokens // 2:
            raise ConfigError("need max_passage_tokens >= 16 and 0 <= overlap < max_passage_tokens / 2")
        if batch_size < 1 or concurrency < 1:
            raise ConfigError("batch_size and concurrency must be >= 1")
        self.generator, self.mode, self.system_prompt = generator, mode, system_prompt
        self.max_passage_tokens, self.overlap = max_passage_tokens, overlap
        self.batch_size, self.concurrency = batch_size, concurrency
        self._name = name
        self._spans, self._scale = _token_spans(generator)
        self._yes_no = self._answer_token_ids() if mode == "logits" else ([], [])

    @property
    def name(self) -> str:
        return self._name

    def _answer_token_ids(self) -> tuple[list[int], list[int]]:
        tokenizer: Any = getattr(self.generator, "tokenizer", None)
        if tokenizer is None:
            raise ConfigError("logits mode needs the generator's tokenizer (a .tokenizer attribute)")

        unknown = getattr(tokenizer, "unk_token_id", None)

        def single(words: Sequence[str]) -> set[int]:
            ids = {tuple(tokenizer.encode(w, add_special_tokens=False)) for w in words}
            return {i[0] for i in ids if len(i) == 1 and i[0] != unknown}

        yes_ids, no_ids = single(_YES), single(_NO)
        yes, no = sorted(yes_ids - no_ids), sorted(no_ids - yes_ids)
        if not yes or not no:
            raise ConfigError(
                "The generator's tokenizer has no single token for 'yes' and 'no'; use mode='text' instead"
            )
        return yes, no

    def _messages(self, query: str, passage: str) -> list[Message]:
        user = (
            f"Query: {query.strip()}\n\nPassage: {passage.strip()}\n\n"
            "Does the passage answer the query? Answer yes or no."
        )
        return [Message("system", self.system_prompt), Message("user", user)]

    def _windows(self, text: str) -> list[tuple[int, int]]:
        size = max(8, int(self.max_passage_tokens * self._scale))
        return text_windows(text, self._spans(text), size, int(self.overlap * self._scale))

    def _judge_logits(self, conversations: list[list[Message]]) -> list[tuple[float, str]]:
        yes, no = self._yes_no
        ids = yes + no
        assert isinstance(self.generator, LogprobGenerator)  # mode "logits" is only chosen for such a generator
        rows = self.generator.next_token_logprobs(conversations, ids, batch_size=self.batch_size)
        out = []
        for row in rows:
            p_yes = _logsumexp(row[: len(yes)])
            p_no = _logsumexp(row[len(yes) :])
            out.append((p_yes - p_no, ""))
        return out

    def _judge_text(self, conversations: list[list[Message]]) -> list[tuple[float, str]]:
        def one(messages: list[Message]) -> tuple[float, str]:
            reply = self.generator.generate(messages)
            verdict = parse_yes_no(reply)
            if verdict is None:
                return 0.5, f"unparsable judgement {reply.strip()[:60]!r}, scored 0.5"
            return (1.0 if verdict else 0.0), ""

        if self.concurrency == 1 or len(conversations) == 1:
            return [one(c) for c in conversations]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(one, conversations))

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """Judge every hit (windowing long passages) and keep the best ``k``."""
        items = check_rerank(query, hits, k)
        if not items:
            return []
        owners: list[int] = []
        spans: list[tuple[int, int]] = []
        conversations: list[list[Message]] = []
        for index, hit in enumerate(items):
            text = hit.chunk.text
            for start, end in self._windows(text):
                owners.append(index)
                spans.append((start, end))
                conversations.append(self._messages(query, text[start:end]))
        judge = self._judge_logits if self.mode == "logits" else self._judge_text
        judged = judge(conversations)
        best: dict[int, int] = {}
        windows = [0] * len(items)
        for j, owner in enumerate(owners):
            windows[owner] += 1
            if owner not in best or judged[j][0] > judged[best[owner]][0]:
                best[owner] = j
        scores, notes = [], []
        for index in range(len(items)):
            j = best[index]
            score, note = judged[j]
            if windows[index] > 1:
                start, end = spans[j]
                note = "; ".join(
                    n
                    for n in (
                        f"windowed: judged as {windows[index]} windows of <= {self.max_passage_tokens} tokens; "
                        f"best window chars {start}-{end}",
                        note,
                    )
                    if n
                )
            scores.append(score)
            notes.append(note)
        return ranked_hits(items, scores, k, self.name, notes)


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if math.isinf(top):
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


class LLMListwiseReranker:
    """RankGPT-style listwise reranking with any generator.

    Windows of ``window`` passages move from the end of the candidate list to the start in steps of ``step``;
    each call asks for a permutation of its window. Passages are shown cut to ``max_passage_words`` words (the
    hit's explanation says when); the passages themselves are never changed.
    """

    def __init__(
        self,
        generator: Generator,
        *,
        name: str = "llm-listwise",
        window: int = 20,
        step: int = 10,
        max_passage_words: int = 100,
        system_prompt: str = LISTWISE_SYSTEM_PROMPT,
    ) -> None:
        if window < 2 or not 1 <= step <= window:
            raise ConfigError(f"need window >= 2 and 1 <= step <= window, got window={window}, step={step}")
        if max_passage_words < 8:
            raise ConfigError("max_passage_words must be >= 8")
        self.generator, self.window, self.step = generator, window, step
        self.max_passage_words, self.system_prompt = max_passage_words, system_prompt
        self._name = name
        self._words = WordTokenizer()

    @property
    def name(self) -> str:
        return self._name

    def _shown(self, text: str) -> tuple[str, str]:
        spans = self._words.token_spans(text)
        if len(spans) <= self.max_passage_words:
            return " ".join(text.split()), ""
        cut = text[: spans[self.max_passage_words - 1][1]]
        note = f"shown to the LLM cut to its first {self.max_passage_words} of {len(spans)} words"
        return " ".join(cut.split()) + " ...", note

    def _messages(self, query: str, shown: Sequence[str]) -> list[Message]:
        n = len(shown)
        listing = "\n".join(f"[{i}] {text}" for i, text in enumerate(shown, start=1))
        user = (
            f"I will provide you with {n} passages, each indicated by a numerical identifier []. Rank the "
            f"passages based on their relevance to the search query: {query.strip()}\n\n{listing}\n\n"
            f"Search Query: {query.strip()}\n"
            f"Rank the {n} passages above based on their relevance to the search query. List them in "
            "descending order of relevance using their identifiers, the most relevant first. The output format "
            "should be [] > [], e.g., [2] > [1]. Only respond with the ranking, do not explain."
        )
        return [Message("system", self.system_prompt), Message("user", user)]

    def windows(self, n: int) -> list[tuple[int, int]]:
        """The (start, end) windows processed for ``n`` candidates, in processing order (bottom first)."""
        if n <= self.window:
            return [(0, n)] if n > 1 else []
        spans = []
        end, start = n, n - self.window
        while True:
            spans.append((start, end))
            if start == 0:
                return spans
            end -= self.step
            start = max(0, start - self.step)

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """Permute ``hits`` window by window and keep the first ``k``."""
        items = check_rerank(query, hits, k)
        shown = [self._shown(h.chunk.text) for h in items]
        order = list(range(len(items)))
        notes: dict[int, list[str]] = {i: [note] if note else [] for i, (_, note) in enumerate(shown)}
        calls = self.windows(len(items))
        for number, (start, end) in enumerate(calls, start=1):
            current = order[start:end]
            reply = self.generator.generate(self._messages(query, [shown[i][0] for i in current]))
            named = _named(reply, len(current))
            if not named:
                for i in current:
                    notes[i].append(f"window {number}/{len(calls)}: unparsable LLM reply, input order kept")
                continue
            rest = [p for p in range(len(current)) if p not in named]
            for p in rest:
                notes[current[p]].append(
                    f"window {number}/{len(calls)}: left out by the LLM, placed after those it ranked"
                )
            order[start:end] = [current[p] for p in named + rest]
        position = {hit_index: place for place, hit_index in enumerate(order)}
        scores = [float(len(items) - position[i]) for i in range(len(items))]
        return ranked_hits(items, scores, k, self.name, ["; ".join(notes[i]) for i in range(len(items))])
