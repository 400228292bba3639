"""A ColBERT-style late-interaction text encoder: any transformers encoder plus a per-token linear projection.

Reads both common layouts: PyLate / sentence-transformers folders (``1_Dense/`` projection,
``config_sentence_transformers.json`` with prefixes, lengths and skiplist) and colbert-ai checkpoints (a
``linear.weight`` in the model's safetensors, ``artifact.metadata``). Queries get the query marker and are padded
with ``[MASK]`` to ``query_length`` (query augmentation); documents get the document marker and drop punctuation
tokens (the skiplist). A query over ``query_length`` is cut with a TruncationWarning; a document over
``document_length`` is encoded in overlapping windows whose vectors are all kept — nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragloom._imports import require
from ragloom.adapters.multivector._torch import AdaptiveBatcher, LastAttention
from ragloom.chunking import OffsetTokenizer
from ragloom.errors import ConfigError, InvalidInputError, TruncationWarning
from ragloom.hf import DType, load_model

__all__ = ["ColBERTEncoder"]


def _read_settings(path: Path) -> dict[str, Any]:
    """Marker tokens, lengths, expansion and skiplist from a PyLate or colbert-ai folder."""
    found: dict[str, Any] = {}
    pylate = path / "config_sentence_transformers.json"
    if pylate.exists():
        data = json.loads(pylate.read_text(encoding="utf-8"))
        for key, target in (("query_prefix", "query_marker"), ("document_prefix", "document_marker")):
            if isinstance(data.get(key), str) and data[key].strip():
                found[target] = data[key].strip()
        for key in ("query_length", "document_length"):
            if data.get(key):
                found[key] = int(data[key])
        if "do_query_expansion" in data:
            found["query_expansion"] = bool(data["do_query_expansion"])
        if "attend_to_expansion_tokens" in data:
            found["attend_to_expansion"] = bool(data["attend_to_expansion_tokens"])
        if isinstance(data.get("skiplist_words"), list):
            found["skiplist"] = [str(w) for w in data["skiplist_words"]]
    artifact = path / "artifact.metadata"
    if artifact.exists():
        data = json.loads(artifact.read_text(encoding="utf-8"))
        found.setdefault("query_marker", data.get("query_token_id", "[unused0]"))
        found.setdefault("document_marker", data.get("doc_token_id", "[unused1]"))
        found.setdefault("query_length", int(data.get("query_maxlen", 32)))
        found.setdefault("document_length", int(data.get("doc_maxlen", 180)))
        found.setdefault("attend_to_expansion", bool(data.get("attend_to_mask_tokens", False)))
    return found


def _load_projection(path: Path, torch: Any) -> Any:
    """The (dim, hidden) projection matrix, or None when the folder has none."""
    from safetensors.torch import load_file

    dense = path / "1_Dense" / "model.safetensors"
    if dense.exists():
        tensors = load_file(str(dense))
        key = next((k for k in tensors if k.endswith("weight")), None)
        if key is None or any(k.endswith("bias") for k in tensors):
            raise ConfigError(f"{dense}: expected one bias-free linear weight, found {sorted(tensors)}")
        return tensors[key].float()
    for file in sorted(path.glob("*.safetensors")):
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            if "linear.weight" in handle.keys():  # noqa: SIM118 - safe_open has keys(), not __contains__
                return handle.get_tensor("linear.weight").float()
    return None


class ColBERTEncoder:
    """ColBERT text encoder as a :class:`ragloom.protocols.MultiVectorEncoder` (L2-normalised token vectors).

    Settings left as None come from the model folder (PyLate or colbert-ai files), else: no markers, query
    length 32, document length = the model's limit, query expansion on, punctuation skipped.
    """

    modality = "text"

    def __init__(
        self,
        model: str | os.PathLike[str] = "colbert-ir/colbertv2.0",
        *,
        query_marker: str | None = None,
        document_marker: str | None = None,
        query_length: int | None = None,
        document_length: int | None = None,
        query_expansion: bool | None = None,
        attend_to_expansion: bool | None = None,
        skip_punctuation: bool = True,
        batch_size: int = 32,
        dtype: DType = "float32",
        device: str | None = None,
        allow_download: bool = False,
        trust_remote_code: bool = False,
        capture_attention: bool = False,
    ) -> None:
        self._torch = require("torch", "multivector", "ColBERT encoding")
        loaded = load_model(
            model,
            dtype=dtype,
            device=device,
            allow_download=allow_download,
            trust_remote_code=trust_remote_code,
            model_kwargs={"attn_implementation": "eager"} if capture_attention else None,
        )
        self.model, self.tokenizer, self.device = loaded.model, loaded.tokenizer, loaded.device
        found = _read_settings(loaded.path)
        limit = int(getattr(self.model.config, "max_position_embeddings", 512) or 512)
        self.query_marker = query_marker if query_marker is not None else found.get("query_marker", "")
        self.document_marker = document_marker if document_marker is not None else found.get("document_marker", "")
        self.query_length = int(query_length or found.get("query_length", 32))
        self.document_length = int(document_length or found.get("document_length", min(limit, 512)))
        self.query_expansion = found.get("query_expansion", True) if query_expansion is None else query_expansion
        self.attend_to_expansion = (
            found.get("attend_to_expansion", False) if attend_to_expansion is None else attend_to_expansion
        )
        self.skip_punctuation = skip_punctuation
        if max(self.query_length, self.document_length) > limit:
            raise ConfigError(f"query/document length exceeds {loaded.name}'s limit of {limit} positions")
        self._markers = {
            kind: self._marker_id(tok)
            for kind, tok in (("query", self.query_marker), ("document", self.document_marker))
        }
        self._prefix, self._suffix = _special_template(self.tokenizer)
        self._mask_id = self.tokenizer.mask_token_id
        if self.query_expansion and self._mask_id is None:
            raise ConfigError(f"{loaded.name}'s tokenizer has no mask token; pass query_expansion=False")
        skip_words = found.get("skiplist", list(string.punctuation))
        self._skip = {i for w in skip_words for i in self.tokenizer(w, add_special_tokens=False)["input_ids"][:1]
                      if len(self.tokenizer(w, add_special_tokens=False)["input_ids"]) == 1}  # fmt: skip
        projection = _load_projection(loaded.path, self._torch)
        hidden = int(self.model.config.hidden_size)
        if projection is not None and projection.shape[1] != hidden:
            raise ConfigError(f"Projection expects {projection.shape[1]}-d inputs but the model is {hidden}-d")
        self._projection = projection.to(self.device) if projection is not None else None
        self._dim = int(projection.shape[0]) if projection is not None else hidden
        self._projection_hash = (
            hashlib.sha256(projection.numpy().tobytes()).hexdigest()[:16] if projection is not None else "none"
        )
        self._name, self._weights = loaded.name, loaded.weights_hash
        self._attention = LastAttention(self.model) if capture_attention else None
        self._batcher = AdaptiveBatcher(batch_size, "texts")

    def _marker_id(self, token: str) -> int | None:
        if not token:
            return None
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ConfigError(f"Marker token {token!r} is not in the tokenizer's vocabulary")
        return int(token_id)

    # -- the MultiVectorEncoder protocol ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> Mapping[str, object]:
        return {
            "family": "colbert",
            "model": self._name,
            "weights": self._weights,
            "projection": self._projection_hash,
            "dim": self._dim,
            "normalize": True,
            "query_marker": self.query_marker,
            "document_marker": self.document_marker,
            "query_length": self.query_length,
            "document_length": self.document_length,
            "query_expansion": self.query_expansion,
            "attend_to_expansion": self.attend_to_expansion,
            "skip_punctuation": self.skip_punctuation,
        }

    @property
    def token_counter(self) -> OffsetTokenizer:
        return OffsetTokenizer(self.tokenizer, name=self._name)

    @property
    def document_capacity(self) -> int:
        """Text tokens that fit in one document input (after [CLS], the marker and [SEP])."""
        return self.document_length - self._overhead("document")

    def _overhead(self, kind: str) -> int:
        return len(self._prefix) + len(self._suffix) + (self._markers[kind] is not None)

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        rows = [self._query_ids(t) for t in _check_texts(texts)]
        return self._batcher.run(rows, lambda batch: self._forward(list(batch), "query"))

    def encode_documents(self, items: Sequence[object]) -> list[np.ndarray]:
        return [vectors for vectors, _ in self._encode_documents(items, importance=False)]

    def encode_documents_with_importance(self, items: Sequence[object]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Vectors plus each token's importance: the attention [CLS] pays it in the last layer."""
        if self._attention is None:
            raise ConfigError("Pruning needs attention weights: create the encoder with capture_attention=True")
        return self._encode_documents(items, importance=True)

    # -- internals --------------------------------------------------------------------------------------------------
    def _with_marker(self, ids: list[int], kind: str) -> list[int]:
        """``prefix specials + marker + ids + suffix specials`` ([CLS] [Q] ... [SEP] for BERT)."""
        marker = self._markers[kind]
        return [*self._prefix, *([marker] if marker is not None else []), *ids, *self._suffix]

    def _query_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        room = self.query_length - self._overhead("query")
        if len(ids) > room:
            warnings.warn(
                f"A query of {len(ids)} tokens was cut to {room} (query_length {self.query_length}); "
                "raise query_length to keep more",
                TruncationWarning,
                stacklevel=4,
            )
            ids = ids[:room]
        return self._with_marker(ids, "query")

    def _encode_documents(self, items: Sequence[object], importance: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        texts = [t if isinstance(t, str) else _bad_item(t) for t in items]
        room = self.document_capacity
        windows: list[list[int]] = []
        owner: list[int] = []
        for index, text in enumerate(texts):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            step = max(1, room - room // 4)  # overlapping windows: every token is encoded, none dropped
            starts = range(0, max(len(ids) - room, 0) + step, step) if len(ids) > room else [0]
            for start in starts:
                windows.append(self._with_marker(ids[start : start + room], "document"))
                owner.append(index)
        encoded = self._batcher.run(windows, lambda batch: self._forward(list(batch), "document", importance))
        merged: list[list[Any]] = [[] for _ in texts]
        for index, result in zip(owner, encoded):
            merged[index].append(result)
        out = []
        for parts in merged:
            vectors = np.concatenate([p[0] for p in parts]) if importance else np.concatenate(parts)
            weights = np.concatenate([p[1] for p in parts]) if importance else np.zeros(0, np.float32)
            out.append((vectors, weights))
        return out

    def _forward(self, rows: list[list[int]], kind: str, importance: bool = False) -> list[Any]:
        torch = self._torch
        query = kind == "query"
        width = self.query_length if query and self.query_expansion else max(len(r) for r in rows)
        pad = self._mask_id if query and self.query_expansion else self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        attend = torch.ones_like(mask) if query and self.query_expansion and self.attend_to_expansion else mask
        with torch.inference_mode():
            hidden = self.model(input_ids=ids.to(self.device), attention_mask=attend.to(self.device)).last_hidden_state
            vectors = hidden.float() @ self._projection.T if self._projection is not None else hidden.float()
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1).cpu()
            weights = (
                self._attention.pop()[:, :, 0, :].float().mean(dim=1).cpu() if importance and self._attention else None
            )
        out: list[Any] = []
        for i, row in enumerate(rows):
            if query:
                keep = torch.ones(width, dtype=torch.bool) if self.query_expansion else mask[i].bool()
            else:
                keep = mask[i].bool().clone()
                if self.skip_punctuation:
                    keep[: len(row)] &= torch.tensor([t not in self._skip for t in row])
            kept = vectors[i][keep].numpy()
            out.append((kept, weights[i][keep].numpy()) if weights is not None else kept)
        return out


def _special_template(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (e.g. [CLS] and [SEP])."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain) :])
    raise ConfigError("Cannot tell where this tokenizer puts its special tokens")


def _check_texts(texts: Sequence[str]) -> list[str]:
    texts = list(texts)
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"A query must be a non-empty string, got {text!r}")
    return texts


def _bad_item(item: object) -> str:
    raise InvalidInputError(f"ColBERTEncoder encodes text documents (str), got {type(item).__name__}")
