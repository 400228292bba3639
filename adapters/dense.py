"""Dense retrieval: a transformers sentence encoder and a retriever over the exact or chromadb store.

The encoder reads a sentence-transformers folder's own settings (pooling, normalisation, max length, prompts),
sorts inputs by length to pad less, restores order, and runs under ``torch.inference_mode`` (or, with
``backend="onnx"``, in ONNX Runtime: :mod:`ragloom.adapters.dense_onnx`). A document input over
the model's limit is an error (chunk it first); a query over it is cut with a TruncationWarning — never silently.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ragloom._imports import require
from ragloom.chunking import OffsetTokenizer
from ragloom.cpu_threads import (
    ThreadSetting,
    ThreadTuner,
    available_cpus,
    baseline_threads,
    check_thread_setting,
    torch_threads,
)
from ragloom.errors import ConfigError
from ragloom.hf import DType, load_model, sentence_transformers_config
from ragloom.model_inputs import fit_to_limit, longest_first
from ragloom.model_registry import registered_prompts
from ragloom.retrieval import ChunkedVectorRetriever

__all__ = ["Backend", "DenseRetriever", "Pooling", "TransformersDenseEncoder"]

Pooling = Literal["mean", "cls", "last"]
Backend = Literal["torch", "onnx"]


class TransformersDenseEncoder:
    """Any transformers encoder as a :class:`ragloom.protocols.DenseEncoder`.

    Settings left as ``None`` come from the model folder's sentence-transformers files when present
    (all-MiniLM-L6-v2: mean pooling, normalised, 256 tokens), else mean pooling, normalised, the model's limit.
    ``truncate_dim`` keeps the first dimensions (Matryoshka models) and renormalises. ``dtype="auto"`` computes in
    bf16 on GPUs and on CPUs with native bf16 (2.7x the throughput of fp32 there, with vectors at cosine >= 0.9999
    to fp32 and the same SciFact nDCG@10), fp32 elsewhere (bf16 without native support is emulated, several times
    slower than fp32); the dtype is not part of the fingerprint.

    ``threads`` (CPU only): ``None`` (the default) leaves torch's setting alone; ``"auto"`` times each batch and keeps
    the fastest thread count (one thread beats two on a busy machine, see :mod:`ragloom.cpu_threads`); an int uses
    that many. With ``"auto"`` or an int, torch's process-wide count changes while this encoder runs (other torch
    work in the process sees it meanwhile) and is restored afterwards, which is why it is opt-in.

    ``backend="onnx"`` (``pip install 'ragloom[onnx]'``, CPU, fp32) runs the encoder in ONNX Runtime: exported once
    and cached under ragloom's model home (:mod:`ragloom.adapters.dense_onnx`); tokenizing, batching, pooling and
    the input-length policy are the same, vectors agree with the torch backend to cosine >= 0.9999 and the backend
    is not part of the fingerprint. ``threads`` then sets ORT's intra-op threads (``None``: ORT's default).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = "minilm",
        *,
        pooling: Pooling | None = None,
        normalize: bool | None = None,
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        max_length: int | None = None,
        truncate_dim: int | None = None,
        batch_size: int = 32,
        dtype: DType = "auto",
        device: str | None = None,
        allow_download: bool = False,
        trust_remote_code: bool = False,
        threads: ThreadSetting = None,
        backend: Backend = "torch",
    ) -> None:
        self._torch = require("torch", "dense", "dense encoding")
        self.threads = check_thread_setting(threads)
        self._tuner: ThreadTuner | None = None
        self._onnx: Any = None
        if backend == "onnx":
            require("onnxruntime", "onnx", "the ONNX Runtime encoder backend")  # before loading and exporting
            dtype, device = _onnx_settings(dtype, device)
        elif backend != "torch":
            raise ConfigError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        self.backend: Backend = backend
        loaded = load_model(
            model,
            dtype=dtype,
            device=device,
            allow_download=allow_download,
            trust_remote_code=trust_remote_code,
        )
        self.model, self.tokenizer, self.device = loaded.model, loaded.tokenizer, loaded.device
        found = sentence_transformers_config(loaded.path)
        prompts = found.get("prompts") or registered_prompts(model)  # e.g. nomic's "search_query: "
        self.pooling: Pooling = pooling or found.get("pooling", "mean")
        if self.pooling not in ("mean", "cls", "last"):
            raise ConfigError(f"pooling must be mean, cls or last, got {self.pooling!r}")
        self.normalize = found.get("normalize", True) if normalize is None else normalize
        self.query_prefix = query_prefix if query_prefix is not None else prompts.get("query", "")
        self.document_prefix = document_prefix if document_prefix is not None else prompts.get("document", "")
        limit = getattr(self.model.config, "max_position_embeddings", None) or 512
        tok_limit = getattr(self.tokenizer, "model_max_length", limit) or limit
        self.max_length = int(max_length or found.get("max_length") or min(limit, tok_limit))
        hidden = int(self.model.config.hidden_size)
        if truncate_dim is not None and not 0 < truncate_dim <= hidden:
            raise ConfigError(f"truncate_dim must be in 1..{hidden}, got {truncate_dim}")
        self.truncate_dim = truncate_dim
        self._dim = truncate_dim or hidden
        self.batch_size = batch_size
        self.dtype = dtype
        self._name = loaded.name
        self._weights = loaded.weights_hash
        self._special = int(self.tokenizer.num_special_tokens_to_add(pair=False))
        if backend == "onnx":
            from ragloom.adapters.dense_onnx import OnnxEncoderRunner, export_onnx_encoder

            self._onnx = OnnxEncoderRunner(export_onnx_encoder(self.model, name=self._name, weights_hash=self._weights))

    # -- the DenseEncoder protocol ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> Mapping[str, object]:
        return {
            "family": "dense",
            "model": self._name,
            "weights": self._weights,
            "dim": self._dim,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "query_prefix": self.query_prefix,
            "document_prefix": self.document_prefix,
            "max_length": self.max_length,
            "truncate_dim": self.truncate_dim,
        }

    @property
    def token_counter(self) -> OffsetTokenizer:
        """The tokenizer as a chunking token counter (chunks are measured in this model's tokens)."""
        return OffsetTokenizer(self.tokenizer, name=self._name)

    @property
    def document_capacity(self) -> int:
        """Tokens of document text that fit in one input, after special tokens and the document prefix."""
        prefix = len(self.tokenizer(self.document_prefix, add_special_tokens=False)["input_ids"])
        return self.max_length - self._special - prefix

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts], kind="query")

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.document_prefix + t for t in texts], kind="document")

    # -- internals ----------------------------------------------------------------------------------------------
    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        encoded = self.tokenizer(
            texts, add_special_tokens=True, truncation=False, return_attention_mask=False, verbose=False
        )["input_ids"]
        encoded = fit_to_limit(
            encoded,
            self.max_length,
            kind=kind,
            model=self._name,
            closing_special=bool(self._special),
            chunker="DenseRetriever",
        )
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        if self.threads is None or self.device != "cpu":
            for rows in longest_first(encoded, self.batch_size):
                out[rows] = self._forward([encoded[i] for i in rows], None)
        elif self._onnx is not None:
            self._run_counted(encoded, out, available_cpus())
        else:
            with torch_threads(self._torch):
                self._run_counted(encoded, out, baseline_threads(self._torch))
        return out

    def _run_counted(self, encoded: list[list[int]], out: np.ndarray, most: int) -> None:
        """Encode batch by batch at the pinned thread count, or at the one the tuner picks (up to ``most``)."""
        if self.threads == "auto" and self._tuner is None:
            self._tuner = ThreadTuner(most)
        for rows in longest_first(encoded, self.batch_size):
            batch = [encoded[i] for i in rows]
            count = self._tuner.choose() if self._tuner else int(self.threads or 1)
            started = time.perf_counter()
            out[rows] = self._forward(batch, count)
            if self._tuner:
                self._tuner.record(count, time.perf_counter() - started, len(batch) * max(map(len, batch)))

    def _forward(self, batch_ids: list[list[int]], threads: int | None) -> np.ndarray:
        torch = self._torch
        features = self.tokenizer.pad({"input_ids": batch_ids}, padding=True, return_tensors="pt")
        with torch.inference_mode():
            if self._onnx is not None:
                arrays = {k: v.numpy() for k, v in features.items()}
                hidden = torch.from_numpy(self._onnx.run(arrays, threads))
            else:
                if threads is not None:
                    torch.set_num_threads(threads)
                features = {k: v.to(self.device) for k, v in features.items()}
                hidden = self.model(**features).last_hidden_state
            pooled = self._pool(hidden, features["attention_mask"])
            pooled = pooled.float()
            if self.truncate_dim:
                pooled = pooled[:, : self.truncate_dim]
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.cpu().numpy()

    def _pool(self, hidden: Any, mask: Any) -> Any:
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "last":
            lengths = mask.sum(dim=1) - 1
            if self.tokenizer.padding_side == "left":
                return hidden[:, -1]
            return hidden[self._torch.arange(hidden.shape[0], device=hidden.device), lengths]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def _onnx_settings(dtype: DType, device: str | None) -> tuple[DType, str]:
    """backend='onnx' computes in fp32 on the CPU: the dtype and device to load the model for export with."""
    if device not in (None, "cpu"):
        raise ConfigError(f"backend='onnx' runs on the CPU; got device={device!r}. Use backend='torch' for {device}.")
    if dtype not in ("auto", "float32"):
        raise ConfigError(f"backend='onnx' computes in float32; got dtype={dtype!r}. Use dtype='auto' or 'float32'.")
    return "float32", "cpu"


class DenseRetriever(ChunkedVectorRetriever):
    """Chunk documents with the encoder's tokenizer, embed the chunks, and search a vector store.

    ``store``: ``"memory"`` (exact, persisted in SQLite under ``path``), ``"chroma"`` (embedded chromadb under
    ``path``, or a Chroma server when ``chroma_url`` is given), ``"binary"`` / ``"int8"`` / ``"compressed"``
    (compact first-stage codes in RAM, rescored with float32 vectors memory-mapped from disk; ``store_options``
    such as ``{"first_stage": "binary", "rescore": "int8", "oversample": 10}``, see
    :class:`ragloom.stores.compressed.CompressedVectorStore`), or any :class:`ragloom.stores.VectorStore`.
    """

    kind = "dense"
