"""The progress reporter's rate reads well at any speed: never "0.0 docs/s" for a slow, real ingest."""

from __future__ import annotations

import io

import pytest

from ragloom.recipes.progress import LineProgress, format_duration, format_rate


@pytest.mark.parametrize(
    ("count", "seconds", "expected"),
    [
        (120, 20, "6.0 docs/s"),
        (5, 126.3, "2.4 docs/min"),  # five PDFs through three retrievers on 2 cores
        (1, 7200, "0.5 docs/h"),
        (0, 10, "0.0 docs/h"),
    ],
)
def test_format_rate_picks_a_readable_period(count: int, seconds: float, expected: str) -> None:
    assert format_rate(count, seconds, "docs") == expected


def test_format_duration() -> None:
    assert [format_duration(s) for s in (4.4, 83, 3725)] == ["4s", "1m23s", "1h02m"]


def test_line_progress_reports_the_readable_rate() -> None:
    stream = io.StringIO()
    progress = LineProgress("Indexing", "docs", stream, interval=0)
    progress(1, 4)
    line = stream.getvalue()
    assert line.startswith("Indexing: 1/4 docs (25%) · ") and "docs/" in line
    assert "0.0 docs/s" not in line
