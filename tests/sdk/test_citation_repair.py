"""Citation repair: a marker whose passage does not support its sentence moves to the one that does; only marker
groups ever change (property test over random text and markers)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragloom.citations import check_citations, repair_citations
from ragloom.types import Chunk, Hit


def make_hit(i: int, text: str) -> Hit:
    return Hit(Chunk(id=f"d{i}#0-1", doc_id=f"d{i}", text=text, start=0, end=1), 1.0, "cosine", "dense", i + 1)


FILING = make_hit(0, "Total revenues were $1.11 billion in 2021, a 1.5% increase over 2020.")
BREAD = make_hit(1, "Bread rises in a warm kitchen after kneading.")
BAKED = make_hit(2, "Bread rises in an oven.")
CONTEXT = [FILING, BREAD, BAKED]
_GROUP = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_MARKER = re.compile(r"[ \t]?\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")  # a marker group with the space before it


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bread rises in a warm kitchen after kneading [1].", "Bread rises in a warm kitchen after kneading [2]."),
        ("Revenues were $1.11 billion in 2021 [1].", "Revenues were $1.11 billion in 2021 [1]."),  # right: kept
        # [3] shares "bread rises" (the validator accepts it) but [2] covers the whole claim: moved
        ("Bread rises in a warm kitchen after kneading [3].", "Bread rises in a warm kitchen after kneading [2]."),
        ("Bread rises in a warm kitchen after kneading. [1]", "Bread rises in a warm kitchen after kneading. [2]"),
        ("Bread rises in a warm kitchen after kneading [7].", "Bread rises in a warm kitchen after kneading [2]."),
        ("Bread rises in a warm kitchen after kneading [1][3].", "Bread rises in a warm kitchen after kneading [2]."),
        ("Bread rises in a warm kitchen after kneading [1] [3].", "Bread rises in a warm kitchen after kneading [2]."),
        ("Bread rises in a warm kitchen [1, 2].", "Bread rises in a warm kitchen [1, 2]."),  # [2] cited: unchanged
        # an uncited claim beside cited ones gets the passage that covers it
        (
            "Revenues were $1.11 billion in 2021 [1]. Bread rises in a warm kitchen after kneading.",
            "Revenues were $1.11 billion in 2021 [1]. Bread rises in a warm kitchen after kneading [2].",
        ),
        # a figure no passage holds: no passage supports it, nothing moves
        ("Bread rises in 45 minutes after kneading [1].", "Bread rises in 45 minutes after kneading [1]."),
        ("Glaciers carve valleys [1].", "Glaciers carve valleys [1]."),  # no passage supports it: left as written
        ("Bread rises after kneading.", "Bread rises after kneading."),  # no markers: attribution's job, not repair's
    ],
)
def test_repair(text: str, expected: str) -> None:
    assert repair_citations(text, CONTEXT) == expected


def test_repaired_markers_pass_the_validator() -> None:
    text = "Bread rises in a warm kitchen after kneading [1]."
    assert check_citations(text, CONTEXT)[2] == (1,)
    citations, dangling, unsupported = check_citations(repair_citations(text, CONTEXT), CONTEXT)
    assert [c.marker for c in citations] == [2] and not dangling and not unsupported


def test_margin_controls_moving_a_supported_marker() -> None:
    text = "Bread rises in a warm kitchen after kneading [3]."
    assert repair_citations(text, CONTEXT, margin=1.0) == text  # [3] passes the validator: kept at any margin
    assert repair_citations(text, []) == text


_ALPHABET = st.sampled_from(
    ["Revenues", "were", "$1.11", "billion", "2021", "1.5%", "Bread", "rises", "warm", "kitchen", "kneading", "oven",
     "baked", "U.S.", " ", " ", ".", "!", "\n", "[1]", "[2]", "[3]", "[9]", "[1, 2]", "[2][3]", "(", ")", "-"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=50).map("".join))
def test_only_marker_groups_change(text: str) -> None:
    out = repair_citations(text, CONTEXT)
    assert _MARKER.sub("", out) == _MARKER.sub("", text)
    numbers = [int(n) for group in _GROUP.findall(out) for n in group.split(",")]
    added = [n for n in numbers if n not in [int(m) for g in _GROUP.findall(text) for m in g.split(",")]]
    assert all(1 <= n <= len(CONTEXT) for n in added), "a repair only ever points at a passage"
