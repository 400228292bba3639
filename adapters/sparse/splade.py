"""SPLADE: learned sparse term weights from any masked-LM checkpoint.

A text's weight for vocabulary term *v* is ``max over its tokens t of log(1 + ReLU(logit[t, v]))`` — the
masked-LM head's logits, max-pooled over the attention mask. ``log1p`` and ``ReLU`` are monotonic, so the encoder
takes the max of the raw logits first (adding the head's bias after the max) and applies them once per term. The
head's (tokens × vocabulary) logits are computed one sequence at a time and reduced at once, so memory stays
bounded by one sequence and flat over long runs (nothing is cached between batches).

Queries can use a second model (``query_model``), or no model at all (``query_mode="tokens"``, inference-free
SPLADE): the query's own tokens, weighted by a per-token table (an ``idf.json`` next to the model, as shipped with
OpenSearch's inference-free models) or 1.0.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragloom._imports import require
from ragloom.chunking import OffsetTokenizer
from ragloom.errors import ConfigError
from ragloom.hf import DType, LoadedModel, load_model
from ragloom.model_inputs import fit_to_limit, longest_first
from ragloom.types import SparseVector

__all__ = ["QueryMode", "SpladeEncoder"]

QueryMode = Literal["model", "tokens"]


def _passthrough(hidden: Any) -> Any:
    return hidden


class _MaskedLMHead:
    """A masked-LM split at its output projection: the model up to it, and the projection's weight and bias.

    The projection (vocabulary × hidden) is applied by the encoder one sequence at a time, so the model never
    materialises (batch × length × vocabulary) logits. Works for any transformers masked LM whose output
    embeddings are a linear layer (BERT, DistilBERT, RoBERTa, ModernBERT...).
    """

    def __init__(self, loaded: LoadedModel) -> None:
        torch = require("torch", "sparse", "SPLADE encoding")
        decoder = loaded.model.get_output_embeddings()
        if not isinstance(decoder, torch.nn.Linear):
            raise ConfigError(
                f"{loaded.name}: SPLADE needs a masked-LM checkpoint whose output layer is linear; got "
                f"{type(decoder).__name__}. Load a *ForMaskedLM model (e.g. naver/splade-v3)."
            )
        self.model = loaded.model
        self.weight = decoder.weight
        self.bias = decoder.bias
        decoder.forward = _passthrough  # the model now returns the head's hidden states, not logits
        self.vocab_size = int(decoder.weight.shape[0])


def _token_table(path: Path) -> dict[str, float]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise ConfigError(f"{path} must map tokens to numbers (an idf.json)")
    return {str(k): float(v) for k, v in data.items()}


class SpladeEncoder:
    """Any masked-LM checkpoint as a :class:`ragloom.protocols.SparseEncoder`.

    ``doc_top_k`` / ``query_top_k`` keep only the largest weights of each vector (None keeps all). Special tokens
    ([CLS], [SEP]...) are dropped from the output vectors: they match every text and carry no lexical meaning.
    ``query_mode="tokens"`` skips the model for queries (inference-free); ``query_weights`` is a token → weight
    mapping or a JSON file, defaulting to the model folder's ``idf.json`` when present, else 1.0 for every token.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = "splade-tiny",
        *,
        query_model: str | os.PathLike[str] | None = None,
        query_mode: QueryMode = "model",
        query_weights: Mapping[str, float] | str | os.PathLike[str] | None = None,
        doc_top_k: int | None = None,
        query_top_k: int | None = None,
        max_length: int | None = None,
        batch_size: int = 32,
        dtype: DType = "float32",
        device: str | None = None,
        allow_download: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        self._torch = require("torch", "sparse", "SPLADE encoding")
        if query_mode not in ("model", "tokens"):
            raise ConfigError(f"query_mode must be 'model' or 'tokens', got {query_mode!r}")
        if query_mode == "tokens" and query_model is not None:
            raise ConfigError("query_model is unused when query_mode='tokens'; pass one or the other")
        for label, value in (("doc_top_k", doc_top_k), ("query_top_k", query_top_k)):
            if value is not None and value < 1:
                raise ConfigError(f"{label} must be a positive integer or None, got {value}")
        options: dict[str, Any] = {"dtype": dtype, "device": device, "allow_download": allow_download}
        options["trust_remote_code"] = trust_remote_code
        loaded = load_model(model, auto_class="AutoModelForMaskedLM", **options)
        self._doc = _MaskedLMHead(loaded)
        self.tokenizer, self.device, self._path = loaded.tokenizer, loaded.device, loaded.path
        self._name, self._weights = loaded.name, loaded.weights_hash
        self._query: _MaskedLMHead | None = None
        self._query_name: str | None = None
        self._query_weights_hash: str | None = None
        if query_model is not None:
            q_loaded = load_model(query_model, auto_class="AutoModelForMaskedLM", **options)
            if q_loaded.tokenizer.get_vocab() != self.tokenizer.get_vocab():
                raise ConfigError(
                    f"query_model {q_loaded.name} has a different vocabulary from {self._name}; SPLADE query and "
                    "document models must share one tokenizer"
                )
            self._query = _MaskedLMHead(q_loaded)
            self._query_name = f"{q_loaded.name}@{q_loaded.weights_hash}"
        self.query_mode: QueryMode = query_mode
        self._token_weights: dict[int, float] | None = None
        if query_mode == "tokens":
            self._token_weights = self._load_token_weights(query_weights)
        elif query_weights is not None:
            raise ConfigError("query_weights applies to query_mode='tokens' only")
        limit = getattr(loaded.model.config, "max_position_embeddings", None) or 512
        tok_limit = getattr(self.tokenizer, "model_max_length", limit) or limit
        self.max_length = int(max_length or min(limit, tok_limit))
        self.doc_top_k, self.query_top_k = doc_top_k, query_top_k
        self.batch_size = batch_size
        self._special = int(self.tokenizer.num_special_tokens_to_add(pair=False))
        special = sorted(i for i in set(self.tokenizer.all_special_ids) if 0 <= i < self._doc.vocab_size)
        self._special_ids = np.array(special, dtype=np.int64)
        self._special_ids_t = self._torch.as_tensor(self._special_ids, device=self.device)
        self._vocab: list[str] | None = None

    def _load_token_weights(self, source: Mapping[str, float] | str | os.PathLike[str] | None) -> dict[int, float]:
        if source is None:
            default = self._path / "idf.json"
            table = _token_table(default) if default.exists() else {}
        elif isinstance(source, Mapping):
            table = {str(k): float(v) for k, v in source.items()}
        else:
            table = _token_table(Path(source))
        vocab = self.tokenizer.get_vocab()
        weights = {vocab[token]: weight for token, weight in table.items() if token in vocab}
        blob = json.dumps(sorted(table.items()), ensure_ascii=False).encode("utf-8")
        self._query_weights_hash = hashlib.sha256(blob).hexdigest()[:16] if table else "uniform"
        return weights

    # -- the SparseEncoder protocol -----------------------------------------------------------------------------
    @property
    def fingerprint(self) -> Mapping[str, object]:
        return {
            "family": "splade",
            "model": self._name,
            "weights": self._weights,
            "vocab_size": self._doc.vocab_size,
            "pooling": "max",
            "activation": "log1p_relu",
            "special_terms": "dropped",
            "max_length": self.max_length,
            "doc_top_k": self.doc_top_k,
            "query_top_k": self.query_top_k,
            "query_mode": self.query_mode,
            "query_model": self._query_name,
            "query_weights": self._query_weights_hash,
        }

    @property
    def token_counter(self) -> OffsetTokenizer:
        """The tokenizer as a chunking token counter (chunks are measured in this model's tokens)."""
        return OffsetTokenizer(self.tokenizer, name=self._name)

    @property
    def document_capacity(self) -> int:
        """Tokens of document text that fit in one input, after special tokens."""
        return self.max_length - self._special

    def term(self, term_id: int) -> str:
        """The vocabulary entry of a term id (for explanations)."""
        if self._vocab is None:
            vocab = self.tokenizer.get_vocab()
            names = [""] * (max(vocab.values()) + 1)
            for token, index in vocab.items():
                names[index] = token
            self._vocab = names
        return self._vocab[term_id] if 0 <= term_id < len(self._vocab) else f"#{term_id}"

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return self._encode(list(texts), self._doc, "document", self.doc_top_k)

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        if self.query_mode == "tokens":
            return [self._token_vector(text) for text in texts]
        return self._encode(list(texts), self._query or self._doc, "query", self.query_top_k)

    # -- internals ----------------------------------------------------------------------------------------------
    def _token_vector(self, text: str) -> SparseVector:
        ids = np.unique(np.asarray(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64))
        ids = np.setdiff1d(ids, self._special_ids)
        assert self._token_weights is not None
        table = self._token_weights
        values = np.array([table.get(int(i), 1.0) if table else 1.0 for i in ids], dtype=np.float32)
        keep = values > 0
        return self._prune(ids[keep], values[keep], self.query_top_k)

    def _encode(self, texts: list[str], head: _MaskedLMHead, kind: str, top_k: int | None) -> list[SparseVector]:
        if not texts:
            return []
        encoded = self.tokenizer(
            texts, add_special_tokens=True, truncation=False, return_attention_mask=False, verbose=False
        )["input_ids"]
        encoded = fit_to_limit(
            encoded,
            self.max_length,
            kind=kind,
            model=self._name,
            closing_special=bool(self._special),
            chunker="SparseRetriever",
            query_hint="use query_mode='tokens' to weigh every query token without a length limit.",
        )
        out: list[SparseVector | None] = [None] * len(texts)
        for rows in longest_first(encoded, self.batch_size):
            for row, vector in zip(rows, self._forward(head, [encoded[i] for i in rows], top_k)):
                out[row] = vector
        vectors = [v for v in out if v is not None]
        assert len(vectors) == len(out), "every row is encoded"
        return vectors

    def _forward(self, head: _MaskedLMHead, batch_ids: list[list[int]], top_k: int | None) -> list[SparseVector]:
        torch = self._torch
        features = self.tokenizer.pad({"input_ids": batch_ids}, padding=True, return_tensors="pt")
        features = {k: v.to(self.device) for k, v in features.items()}
        mask = features["attention_mask"].bool()
        vectors = []
        with torch.inference_mode():
            hidden = head.model(**features).logits  # the head's hidden states (see _MaskedLMHead)
            for row in range(hidden.shape[0]):
                # max_t(h_t·w + b) = max_t(h_t·w) + b: add the bias once per term, not once per token
                best = torch.mm(head.weight, hidden[row][mask[row]].T).amax(dim=1).float()
                if head.bias is not None:
                    best += head.bias.float()
                weights = torch.log1p(torch.relu(best))
                weights[self._special_ids_t] = 0.0
                ids = torch.nonzero(weights).squeeze(1)
                vectors.append(self._prune(ids.cpu().numpy(), weights[ids].cpu().numpy(), top_k))
        return vectors

    @staticmethod
    def _prune(ids: np.ndarray, values: np.ndarray, top_k: int | None) -> SparseVector:
        if top_k is not None and ids.size > top_k:
            keep = np.lexsort((ids, -values))[:top_k]  # largest weights, ties by term id
            ids, values = ids[keep], values[keep]
        return SparseVector(ids, values)
