"""Blocking generators and iterators driven from a worker thread, so a framework's async path never blocks the
event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from ragloom.concurrency import iterate_in_thread
from ragloom.protocols import AsyncGenerator, Generator
from ragloom.types import Message

__all__ = ["agenerate", "astream", "iterate_in_thread"]


async def agenerate(generator: Generator, messages: Sequence[Message]) -> str:
    """The generator's native ``agenerate`` when it has one, else ``generate`` in a worker thread."""
    if isinstance(generator, AsyncGenerator):
        return str(await generator.agenerate(messages))
    return await asyncio.to_thread(generator.generate, messages)


async def astream(generator: Generator, messages: Sequence[Message]) -> AsyncIterator[str]:
    """The generator's native ``astream`` when it has one, else ``stream`` driven from a worker thread."""
    if isinstance(generator, AsyncGenerator):
        source = generator.astream(messages)
    else:
        source = iterate_in_thread(lambda: generator.stream(messages))
    async for piece in source:
        yield str(piece)
