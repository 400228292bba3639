"""Blocking generators and iterators driven from a worker thread, so a framework's async path never blocks the
event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar

from ragloom.protocols import Generator
from ragloom.types import Message

__all__ = ["agenerate", "astream", "iterate_in_thread"]

T = TypeVar("T")


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Drive a blocking iterator in a worker thread, handing its items to the event loop as they come."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in make():
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
            loop.call_soon_threadsafe(queue.put_nowait, ("done", None))
        except BaseException as exc:  # handed to the consumer
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

    threading.Thread(target=produce, name="ragloom-iterate", daemon=True).start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()


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
