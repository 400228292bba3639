"""Tool calling for chat generators: tool calls in a reply, and the chat format that carries them.

Models that call tools write them in their chat template's format. Qwen2.5 (and Hermes-style templates) wrap
each call in ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``; some small models write the bare JSON
object. :func:`parse_tool_calls` reads both, and returns the rest of the reply as its text content.

:class:`ToolReply` is what a generator's ``generate_with_tools(chat, tools)`` returns. ``chat`` is a list of
OpenAI-style message dicts (``role`` system/user/assistant/tool; an assistant message may carry ``tool_calls``,
a tool message its ``tool_call_id`` and ``name``), which is what transformers chat templates and
OpenAI-compatible endpoints both take. ``tools`` are OpenAI tool schemas (``{"type": "function", "function":
{"name", "description", "parameters"}}``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragloom.errors import InvalidInputError

__all__ = ["ToolCall", "ToolReply", "check_tools", "parse_tool_calls", "tool_choice_instruction"]

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    """One call of a tool: its name, its arguments and an id (generated when the model gives none)."""

    name: str
    arguments: Mapping[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``tool_calls`` entry (arguments as a JSON string)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(dict(self.arguments), ensure_ascii=False)},
        }


@dataclass(frozen=True)
class ToolReply:
    """A reply that may call tools: its text content (without the calls) and the calls in order."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()


def _as_call(data: Any) -> ToolCall | None:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(data["name"], arguments)


def parse_tool_calls(text: str, names: Sequence[str] | None = None) -> ToolReply:
    """Split a reply into text and tool calls (``<tool_call>`` blocks, or a bare JSON call object).

    ``names`` restricts bare-JSON calls to known tools, so an answer that happens to be JSON is not taken for a
    call. A ``<tool_call>`` block that is not valid JSON stays in the text.
    """
    calls: list[ToolCall] = []
    kept: list[str] = []
    position = 0
    for match in _TAGGED.finditer(text):
        try:
            call = _as_call(json.loads(match.group(1)))
        except json.JSONDecodeError:
            call = None
        if call is None:
            continue
        kept.append(text[position : match.start()])
        position = match.end()
        calls.append(call)
    kept.append(text[position:])
    content = "".join(kept).strip()
    if not calls and content:
        body = _FENCE.sub(r"\1", content)
        if body.startswith("{") or body.startswith("["):
            try:
                data = json.loads(body)
            except json.JSONDecodeError:
                data = None
            found = [_as_call(item) for item in (data if isinstance(data, list) else [data])]
            if found and all(c is not None and (names is None or c.name in names) for c in found):
                return ToolReply("", tuple(c for c in found if c is not None))
    return ToolReply(content, tuple(calls))


def check_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validate OpenAI tool schemas (a typed error naming the fault) and return them as plain dicts."""
    out = []
    for number, tool in enumerate(tools, start=1):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidInputError(
                f"tool {number} is not an OpenAI tool schema; pass {{'type': 'function', 'function': {{'name': …, "
                "'description': …, 'parameters': {…}}}}"
            )
        out.append({"type": "function", "function": dict(function)})
    return out


def tool_choice_instruction(tool_choice: Any, tools: Sequence[Mapping[str, Any]]) -> str:
    """A system-prompt line that asks a local model to call a tool (``"any"``/``"required"`` or a tool's name);
    "" for ``None``/``"auto"``. Local models have no constrained decoding, so the choice is asked for in words."""
    if tool_choice in (None, "auto", "none", False):
        return ""
    names = [t["function"]["name"] for t in tools]
    if isinstance(tool_choice, Mapping):
        tool_choice = tool_choice.get("function", {}).get("name") or tool_choice.get("name")
    if isinstance(tool_choice, str) and tool_choice in names:
        return f"You must answer by calling the tool {tool_choice!r}."
    return f"You must answer by calling one of the tools: {', '.join(names)}."
