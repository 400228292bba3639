"""Progress for long CLI runs: a bar on a terminal, a periodic one-line report on a non-terminal stderr.

A log file or CI console gets a line every ``RAGLOOM_PROGRESS_INTERVAL`` seconds (default 10) with the rate and
the time left, e.g. ``Indexing: 120/1732 docs (7%) · 6.1 docs/s · ETA 4m23s``, and one when a step that reported
finishes (a step shorter than the interval prints nothing).
``quiet`` silences both. Everything goes to stderr, so ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["LineProgress", "format_duration", "format_rate", "progress_reporter"]

ProgressFn = Callable[[int, int], None]


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_rate(count: float, seconds: float, unit: str) -> str:
    """``count`` per second, or per minute or hour when that reads better ("2.4 docs/min", never "0.0 docs/s")."""
    per_second = count / max(seconds, 1e-9)
    for factor, period in ((1, "s"), (60, "min"), (3600, "h")):
        if per_second * factor >= 1 or period == "h":
            return f"{per_second * factor:.1f} {unit}/{period}"
    raise AssertionError("unreachable")


class LineProgress:
    """Writes ``label: done/total unit (pct) · rate · ETA`` to ``stream`` at most every ``interval`` seconds."""

    def __init__(self, label: str, unit: str, stream: TextIO, interval: float) -> None:
        self.label, self.unit, self.stream, self.interval = label, unit, stream, interval
        self.started = time.monotonic()
        self.last_report = self.started
        self.done = self.total = 0
        self.reported = False

    def line(self, final: bool = False) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        shown = format_rate(self.done, elapsed, self.unit)
        if final:
            return f"{self.label}: {self.done} {self.unit} in {format_duration(elapsed)} ({shown})"
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = f" · ETA {format_duration((self.total - self.done) / rate)}" if rate > 0 and self.total else ""
        return f"{self.label}: {self.done}/{self.total or '?'} {self.unit}{pct} · {shown}{eta}"

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if now - self.last_report >= self.interval:
            self.last_report, self.reported = now, True
            print(self.line(), file=self.stream, flush=True)

    def finish(self) -> None:
        """The closing line, for a run long enough to have reported (a short one stays quiet)."""
        if self.done and self.reported:
            print(self.line(final=True), file=self.stream, flush=True)


def _interval() -> float:
    try:
        return float(os.environ.get("RAGLOOM_PROGRESS_INTERVAL", "10"))
    except ValueError:
        return 10.0


@contextmanager
def progress_reporter(label: str, *, unit: str = "docs", quiet: bool = False) -> Iterator[ProgressFn]:
    """Yields a ``progress(done, total)`` callback: a rich bar on a terminal stderr, periodic lines otherwise."""
    if quiet:
        yield lambda done, total: None
        return
    if not sys.stderr.isatty():
        reporter = LineProgress(label, unit, sys.stderr, _interval())
        yield reporter
        reporter.finish()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):  # rich's speed column counts bytes
        def render(self, task: Task) -> Text:
            return Text(format_rate(task.speed, 1.0, unit) if task.speed else "", style="progress.data.speed")

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
