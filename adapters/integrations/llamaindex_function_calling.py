"""A ragloom Generator as a LlamaIndex function-calling LLM, for agents (``FunctionAgent``, ``predict_and_call``).

:class:`RagloomFunctionCallingLLM` is :class:`ragloom.adapters.integrations.llamaindex.RagloomLLM` plus tool
calling: ``chat``/``achat``/``stream_chat``/``astream_chat`` given ``tools`` ask the generator's
``generate_with_tools`` (the local model writes calls in its chat template's tool format; an OpenAI-compatible
endpoint gets them as ``tools``) and return the calls in ``additional_kwargs["tool_calls"]`` (OpenAI form), which
:meth:`get_tool_calls_from_response` reads back. A reply that calls tools arrives whole, never streamed in pieces.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection

from ragloom.adapters.integrations.llamaindex import RagloomLLM
from ragloom.adapters.integrations.tool_calling import agenerate_with_tools, generate_with_tools
from ragloom.errors import InvalidInputError
from ragloom.tool_calls import ToolReply

__all__ = ["RagloomFunctionCallingLLM", "to_openai_chat"]


def to_openai_chat(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """LlamaIndex chat messages (tool calls and tool results included) → OpenAI-style message dicts."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
        role = {"developer": "system", "chatbot": "assistant", "model": "assistant"}.get(role, role)
        entry: dict[str, Any] = {"role": role, "content": message.content or ""}
        extra = message.additional_kwargs or {}
        if role == "assistant" and extra.get("tool_calls"):
            entry["tool_calls"] = list(extra["tool_calls"])
        if role == "tool":
            entry["tool_call_id"] = str(extra.get("tool_call_id", ""))
            if extra.get("name"):
                entry["name"] = extra["name"]
        out.append(entry)
    return out


def _response(reply: ToolReply) -> ChatResponse:
    extra = {"tool_calls": [call.to_openai() for call in reply.tool_calls]} if reply.tool_calls else {}
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=reply.content, additional_kwargs=extra))


class RagloomFunctionCallingLLM(RagloomLLM, FunctionCallingLLM):
    """A ragloom Generator that calls tools, as a LlamaIndex ``FunctionCallingLLM`` (see the module docs)."""

    @classmethod
    def class_name(cls) -> str:
        return "RagloomFunctionCallingLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return super().metadata.model_copy(update={"is_function_calling_model": True})

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(
                ChatMessage(role=MessageRole.USER, content=user_msg) if isinstance(user_msg, str) else user_msg
            )
        schemas = [tool.metadata.to_openai_tool() for tool in tools]
        return {"messages": messages, "tools": schemas, "tool_choice": "any" if tool_required else None, **kwargs}

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        calls = response.message.additional_kwargs.get("tool_calls") or []
        if not calls and error_on_no_tool_call:
            raise InvalidInputError(
                f"The model called no tool; it answered: {str(response.message.content)[:200]!r}. Ask for a tool "
                "(tool_required=True) or use a larger model"
            )
        return [
            ToolSelection(
                tool_id=call["id"],
                tool_name=call["function"]["name"],
                tool_kwargs=json.loads(call["function"]["arguments"]),
            )
            for call in calls
        ]

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        if not kwargs.get("tools"):
            return super().chat(messages, **kwargs)
        tools, choice = kwargs["tools"], kwargs.get("tool_choice")
        return _response(generate_with_tools(self.generator, to_openai_chat(messages), tools, choice))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        if not kwargs.get("tools"):
            return await super().achat(messages, **kwargs)
        tools, choice = kwargs["tools"], kwargs.get("tool_choice")
        return _response(await agenerate_with_tools(self.generator, to_openai_chat(messages), tools, choice))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        if not kwargs.get("tools"):
            return super().stream_chat(messages, **kwargs)
        response = _response(
            generate_with_tools(self.generator, to_openai_chat(messages), kwargs["tools"], kwargs.get("tool_choice"))
        )

        def gen() -> ChatResponseGen:
            yield ChatResponse(message=response.message, delta=response.message.content or "")

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        if not kwargs.get("tools"):
            return await super().astream_chat(messages, **kwargs)
        reply = await agenerate_with_tools(
            self.generator, to_openai_chat(messages), kwargs["tools"], kwargs.get("tool_choice")
        )
        response = _response(reply)

        async def gen() -> ChatResponseAsyncGen:
            yield ChatResponse(message=response.message, delta=response.message.content or "")

        return gen()
