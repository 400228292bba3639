"""A generator for OpenAI-compatible chat-completions endpoints: vLLM, Ollama, llama.cpp server, OpenAI.

Transient failures (connection errors, timeouts, 408, 429, 5xx) are retried with jittered exponential
backoff, honouring ``Retry-After``; other 4xx fail at once with the server's message. A stream is retried only
before its first token (text is never duplicated), and one that stops without ``[DONE]`` or a
``finish_reason`` is an error, never a silently short answer. The API key is sent in a header and scrubbed
from every error and log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import httpx

from ragloom.adapters.generators._http_limits import (
    BodyTooLarge,
    Deadline,
    TotalTimeout,
    abounded_response,
    bounded_response,
    secret_pattern,
)
from ragloom.adapters.generators._openai_wire import (
    SSE_HEADERS,
    TRANSIENT,
    Retry,
    StreamState,
    is_json,
    retry_after,
    tool_reply,
)
from ragloom.errors import ConfigError, EndpointError, InvalidInputError, TruncationWarning
from ragloom.tool_calls import ToolReply, check_tools
from ragloom.types import Message

__all__ = ["OpenAICompatibleGenerator"]

_StreamState = StreamState  # the name the stream-decoding tests import

logger = logging.getLogger(__name__)

_EXCERPT_CHARS = 200
_RESERVED_BODY_KEYS = frozenset({"model", "messages", "stream"})


def _is_http_url(url: object) -> bool:
    if not isinstance(url, (str, httpx.URL)):
        return False
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


class OpenAICompatibleGenerator:
    """Chat completions from an OpenAI-compatible endpoint (``POST {base_url}/chat/completions``).

    ``api_key`` falls back to the environment variable named by ``api_key_env`` when set; with neither, no
    ``Authorization`` header is sent (local servers need none). ``max_retries`` counts retries after the first
    attempt; waits grow as ``backoff * 2**attempt`` with jitter, or follow ``Retry-After``, capped at
    ``max_retry_delay`` seconds. ``extra_body`` is merged into each request (``top_p``, ``seed``, vLLM's
    ``guided_json``...). ``context_window`` (tokens) is for prompt builders; nothing here truncates.
    ``read_timeout`` bounds each wait for bytes; ``total_timeout`` bounds the whole call: every attempt from
    request to last byte and the waits between attempts (a server dripping bytes restarts ``read_timeout`` for
    ever), streams included (the time a caller spends between tokens does not count). ``max_response_bytes``
    bounds a body after decoding (a gzip bomb, an endless body or stream line is an error, not gigabytes held).
    """

    def __init__(
        self,
        model: str,
        base_url: str = "http://127.0.0.1:8000/v1",
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.0,
        max_tokens: int | None = 512,
        stop: Sequence[str] = (),
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        total_timeout: float = 600.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_retry_delay: float = 30.0,
        extra_body: Mapping[str, Any] | None = None,
        context_window: int = 8192,
        max_response_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        extra = dict(extra_body or {})
        checks = {
            "model must be a non-empty string, e.g. 'gpt-4o-mini'": isinstance(model, str) and model.strip(),
            f"base_url must start with http:// or https:// (e.g. http://127.0.0.1:11434/v1 for Ollama), got "
            f"{base_url!r}": _is_http_url(base_url),
            "temperature must be >= 0": temperature >= 0,
            "max_tokens must be a positive int or None": max_tokens is None or max_tokens > 0,
            "timeouts must be > 0": min(connect_timeout, read_timeout, total_timeout) > 0,
            "max_retries must be >= 0": max_retries >= 0,
            "backoff and max_retry_delay must be >= 0": backoff >= 0 and max_retry_delay >= 0,
            "context_window must be > 0": context_window > 0,
            "max_response_bytes must be >= 1024": max_response_bytes >= 1024,
            "stop must hold non-empty strings": all(isinstance(s, str) and s for s in stop),
            f"extra_body must not set {sorted(_RESERVED_BODY_KEYS)}": not _RESERVED_BODY_KEYS & extra.keys(),
        }
        for problem, ok in checks.items():
            if not ok:
                raise ConfigError(f"OpenAICompatibleGenerator: {problem}")
        try:
            json.dumps(extra)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"OpenAICompatibleGenerator: extra_body is not JSON-serialisable: {exc}") from None
        self.model, self.base_url = model, base_url.rstrip("/")
        self.temperature, self.max_tokens, self.stop = float(temperature), max_tokens, stop
        self.max_retries, self.backoff, self.max_retry_delay = int(max_retries), backoff, max_retry_delay
        self.extra_body: Mapping[str, Any] = extra
        self.context_window = int(context_window)
        self.max_response_bytes = int(max_response_bytes)
        self._api_key_env = api_key_env
        self._secret = (api_key if api_key is not None else os.environ.get(api_key_env, "")).strip() or None
        if self._secret and not (self._secret.isascii() and self._secret.isprintable() and " " not in self._secret):
            # Never echo the key: httpx would, in the error for an illegal header value.
            raise ConfigError(
                "OpenAICompatibleGenerator: the API key holds a space, control or non-ASCII character and "
                f"cannot go in a header; check api_key= or ${api_key_env} for a stray quote or line break"
            )
        self._headers = {"Authorization": f"Bearer {self._secret}"} if self._secret else {}
        self._secret_pattern = secret_pattern(self._secret)
        self._url = f"{self.base_url}/chat/completions"
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self.total_timeout = float(total_timeout)  # the whole call: read_timeout restarts with every byte received
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None

    @property
    def reply_tokens(self) -> int | None:
        """The reply's cap (``max_tokens``; None: the server's): prompt builders leave this much of the window."""
        return self.max_tokens

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def __repr__(self) -> str:
        key = "'<set>'" if self._secret else None
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r}, api_key={key})"

    def generate(self, messages: Sequence[Message]) -> str:
        """The whole answer to a chat."""
        return self._post(self._body(messages, stream=False), stacklevel=5).get("content") or ""

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        """The answer token by token, as the server sends it (``stream=true``, server-sent events)."""
        body, client, attempt = self._body(messages, stream=True), self._sync_client(), 0
        deadline = Deadline(self.total_timeout)
        while True:
            state = StreamState(self)
            try:
                try:
                    deadline.start()
                    timeout = deadline.timeout(self._timeout)
                    with client.stream("POST", self._url, json=body, headers=SSE_HEADERS, timeout=timeout) as response:
                        if is_json(response):
                            whole = self._bounded(response, deadline.iterate(response.iter_bytes()))
                            if text := self._whole(whole):
                                yield text
                            return
                        for text in deadline.iterate(response.iter_text()):
                            yield from state.feed_text(text)
                            if state.done:
                                return
                    state.end()
                    return
                except httpx.HTTPError as exc:
                    state.end(exc)
                    return
            except Retry as failure:
                time.sleep(self._next_delay(attempt, failure, deadline))
                attempt += 1

    def generate_with_tools(self, chat: Sequence[Any], tools: Sequence[Any], tool_choice: Any = None) -> ToolReply:
        """A reply that may call ``tools`` (OpenAI schemas), sent as the request's ``tools``; the server applies
        the model's chat-template tool format. ``chat`` holds OpenAI-style message dicts (tool results included).
        """
        extra: dict[str, Any] = {"tools": check_tools(tools)}
        if tool_choice not in (None, False):
            extra["tool_choice"] = "required" if tool_choice in ("any", True) else tool_choice
        body = self._request([dict(m) for m in chat], stream=False, **extra)
        # the warning skips this method and tool_calling.generate_with_tools, which users call
        message = self._post(body, stacklevel=6)
        names = [t["function"]["name"] for t in body["tools"]]
        return tool_reply(message, names, lambda why: self._error(f"{self.name}: {why}"), self._excerpt)

    def _post(self, body: dict[str, Any], *, stacklevel: int) -> dict[str, Any]:
        """POST a non-streamed request, retrying transient failures; ``choices[0].message`` of the answer.

        ``stacklevel`` is the truncation warning's, counted from ``_check_finish`` (our caller's caller: 5)."""
        client, attempt = self._sync_client(), 0
        deadline = Deadline(self.total_timeout)
        while True:
            try:
                try:
                    deadline.start()
                    with client.stream("POST", self._url, json=body, timeout=deadline.timeout(self._timeout)) as got:
                        response = self._bounded(got, deadline.iterate(got.iter_bytes()))
                except httpx.HTTPError as exc:
                    raise self._transport_error(exc) from exc
                return self._whole_message(response, stacklevel=stacklevel)
            except Retry as failure:
                time.sleep(self._next_delay(attempt, failure, deadline))
                attempt += 1

    async def agenerate(self, messages: Sequence[Message]) -> str:
        """Async twin of :meth:`generate`, on an ``httpx.AsyncClient``: never blocks the event loop."""
        body, client, attempt = self._body(messages, stream=False), await self._async_client(), 0
        deadline = Deadline(self.total_timeout)
        while True:
            try:
                try:
                    deadline.start()
                    timeout = deadline.timeout(self._timeout)
                    async with client.stream("POST", self._url, json=body, timeout=timeout) as got:
                        response = await self._abounded(got, deadline.aiterate(got.aiter_bytes()))
                except httpx.HTTPError as exc:
                    raise self._transport_error(exc) from exc
                return self._whole(response)
            except Retry as failure:
                await asyncio.sleep(self._next_delay(attempt, failure, deadline))
                attempt += 1

    async def astream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        """Async twin of :meth:`stream`: never blocks the event loop."""
        body, client, attempt = self._body(messages, stream=True), await self._async_client(), 0
        deadline = Deadline(self.total_timeout)
        while True:
            state = StreamState(self)
            try:
                try:
                    deadline.start()
                    timeout = deadline.timeout(self._timeout)
                    async with client.stream(
                        "POST", self._url, json=body, headers=SSE_HEADERS, timeout=timeout
                    ) as response:
                        if is_json(response):
                            whole = await self._abounded(response, deadline.aiterate(response.aiter_bytes()))
                            if text := self._whole(whole):
                                yield text
                            return
                        async with contextlib.aclosing(deadline.aiterate(response.aiter_text())) as texts:
                            async for text in texts:
                                for token in state.feed_text(text):
                                    yield token
                                if state.done:
                                    return
                    state.end()
                    return
                except httpx.HTTPError as exc:
                    state.end(exc)
                    return
            except Retry as failure:
                await asyncio.sleep(self._next_delay(attempt, failure, deadline))
                attempt += 1

    def close(self) -> None:
        """Release the sync client's connections (:meth:`aclose` releases both clients')."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        client, self._aclient, self._aclient_loop = self._aclient, None, None
        if client is not None:
            await client.aclose()
        self.close()

    def __enter__(self) -> OpenAICompatibleGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> OpenAICompatibleGenerator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self._timeout, headers=self._headers)
            return self._client

    async def _async_client(self) -> httpx.AsyncClient:
        # An AsyncClient's connections belong to one event loop; another loop (asyncio.run) gets its own.
        # Creating one loads the CA bundle (0.1-0.4 s), so it happens in a thread, off the event loop.
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient_loop is not loop:
            self._aclient = await asyncio.to_thread(httpx.AsyncClient, timeout=self._timeout, headers=self._headers)
            self._aclient_loop = loop
        return self._aclient

    def _body(self, messages: Sequence[Message], stream: bool) -> dict[str, Any]:
        if isinstance(messages, str | Message) or not messages:
            raise InvalidInputError(f"{self.name}: pass a non-empty sequence of Message objects")
        for message in messages:
            if not isinstance(message, Message):
                raise InvalidInputError(
                    f"{self.name}: messages must be ragloom.types.Message, got {type(message).__name__}; "
                    "wrap it as Message(role=..., content=...)"
                )
        return self._request([{"role": m.role, "content": m.content} for m in messages], stream=stream)

    def _request(self, messages: list[dict[str, Any]], *, stream: bool, **extra: Any) -> dict[str, Any]:
        """A chat-completions request body: the generator's settings, ``extra`` fields, then ``extra_body``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "stream": stream,
            **extra,
        }
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.stop:
            body["stop"] = list(self.stop)
        return {**body, **self.extra_body}

    def _bounded(self, response: httpx.Response, pieces: Iterator[bytes]) -> httpx.Response:
        try:
            return bounded_response(response, pieces, self.max_response_bytes)
        except BodyTooLarge as exc:
            raise self._too_large(exc.args[0], "response") from None

    async def _abounded(self, response: httpx.Response, pieces: Any) -> httpx.Response:
        try:
            return await abounded_response(response, pieces, self.max_response_bytes)
        except BodyTooLarge as exc:
            raise self._too_large(exc.args[0], "response") from None

    def _too_large(self, size: int, what: str) -> EndpointError:
        return self._error(
            f"{self.name}: the {what} from {self._url} passed max_response_bytes={self.max_response_bytes} "
            f"(over {size} bytes after decoding; a compression bomb or a runaway server?) and was stopped; raise "
            "max_response_bytes if the server really sends that much"
        )

    def _redact(self, text: str) -> str:
        return self._secret_pattern.sub("***", text) if self._secret_pattern is not None else text

    def _error(self, message: str, status_code: int | None = None) -> EndpointError:
        return EndpointError(self._redact(message), status_code=status_code)

    def _excerpt(self, text: str) -> str:
        """A short excerpt of a body, redacted before it is cut so that no prefix of the key survives."""
        flat = " ".join(self._redact(text).split())
        return repr(flat if len(flat) <= _EXCERPT_CHARS else flat[:_EXCERPT_CHARS] + "…")

    def _transport_error(self, exc: httpx.HTTPError) -> Exception:
        """Transient transport failures are retried; others (bad URL, proxy, decoding) are final."""
        if isinstance(exc, TRANSIENT):
            return Retry(self._describe(exc))
        return self._error(f"{self.name}: request to {self._url} failed: {self._describe(exc)}")

    def _describe(self, exc: httpx.HTTPError) -> str:
        if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
            return f"could not connect to {self.base_url} ({type(exc).__name__}: {exc}); is the server up?"
        if isinstance(exc, TotalTimeout):
            return f"the answer took longer than total_timeout={self.total_timeout}s ({type(exc).__name__})"
        if isinstance(exc, httpx.TimeoutException):
            return f"nothing received within read_timeout={self._timeout.read}s ({type(exc).__name__})"
        return f"{type(exc).__name__}: {exc}"

    def _next_delay(self, attempt: int, failure: Retry, deadline: Deadline) -> float:
        """Seconds to wait before the next attempt; raises once ``max_retries`` or ``total_timeout`` is spent."""
        base = self.backoff * 2**attempt
        delay = failure.retry_after if failure.retry_after is not None else base / 2 + random.uniform(0, base / 2)
        delay = min(delay, self.max_retry_delay)
        out_of_time = deadline.remaining <= delay
        if attempt >= self.max_retries or out_of_time:
            why = f"total_timeout={self.total_timeout}s spent" if out_of_time else f"{attempt + 1} attempt(s)"
            raise self._error(
                f"{self.name}: gave up after {attempt + 1} attempt(s) at {self._url} ({why}); last: {failure.reason}",
                failure.status_code,
            ) from failure.__cause__
        deadline.wait(delay)
        logger.warning(
            "%s: attempt %d/%d failed (%s); retrying in %.2fs",
            *(self.name, attempt + 1, self.max_retries + 1, self._redact(failure.reason), delay),
        )
        return delay

    def _whole(self, response: httpx.Response) -> str:
        """The text of a complete (non-streamed) response, or the error it carries."""
        return self._whole_message(response).get("content") or ""

    def _whole_message(self, response: httpx.Response, stacklevel: int = 5) -> dict[str, Any]:
        """``choices[0].message`` of a complete (non-streamed) response, or the error it carries."""
        status, text = response.status_code, response.text
        if status < 400:
            choice = self._first_choice(text, "response")
            message = choice.get("message") if choice else None
            content = message.get("content") if isinstance(message, dict) else None
            if choice is None or not isinstance(message, dict) or not isinstance(content, str | None):
                raise self._error(f"{self.name}: no choices[0].message.content in {self._excerpt(text)}")
            self._check_finish(choice.get("finish_reason"), stacklevel=stacklevel)
            return message
        detail = self._server_message(text)
        if status in (408, 429) or status >= 500:
            raise Retry(f"HTTP {status}: {detail}", status, retry_after(response.headers))
        hint = {
            401: f" Check the API key (api_key=, or the {self._api_key_env} environment variable).",
            403: " The key lacks access to this model or endpoint.",
            404: f" Check base_url (it usually ends in /v1) and that the server serves {self.model!r}.",
        }.get(status, "")
        raise self._error(f"{self.name} at {self._url} answered HTTP {status}: {detail}.{hint}", status)

    def _server_message(self, text: str) -> str:
        """The message in an OpenAI, vLLM, Ollama or FastAPI error body, else an excerpt of the body."""
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            error = data.get("error")
            nested = error.get("message") if isinstance(error, dict) else error
            for found in (nested, data.get("message"), data.get("detail")):
                if isinstance(found, str) and found:
                    return self._excerpt(found)
        return self._excerpt(text)

    def _first_choice(self, payload: str, what: str) -> dict[str, Any] | None:
        """``choices[0]`` of a completion or stream chunk; None when ``choices`` is empty."""
        try:
            data = json.loads(payload)
        except ValueError:
            raise self._error(f"{self.name}: the {what} is not JSON: {self._excerpt(payload)}") from None
        if isinstance(data, dict) and (data.get("error") or data.get("object") == "error"):
            raise self._error(f"{self.name}: the server reported an error: {self._server_message(payload)}")
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise self._error(f"{self.name}: the {what} has no 'choices' list: {self._excerpt(payload)}")
        return choices[0] if choices else None

    def _check_finish(self, reason: object, stacklevel: int = 4) -> None:
        if reason == "length":
            warnings.warn(
                f"{self.name}: answer cut at max_tokens={self.max_tokens}; raise it for a full answer",
                TruncationWarning,
                stacklevel=stacklevel,
            )
