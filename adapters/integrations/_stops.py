"""Stop sequences (which frameworks pass to chat models) applied to whole texts and to streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

from ragloom.stops import StopFilter, cut_at_stop

__all__ = ["acut_stream", "cut_at_stop", "cut_stream"]


def cut_stream(pieces: Iterator[str], stop: Sequence[str] | None) -> Iterator[str]:
    """Pass streamed pieces through until a stop sequence appears; the stop and what follows are dropped."""
    return StopFilter(stop or ()).filter(pieces)


def acut_stream(pieces: AsyncIterator[str], stop: Sequence[str] | None) -> AsyncIterator[str]:
    """Async twin of :func:`cut_stream`."""
    return StopFilter(stop or ()).afilter(pieces)
