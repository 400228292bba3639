"""Framework-free plumbing shared by the LangChain, LlamaIndex, tool and MCP bridges.

Nothing here imports a framework: hits become flat metadata dicts or JSON, a Retriever or a Pipeline becomes one
search source with a sync and a non-blocking async path, and blocking generators are driven from a worker thread.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

import numpy as np

from ragloom.errors import InvalidInputError
from ragloom.protocols import Filters, Generator
from ragloom.types import Answer, Chunk, Hit, Message, MetadataValue, ScoreKind

__all__ = [
    "METADATA_KEYS",
    "ForeignDenseEncoder",
    "SearchSource",
    "acut_stream",
    "agenerate",
    "answer_to_dict",
    "astream",
    "cut_at_stop",
    "cut_stream",
    "hit_from_metadata",
    "hit_metadata",
    "hit_to_dict",
    "iterate_in_thread",
    "model_label",
    "search_source",
]

METADATA_KEYS = (
    "chunk_id",
    "doc_id",
    "source",
    "page",
    "start",
    "end",
    "score",
    "score_kind",
    "retriever",
    "rank",
    "explanation",
)
"""The keys every framework document/node built from a ragloom Hit carries in its metadata (see docs/langchain.md)."""

_SCORE_KINDS: frozenset[str] = frozenset(get_args(ScoreKind))
T = TypeVar("T")


def hit_metadata(hit: Hit) -> dict[str, MetadataValue | None]:
    """The chunk's own metadata plus ragloom's keys (which win over a document key of the same name)."""
    shape = hit.to_dict()  # the one JSON form, flattened: its fields minus the text and the nested metadata
    metadata: dict[str, MetadataValue | None] = dict(hit.chunk.metadata)
    metadata.update({key: shape[key] for key in METADATA_KEYS if key != "explanation"})
    if hit.explanation:
        metadata["explanation"] = hit.explanation
    return metadata


def _int_or(value: object, default: int | None) -> int | None:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default


def hit_from_metadata(text: str, metadata: Mapping[str, Any], *, chunk_id: str, score: float | None, rank: int) -> Hit:
    """Rebuild a Hit from a framework document/node: ours round-trip exactly, foreign ones get neutral values."""
    doc_id = str(metadata.get("doc_id") or chunk_id)
    start = _int_or(metadata.get("start"), 0) or 0
    end = _int_or(metadata.get("end"), start + len(text))
    end = max(end if end is not None else start + len(text), start)
    page = _int_or(metadata.get("page"), None)
    kind = metadata.get("score_kind")
    own = {
        k: v
        for k, v in metadata.items()
        if k not in METADATA_KEYS
        and isinstance(k, str)
        and k
        and isinstance(v, (str, int, float, bool))
        and not (isinstance(v, float) and not math.isfinite(v))
    }
    value = float(score) if score is not None and math.isfinite(float(score)) else 0.0
    chunk = Chunk(
        id=chunk_id,
        doc_id=doc_id,
        text=text,
        start=start,
        end=end,
        page=page if page and page >= 1 else None,
        source=str(metadata.get("source") or ""),
        metadata=own,
    )
    return Hit(
        chunk=chunk,
        score=value,
        score_kind=kind if kind in _SCORE_KINDS else "fused",  # type: ignore[arg-type]
        retriever=str(metadata.get("retriever") or "external"),
        rank=rank,
        explanation=str(metadata.get("explanation") or ""),
    )


def hit_to_dict(hit: Hit) -> dict[str, Any]:
    """A hit's JSON form (what agent tools return): :meth:`Hit.to_dict`."""
    return hit.to_dict()


def answer_to_dict(answer: Answer) -> dict[str, Any]:
    """An answer's JSON form (what agent tools return): :meth:`Answer.to_dict`."""
    return answer.to_dict()


@dataclass(frozen=True)
class SearchSource:
    """A ragloom Retriever or Pipeline behind one ``search``/``asearch`` pair; ``asearch`` never blocks the loop.

    A Pipeline searches with ``retrieve``/``aretrieve`` (fusion and reranking included); a Retriever with
    ``search`` and its native ``asearch`` when it has one, else ``search`` in a worker thread.
    """

    target: Any

    def __post_init__(self) -> None:
        if not (self.is_pipeline or callable(getattr(self.target, "search", None))):
            raise InvalidInputError(
                f"Expected a ragloom Retriever (with .search) or Pipeline (with .retrieve), got "
                f"{type(self.target).__name__}; open an index with ragloom.recipes.config.open_pipeline(DIR)"
            )

    @property
    def is_pipeline(self) -> bool:
        return callable(getattr(self.target, "retrieve", None)) and callable(getattr(self.target, "aretrieve", None))

    @property
    def name(self) -> str:
        if self.is_pipeline:
            return "+".join(r.name for r in self.target.retrievers)
        return str(getattr(self.target, "name", type(self.target).__name__))

    @property
    def default_k(self) -> int:
        return int(getattr(self.target, "k", 5)) if self.is_pipeline else 5

    @property
    def can_answer(self) -> bool:
        """True for a Pipeline that has a generator."""
        return self.is_pipeline and getattr(self.target, "generator", None) is not None

    def search(self, query: str, k: int | None = None, filters: Filters | None = None) -> list[Hit]:
        k = self.default_k if k is None else k  # k=0 is an error downstream, never the default
        if self.is_pipeline:
            return list(self.target.retrieve(query, k, filters))
        return list(self.target.search(query, k, filters))

    async def asearch(self, query: str, k: int | None = None, filters: Filters | None = None) -> list[Hit]:
        k = self.default_k if k is None else k  # k=0 is an error downstream, never the default
        if self.is_pipeline:
            return list(await self.target.aretrieve(query, k, filters))
        native = getattr(self.target, "asearch", None)
        if callable(native):
            return list(await native(query, k, filters))
        return await asyncio.to_thread(self.search, query, k, filters)

    def ask(self, question: str, k: int | None = None, filters: Filters | None = None) -> Answer:
        self._need_answer()
        return self.target.ask(question, k, filters)  # type: ignore[no-any-return]

    async def aask(self, question: str, k: int | None = None, filters: Filters | None = None) -> Answer:
        self._need_answer()
        return await self.target.aask(question, k, filters)  # type: ignore[no-any-return]

    def _need_answer(self) -> None:
        if not self.can_answer:
            raise InvalidInputError(
                "Answering needs a ragloom Pipeline with a generator; pass Pipeline(..., generator=...) or "
                "open_pipeline(DIR, with_generator=True)"
            )


def search_source(target: Any) -> SearchSource:
    """Wrap a Retriever or Pipeline (a SearchSource passes through)."""
    return target if isinstance(target, SearchSource) else SearchSource(target)


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Drive a blocking iterator in a worker thread, handing its items to the event loop as they come."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in make():
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
            loop.call_soon_threadsafe(queue.put_nowait, ("done", None))
        except BaseException as exc:  # handed to the consumer
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

    threading.Thread(target=produce, name="ragloom-iterate", daemon=True).start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()


async def agenerate(generator: Generator, messages: Sequence[Message]) -> str:
    """The generator's native ``agenerate`` when it has one, else ``generate`` in a worker thread."""
    native = getattr(generator, "agenerate", None)
    if callable(native):
        return str(await native(messages))
    return await asyncio.to_thread(generator.generate, messages)


async def astream(generator: Generator, messages: Sequence[Message]) -> AsyncIterator[str]:
    """The generator's native ``astream`` when it has one, else ``stream`` driven from a worker thread."""
    native = getattr(generator, "astream", None)
    source = native(messages) if callable(native) else iterate_in_thread(lambda: generator.stream(messages))
    async for piece in source:
        yield str(piece)


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut ``text`` at the first stop sequence (frameworks pass ``stop`` to chat models)."""
    for marker in stop or ():
        position = text.find(marker)
        if position >= 0:
            text = text[:position]
    return text


class _StopCutter:
    """Streams text up to the first stop sequence, holding back a tail that could be the start of one."""

    def __init__(self, stop: Sequence[str] | None) -> None:
        self.stops = [s for s in stop or () if s]
        self.buffer = ""
        self.done = False

    def feed(self, piece: str) -> str:
        if not self.stops:
            return piece
        self.buffer += piece
        cut = cut_at_stop(self.buffer, self.stops)
        if len(cut) < len(self.buffer):
            self.done, self.buffer = True, ""
            return cut
        hold = max(
            (
                n
                for s in self.stops
                for n in range(min(len(s) - 1, len(self.buffer)), 0, -1)
                if self.buffer.endswith(s[:n])
            ),
            default=0,
        )
        emit, self.buffer = self.buffer[: len(self.buffer) - hold], self.buffer[len(self.buffer) - hold :]
        return emit

    def flush(self) -> str:
        rest, self.buffer = self.buffer, ""
        return rest


def cut_stream(pieces: Iterator[str], stop: Sequence[str] | None) -> Iterator[str]:
    """Pass streamed pieces through until a stop sequence appears; the stop and what follows are dropped."""
    cutter = _StopCutter(stop)
    for piece in pieces:
        if text := cutter.feed(piece):
            yield text
        if cutter.done:
            return
    if text := cutter.flush():
        yield text


async def acut_stream(pieces: AsyncIterator[str], stop: Sequence[str] | None) -> AsyncIterator[str]:
    """Async twin of :func:`cut_stream`."""
    cutter = _StopCutter(stop)
    async for piece in pieces:
        if text := cutter.feed(piece):
            yield text
        if cutter.done:
            return
    if text := cutter.flush():
        yield text


def refuse_call_options(owner: str, options: Mapping[str, Any]) -> None:
    """Per-call generation settings (``max_tokens``, ``temperature``, ``seed``...) that a ragloom generator
    cannot take per call are an error naming where to set them, never silently dropped."""
    if options:
        raise InvalidInputError(
            f"{owner} cannot apply {sorted(options)} per call: a ragloom generator's settings are fixed when it is "
            "built; set them there, e.g. OpenAICompatibleGenerator(model, max_tokens=..., temperature=..., "
            "extra_body={'seed': ...}) or TransformersGenerator(model, max_new_tokens=...)"
        )


def usage_counts(generator: object, messages: Sequence[Message], text: str) -> dict[str, int] | None:
    """Input/output/total tokens by the generator's own tokenizer, when it can count them (local models)."""
    prompt_tokens = getattr(generator, "prompt_tokens", None)
    count_tokens = getattr(generator, "count_tokens", None)
    if not (callable(prompt_tokens) and callable(count_tokens)):
        return None
    given, written = int(prompt_tokens(messages)), int(count_tokens(text))
    return {"input_tokens": given, "output_tokens": written, "total_tokens": given + written}


def model_label(model: object) -> str:
    """A framework model's name: its ``model``/``model_name``/``model_id`` attribute, else its class."""
    for attribute in ("model", "model_name", "model_id", "deployment_name"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value and value != "unknown":
            return value
    return type(model).__name__


class ForeignDenseEncoder:
    """Base of the framework-embedding adapters: turns lists of floats into checked float32 matrices.

    Subclasses supply ``_embed_queries`` and ``_embed_documents``. ``dim`` is probed with one query when not
    given. ``normalize`` L2-normalises the vectors so scores are cosines whatever the framework returns.
    Pass ``name`` when the framework object does not name its model: the index manifest records it, and an
    index opened with a different model is refused.
    """

    provider = "external"

    def __init__(
        self,
        model: object,
        *,
        name: str | None = None,
        dim: int | None = None,
        normalize: bool = True,
        token_counter: object | None = None,
        document_capacity: int | None = None,
    ) -> None:
        self.model = model
        self.name = name or model_label(model)
        self.normalize = normalize
        if token_counter is not None:
            self.token_counter = token_counter
        if document_capacity is not None:
            self.document_capacity = document_capacity
        self._dim = dim if dim is not None else len(self._embed_queries(["dimension probe"])[0])
        if self._dim < 1:
            raise InvalidInputError(f"{self.name}: embeddings must have at least one dimension")

    def _embed_queries(self, texts: list[str]) -> list[Sequence[float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _embed_documents(self, texts: list[str]) -> list[Sequence[float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> Mapping[str, object]:
        return {
            "family": "dense",
            "provider": self.provider,  # not the class path: a script's class and the same class imported match
            "model": self.name,
            "dim": self._dim,
            "normalize": self.normalize,
        }

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        return self._matrix(self._embed_queries(texts) if texts else [], len(texts))

    async def aencode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors through the framework's own async embedding method (retrievers' ``asearch`` use it)."""
        texts = list(texts)
        return self._matrix(await self._aembed_queries(texts) if texts else [], len(texts))

    async def _aembed_queries(self, texts: list[str]) -> list[Sequence[float]]:
        return await asyncio.to_thread(self._embed_queries, texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        return self._matrix(self._embed_documents(texts) if texts else [], len(texts))

    def _matrix(self, rows: Sequence[Sequence[float]], n: int) -> np.ndarray:
        if n == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        matrix = np.asarray(rows, dtype=np.float32)
        if matrix.shape != (n, self._dim):
            raise InvalidInputError(
                f"{self.name} returned vectors of shape {matrix.shape} for {n} texts; expected ({n}, {self._dim}). "
                "Pass dim= matching the model, or check the embedding model."
            )
        if not np.all(np.isfinite(matrix)):
            raise InvalidInputError(f"{self.name} returned NaN or infinite values")
        if self.normalize:
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            matrix = matrix / np.maximum(norms, 1e-12)
        return matrix

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim={self._dim})"
