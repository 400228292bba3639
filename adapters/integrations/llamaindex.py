"""LlamaIndex bridges, both ways (``pip install 'ragloom[llamaindex]'``, llama-index-core 0.14).

ragloom → LlamaIndex: :class:`RagloomNodeRetriever` (``BaseRetriever`` returning ``NodeWithScore``),
:class:`RagloomNodePostprocessor` (a ragloom Reranker), :class:`RagloomQueryEngine` (a Pipeline answering with
source nodes), :class:`RagloomLLM` (a ragloom Generator as an LLM), :func:`llamaindex_tools` (``FunctionTool``).
LlamaIndex → ragloom: :class:`LlamaIndexEncoder` (an embedding model) and :class:`LlamaIndexGenerator` (an LLM).

Nothing here touches ``Settings.llm`` or ``Settings.embed_model`` (whose defaults call OpenAI): pass models
explicitly. llama-index-core ships its NLTK and tiktoken files, so it works offline as long as ``NLTK_DATA`` and
``TIKTOKEN_CACHE_DIR`` are unset or point at folders holding those files (see docs/llamaindex.md).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ragloom._imports import require

require("llama_index.core", "llamaindex", "the LlamaIndex integration")

from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.base.llms.types import (  # noqa: E402
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.base.response.schema import Response  # noqa: E402
from llama_index.core.callbacks import CallbackManager  # noqa: E402
from llama_index.core.llms import LLM, CustomLLM  # noqa: E402
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.query_engine import CustomQueryEngine  # noqa: E402
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.tools import FunctionTool  # noqa: E402
from pydantic import ConfigDict, Field  # noqa: E402

from ragloom.adapters.integrations._async import agenerate, astream  # noqa: E402
from ragloom.adapters.integrations._calls import ForeignErrors, model_label  # noqa: E402
from ragloom.adapters.integrations._encoders import ForeignDenseEncoder  # noqa: E402
from ragloom.adapters.integrations._hits import METADATA_KEYS, answer_to_dict, hit_from_metadata, hit_metadata  # noqa: E402
from ragloom.adapters.integrations._sources import SearchSource, search_source  # noqa: E402
from ragloom.errors import InvalidInputError, RagloomWarning  # noqa: E402
from ragloom.protocols import ContextWindowAware, ReplyLimited  # noqa: E402
from ragloom.types import Answer, Hit, Message, Role  # noqa: E402

if TYPE_CHECKING:
    from ragloom.adapters.integrations.tools import RagloomTools

__all__ = [
    "METADATA_KEYS",
    "LlamaIndexEncoder",
    "LlamaIndexGenerator",
    "RagloomLLM",
    "RagloomNodePostprocessor",
    "RagloomNodeRetriever",
    "RagloomQueryEngine",
    "hit_to_node",
    "llamaindex_tools",
    "node_to_hit",
]

_SHOWN_TO_LLM = ("source", "page")
_BOOKKEEPING = ("filename", "format", "sha256", "pages", "empty_pages", "ligatures_repaired", "encoding")
"""What the loaders record about a file (not about its content): never shown to an LLM or embedded."""


def hit_to_node(hit: Hit) -> NodeWithScore:
    """A ``NodeWithScore`` for a hit: a TextNode whose id is the chunk id, with the hit's fields in metadata.

    Only ``source`` and ``page`` of ragloom's keys reach an LLM prompt and none reaches an embedding; the
    loaders' bookkeeping (``filename``, ``format``, ``sha256``, ``pages``, ...) reaches neither. A document's own
    metadata (a title, front matter) is shown to both.
    """
    chunk = hit.chunk
    metadata = hit_metadata(hit)
    hidden = [k for k in (*METADATA_KEYS, *_BOOKKEEPING) if k in metadata or k in METADATA_KEYS]
    node = TextNode(
        id_=chunk.id,
        text=chunk.text,
        metadata=metadata,
        start_char_idx=chunk.start,
        end_char_idx=chunk.end,
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=chunk.doc_id)},
        excluded_llm_metadata_keys=[k for k in hidden if k not in _SHOWN_TO_LLM],
        excluded_embed_metadata_keys=hidden,
    )
    return NodeWithScore(node=node, score=hit.score)


def node_to_hit(node: NodeWithScore, rank: int) -> Hit:
    """The Hit a node stands for: ours round-trip exactly; another retriever's get its id, text and span."""
    inner = node.node
    metadata = dict(inner.metadata)
    metadata.setdefault("doc_id", inner.ref_doc_id or inner.node_id)
    if isinstance(inner, TextNode) and inner.start_char_idx is not None:
        metadata.setdefault("start", inner.start_char_idx)
    if isinstance(inner, TextNode) and inner.end_char_idx is not None:
        metadata.setdefault("end", inner.end_char_idx)
    return hit_from_metadata(inner.get_content(), metadata, chunk_id=inner.node_id, score=node.score, rank=rank)


# -- ragloom → LlamaIndex -----------------------------------------------------------------------------------------
class RagloomNodeRetriever(BaseRetriever):
    """A ragloom Retriever or Pipeline as a LlamaIndex retriever; ``aretrieve`` never blocks the event loop.

    ``similarity_top_k`` (LlamaIndex's name) is accepted for ``k``.
    """

    def __init__(
        self,
        source: Any,
        *,
        k: int | None = None,
        filters: dict[str, str | int | float | bool] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        similarity_top_k: int | None = None,
    ) -> None:
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self._source: SearchSource = search_source(source)
        if k is not None and similarity_top_k is not None and k != similarity_top_k:
            raise InvalidInputError(f"Pass k or similarity_top_k, not both ({k} and {similarity_top_k})")
        self.k = _positive(k if k is not None else similarity_top_k, "RagloomNodeRetriever")
        self.filters = filters

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [hit_to_node(h) for h in self._source.search(query_bundle.query_str, self.k, self.filters)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = await self._source.asearch(query_bundle.query_str, self.k, self.filters)
        return [hit_to_node(h) for h in hits]


class RagloomNodePostprocessor(BaseNodePostprocessor):
    """A ragloom Reranker (``rerank(query, hits, k)``) as a node postprocessor keeping the best ``top_n``.

    Works on any retriever's nodes; ragloom nodes get their ``score``, ``score_kind`` and ``rank`` metadata
    updated. The async path runs the reranker in a worker thread.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Any = Field(description="A ragloom Reranker.")
    top_n: int = Field(default=5, ge=1, description="Nodes kept after reranking.")

    @classmethod
    def class_name(cls) -> str:
        return "RagloomNodePostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise InvalidInputError("Reranking needs the query: call postprocess_nodes(nodes, query_str=...)")
        if not nodes:
            return []
        by_id: dict[str, NodeWithScore] = {}
        for node in nodes:
            by_id.setdefault(node.node.node_id, node)
        hits = [node_to_hit(n, rank) for rank, n in enumerate(by_id.values(), start=1)]
        out = []
        for rank, hit in enumerate(self.reranker.rerank(query_bundle.query_str, hits, self.top_n), start=1):
            inner = by_id[hit.chunk.id].node
            if "chunk_id" in inner.metadata:
                update = {"score": hit.score, "score_kind": hit.score_kind, "rank": rank}
                inner = inner.model_copy(update={"metadata": {**inner.metadata, **update}})
            out.append(NodeWithScore(node=inner, score=hit.score))
        return out


def _positive(k: object, owner: str) -> int | None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise InvalidInputError(f"{owner}: k must be a positive integer or None (the default), got {k!r}")
    return k


def _response(answer: Answer) -> Response:
    details = answer_to_dict(answer)
    details.pop("context")
    details.pop("answer")
    details["timings"] = dict(answer.timings)
    return Response(response=answer.text, source_nodes=[hit_to_node(h) for h in answer.context], metadata=details)


class RagloomQueryEngine(CustomQueryEngine):
    """A ragloom Pipeline (with a generator) as a query engine: the Response carries the cited passages as
    ``source_nodes`` and the citations, groundedness and timings in ``metadata``. ``aquery`` is natively async."""

    pipeline: Any = Field(description="A ragloom Pipeline with a generator.")
    k: int | None = None
    filters: dict[str, str | int | float | bool] | None = None

    def __init__(self, pipeline: Any = None, **kwargs: Any) -> None:
        search_source(pipeline)._need_answer()  # a typed error here, not pydantic's wrapper
        if kwargs.get("streaming"):
            raise InvalidInputError(
                "RagloomQueryEngine does not stream: its Response carries the checked citations, known once the "
                "answer is complete. Stream with pipeline.ask_stream(question) (or astream), or drop streaming=True"
            )
        if "similarity_top_k" in kwargs:
            kwargs["k"] = kwargs.pop("similarity_top_k")
        _positive(kwargs.get("k"), "RagloomQueryEngine")
        unknown = sorted(set(kwargs) - {"k", "filters", "callback_manager", "streaming"})
        if unknown:
            raise InvalidInputError(f"RagloomQueryEngine does not take {unknown}; it takes k and filters")
        kwargs.pop("streaming", None)
        super().__init__(pipeline=pipeline, **kwargs)

    def custom_query(self, query_str: str) -> Response:
        return _response(self.pipeline.ask(query_str, self.k, self.filters))

    async def acustom_query(self, query_str: str) -> Response:
        return _response(await self.pipeline.aask(query_str, self.k, self.filters))


_TO_RAGLOOM: dict[MessageRole, Role] = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
}
_TO_LLAMA = {"system": MessageRole.SYSTEM, "user": MessageRole.USER, "assistant": MessageRole.ASSISTANT}


def from_llama_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    """LlamaIndex chat messages → ragloom messages (text content only)."""
    out = []
    for message in messages:
        role = _TO_RAGLOOM.get(message.role)
        if role is None:
            raise InvalidInputError(
                f"ragloom generators take system, user and assistant messages, got role {message.role.value!r}"
            )
        dropped = sorted({type(b).__name__ for b in message.blocks if type(b).__name__ != "TextBlock"})
        if dropped:
            warnings.warn(
                f"ragloom generators take text only: {', '.join(dropped)} content in a {role} message was left out",
                RagloomWarning,
                stacklevel=3,
            )
        out.append(Message(role, message.content or ""))
    return out


def to_llama_messages(messages: Sequence[Message]) -> list[ChatMessage]:
    """ragloom messages → LlamaIndex chat messages."""
    return [ChatMessage(role=_TO_LLAMA[m.role], content=m.content) for m in messages]


class RagloomLLM(CustomLLM):
    """A ragloom Generator as a LlamaIndex LLM (chat and completion, streaming, native async).

    ``context_window`` and ``num_output`` default to the generator's own (``context_window``,
    ``max_new_tokens``/``max_tokens``) when it has them.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    generator: Any = Field(description="A ragloom Generator.")
    context_window: int | None = None
    num_output: int | None = None

    @classmethod
    def class_name(cls) -> str:
        return "RagloomLLM"

    @property
    def metadata(self) -> LLMMetadata:
        generator = self.generator
        window = self.context_window or (generator.context_window if isinstance(generator, ContextWindowAware) else 0)
        output = self.num_output or (generator.reply_tokens if isinstance(generator, ReplyLimited) else 0)
        window, output = window or 4096, output or 256
        return LLMMetadata(
            context_window=int(window),
            num_output=int(output),
            is_chat_model=True,
            model_name=str(getattr(self.generator, "name", type(self.generator).__name__)),
        )

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = self.generator.generate(from_llama_messages(messages))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        pieces = self.generator.stream(from_llama_messages(messages))

        def gen() -> ChatResponseGen:
            text = ""
            for piece in pieces:
                text += piece
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece)

        return gen()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = await agenerate(self.generator, from_llama_messages(messages))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        pieces = astream(self.generator, from_llama_messages(messages))

        async def gen() -> ChatResponseAsyncGen:
            text = ""
            async for piece in pieces:
                text += piece
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece)

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.generator.generate([Message("user", prompt)]))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        pieces = self.generator.stream([Message("user", prompt)])

        def gen() -> CompletionResponseGen:
            text = ""
            for piece in pieces:
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=await agenerate(self.generator, [Message("user", prompt)]))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        pieces = astream(self.generator, [Message("user", prompt)])

        async def gen() -> CompletionResponseAsyncGen:
            text = ""
            async for piece in pieces:
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return gen()


def llamaindex_tools(tools: RagloomTools) -> list[FunctionTool]:
    """Each ragloom tool as a ``FunctionTool`` with the same pydantic input model.

    The tool output's content is the JSON result; ``raw_output`` is the same result as a dict.
    """
    return [_function_tool(tools, spec.name, spec.description, spec.input_model) for spec in tools.specs]


def _function_tool(tools: RagloomTools, name: str, description: str, schema: Any) -> FunctionTool:
    def run(**arguments: Any) -> dict[str, Any]:
        return tools.dispatch(name, arguments)

    async def arun(**arguments: Any) -> dict[str, Any]:
        return await tools.adispatch(name, arguments)

    def as_json(result: Any) -> str:
        return json.dumps(result, ensure_ascii=False)

    async def aas_json(result: Any) -> str:
        return as_json(result)

    return FunctionTool.from_defaults(
        fn=run,
        async_fn=arun,
        name=name,
        description=description,
        fn_schema=schema,
        callback=as_json,
        async_callback=aas_json,
    )


# -- LlamaIndex → ragloom -----------------------------------------------------------------------------------------
class LlamaIndexEncoder(ForeignDenseEncoder):
    """A LlamaIndex embedding model (``BaseEmbedding``) as a ragloom DenseEncoder.

    Queries go through ``get_query_embedding`` (query instructions apply), documents through
    ``get_text_embedding_batch``. Vectors are L2-normalised unless ``normalize=False``.
    """

    provider = "llamaindex"
    model: BaseEmbedding

    def __init__(self, embed_model: BaseEmbedding, **options: Any) -> None:
        if not isinstance(embed_model, BaseEmbedding):
            raise InvalidInputError(
                f"LlamaIndexEncoder wraps a llama_index BaseEmbedding, got {type(embed_model).__name__}"
            )
        super().__init__(embed_model, **options)

    def _embed_queries(self, texts: list[str]) -> list[Sequence[float]]:
        return [self.model.get_query_embedding(t) for t in texts]

    def _embed_documents(self, texts: list[str]) -> list[Sequence[float]]:
        return list(self.model.get_text_embedding_batch(texts))

    async def _aembed_queries(self, texts: list[str]) -> list[Sequence[float]]:
        return [await self.model.aget_query_embedding(t) for t in texts]


class LlamaIndexGenerator:
    """A LlamaIndex LLM as a ragloom Generator, using its chat API (native async and streaming).

    Errors raised by the LLM become :class:`ragloom.errors.EndpointError` (the original is the ``__cause__``).
    """

    def __init__(self, llm: LLM, *, name: str | None = None) -> None:
        if not isinstance(llm, LLM):
            raise InvalidInputError(f"LlamaIndexGenerator wraps a llama_index LLM, got {type(llm).__name__}")
        self.llm = llm
        self._name = f"llamaindex:{name or model_label(llm.metadata)}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def context_window(self) -> int:
        return int(self.llm.metadata.context_window)

    def _errors(self) -> ForeignErrors:
        """The LLM's own exceptions become EndpointError (ragloom's errors pass through)."""
        return ForeignErrors(f"{self._name} failed", "Check the LLM's configuration.")

    def generate(self, messages: Sequence[Message]) -> str:
        with self._errors():
            return self.llm.chat(to_llama_messages(messages)).message.content or ""

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        with self._errors():
            for response in self.llm.stream_chat(to_llama_messages(messages)):
                if response.delta:
                    yield response.delta

    async def agenerate(self, messages: Sequence[Message]) -> str:
        with self._errors():
            return (await self.llm.achat(to_llama_messages(messages))).message.content or ""

    async def astream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        with self._errors():
            async for response in await self.llm.astream_chat(to_llama_messages(messages)):
                if response.delta:
                    yield response.delta
