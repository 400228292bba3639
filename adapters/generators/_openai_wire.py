"""The wire format of OpenAI-compatible chat completions: server-sent events decoded into tokens, ``Retry-After``
read, tool calls taken from a reply, and the internal signal that an attempt is worth retrying."""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import httpx

from ragloom.errors import EndpointError
from ragloom.tool_calls import ToolCall, ToolReply, parse_tool_calls

if TYPE_CHECKING:
    from ragloom.adapters.generators.openai_http import OpenAICompatibleGenerator

__all__ = ["SSE_HEADERS", "TRANSIENT", "StreamState", "is_json", "retry_after", "tool_reply"]

SSE_HEADERS = {"Accept": "text/event-stream"}
# The request may never have reached the model, or the server dropped it: worth another attempt.
TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class Retry(Exception):
    """Internal: one attempt failed in a way worth retrying."""

    def __init__(self, reason: str, status_code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status_code, self.retry_after = reason, status_code, retry_after


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms``, or ``Retry-After`` in seconds or as a date."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
            seconds = (when - datetime.now(timezone.utc)).total_seconds()
        return max(0.0, seconds) if math.isfinite(seconds) else None
    return None


_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # server-sent events' line ends


def is_json(response: httpx.Response) -> bool:
    """Whether the server answered with one JSON body (an error, or a server that ignores ``stream``)."""
    return response.status_code >= 400 or response.headers.get("content-type", "").startswith("application/json")


class StreamState:
    """Decodes server-sent events into tokens and tracks whether the stream ended properly."""

    def __init__(self, owner: OpenAICompatibleGenerator) -> None:
        self._owner = owner
        self._data: list[str] = []
        self.done = self.finished = False  # saw [DONE] / saw a finish_reason
        self.chars = 0
        self.received = 0  # characters of the body so far, bounded by the owner's max_response_bytes
        self._pending: list[str] = []  # text after the last line break, in pieces (never re-scanned)
        self._after_cr = False  # the last piece ended in \r: a \n starting the next one ends no further line

    def feed_text(self, text: str) -> Iterator[str]:
        """Take decoded text as it arrives (any split); yield the tokens of the events it completes, each as soon
        as its event is decoded (a later bad event in the same piece cannot hold back earlier tokens)."""
        self.received += len(text)
        if self.received > self._owner.max_response_bytes:
            raise self._owner._too_large(self.received, "stream")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        *lines, rest = _LINE_BREAK.split(text)  # only the new text is scanned: linear in the body
        if lines:
            lines[0] = "".join(self._pending) + lines[0]
            self._pending = []
        self._pending.append(rest)
        for line in lines:
            if self.done:
                return
            yield from self.feed(line)

    def feed(self, line: str) -> list[str]:
        """Take one line of the stream; return the tokens of the event it completes, if any."""
        if line:  # ":" comments (keepalives) and event:/id:/retry: fields carry no tokens
            field, _, value = line.partition(":")
            if field == "data":
                self._data.append(value[1:] if value.startswith(" ") else value)
            return []
        payload, self._data = "\n".join(self._data), []
        if payload.strip() == "[DONE]":
            self.done = True
        if not payload or self.done:
            return []
        choice = self._owner._first_choice(payload, "stream chunk")
        if choice is None:  # e.g. the usage chunk of stream_options.include_usage
            return []
        if choice.get("finish_reason"):
            self.finished = True
            self._owner._check_finish(choice["finish_reason"], stacklevel=5)  # feed < feed_text < stream < caller
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        if not isinstance(content, str) or not content:
            return []
        self.chars += len(content)
        return [content]

    def end(self, cause: httpx.HTTPError | None = None) -> None:
        """The body ended (or broke): fine after [DONE] or a finish_reason, else the answer is incomplete."""
        if pending := "".join(self._pending):  # a last line without a line break: an event needs a blank line
            self.feed(pending)
            self._pending = []
        if self.done or self.finished or "\n".join(self._data).strip() == "[DONE]":
            return
        if cause is not None and not isinstance(cause, TRANSIENT):
            raise self._owner._transport_error(cause) from cause
        why = self._owner._describe(cause) if cause else "it closed without [DONE] or a finish_reason"
        if self.chars:  # tokens were yielded: a retry would repeat them
            raise self._owner._error(
                f"{self._owner.name}: stream ended early after {self.chars} characters ({why}); the answer "
                "is incomplete. Check the server's logs, or use generate() for a non-streamed answer."
            ) from cause
        raise Retry(why) from cause


def tool_reply(
    message: dict[str, Any], tool_names: list[str], fail: Callable[[str], EndpointError], excerpt: Callable[[str], str]
) -> ToolReply:
    """The reply in ``choices[0].message``: its ``tool_calls``, else calls written as text in its content.
    ``fail`` builds the error for a malformed call, ``excerpt`` quotes (and redacts) what the server sent."""
    calls = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise fail(f"a tool call without a function name: {excerpt(str(call))}")
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            arguments = function.get("arguments")
        if not isinstance(arguments, dict):
            raise fail(f"tool call arguments are not a JSON object: {arguments!r:.200}")
        calls.append(ToolCall(function["name"], arguments, str(call.get("id") or ToolCall("", {}).id)))
    content = message.get("content") or ""
    if calls:
        return ToolReply(content, tuple(calls))
    return parse_tool_calls(content, tool_names)  # calls written as text
