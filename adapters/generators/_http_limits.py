"""Bounds on what an OpenAI-compatible endpoint can make a client do: time, bytes, and what its errors echo.

A server is outside ragloom's control: a gzip bomb (10 MB on the wire, 10 GB decoded), an endless JSON body or
an endless server-sent-events line must end as an error, not as a client that holds gigabytes; ``total_timeout``
bounds a whole call, retries and their waits included; an API key echoed back (as such, lower-cased, or base64 in
a Basic header) never reaches an error message or a log.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Iterator
from typing import TypeVar

import httpx

__all__ = ["Deadline", "TotalTimeout", "bounded_response", "secret_pattern"]

_T = TypeVar("_T")
_DROPPED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class TotalTimeout(httpx.ReadTimeout):
    """The call ran past ``total_timeout``: bytes kept arriving (each restarting ``read_timeout``) but the answer
    never completed, e.g. a server dripping its body."""


class Deadline:
    """Time one call spends waiting on the server, every attempt and every wait between attempts included, from
    the first request to the last byte, checked at every piece received: what the caller does between the pieces
    of a stream does not count."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.spent, self._since = seconds, 0.0, time.monotonic()

    @property
    def remaining(self) -> float:
        return self.seconds - self.spent

    def start(self) -> None:
        """An attempt begins: time from now on is the server's."""
        self._since = time.monotonic()

    def wait(self, seconds: float) -> None:
        """Count a pause between attempts."""
        self.spent += seconds

    def _tick(self) -> None:
        now = time.monotonic()
        self.spent, self._since = self.spent + now - self._since, now
        if self.spent > self.seconds:
            raise TotalTimeout(f"no complete answer within total_timeout={self.seconds}s")

    def iterate(self, pieces: Iterable[_T]) -> Iterator[_T]:
        for piece in pieces:
            self._tick()
            yield piece
            self._since = time.monotonic()  # the caller's time with the piece is not the server's

    async def aiterate(self, pieces: AsyncIterable[_T]) -> AsyncGenerator[_T, None]:
        async for piece in pieces:
            self._tick()
            yield piece
            self._since = time.monotonic()

    def timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        """``base`` with no wait longer than the time left, so a silent server cannot outlast the deadline."""
        left = max(0.001, self.remaining)
        cap = lambda value: left if value is None else min(value, left)  # noqa: E731
        return httpx.Timeout(connect=cap(base.connect), read=cap(base.read), write=cap(base.write), pool=cap(base.pool))


class BodyTooLarge(Exception):
    """The decoded body passed ``max_response_bytes``."""


def _collect(pieces: Iterable[bytes], limit: int) -> bytes:
    parts, size = [], 0
    for piece in pieces:
        size += len(piece)
        if size > limit:
            raise BodyTooLarge(size)
        parts.append(piece)
    return b"".join(parts)


def bounded_response(streamed: httpx.Response, pieces: Iterable[bytes], limit: int) -> httpx.Response:
    """A streamed response's decoded bytes (``pieces`` of ``iter_bytes``) as a whole response, refusing more than
    ``limit`` bytes after decoding (:class:`BodyTooLarge`)."""
    body = _collect(pieces, limit)
    headers = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _DROPPED_HEADERS]
    return httpx.Response(streamed.status_code, headers=headers, content=body, request=streamed.request)


async def abounded_response(streamed: httpx.Response, pieces: AsyncIterable[bytes], limit: int) -> httpx.Response:
    """Async twin of :func:`bounded_response`."""
    parts, size = [], 0
    async for piece in pieces:
        size += len(piece)
        if size > limit:
            raise BodyTooLarge(size)
        parts.append(piece)
    return bounded_response(streamed, parts, limit)


def secret_pattern(secret: str | None) -> re.Pattern[str] | None:
    """A pattern matching ``secret`` in any letter case, and its base64 forms (standard and URL-safe, at any
    alignment: a Basic header, a token echoed inside JSON) so that no echo of the key is ever printed."""
    if not secret:
        return None
    forms = {re.escape(secret)}
    raw = secret.encode()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode().rstrip("=")
        # drop the characters that depend on the bytes before the key, and the last one (on the bytes after it)
        inner = encoded[(shift * 4 + 2) // 3 + (1 if shift else 0) : -1]
        if len(inner) >= 8:
            forms.add(re.escape(inner))
            forms.add(re.escape(inner.replace("+", "-").replace("/", "_")))
    return re.compile("|".join(sorted(forms, key=len, reverse=True)), re.IGNORECASE)
