"""The parser worker (``python -m ragloom.loaders._parser_worker``): see :mod:`ragloom.loaders._isolation`.

Reads length-prefixed requests (a kind byte, then the payload) on stdin and answers length-prefixed JSON on
stdout until stdin closes; a rendered page's pixels follow its JSON as one more length-prefixed frame. It caps
its own address space first, so a decompression bomb fails here.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _limit_memory() -> None:
    megabytes = int(os.environ.get("RAGLOOM_PARSER_WORKER_MEMORY_MB", "0") or 0)
    if megabytes <= 0:
        return
    try:
        import resource
    except ImportError:  # not on Windows
        return
    limit = megabytes << 20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _read_exactly(stream: Any, size: int) -> bytes | None:
    parts: list[bytes] = []
    while size:
        part = stream.read(size)
        if not part:
            return None
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _handle(kind: bytes, payload: bytes) -> dict[str, Any]:
    if kind == b"P":
        from ragloom.loaders.pdf import _extract

        return _extract(payload)
    if kind == b"R":
        from ragloom.loaders.pdf_render import handle_render_request

        return handle_render_request(payload)
    if kind == b"H":
        from ragloom.loaders.html import html_to_text

        text, title = html_to_text(payload.decode("utf-8", "surrogatepass"))
        return {"text": text, "title": title}
    return {"error": "other", "message": f"unknown request kind {kind!r}"}


def main() -> None:
    from ragloom.loaders._isolation import FRAME

    _limit_memory()
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = _read_exactly(source, FRAME.size)
        if header is None:
            return
        request = _read_exactly(source, FRAME.unpack(header)[0])
        if not request:
            return
        try:
            found = _handle(request[:1], request[1:])
        except MemoryError:
            found = {"error": "other", "message": "out of memory (the parsing memory limit was reached)"}
        except Exception as exc:  # reported to the parent as a load error
            found = {"error": "other", "message": f"{type(exc).__name__}: {exc}"}
        del request
        pixels = found.pop("pixels", None)
        if pixels is not None:
            found["pixels_size"] = len(pixels)  # the bytes follow as a frame of their own
        reply = json.dumps(found).encode("utf-8")
        sink.write(FRAME.pack(len(reply)) + reply)
        if pixels is not None:
            sink.write(FRAME.pack(len(pixels)))
            sink.write(pixels)
        sink.flush()


if __name__ == "__main__":
    main()
