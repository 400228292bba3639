"""Stop sequences (which frameworks pass to chat models) applied to whole texts and to streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

__all__ = ["acut_stream", "cut_at_stop", "cut_stream"]


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut ``text`` at the first stop sequence (frameworks pass ``stop`` to chat models)."""
    for marker in stop or ():
        position = text.find(marker)
        if position >= 0:
            text = text[:position]
    return text


class _StopCutter:
    """Streams text up to the first stop sequence, holding back a tail that could be the start of one."""

    def __init__(self, stop: Sequence[str] | None) -> None:
        self.stops = [s for s in stop or () if s]
        self.buffer = ""
        self.done = False

    def feed(self, piece: str) -> str:
        if not self.stops:
            return piece
        self.buffer += piece
        cut = cut_at_stop(self.buffer, self.stops)
        if len(cut) < len(self.buffer):
            self.done, self.buffer = True, ""
            return cut
        hold = max(
            (
                n
                for s in self.stops
                for n in range(min(len(s) - 1, len(self.buffer)), 0, -1)
                if self.buffer.endswith(s[:n])
            ),
            default=0,
        )
        emit, self.buffer = self.buffer[: len(self.buffer) - hold], self.buffer[len(self.buffer) - hold :]
        return emit

    def flush(self) -> str:
        rest, self.buffer = self.buffer, ""
        return rest


def cut_stream(pieces: Iterator[str], stop: Sequence[str] | None) -> Iterator[str]:
    """Pass streamed pieces through until a stop sequence appears; the stop and what follows are dropped."""
    cutter = _StopCutter(stop)
    for piece in pieces:
        if text := cutter.feed(piece):
            yield text
        if cutter.done:
            return
    if text := cutter.flush():
        yield text


async def acut_stream(pieces: AsyncIterator[str], stop: Sequence[str] | None) -> AsyncIterator[str]:
    """Async twin of :func:`cut_stream`."""
    cutter = _StopCutter(stop)
    async for piece in pieces:
        if text := cutter.feed(piece):
            yield text
        if cutter.done:
            return
    if text := cutter.flush():
        yield text
