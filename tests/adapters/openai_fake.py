"""A loopback server that speaks the OpenAI chat-completions protocol, scriptable per request.

``FakeOpenAIServer`` listens on 127.0.0.1 (a free port) in a background thread, records every request, and
answers each with the next queued :class:`Reply` (a normal answer once the queue is empty). It speaks real
HTTP/1.1 with keep-alive and chunked server-sent events, so clients see what vLLM or OpenAI would send.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Kind = Literal["ok", "status", "garbage", "no_choices", "truncated", "eof", "drop", "json_stream", "bad_gzip"]


@dataclass
class Reply:
    """One scripted answer.

    kind: ``ok`` (a normal answer, streamed when asked), ``status`` (an error ``status`` with an OpenAI error
    body), ``garbage`` (a 200 whose body or first event is not JSON), ``no_choices`` (valid JSON, no choices),
    ``truncated`` (stream two tokens, then drop the connection mid-body), ``eof`` (stream two tokens, then end
    the body cleanly without ``[DONE]``), ``drop`` (close the connection without answering), ``json_stream``
    (answer a streaming request with one JSON completion, as some servers do), ``bad_gzip`` (a body that
    claims gzip encoding but is not).
    """

    kind: Kind = "ok"
    content: str = "Paris is the capital of France."
    status: int = 200
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the response starts (a slow server)
    gap: float = 0.0  # seconds between streamed chunks
    finish_reason: str = "stop"
    keepalives: bool = False  # interleave ": keep-alive" comments, a role-only chunk and a usage chunk
    echo_auth: bool = False  # put the request's Authorization header into the body (leak canary tests)
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI tool_calls of a non-streamed answer


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def tokens_of(text: str) -> list[str]:
    """How the server splits ``text`` into streamed tokens (words with their trailing spaces)."""
    return re.findall(r"\S+\s*", text)


def _completion(content: str, finish_reason: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 7, "completion_tokens": len(tokens_of(content)), "total_tokens": 0},
    }


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    body = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake", "choices": [choice]}
    return f"data: {json.dumps(body)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.fake.requests.append(Recorded(self.path, headers, body))
        reply = self.server.fake.next_reply()
        try:
            self._answer(reply, body, headers)
        except OSError:  # the client gave up (timeout): nothing to answer
            self.close_connection = True

    def _send(self, status: int, payload: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _answer(self, reply: Reply, body: dict[str, Any], headers: dict[str, str]) -> None:
        time.sleep(reply.delay)
        auth = headers.get("authorization", "") if reply.echo_auth else ""
        if self.path != "/v1/chat/completions":
            error = {"error": {"message": f"no route {self.path}", "type": "not_found", "code": 404}}
            self._send(404, json.dumps(error).encode(), "application/json")
            return
        if reply.kind == "drop":
            self.close_connection = True
            return
        if reply.kind == "bad_gzip":
            self._send(200, b"not gzip at all", "application/json", {"Content-Encoding": "gzip"})
            return
        if reply.kind == "status":
            error = {"error": {"message": f"{reply.message} {auth}".strip(), "type": "error", "code": None}}
            self._send(reply.status, json.dumps(error).encode(), "application/json", reply.headers)
            return
        if not body.get("stream") or reply.kind == "json_stream":
            if reply.kind == "garbage":
                self._send(200, f"<html>oops {auth} {'x' * 5000}</html>".encode(), "application/json")
            elif reply.kind == "no_choices":
                self._send(
                    200,
                    json.dumps({"id": "x", "object": "chat.completion", "note": auth}).encode(),
                    "application/json",
                )
            else:
                completion = _completion(reply.content, reply.finish_reason)
                if reply.tool_calls is not None:
                    completion["choices"][0]["message"].update(content=None, tool_calls=reply.tool_calls)
                    completion["choices"][0]["finish_reason"] = "tool_calls"
                completion = json.dumps(completion).encode()
                self._send(200, completion, "application/json")
            return
        self._stream(reply, auth)

    def _stream(self, reply: Reply, auth: str) -> None:
        eof = reply.kind == "eof"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection" if eof else "Transfer-Encoding", "close" if eof else "chunked")
        self.end_headers()
        write = self.wfile.write if eof else self._write_chunk
        if reply.kind == "garbage":
            write(f"data: {{not json {auth}\n\n".encode())
        tokens = tokens_of(reply.content)
        if reply.kind in ("truncated", "eof"):
            tokens = tokens[:2]
        if reply.keepalives:
            write(b": keep-alive\n\n")
            write(_chunk({"role": "assistant", "content": ""}))
        for token in tokens:
            time.sleep(reply.gap)
            write(_chunk({"content": token}))
            if reply.keepalives:
                write(b": keep-alive\n\nevent: ping\ndata: \n\n")
        if reply.kind in ("truncated", "eof"):  # no final chunk: the body ends before [DONE]
            self.close_connection = True
            return
        write(_chunk({}, reply.finish_reason))
        if reply.keepalives:
            write(b'data: {"id": "u", "choices": [], "usage": {"total_tokens": 9}}\n\n')
        write(b"data: [DONE]\n\n")
        self._write_chunk(b"")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:  # client hang-ups are expected
        pass


class FakeOpenAIServer:
    """Run with ``with FakeOpenAIServer() as server:``; script replies with :meth:`script`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def next_reply(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else Reply()

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
