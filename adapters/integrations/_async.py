"""Blocking generators and iterators driven from a worker thread, so a framework's async path never blocks the
event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from ragloom.concurrency import iterate_in_thread
from ragloom.protocols import Generator
from ragloom.types import Message

__all__ = ["agenerate", "astream", "iterate_in_thread"]


async def agenerate(generator: Generator, messages: Sequence[Message]) -> str:
    """The generator's native ``agenerate`` when it has one, else ``generate`` in a worker thread."""
    native = getattr(generator, "agenerate", None)
    if callable(native):
        return str(await native(messages))
    return await asyncio.to_thread(generator.generate, messages)


async def astream(generator: Generator, messages: Sequence[Message]) -> AsyncIterator[str]:
    """The generator's native ``astream`` when it has one, else ``stream`` driven from a worker thread."""
    native = getattr(generator, "astream", None)
    source = native(messages) if callable(native) else iterate_in_thread(lambda: generator.stream(messages))
    async for piece in source:
        yield str(piece)
