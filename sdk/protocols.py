"""Structural contracts. A user's class plugs in by having these methods; nothing needs to be inherited.

Query/document asymmetry is in method names (``encode_queries`` / ``encode_documents``), never in a flag.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ragloom.types import Chunk, Document, Hit, Message, MetadataValue, SparseVector

__all__ = [
    "AsyncGenerator",
    "AsyncQueryEncoder",
    "AsyncRetriever",
    "ChunkListing",
    "Closeable",
    "ConfigurableFuser",
    "ContextWindowAware",
    "DenseEncoder",
    "DigestTokenCounter",
    "Filters",
    "Fuser",
    "Generator",
    "ImportanceEncoder",
    "LogprobGenerator",
    "MultiVectorEncoder",
    "NamedTokenCounter",
    "PersistentRetriever",
    "PersistentStore",
    "ProgressCallback",
    "PromptMeasuringGenerator",
    "RecoverableStore",
    "ReplyLimited",
    "Reranker",
    "Retriever",
    "SparseEncoder",
    "TokenAwareEncoder",
    "TokenCounter",
    "TokenCountingGenerator",
    "TokenizingGenerator",
    "VerifiableStore",
]

Filters = Mapping[str, MetadataValue]
"""Equality filters on ``doc_id``, ``source`` or a document metadata key; all must match."""

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` (documents) while indexing."""


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens and maps them back to character spans (an encoder's tokenizer)."""

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of ``text``, special tokens excluded."""
        ...


@runtime_checkable
class NamedTokenCounter(Protocol):
    """A token counter with a name (the manifest records it; otherwise the class name is recorded)."""

    @property
    def name(self) -> str: ...


@runtime_checkable
class DigestTokenCounter(Protocol):
    """A token counter with a digest of everything that decides its tokens: an index built with another
    tokenizer of the same name will not open."""

    @property
    def digest(self) -> str: ...


@runtime_checkable
class DenseEncoder(Protocol):
    """Texts → float32 matrices of shape (n, dim)."""

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> Mapping[str, object]:
        """Everything that changes the vectors (model, weights hash, pooling, prefixes...)."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class SparseEncoder(Protocol):
    """Texts → sparse term-weight vectors."""

    @property
    def fingerprint(self) -> Mapping[str, object]: ...

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...


@runtime_checkable
class MultiVectorEncoder(Protocol):
    """Texts (or page images) → one float matrix (tokens, dim) per input."""

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> Mapping[str, object]: ...

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]: ...

    def encode_documents(self, items: Sequence[object]) -> list[np.ndarray]: ...


@runtime_checkable
class ImportanceEncoder(Protocol):
    """A multi-vector encoder that also weighs each document token (attention importance, for pruning)."""

    def encode_documents_with_importance(self, items: Sequence[object]) -> list[tuple[np.ndarray, np.ndarray]]: ...


@runtime_checkable
class Retriever(Protocol):
    """Indexes whole Documents and answers queries with ranked Hits.

    Retrievers receive whole documents because some need document context (late chunking) or pages (ColPali);
    each owns its chunker, encoder and index.
    """

    @property
    def name(self) -> str: ...

    def add(self, documents: Sequence[Document], *, progress: ProgressCallback | None = None) -> list[Chunk]:
        """Index documents (replacing any with the same id); returns the chunks indexed. ``progress(done, total)``
        is called as documents are indexed."""
        ...

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Remove documents; returns how many chunks were removed."""
        ...

    def search(self, query: str, k: int = 10, filters: Filters | None = None) -> list[Hit]: ...

    def search_many(self, queries: Sequence[str], k: int = 10, filters: Filters | None = None) -> list[list[Hit]]: ...

    def doc_ids(self) -> set[str]:
        """Ids of the documents indexed."""
        ...

    def __len__(self) -> int:
        """Number of chunks indexed."""
        ...


@runtime_checkable
class PersistentRetriever(Protocol):
    """A retriever kept in a directory, with a single-writer lock: what a Pipeline's ingest journal needs."""

    @property
    def path(self) -> Path | None:
        """The index directory (None when the retriever lives in memory only)."""
        ...

    def acquire_writer(self) -> None:
        """Take the directory's writer lock (held until ``close``); raises IndexLockedError while another process
        writes. Reloads what another process committed since this one opened the index, so no write is lost."""
        ...


@runtime_checkable
class ChunkListing(Protocol):
    """A retriever or store that can list every chunk it holds (label-free calibration samples from them)."""

    def chunks(self) -> list[Chunk]:
        """Every chunk indexed (with its text), in index order."""
        ...


@runtime_checkable
class AsyncRetriever(Protocol):
    """The async twin: never blocks the event loop."""

    async def asearch(self, query: str, k: int = 10, filters: Filters | None = None) -> list[Hit]: ...


@runtime_checkable
class Fuser(Protocol):
    """Merges ranked lists from several retrievers into one."""

    def fuse(self, results: Mapping[str, Sequence[Hit]], k: int) -> list[Hit]: ...


@runtime_checkable
class ConfigurableFuser(Protocol):
    """A fuser of the user's own that can be saved with a pipeline (its JSON form, with a ``kind``)."""

    def fuse(self, results: Mapping[str, Sequence[Hit]], k: int) -> list[Hit]: ...

    def to_config(self) -> Mapping[str, object]: ...


@runtime_checkable
class Reranker(Protocol):
    """Re-scores hits for a query and keeps the best ``k``."""

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]: ...


@runtime_checkable
class Generator(Protocol):
    """Chat messages → text, whole or streamed."""

    @property
    def name(self) -> str: ...

    def generate(self, messages: Sequence[Message]) -> str: ...

    def stream(self, messages: Sequence[Message]) -> Iterator[str]: ...


@runtime_checkable
class AsyncGenerator(Protocol):
    """A generator with native async methods (HTTP endpoints); local ones are offloaded to a thread."""

    async def agenerate(self, messages: Sequence[Message]) -> str: ...

    def astream(self, messages: Sequence[Message]) -> AsyncIterator[str]: ...


@runtime_checkable
class TokenCountingGenerator(Protocol):
    """A generator that counts tokens with its own tokenizer (prompt budgets use it instead of tiktoken's)."""

    def count_tokens(self, text: str) -> int: ...


@runtime_checkable
class TokenizingGenerator(Protocol):
    """A generator that gives the token ids of a text with its own tokenizer (no special tokens), so callers can
    name reply tokens to score (the answerability check's yes/no and decline-phrase tokens)."""

    def tokenize(self, text: str) -> list[int]: ...


@runtime_checkable
class PromptMeasuringGenerator(Protocol):
    """A generator that measures a whole chat exactly as it will send it (chat template included)."""

    def prompt_tokens(self, messages: Sequence[Message]) -> int: ...


@runtime_checkable
class LogprobGenerator(Protocol):
    """A local generator that scores candidate first tokens of its reply (pointwise LLM reranking by logits)."""

    def next_token_logprobs(
        self, conversations: Sequence[Sequence[Message]], token_ids: Sequence[int], *, batch_size: int = 4
    ) -> list[list[float]]: ...


@runtime_checkable
class ContextWindowAware(Protocol):
    """A generator whose prompt and reply together must fit a window of ``context_window`` tokens."""

    @property
    def context_window(self) -> int: ...


@runtime_checkable
class ReplyLimited(Protocol):
    """A generator that caps its reply at ``reply_tokens`` tokens (None: no cap); prompts leave room for it."""

    @property
    def reply_tokens(self) -> int | None: ...


@runtime_checkable
class AsyncQueryEncoder(Protocol):
    """The async twin of ``encode_queries`` (a framework's async embeddings): awaited instead of run in a thread."""

    async def aencode_queries(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class Closeable(Protocol):
    """Holds resources (a model, a file lock, a connection) until ``close``."""

    def close(self) -> None: ...


@runtime_checkable
class TokenAwareEncoder(Protocol):
    """An encoder that exposes its tokenizer (chunks are measured in its tokens) and how many a document may hold."""

    @property
    def token_counter(self) -> TokenCounter: ...

    @property
    def document_capacity(self) -> int | None: ...


@runtime_checkable
class PersistentStore(Protocol):
    """A store kept in a directory: it can tell that its files were missing when it opened (damage, when the
    manifest counts chunks) and re-read what another process committed."""

    @property
    def path(self) -> Path | None: ...

    @property
    def state_missing(self) -> bool: ...

    def reload(self) -> None: ...


@runtime_checkable
class RecoverableStore(Protocol):
    """A store with its own write-ahead record (chroma's pending replace): the writer calls ``recover`` when it takes
    the lock, and the store finishes an interrupted write if there is one (returns what it covered)."""

    def recover(self) -> int: ...


@runtime_checkable
class VerifiableStore(Protocol):
    """A store that can read everything back and check it (``ragloom index verify``)."""

    def verify(self) -> Mapping[str, int]: ...
