"""LangChain bridges, both ways (``pip install 'ragloom[langchain]'``, langchain-core 1.x).

ragloom → LangChain: :class:`RagloomRetriever` (a Retriever or Pipeline as a ``BaseRetriever``, with a real async
path), :class:`RagloomChatModel` (a ragloom Generator as a chat model), :func:`langchain_tools` (``StructuredTool``).
LangChain → ragloom: :class:`LangChainEncoder` (``Embeddings`` as a DenseEncoder) and :class:`LangChainGenerator`
(a chat model as a Generator). Documents carry the hit in ``metadata`` under :data:`METADATA_KEYS`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ragloom._imports import require

require("langchain_core", "langchain", "the LangChain integration")

from langchain_core.callbacks import (  # noqa: E402
    AsyncCallbackManagerForLLMRun,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForLLMRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document as LCDocument  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.language_models import BaseChatModel, LanguageModelInput  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    convert_to_openai_messages,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.runnables import Runnable  # noqa: E402
from langchain_core.tools import StructuredTool, ToolException  # noqa: E402
from langchain_core.utils.function_calling import convert_to_openai_tool  # noqa: E402
from pydantic import ConfigDict, PrivateAttr  # noqa: E402

from ragloom.adapters.integrations._async import agenerate, astream  # noqa: E402
from ragloom.adapters.integrations._calls import ForeignErrors, model_label, refuse_call_options, usage_counts  # noqa: E402
from ragloom.adapters.integrations._encoders import ForeignDenseEncoder  # noqa: E402
from ragloom.adapters.integrations._hits import METADATA_KEYS, hit_metadata  # noqa: E402
from ragloom.adapters.integrations._sources import SearchSource, search_source  # noqa: E402
from ragloom.adapters.integrations._stops import acut_stream, cut_stream  # noqa: E402
from ragloom.adapters.integrations.tool_calling import (  # noqa: E402
    agenerate_with_tools,
    generate_with_tools,
    supports_tools,
)
from ragloom.errors import InvalidInputError, RagloomError, RagloomWarning  # noqa: E402
from ragloom.tool_calls import ToolReply  # noqa: E402
from ragloom.types import Hit, Message, Role  # noqa: E402

if TYPE_CHECKING:
    from ragloom.adapters.integrations.tools import RagloomTools

__all__ = [
    "METADATA_KEYS",
    "LangChainEncoder",
    "LangChainGenerator",
    "RagloomChatModel",
    "RagloomRetriever",
    "from_langchain_messages",
    "hit_to_document",
    "langchain_tools",
    "to_langchain_messages",
]


def hit_to_document(hit: Hit) -> LCDocument:
    """A LangChain Document for a hit: ``id`` is the chunk id, the hit's fields are in ``metadata``."""
    return LCDocument(id=hit.chunk.id, page_content=hit.chunk.text, metadata=hit_metadata(hit))


# -- ragloom → LangChain ------------------------------------------------------------------------------------------
class RagloomRetriever(BaseRetriever):
    """A ragloom Retriever or Pipeline as a LangChain retriever.

    ``invoke``/``ainvoke`` accept per-call ``k`` and ``filters`` keyword arguments. The async path awaits
    ragloom's ``aretrieve``/``asearch`` (model work runs in a worker thread), so the event loop keeps running.
    LangChain's ``search_kwargs={"k": ..., "filter": {...}}`` is understood; any other setting is an error.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    source: Any
    """A ragloom Retriever or Pipeline."""
    k: int | None = None
    """Hits per query (default: the pipeline's ``k``, or 5 for a bare retriever)."""
    filters: dict[str, str | int | float | bool] | None = None
    """Equality filters applied to every query unless a call passes its own."""
    search_kwargs: dict[str, Any] | None = None
    """LangChain's vector-store convention: ``{"k": 4, "filter": {...}}`` (``filters`` also accepted)."""

    _source: SearchSource = PrivateAttr()

    def __init__(self, source: Any = None, **kwargs: Any) -> None:
        searcher = search_source(source)  # a typed error here, not pydantic's wrapper
        _check_retriever_options(kwargs)
        super().__init__(source=source, **kwargs)
        self._source = searcher

    def _settings(self, k: int | None, filters: dict[str, Any] | None) -> tuple[int | None, Any]:
        extra = self.search_kwargs or {}
        if k is None:
            k = extra.get("k", self.k)
        if filters is None:
            filters = extra.get("filter", extra.get("filters", self.filters))
        return k, filters

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[LCDocument]:
        hits = self._source.search(query, *self._settings(k, filters))
        return [hit_to_document(h) for h in hits]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[LCDocument]:
        hits = await self._source.asearch(query, *self._settings(k, filters))
        return [hit_to_document(h) for h in hits]


_SEARCH_KWARGS = frozenset({"k", "filter", "filters"})
_RETRIEVER_FIELDS = frozenset({"k", "filters", "search_kwargs", "tags", "metadata", "name"})


def _check_retriever_options(options: dict[str, Any]) -> None:
    """Settings ragloom would not apply are errors, never silently ignored."""
    unknown = sorted(set(options) - _RETRIEVER_FIELDS)
    if unknown:
        hint = " (ragloom calls it k)" if {"top_k", "similarity_top_k", "n"} & set(unknown) else ""
        raise InvalidInputError(
            f"RagloomRetriever does not take {unknown}{hint}; it takes k, filters, search_kwargs, tags, metadata"
        )
    extra = options.get("search_kwargs") or {}
    if not isinstance(extra, dict) or set(extra) - _SEARCH_KWARGS:
        raise InvalidInputError(
            f"RagloomRetriever search_kwargs may hold k and filter, got {extra!r}; "
            'e.g. search_kwargs={"k": 4, "filter": {"doc_id": "a.pdf"}}'
        )
    k = options.get("k", extra.get("k"))
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise InvalidInputError(f"RagloomRetriever k must be a positive integer, got {k!r}")


_ROLES: dict[str, Role] = {"system": "system", "human": "user", "ai": "assistant", "developer": "system"}
_CHAT_ROLES: dict[str, Role] = {"user": "user", "assistant": "assistant", "system": "system"}


def from_langchain_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages → ragloom messages (system, user, assistant; text content only)."""
    out = []
    for message in messages:
        role = _ROLES.get(message.type)
        if isinstance(message, ChatMessage):  # a free-form role
            role = _CHAT_ROLES.get(str(message.role))
        if role is None:
            raise InvalidInputError(
                f"ragloom generators take system, user and assistant messages, got a {message.type!r} message; "
                "drop tool messages or use a LangChain chat model that supports tools"
            )
        if isinstance(message.content, list):
            dropped = sorted(
                {str(b.get("type")) for b in message.content if isinstance(b, dict) and b.get("type") != "text"}
            )
            if dropped:
                warnings.warn(
                    f"ragloom generators take text only: {', '.join(dropped)} content in a {role} message was left out",
                    RagloomWarning,
                    stacklevel=3,
                )
        out.append(Message(role, str(message.text)))
    return out


def to_langchain_messages(messages: Sequence[Message]) -> list[BaseMessage]:
    """ragloom messages → LangChain messages."""
    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[m.role](content=m.content) for m in messages]


class RagloomChatModel(BaseChatModel):
    """A ragloom Generator (local transformers model, OpenAI-compatible endpoint, ...) as a LangChain chat model.

    Streams token pieces, honours ``stop`` while streaming in every path (``invoke(stop=…)`` streams too, so the
    model stops at the stop sequence), and its async methods use the generator's native ``agenerate`` /
    ``astream`` when it has them, a worker thread otherwise. ``bind_tools`` and ``with_structured_output`` work
    with generators that call tools (see :mod:`ragloom.adapters.integrations.tool_calling`).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    generator: Any
    """A ragloom Generator."""

    @property
    def _llm_type(self) -> str:
        return "ragloom"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"generator": str(getattr(self.generator, "name", type(self.generator).__name__))}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if kwargs.get("tools"):
            return _tool_result(generate_with_tools(self.generator, *_tool_request(messages, kwargs), stop))
        refuse_call_options(type(self).__name__, kwargs)
        converted = from_langchain_messages(messages)
        if stop:  # stream, so the model stops at the stop sequence instead of writing the whole reply first
            text = "".join(cut_stream(self.generator.stream(converted), stop))
        else:
            text = self.generator.generate(converted)
        return self._result(converted, text)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if kwargs.get("tools"):
            return _tool_result(await agenerate_with_tools(self.generator, *_tool_request(messages, kwargs), stop))
        refuse_call_options(type(self).__name__, kwargs)
        converted = from_langchain_messages(messages)
        if stop:
            text = "".join([p async for p in acut_stream(astream(self.generator, converted), stop)])
        else:
            text = await agenerate(self.generator, converted)
        return self._result(converted, text)

    def _result(self, messages: list[Message], text: str) -> ChatResult:
        """The answer with LangChain's ``response_metadata`` (model name) and ``usage_metadata`` (when the
        generator can count its tokens)."""
        usage = usage_counts(self.generator, messages, text)
        message = AIMessage(
            content=text,
            response_metadata={"model_name": self._model_name, "model_provider": "ragloom"},
            usage_metadata=usage,
        )
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": self._model_name})

    @property
    def _model_name(self) -> str:
        return str(getattr(self.generator, "name", type(self.generator).__name__))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if kwargs.get("tools"):  # a reply that calls tools arrives whole
            yield _tool_chunk(generate_with_tools(self.generator, *_tool_request(messages, kwargs), stop))
            return
        refuse_call_options(type(self).__name__, kwargs)
        for piece in cut_stream(self.generator.stream(from_langchain_messages(messages)), stop):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if kwargs.get("tools"):
            yield _tool_chunk(await agenerate_with_tools(self.generator, *_tool_request(messages, kwargs), stop))
            return
        refuse_call_options(type(self).__name__, kwargs)
        async for piece in acut_stream(astream(self.generator, from_langchain_messages(messages)), stop):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (pydantic models, functions, LangChain tools or OpenAI schemas) for the generator to call.

        The generator must call tools (``generate_with_tools``): the local model writes calls in its chat
        template's tool format, an OpenAI-compatible endpoint gets them as ``tools``. ``tool_choice`` ``"any"``
        or a tool name asks for a call. ``with_structured_output`` works through this.
        """
        if not supports_tools(self.generator):
            generate_with_tools(self.generator, [], [])  # raises the ConfigError that says what to use
        schemas = [convert_to_openai_tool(tool) for tool in tools]
        kwargs.pop("ls_structured_output_format", None)
        return self.bind(tools=schemas, tool_choice=tool_choice, **kwargs)


def _tool_request(messages: list[BaseMessage], kwargs: dict[str, Any]) -> tuple[list[dict[str, Any]], Any, Any]:
    """(OpenAI-style chat, tool schemas, tool choice) for ``generate_with_tools``."""
    return convert_to_openai_messages(messages), kwargs["tools"], kwargs.get("tool_choice")


def _lc_tool_calls(reply: ToolReply) -> list[dict[str, Any]]:
    return [{"name": c.name, "args": dict(c.arguments), "id": c.id, "type": "tool_call"} for c in reply.tool_calls]


def _tool_result(reply: ToolReply) -> ChatResult:
    message = AIMessage(content=reply.content, tool_calls=_lc_tool_calls(reply))
    return ChatResult(generations=[ChatGeneration(message=message)])


def _tool_chunk(reply: ToolReply) -> ChatGenerationChunk:
    chunks = [
        {"name": c.name, "args": json.dumps(dict(c.arguments)), "id": c.id, "index": i, "type": "tool_call_chunk"}
        for i, c in enumerate(reply.tool_calls)
    ]
    return ChatGenerationChunk(message=AIMessageChunk(content=reply.content, tool_call_chunks=chunks))


def langchain_tools(tools: RagloomTools) -> list[StructuredTool]:
    """Each ragloom tool as a ``StructuredTool`` with the same pydantic input model.

    The tool's content is the JSON result (what an agent reads); the artifact is the same result as a dict.
    A ragloom error becomes the tool's message to the agent (``handle_tool_error``) so it can retry.
    """
    return [_structured_tool(tools, spec.name, spec.description, spec.input_model) for spec in tools.specs]


def _structured_tool(tools: RagloomTools, name: str, description: str, schema: Any) -> StructuredTool:
    from ragloom.adapters.integrations.tools import describe_validation_error

    def run(**arguments: Any) -> tuple[str, dict[str, Any]]:
        try:
            result = tools.dispatch(name, arguments)
        except RagloomError as exc:
            raise ToolException(str(exc)) from exc
        return json.dumps(result, ensure_ascii=False), result

    async def arun(**arguments: Any) -> tuple[str, dict[str, Any]]:
        try:
            result = await tools.adispatch(name, arguments)
        except RagloomError as exc:
            raise ToolException(str(exc)) from exc
        return json.dumps(result, ensure_ascii=False), result

    return StructuredTool.from_function(
        func=run,
        coroutine=arun,
        name=name,
        description=description,
        args_schema=schema,
        response_format="content_and_artifact",
        handle_tool_error=True,
        handle_validation_error=lambda exc: describe_validation_error(name, exc),
    )


# -- LangChain → ragloom ------------------------------------------------------------------------------------------
class LangChainEncoder(ForeignDenseEncoder):
    """Any LangChain ``Embeddings`` as a ragloom DenseEncoder (``embed_query`` for queries, ``embed_documents``).

    Vectors are L2-normalised unless ``normalize=False``. Without a ``token_counter`` the retriever chunks by
    words; pass one (e.g. ``ragloom.chunking.OffsetTokenizer(tokenizer)``) to chunk in the model's tokens.
    """

    provider = "langchain"
    model: Embeddings

    def __init__(self, embeddings: Embeddings, **options: Any) -> None:
        if not isinstance(embeddings, Embeddings):
            raise InvalidInputError(
                f"LangChainEncoder wraps a langchain_core Embeddings, got {type(embeddings).__name__}"
            )
        super().__init__(embeddings, **options)

    def _embed_queries(self, texts: list[str]) -> list[Sequence[float]]:
        return [self.model.embed_query(t) for t in texts]

    def _embed_documents(self, texts: list[str]) -> list[Sequence[float]]:
        return list(self.model.embed_documents(texts))

    async def _aembed_queries(self, texts: list[str]) -> list[Sequence[float]]:
        return [await self.model.aembed_query(t) for t in texts]


class LangChainGenerator:
    """A LangChain chat model (any ``BaseChatModel``) as a ragloom Generator, with native async and streaming.

    Errors raised by the model become :class:`ragloom.errors.EndpointError` (the original is the ``__cause__``).
    """

    def __init__(self, model: BaseChatModel, *, name: str | None = None) -> None:
        if not isinstance(model, BaseChatModel):
            raise InvalidInputError(f"LangChainGenerator wraps a LangChain BaseChatModel, got {type(model).__name__}")
        self.model = model
        self._name = f"langchain:{name or model_label(model)}"

    @property
    def name(self) -> str:
        return self._name

    def _errors(self) -> ForeignErrors:
        """The model's own exceptions become EndpointError (ragloom's errors pass through)."""
        return ForeignErrors(f"{self._name} failed", "Check the model's configuration.")

    def generate(self, messages: Sequence[Message]) -> str:
        with self._errors():
            return str(self.model.invoke(to_langchain_messages(messages)).text)

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        with self._errors():
            for chunk in self.model.stream(to_langchain_messages(messages)):
                if text := str(chunk.text):
                    yield text

    async def agenerate(self, messages: Sequence[Message]) -> str:
        with self._errors():
            return str((await self.model.ainvoke(to_langchain_messages(messages))).text)

    async def astream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        with self._errors():
            async for chunk in self.model.astream(to_langchain_messages(messages)):
                if text := str(chunk.text):
                    yield text
