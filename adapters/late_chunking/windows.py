"""Long late chunking: a document longer than the model's window is encoded in overlapping macro-windows, and each
chunk is pooled from the window that gives it the most context on both sides."""

from __future__ import annotations

from collections.abc import Sequence

from ragloom.errors import InputTooLongError

__all__ = ["Span", "assign_windows", "plan_windows"]

Span = tuple[int, int]


def plan_windows(chunk_spans: Sequence[Span], n_tokens: int, capacity: int, overlap: int) -> list[Span]:
    """Token ranges of the macro-windows of a document of ``n_tokens`` tokens.

    One window when the document fits ``capacity``. Otherwise a window ends where the first chunk that would lack
    ``overlap`` tokens of right context begins, less ``overlap`` tokens of left context, so every chunk lies whole
    in some window with that much context on both sides; the last window is aligned to the document end.
    """
    if n_tokens <= capacity:
        return [(0, n_tokens)]
    windows: list[Span] = []
    start = 0
    while True:
        end = min(start + capacity, n_tokens)
        windows.append((start, end))
        if end >= n_tokens:
            return windows
        pending = [s for s, e in chunk_spans if e > end - overlap]
        following = min(pending) - overlap if pending else end - overlap
        start = min(max(following, start + 1), n_tokens - capacity)


def _margin(span: Span, window: Span, n_tokens: int) -> float:
    """Context the window gives the chunk on its poorer side (a side at the document's edge lacks nothing)."""
    left = span[0] - window[0] if window[0] > 0 else float("inf")
    right = window[1] - span[1] if window[1] < n_tokens else float("inf")
    return min(left, right)


def assign_windows(chunk_spans: Sequence[Span], windows: Sequence[Span], n_tokens: int) -> list[int]:
    """For each chunk, the index of the window holding it whole with the most context (earliest on ties)."""
    chosen = []
    for span in chunk_spans:
        best, best_margin = -1, -1.0
        for index, window in enumerate(windows):
            if window[0] <= span[0] and span[1] <= window[1]:
                margin = _margin(span, window, n_tokens)
                if margin > best_margin:
                    best, best_margin = index, margin
        if best < 0:
            raise InputTooLongError(
                f"A chunk of {span[1] - span[0]} tokens fits no window of {windows[0][1] - windows[0][0]} "
                "tokens; lower chunk_size or raise window"
            )
        chosen.append(best)
    return chosen
