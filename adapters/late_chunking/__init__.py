"""Late chunking: contextual chunk embeddings from a long-context encoder.

A document is tokenised once (with offsets), run through the model as a whole, and each chunk's vector is the
mean of the token states over the chunk's own tokens, so every chunk "saw" the text around it. The chunks come
from the same :class:`ragloom.chunking.TokenChunker` as the dense adapter, so spans, ids and citations are exact
and identical to naive chunking of the same text. The document prefix ("search_document: ") and the special tokens
are context, never part of a chunk.

A document longer than the window is encoded in overlapping macro-windows ("long late chunking"); each chunk is
pooled from the window that gives it the most context on both sides. RoPE models can extend their window with
dynamic NTK scaling (nomic-embed-text-v1.5: trained on 2048 tokens, ``rope_factor=2.0`` reaches 4096 and more).
"""

from __future__ import annotations

import bisect
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragloom._imports import require
from ragloom.adapters.late_chunking.rope import install_dynamic_ntk
from ragloom.adapters.late_chunking.windows import Span, assign_windows, plan_windows
from ragloom.chunking import OffsetTokenizer, TokenChunker
from ragloom.errors import ConfigError, InvalidInputError, RagloomWarning
from ragloom.hf import DType
from ragloom.models import resolve_model
from ragloom.retrieval import ChunkedVectorRetriever
from ragloom.stores import VectorStore
from ragloom.types import Chunk, Document, chunk_id_for_span

__all__ = [
    "DEFAULT_WINDOW",
    "MODEL_DEFAULTS",
    "LateChunkingEncoder",
    "LateChunkingRetriever",
    "LateSettings",
    "ModelDefaults",
    "assign_windows",
    "build_late",
    "plan_windows",
]

DEFAULT_WINDOW = 1024
"""Tokens per model input unless set. Measured with nomic-embed-text-v1.5 (docs/late-chunking.md): 512 and 1024
match naive chunking on QMSum meetings, 2048 loses 14 points of span recall; on a CPU, 1024 costs 0.87x naive
chunking for abstracts and 1.65x for long meetings."""


@dataclass(frozen=True)
class ModelDefaults:
    """What a model family expects when the model folder does not say: prefixes and its trained context."""

    query_prefix: str = ""
    document_prefix: str = ""
    trained_context: int | None = None


MODEL_DEFAULTS: dict[str, ModelDefaults] = {
    # nomic-embed-text-v1/v1.5: task prefixes, trained on 2048 tokens (dynamic NTK RoPE x2 past that)
    "nomic_bert": ModelDefaults("search_query: ", "search_document: ", 2048),
}
"""Defaults by ``config.json`` ``model_type``; explicit arguments and sentence-transformers prompts win."""


@dataclass(frozen=True)
class LateSettings:
    """How documents become model inputs; recorded in the index manifest (indexes built otherwise never mix).

    ``window``: tokens per model input, special and prefix tokens included. ``overlap``: tokens of context a chunk
    keeps on each side when it sits near a window edge (consecutive windows share at least this many tokens).
    ``rope_factor``/``trained_context``: dynamic NTK RoPE scaling for inputs longer than ``trained_context``.
    ``edge_tokens``: pool the tokens before the text ([CLS], the document prefix) into the document's first chunk
    and those after it ([SEP]) into its last, as Günther et al. (2024, sec. 4.1) do; a document of one chunk then
    gets exactly its naive vector. Off: chunks pool their own text tokens only.
    """

    window: int
    overlap: int
    rope_factor: float | None = None
    trained_context: int | None = None
    edge_tokens: bool = True

    def __post_init__(self) -> None:
        if self.window < 8:
            raise ConfigError(f"window must be at least 8 tokens, got {self.window}")
        if self.overlap < 0:
            raise ConfigError(f"overlap must be >= 0, got {self.overlap}")
        if self.rope_factor is not None and (self.rope_factor <= 1.0 or not self.trained_context):
            raise ConfigError("rope_factor must be > 1 and needs trained_context (the model's trained length)")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# -- the encoder ----------------------------------------------------------------------------------------------------
_FILL = 0.9
"""Inputs shorter than this share of a batch's longest start a new batch (SciFact abstracts: 39% -> 5% padding)."""


@dataclass(frozen=True)
class _Job:
    """One model input (a window) and the chunks pooled from it: (output row, first position, end position)."""

    input_ids: list[int]
    pools: list[tuple[int, int, int]]


class LateChunkingEncoder:
    """Contextual chunk vectors from any transformers encoder, composed over :class:`TransformersDenseEncoder`.

    Queries are encoded exactly as the dense encoder does (prefix, the model's pooling). ``window`` defaults to
    :data:`DEFAULT_WINDOW` (or the model's trained context or limit when smaller); with ``rope_factor`` to
    ``trained_context * rope_factor``. Pass ``encoder=`` to share a loaded dense encoder and its weights (the model
    arguments are then ignored; with ``rope_factor`` the shared model gets the scaling too).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = "nomic",
        *,
        window: int | None = None,
        overlap: int | None = None,
        rope_factor: float | None = None,
        trained_context: int | None = None,
        edge_tokens: bool = True,
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        batch_size: int = 32,
        batch_tokens: int = 16384,
        dtype: DType = "auto",
        device: str | None = None,
        truncate_dim: int | None = None,
        allow_download: bool = False,
        trust_remote_code: bool = False,
        encoder: Any = None,
    ) -> None:
        from ragloom.adapters.dense import TransformersDenseEncoder

        self._torch = require("torch", "dense", "late chunking")
        if encoder is None:
            config_file = resolve_model(model, allow_download=allow_download) / "config.json"
            model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type", "")
            defaults = MODEL_DEFAULTS.get(model_type, ModelDefaults())
            encoder = TransformersDenseEncoder(
                model,
                query_prefix=query_prefix,
                document_prefix=document_prefix,
                batch_size=batch_size,
                dtype=dtype,
                device=device,
                truncate_dim=truncate_dim,
                allow_download=allow_download,
                trust_remote_code=trust_remote_code,
            )
            # the folder's own prompts win; else the family's documented prefixes
            if query_prefix is None and not encoder.query_prefix:
                encoder.query_prefix = defaults.query_prefix
            if document_prefix is None and not encoder.document_prefix:
                encoder.document_prefix = defaults.document_prefix
        else:
            defaults = MODEL_DEFAULTS.get(getattr(encoder.model.config, "model_type", ""), ModelDefaults())
        self.dense = encoder
        if encoder.pooling != "mean":
            warnings.warn(
                f"{encoder.fingerprint['model']} pools queries by {encoder.pooling!r}; late chunking mean-pools "
                "chunk tokens, so query and chunk vectors may not be comparable. Prefer a mean-pooling model.",
                RagloomWarning,
                stacklevel=2,
            )
        trained = trained_context or defaults.trained_context
        limit = int(encoder.max_length)
        if window is None:
            window = int(trained * rope_factor) if rope_factor and trained else min(DEFAULT_WINDOW, trained or limit)
            window = min(window, limit)
        if window > limit:
            raise ConfigError(f"window {window} exceeds the model's limit of {limit} tokens")
        if overlap is None:
            overlap = min(128, window // 8)
        self.settings = LateSettings(window, overlap, rope_factor, trained if rope_factor else None, edge_tokens)
        if rope_factor:
            install_dynamic_ntk(encoder.model, int(trained or 0), float(rope_factor))
        elif trained and window > trained:
            warnings.warn(
                f"window {window} exceeds the {trained} tokens the model was trained on; quality drops past it. "
                "Pass rope_factor=2.0 (dynamic NTK) or a smaller window.",
                RagloomWarning,
                stacklevel=2,
            )
        self.batch_tokens = max(batch_tokens, window)
        self._head, self._tail = self._special_template()
        self.capacity = window - len(self._head) - len(self._tail) - self._prefix_length()
        if self.capacity < 2 * overlap + 1:
            raise ConfigError(
                f"window {window} leaves {self.capacity} tokens for text, too few for overlap {overlap} on both "
                "sides of a chunk; raise window or lower overlap"
            )

    # -- the DenseEncoder protocol ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.dense.dim)

    @property
    def fingerprint(self) -> Mapping[str, object]:
        return {
            **self.dense.fingerprint,
            "family": "late",
            "pooling": "late-mean",
            "query_pooling": self.dense.pooling,
            "max_length": self.settings.window,
            "late_chunking": self.settings.to_dict(),
        }

    @property
    def token_counter(self) -> OffsetTokenizer:
        """The model's tokenizer as a chunk token counter (the same one the dense adapter chunks with)."""
        return self.dense.token_counter

    @property
    def document_capacity(self) -> int:
        """The longest chunk that keeps ``overlap`` tokens of context on both sides inside one window."""
        return self.capacity - 2 * self.settings.overlap

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.dense.encode_queries(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text, as one chunk spanning the text (with ``edge_tokens``, the dense encoder's vector)."""
        pairs = []
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidInputError(f"encode_documents: text {i} is empty")
            doc = Document(id=f"text-{i}", text=text)
            pairs.append((doc, [Chunk(chunk_id_for_span(doc.id, 0, len(text)), doc.id, text, 0, len(text))]))
        return self.embed_chunks(pairs)

    # -- late chunking ------------------------------------------------------------------------------------------
    def embed_chunks(self, pairs: Sequence[tuple[Document, list[Chunk]]]) -> np.ndarray:
        """Contextual vectors of the chunks of several documents (rows in document, then chunk order)."""
        jobs: list[_Job] = []
        row = 0
        for document, chunks in pairs:
            if chunks:
                jobs.extend(self._document_jobs(document, chunks, row))
                row += len(chunks)
        out = np.zeros((row, self.dim), dtype=np.float32)
        if jobs:
            self._run(jobs, out)
        return out

    def document_tokens(self, text: str) -> tuple[list[int], list[int], list[Span]]:
        """``text`` tokenised after the document prefix: prefix ids, then text ids and their character spans."""
        prefix = self.dense.document_prefix
        encoded = self.dense.tokenizer(
            prefix + text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        prefix_ids, ids, spans = [], [], []
        for token, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"]):
            if end <= len(prefix):
                prefix_ids.append(int(token))  # context, never part of a chunk
                continue
            spans.append((max(0, start - len(prefix)), end - len(prefix)))
            ids.append(int(token))
        return prefix_ids, ids, spans

    def chunk_token_spans(self, chunks: Sequence[Chunk], offsets: Sequence[Span]) -> list[Span]:
        """Each chunk's token range: the tokens whose characters overlap the chunk's span."""
        ends = [e for _, e in offsets]
        starts = [s for s, _ in offsets]
        spans = []
        for chunk in chunks:
            first = bisect.bisect_right(ends, chunk.start)
            last = bisect.bisect_left(starts, chunk.end)
            if last <= first:
                raise InvalidInputError(
                    f"Chunk {chunk.id!r} covers no token of its document; chunk documents with this encoder's "
                    "token_counter"
                )
            spans.append((first, last))
        return spans

    def _document_jobs(self, document: Document, chunks: list[Chunk], first_row: int) -> list[_Job]:
        prefix_ids, ids, offsets = self.document_tokens(document.text)
        spans = self.chunk_token_spans(chunks, offsets)
        head = self._head + prefix_ids
        capacity = self.settings.window - len(head) - len(self._tail)
        windows = plan_windows(spans, len(ids), capacity, self.settings.overlap)
        owner = assign_windows(spans, windows, len(ids))
        edges = self.settings.edge_tokens
        last_chunk = len(spans) - 1
        jobs = []
        for index, (start, end) in enumerate(windows):
            length = len(head) + end - start + len(self._tail)
            pools = []
            for i, (s, e) in enumerate(spans):
                if owner[i] == index:
                    first = 0 if edges and i == 0 else len(head) + s - start
                    stop = length if edges and i == last_chunk else len(head) + e - start
                    pools.append((first_row + i, first, stop))
            if pools:
                jobs.append(_Job(head + ids[start:end] + self._tail, pools))
        return jobs

    def _run(self, jobs: list[_Job], out: np.ndarray) -> None:
        torch = self._torch
        order = sorted(range(len(jobs)), key=lambda j: -len(jobs[j].input_ids))
        trained = self.settings.trained_context if self.settings.rope_factor else None
        begin = 0
        while begin < len(order):
            length = len(jobs[order[begin]].input_ids)
            size = max(1, min(self.dense.batch_size, self.batch_tokens // length))
            if trained and length > trained:
                size = 1  # NTK frequencies follow the input length: never let padding change them
            end = begin + 1
            while end < len(order) and end - begin < size and len(jobs[order[end]].input_ids) >= _FILL * length:
                end += 1  # a batch holds inputs of similar length: padding would cost attention over nothing
            batch = [jobs[j] for j in order[begin:end]]
            begin = end
            features = self.dense.tokenizer.pad(
                {"input_ids": [job.input_ids for job in batch]}, padding=True, return_tensors="pt"
            )
            features = {k: v.to(self.dense.device) for k, v in features.items()}
            left = self.dense.tokenizer.padding_side == "left"
            with torch.inference_mode():
                hidden = self.dense.model(**features).last_hidden_state
                rows, pooled = [], []
                for b, job in enumerate(batch):
                    shift = hidden.shape[1] - len(job.input_ids) if left else 0
                    for row, start, end in job.pools:
                        rows.append(row)
                        pooled.append(hidden[b, shift + start : shift + end].float().mean(dim=0))
                vectors = torch.stack(pooled)
                if self.dense.truncate_dim:
                    vectors = vectors[:, : self.dense.truncate_dim]
                if self.dense.normalize:
                    vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
            out[rows] = vectors.cpu().numpy()

    def _special_template(self) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer puts before and after a text ([CLS] ... [SEP] for BERT)."""
        probe = self.dense.tokenizer("a", add_special_tokens=True, return_special_tokens_mask=True)
        ids, mask = probe["input_ids"], probe["special_tokens_mask"]
        content = [i for i, m in enumerate(mask) if not m]
        if not content:
            raise ConfigError("the tokenizer produced no text token for a probe; cannot place special tokens")
        return [int(t) for t in ids[: content[0]]], [int(t) for t in ids[content[-1] + 1 :]]

    def _prefix_length(self) -> int:
        return len(self.document_tokens("a")[0])

    def __repr__(self) -> str:
        return f"LateChunkingEncoder({self.dense.fingerprint['model']!r}, {self.settings})"


# -- the retriever --------------------------------------------------------------------------------------------------
class LateChunkingRetriever(ChunkedVectorRetriever):
    """Late-chunked vectors behind the :class:`ragloom.protocols.Retriever` contract (memory or chroma store).

    Chunks are those of a :class:`DenseRetriever` with the same model, ``chunk_size`` and ``overlap`` (same ids,
    so naive and late results fuse exactly); only their vectors differ. The manifest records ``kind: late`` and
    the window settings, so a naive index, or a late one built with other settings, is refused on open.
    """

    kind = "late"

    def __init__(
        self,
        encoder: LateChunkingEncoder,
        path: str | Path | None = None,
        *,
        store: str | VectorStore = "memory",
        chunker: TokenChunker | None = None,
        chunk_size: int | None = 256,
        overlap: int = 32,
        name: str | None = None,
        chroma_url: str | None = None,
        chroma_collection: str = "ragloom",
    ) -> None:
        if not hasattr(encoder, "embed_chunks"):
            raise ConfigError(
                f"LateChunkingRetriever needs a LateChunkingEncoder, got {type(encoder).__name__}; use "
                "DenseRetriever for naive chunk embeddings"
            )
        if chunker is not None and chunker.chunk_size > encoder.document_capacity:
            raise ConfigError(
                f"chunk_size {chunker.chunk_size} exceeds the {encoder.document_capacity} tokens a window holds "
                "with its overlap on both sides; lower chunk_size or overlap, or raise window"
            )
        super().__init__(
            encoder,
            path,
            store=store,
            chunker=chunker,
            chunk_size=chunk_size,
            overlap=overlap,
            name=name,
            chroma_url=chroma_url,
            chroma_collection=chroma_collection,
            chunk_embedder=encoder.embed_chunks,
            manifest_extra={"vectors": "late-chunked", "late_chunking": encoder.settings.to_dict()},
        )


_ENCODER_OPTIONS = (
    "window",
    "overlap",
    "edge_tokens",
    "rope_factor",
    "trained_context",
    "query_prefix",
    "document_prefix",
    "batch_size",
    "batch_tokens",
    "dtype",
    "device",
    "truncate_dim",
    "trust_remote_code",
)


def build_late(spec: Any, directory: Path | None, allow_download: bool) -> LateChunkingRetriever:
    """The ``late`` kind of ``ragloom.recipes.config.RETRIEVER_BUILDERS``: encoder settings come from
    ``spec.options`` (``window``, ``overlap`` (window overlap), ``rope_factor``, prefixes, ``dtype``...)."""
    options = dict(spec.options)
    unknown = sorted(set(options) - set(_ENCODER_OPTIONS))
    if unknown:
        raise ConfigError(f"Unknown late-chunking options {unknown}; known: {', '.join(_ENCODER_OPTIONS)}")
    encoder = LateChunkingEncoder(spec.model or "nomic", allow_download=allow_download, **options)
    return LateChunkingRetriever(
        encoder,
        directory,
        store=spec.store,
        chunk_size=spec.chunk_size or 256,
        overlap=spec.overlap,
        name=spec.name,
    )
