"""Tool calling through ragloom generators, shared by the LangChain chat model and the LlamaIndex LLM.

A generator that can call tools has ``generate_with_tools(chat, tools, tool_choice)`` (the local transformers
generator, in its chat template's tool format; the OpenAI-compatible one, through the request's ``tools``).
Frameworks hand over OpenAI-style message dicts and tool schemas; the reply is a :class:`ragloom.tool_calls.
ToolReply`. Stop sequences cut the reply's text; the calls are kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ragloom.adapters.integrations._stops import cut_at_stop
from ragloom.errors import ConfigError
from ragloom.tool_calls import ToolReply

__all__ = ["agenerate_with_tools", "generate_with_tools", "supports_tools"]


def supports_tools(generator: object) -> bool:
    """True when the generator can call tools (``generate_with_tools``)."""
    return callable(getattr(generator, "generate_with_tools", None))


def _check(generator: object) -> None:
    if not supports_tools(generator):
        name = getattr(generator, "name", type(generator).__name__)
        raise ConfigError(
            f"{name} cannot call tools: use TransformersGenerator with a model whose chat template has a tool "
            "format (qwen2.5-coder-0.5b / -1.5b) or OpenAICompatibleGenerator"
        )


def generate_with_tools(
    generator: Any,
    chat: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    tool_choice: Any = None,
    stop: Sequence[str] | None = None,
) -> ToolReply:
    """The generator's reply to ``chat`` with ``tools`` available, its text cut at ``stop``."""
    _check(generator)
    reply = generator.generate_with_tools(list(chat), list(tools), tool_choice=tool_choice)
    return ToolReply(cut_at_stop(reply.content, stop), reply.tool_calls)


async def agenerate_with_tools(
    generator: Any,
    chat: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    tool_choice: Any = None,
    stop: Sequence[str] | None = None,
) -> ToolReply:
    """Async twin of :func:`generate_with_tools` (a worker thread; the event loop keeps running)."""
    _check(generator)
    return await asyncio.to_thread(generate_with_tools, generator, chat, tools, tool_choice, stop)
