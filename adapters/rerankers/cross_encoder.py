"""Cross-encoder reranking: a sequence-classification model scores each (query, passage) pair jointly.

A pair longer than the model's limit is never cut quietly: the passage is split into overlapping windows that
each fit beside the query, every window is scored, and the passage keeps its best window's score. The Hit's
explanation says so (how many windows, which characters scored best). Pairs are batched and sorted by length so
padding stays small.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ragloom._imports import require
from ragloom.adapters.rerankers._base import check_rerank, ranked_hits
from ragloom.errors import ConfigError, InputTooLongError, InvalidInputError
from ragloom.hf import DType, load_model
from ragloom.types import Hit

__all__ = ["CrossEncoderReranker", "PairScore"]

Activation = Literal["none", "sigmoid"]


@dataclass(frozen=True)
class PairScore:
    """One passage's score, how many windows it took, and the character span of the best window."""

    score: float
    windows: int
    best_span: tuple[int, int]
    window_tokens: int
    overlap: int

    @property
    def note(self) -> str:
        """The explanation a windowed passage gets ("" when it fit whole)."""
        if self.windows <= 1:
            return ""
        start, end = self.best_span
        return (
            f"windowed: passage too long for one pair, scored as {self.windows} windows of <= "
            f"{self.window_tokens} tokens (overlap {self.overlap}); best window chars {start}-{end}"
        )


class CrossEncoderReranker:
    """A transformers sequence-classification checkpoint as a :class:`ragloom.protocols.Reranker`.

    One-label models (ms-marco cross-encoders, bge-reranker) score with their logit; two-label models with the
    log-odds of label 1 ("relevant"). ``activation="sigmoid"`` maps scores into 0..1 (the order is the same).
    ``overlap`` is how many passage tokens consecutive windows share when a passage must be windowed.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = "cross-encoder/ms-marco-MiniLM-L6-v2",
        *,
        name: str = "cross-encoder",
        batch_size: int = 32,
        max_length: int | None = None,
        overlap: int = 32,
        activation: Activation = "none",
        dtype: DType = "float32",
        device: str | None = None,
        allow_download: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        self._torch = require("torch", "torch", "cross-encoder reranking")
        if batch_size < 1 or overlap < 0:
            raise ConfigError(f"batch_size must be >= 1 and overlap >= 0, got {batch_size} and {overlap}")
        if activation not in ("none", "sigmoid"):
            raise ConfigError(f"activation must be 'none' or 'sigmoid', got {activation!r}")
        loaded = load_model(
            model,
            auto_class="AutoModelForSequenceClassification",
            dtype=dtype,
            device=device,
            allow_download=allow_download,
            trust_remote_code=trust_remote_code,
        )
        self.model, self.tokenizer, self.device = loaded.model, loaded.tokenizer, loaded.device
        if not getattr(self.tokenizer, "is_fast", True):
            raise ConfigError(f"{loaded.name}: windowing long passages needs a fast tokenizer (use_fast=True)")
        labels = int(self.model.config.num_labels)
        if labels not in (1, 2):
            raise ConfigError(
                f"{loaded.name} has {labels} output labels; a cross-encoder reranker needs 1 (a relevance logit) "
                "or 2 (not relevant / relevant). This checkpoint looks like a classifier, not a reranker."
            )
        self._labels = labels
        limit = int(getattr(self.model.config, "max_position_embeddings", 512) or 512)
        tok_limit = int(getattr(self.tokenizer, "model_max_length", limit) or limit)
        limit = min(limit, tok_limit) if tok_limit < 1_000_000 else limit
        if max_length is not None and not 8 <= max_length <= limit:
            raise ConfigError(f"max_length must be between 8 and the model's limit of {limit}, got {max_length}")
        self.max_length = int(max_length or limit)
        self.batch_size, self.overlap, self.activation = batch_size, overlap, activation
        self._specials = int(self.tokenizer.num_special_tokens_to_add(pair=True))
        self._name = name
        self.model_name = loaded.name
        self.weights_hash = loaded.weights_hash

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"CrossEncoderReranker(model={self.model_name!r}, max_length={self.max_length}, name={self.name!r})"

    def window_tokens(self, query: str) -> int:
        """How many passage tokens fit beside ``query`` in one pair."""
        query_tokens = len(self.tokenizer(query, add_special_tokens=False)["input_ids"])
        room = self.max_length - self._specials - query_tokens
        needed = max(4, self.max_length // 8)
        if room < needed:
            raise InputTooLongError(
                f"The query has {query_tokens} tokens, which leaves {room} of the cross-encoder's "
                f"{self.max_length}-token limit for the passage (at least {needed} are needed). Shorten the query "
                "or use a reranker with a longer limit."
            )
        return room

    def score_pairs(self, query: str, passages: Sequence[str]) -> list[PairScore]:
        """Score each passage against ``query`` (windowing any that do not fit whole)."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(f"A query must be a non-empty string, got {query!r}")
        if not passages:
            return []
        room = self.window_tokens(query)
        stride = min(self.overlap, room // 2)
        encoded = self.tokenizer(
            [query] * len(passages),
            [str(p) for p in passages],
            truncation="only_second",
            max_length=self.max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        owners: list[int] = list(encoded["overflow_to_sample_mapping"])
        window_scores = self._forward(encoded)
        best: dict[int, tuple[float, int]] = {}
        counts = [0] * len(passages)
        for window, owner in enumerate(owners):
            counts[owner] += 1
            if owner not in best or window_scores[window] > best[owner][0]:
                best[owner] = (window_scores[window], window)
        results = []
        for owner in range(len(passages)):
            score, window = best[owner]
            spans = [
                span for span, seq in zip(encoded["offset_mapping"][window], encoded.sequence_ids(window)) if seq == 1
            ]
            best_span = (int(spans[0][0]), int(spans[-1][1])) if spans else (0, 0)
            results.append(PairScore(score, counts[owner], best_span, room, stride))
        return results

    def _forward(self, encoded: Any) -> list[float]:
        torch = self._torch
        names = [n for n in self.tokenizer.model_input_names if n in encoded]
        features = [{n: encoded[n][i] for n in names} for i in range(len(encoded["input_ids"]))]
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        scores = [0.0] * len(features)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch_ids = order[start : start + self.batch_size]
                batch = self.tokenizer.pad([features[i] for i in batch_ids], return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                logits = self.model(**batch).logits.float()
                values = logits[:, 0] if self._labels == 1 else logits[:, 1] - logits[:, 0]
                if self.activation == "sigmoid":
                    values = torch.sigmoid(values)
                for i, value in zip(batch_ids, values.tolist()):
                    scores[i] = float(value)
        return scores

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """Re-score ``hits`` against ``query`` and keep the best ``k`` (ranks 1..k, score kind ``rerank``)."""
        items = check_rerank(query, hits, k)
        if not items:
            return []
        pair_scores = self.score_pairs(query, [h.chunk.text for h in items])
        notes = [
            "no passage text to score (an image-only hit?)" if not h.chunk.text.strip() else s.note
            for h, s in zip(items, pair_scores)
        ]
        return ranked_hits(items, [s.score for s in pair_scores], k, self.name, notes)

    def close(self) -> None:
        self.model = None
