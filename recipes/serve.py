"""The resident ragloom server: models loaded once, queries answered over HTTP (``pip install 'ragloom[serve]'``).

Routes (JSON in and out; errors as ``{"error": {"type": ..., "message": ...}}``):

- ``GET  /v1/health`` — the index's retrievers, whether ``ask`` is on, the limits.
- ``POST /v1/search`` ``{"query", "k", "group_by"}`` → ``{"hits": [hit rows]}`` (rows as ``ragloom search --json``).
- ``POST /v1/ask`` ``{"question", "k", "group_by", "stream"}`` → the ``ragloom ask --json`` object, or with
  ``stream: true`` server-sent events: ``token`` ``{"text"}`` pieces, then one ``answer`` event (the JSON object).
- ``POST /v1/chat/completions`` — OpenAI-compatible (``messages``, ``stream``): the last user message is the
  question; the reply's content is the cited answer followed by its sources, and ``ragloom`` carries the citations.
- ``/mcp`` — the MCP streamable HTTP endpoint (the tools of ``ragloom mcp``).

Safety: bound to 127.0.0.1 by default; any other address needs a bearer token (checked on every request,
constant-time). Request bodies above ``max_body`` bytes get 413, ``k`` above ``max_k`` 422. At most ``workers``
queries run at once and ``queue`` more wait; beyond that the server answers 503 with ``Retry-After`` rather than
piling up work it cannot finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ragloom._imports import require
from ragloom.errors import ConfigError, InvalidInputError, RagloomError
from ragloom.recipes.output import answer_json, hit_rows

__all__ = ["ServerLimits", "build_app", "check_exposure"]


@dataclass(frozen=True)
class ServerLimits:
    """Request limits: body bytes, ``k``, question length, concurrent queries and waiting ones."""

    max_body: int = 64 * 1024
    max_k: int = 50
    max_query_chars: int = 4000
    workers: int = 1
    queue: int = 32

    def __post_init__(self) -> None:
        if self.workers < 1 or self.queue < 0 or self.max_k < 1 or self.max_body < 256:
            raise ConfigError(f"Invalid server limits {self}: workers >= 1, queue >= 0, max_k >= 1, max_body >= 256")


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a bearer token (and refuse weak tokens)."""
    from ragloom.adapters.integrations.mcp_server import check_exposure as check

    check(host, token, service="the HTTP API", token_env="RAGLOOM_TOKEN")


class _Busy(Exception):
    """Every worker is busy and the queue is full."""


class _Gate:
    """Bounded concurrency with a bounded queue: ``workers`` run, ``queue`` wait, the rest are turned away."""

    def __init__(self, workers: int, queue: int) -> None:
        self._slots = asyncio.Semaphore(workers)
        self._capacity = workers + queue
        self._inside = 0

    @contextlib.asynccontextmanager
    async def enter(self) -> AsyncIterator[None]:
        if self._inside >= self._capacity:
            raise _Busy
        self._inside += 1
        try:
            async with self._slots:
                yield
        finally:
            self._inside -= 1


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def build_app(
    pipeline: Any,
    *,
    limits: ServerLimits | None = None,
    token: str | None = None,
    host: str = "127.0.0.1",
    mcp: bool = True,
) -> Any:
    """The Starlette app serving ``pipeline`` (``pipeline.generator`` None: ``ask`` and chat answer 400)."""
    require("starlette", "serve", "ragloom serve")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Mount, Route

    limits = limits or ServerLimits()
    check_exposure(host, token)
    gate = _Gate(limits.workers, limits.queue)

    async def body(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body:
            raise _TooLarge
        raw = bytearray()
        async for part in request.stream():
            raw.extend(part)
            if len(raw) > limits.max_body:
                raise _TooLarge
        try:
            data = json.loads(raw or b"{}")
        except ValueError as exc:
            raise InvalidInputError(f"The request body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInputError("The request body must be a JSON object")
        return data

    def text_field(data: dict[str, Any], name: str) -> str:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(f"'{name}' must be a non-empty string")
        if len(value) > limits.max_query_chars:
            raise InvalidInputError(f"'{name}' has {len(value)} characters; the limit is {limits.max_query_chars}")
        return value

    def k_field(data: dict[str, Any]) -> int | None:
        k = data.get("k")
        if k is None:
            return None
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= limits.max_k:
            raise _Unprocessable(f"'k' must be an integer from 1 to {limits.max_k}, got {k!r}")
        return k

    def group_field(data: dict[str, Any]) -> str | None:
        group = data.get("group_by")
        if group not in (None, "chunk", "page"):
            raise _Unprocessable(f"'group_by' must be 'chunk' or 'page', got {group!r}")
        return group

    def guarded(handler: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Any]]:
        async def run(request: Request) -> Any:
            try:
                return await handler(request)
            except _TooLarge:
                return _error(413, "request_too_large", f"The request body exceeds {limits.max_body} bytes")
            except _Unprocessable as exc:
                return _error(422, "invalid_request", str(exc))
            except _Busy:
                return _error(503, "busy", "The server is at capacity; retry shortly", {"Retry-After": "1"})
            except RagloomError as exc:
                return _error(400, type(exc).__name__, str(exc))

        return run

    def generator_or_error() -> None:
        if pipeline.generator is None:
            raise ConfigError("This server was started without a generator (--no-ask); /v1/search still works")

    async def health(request: Request) -> Any:
        return JSONResponse(
            {
                "status": "ok",
                "retrievers": [r.name for r in pipeline.retrievers],
                "ask": pipeline.generator is not None,
                "group_by": pipeline.group_by,
                "limits": {"max_k": limits.max_k, "max_body": limits.max_body, "workers": limits.workers},
            }
        )

    async def search(request: Request) -> Any:
        data = await body(request)
        query, k, group = text_field(data, "query"), k_field(data), group_field(data)
        async with gate.enter():
            hits = await asyncio.to_thread(pipeline.retrieve, query, k, None, group_by=group)
        return JSONResponse({"hits": hit_rows(hits)})

    def _streaming(question: str, k: int | None, group: str | None) -> AsyncIterator[tuple[str, Any]]:
        """Pieces then the Answer, generated in a worker thread while holding a gate slot."""

        async def events() -> AsyncIterator[tuple[str, Any]]:
            async with gate.enter():
                async for piece in _ask_stream(pipeline, question, k, group):
                    yield ("answer", piece) if not isinstance(piece, str) else ("token", piece)

        return events()

    async def ask(request: Request) -> Any:
        data = await body(request)
        question, k, group = text_field(data, "question"), k_field(data), group_field(data)
        generator_or_error()
        if data.get("stream"):
            events = _streaming(question, k, group)
            first = await _first_event(events)  # a full queue answers 503 before the stream starts

            async def sse() -> AsyncIterator[bytes]:
                try:
                    async for event, value in _prepend(first, events):
                        payload = {"text": value} if event == "token" else answer_json(value)
                        yield _sse(event, payload)
                except RagloomError as exc:  # the status line is sent: report in the stream
                    yield _sse("error", {"type": type(exc).__name__, "message": str(exc)})

            return StreamingResponse(sse(), media_type="text/event-stream")
        async with gate.enter():
            answer = await asyncio.to_thread(_ask, pipeline, question, k, group)
        return JSONResponse(answer_json(answer))

    async def chat(request: Request) -> Any:
        data = await body(request)
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _Unprocessable("'messages' must be a non-empty list of {role, content} objects")
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            raise _Unprocessable("'messages' has no user message to answer")
        question = text_field({"content": _content_text(users[-1].get("content"))}, "content")
        k, group = k_field(data), group_field(data)
        generator_or_error()
        model = str(data.get("model") or "ragloom")
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if data.get("stream"):
            events = _streaming(question, k, group)
            first = await _first_event(events)

            async def sse() -> AsyncIterator[bytes]:
                def chunk(delta: dict[str, Any], finish: str | None = None, extra: Any = None) -> bytes:
                    body_ = {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }
                    if extra is not None:
                        body_["ragloom"] = extra
                    return f"data: {json.dumps(body_, ensure_ascii=False)}\n\n".encode()

                yield chunk({"role": "assistant", "content": ""})
                async for event, value in _prepend(first, events):
                    if event == "token":
                        yield chunk({"content": value})
                    else:
                        payload = answer_json(value)
                        tail = _sources_text(payload)
                        if payload["citations_inferred"]:  # the streamed text had no markers; show the cited one
                            tail = f"\n\nWith citations: {payload['answer']}{tail}"
                        yield chunk({"content": tail}, "stop", payload)
                yield b"data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream")
        async with gate.enter():
            answer = await asyncio.to_thread(_ask, pipeline, question, k, group)
        payload = answer_json(answer)
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": payload["answer"] + _sources_text(payload)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "ragloom": payload,
            }
        )

    routes: list[Any] = [
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/search", guarded(search), methods=["POST"]),
        Route("/v1/ask", guarded(ask), methods=["POST"]),
        Route("/v1/chat/completions", guarded(chat), methods=["POST"]),
    ]
    lifespan = None
    if mcp:
        mcp_app = _mcp_app(pipeline, host)
        routes.append(Mount("/", app=mcp_app))  # its route is /mcp

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            async with mcp_app.router.lifespan_context(mcp_app):
                yield

    app: Any = Starlette(routes=routes, lifespan=lifespan)
    if token:
        from ragloom.adapters.integrations.mcp_server import BearerTokenMiddleware

        app = BearerTokenMiddleware(app, token)
    return app


class _TooLarge(Exception):
    pass


class _Unprocessable(Exception):
    pass


def _ask(pipeline: Any, question: str, k: int | None, group: str | None) -> Any:
    return pipeline.ask(question, k, group_by=group)


async def _ask_stream(pipeline: Any, question: str, k: int | None, group: str | None) -> AsyncIterator[Any]:
    async for piece in pipeline.aask_stream(question, k, group_by=group):
        yield piece


async def _first_event(events: AsyncIterator[Any]) -> Any:
    """Start a stream far enough to surface a full queue or a bad request as a status code, not a broken stream."""
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


async def _prepend(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    if first is not None:
        yield first
    async for item in rest:
        yield item


def _sse(event: str, payload: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _content_text(content: Any) -> str:
    """OpenAI message content: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _sources_text(payload: dict[str, Any]) -> str:
    """The cited passages, appended to a chat answer so any OpenAI client shows where the answer comes from."""
    lines = []
    for c in payload["citations"]:
        page = f", page {c['page']}" if c["page"] else ""
        lines.append(f"[{c['marker']}] {c['doc_id']}{page} (chars {c['start']}-{c['end']})")
    return "\n\nSources:\n" + "\n".join(lines) if lines else ""


def _mcp_app(pipeline: Any, host: str) -> Any:
    """The MCP streamable HTTP app over the same pipeline (tools: search, and ask when a generator is loaded)."""
    from ragloom.adapters.integrations import mcp_server
    from ragloom.adapters.integrations.tools import RagloomTools

    tools = RagloomTools(pipeline, ask=pipeline.generator is not None)
    server = mcp_server.build_mcp_server(tools)
    return server.streamable_http_app(streamable_http_path="/mcp", host=host)
