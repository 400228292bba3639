"""Stop sequences: cut a whole reply at the first one, or a stream as it arrives without ever showing a stop's prefix.

One implementation for the local generators (transformers, llama.cpp) and the framework bridges, which pass
``stop`` to chat models.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence

__all__ = ["StopFilter", "cut_at_stop"]


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """``text`` up to the first occurrence of any of ``stop``."""
    for marker in stop or ():
        position = text.find(marker)
        if position >= 0:
            text = text[:position]
    return text


class StopFilter:
    """Cuts streamed text at the first stop sequence, holding back any tail that may still become one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Text that is safe to show now."""
        if self.stopped:
            return ""
        text = self.pending + piece
        cuts = [p for p in (text.find(s) for s in self.stops) if p >= 0]
        if cuts:
            self.stopped, self.pending = True, ""
            return text[: min(cuts)]
        hold = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:size]):
                    hold = size
                    break
        self.pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """What is left when the model ends without completing a stop sequence."""
        rest, self.pending = ("" if self.stopped else self.pending), ""
        return rest

    def filter(self, pieces: Iterable[str]) -> Iterator[str]:
        """The shown text of streamed ``pieces``, ending at the first stop sequence (the source is not read on)."""
        for piece in pieces:
            shown = self.feed(piece)
            if shown:
                yield shown
            if self.stopped:
                break
        rest = self.flush()
        if rest:
            yield rest

    async def afilter(self, pieces: AsyncIterator[str]) -> AsyncIterator[str]:
        """Async twin of :meth:`filter`."""
        async for piece in pieces:
            shown = self.feed(piece)
            if shown:
                yield shown
            if self.stopped:
                break
        rest = self.flush()
        if rest:
            yield rest
