"""Citations: sentence segmentation on hard cases, attribution that never alters the text, the support verdict."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.segmentation import CASES
from ragloom.citations import (
    assess,
    attribute_sentences,
    check_citations,
    has_markers,
    is_decline,
    off_topic_terms,
    strip_inserted_markers,
)
from ragloom.sentences import sentence_spans, split_sentences
from ragloom.types import Answer, Chunk, Hit


def make_hit(i: int, text: str, source: str = "") -> Hit:
    chunk = Chunk(id=f"d{i}#0-1", doc_id=f"d{i}", text=text, start=0, end=1, source=source)
    return Hit(chunk, 1.0, "cosine", "dense", i + 1)


FILING = make_hit(
    0,
    "Total revenues were $1.11 billion in 2021, a 1.5% increase over 2020. Pfizer Inc. sells in the U.S. and "
    "Europe. See Note No. 3 for segment details.",
    source="filings/pfizer-2021-10k.pdf",
)
BREAD = make_hit(1, "Bread rises in a warm kitchen after kneading.")


@pytest.mark.parametrize("use_pysbd", [True, False], ids=["pysbd", "rules"])
@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:30] for c in CASES])
def test_hard_cases_split_exactly(text: str, expected: list[str], use_pysbd: bool) -> None:
    spans = sentence_spans(text, use_pysbd=use_pysbd)
    assert "".join(text[s:e] for s, e in spans) == text  # spans tile the text
    assert [text[s:e].strip() for s, e in spans] == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            "Revenue was $1.11 billion in 2021. It was a 1.5% increase over 2020.",
            "Revenue was $1.11 billion in 2021 [1]. It was a 1.5% increase over 2020 [1].",
        ),
        ("Pfizer Inc. sells in the U.S. and Europe.", "Pfizer Inc. sells in the U.S. and Europe [1]."),
        ("Pfizer Inc. sells in the U.S.", "Pfizer Inc. sells in the U.S. [1]"),
        ("Segment details are in Note No. 3.", "Segment details are in Note No. 3 [1]."),
        ("1. Revenues were $1.11 billion\n2. Bread rises after kneading", None),
        (
            "Bread rises after kneading. Bears sleep in winter.",
            "Bread rises after kneading [2]. Bears sleep in winter.",
        ),
    ],
)
def test_markers_go_at_sentence_ends_only(answer: str, expected: str | None) -> None:
    out = attribute_sentences(answer, [FILING, BREAD])
    assert strip_inserted_markers(out) == answer
    if expected is not None:
        assert out == expected
    else:
        assert out == "1. Revenues were $1.11 billion [1]\n2. Bread rises after kneading [2]"
    assert not re.search(r"\d \[\d\]\.\d", out)  # never "1 [1].11"


def test_attribution_prefers_the_passage_holding_the_figure() -> None:
    wordy = make_hit(2, "The maximum penalty for a nonwillful violation of the Act is set out in section 5321.")
    figure = make_hit(3, "He is subject to a single penalty of $10,000.")
    text = "The maximum penalty for a nonwillful violation of the Act is $10,000."
    assert attribute_sentences(text, [wordy, figure], min_overlap=0.2) == text[:-1] + " [2]."
    assert attribute_sentences("It is $99,999.", [wordy, figure], min_overlap=0.0) == "It is $99,999."


def test_existing_markers_are_left_alone() -> None:
    text = "Bread rises [1]."
    assert has_markers(text) and attribute_sentences(text, [BREAD]) == text
    assert attribute_sentences("anything", []) == "anything"


_ALPHABET = st.sampled_from(
    ["Revenue", "rose", "1.11", "$1.11", "billion", "1.5%", "Inc.", "U.S.", "No.", "3", ".", "!", "?", " ", " ",
     "\n", "e.g.", "https://x.io/a.b?c=1", "bread", "kneading", "warm", "kitchen", "(", ")", '"', "2021", "-", "*"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join), st.lists(_ALPHABET, min_size=1, max_size=30).map("".join))
def test_stripping_markers_gives_back_the_text_byte_for_byte(answer: str, passage: str) -> None:
    context = [make_hit(0, passage), FILING, BREAD]
    out = attribute_sentences(answer, context, min_overlap=0.3)
    assert strip_inserted_markers(out) == answer
    for match in re.finditer(r" \[\d\]", out):
        before, after = out[: match.start()], out[match.end() :]
        assert before and not before[-1].isspace()  # attached to the sentence's last character
        # at a sentence end: nothing follows, or whitespace, or one final punctuation mark and then whitespace
        assert re.match(r"(?:[.!?](?:\s|$)|\s|$)", after), (out, match.start())


@settings(max_examples=200, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join))
def test_spans_tile_any_text(text: str) -> None:
    assert "".join(split_sentences(text)) == text
    assert "".join(split_sentences(text, use_pysbd=False)) == text


def test_validator_keeps_abbreviations_in_one_claim() -> None:
    text = "Pfizer Inc. sells in the U.S. and Europe [1]."
    citations, dangling, unsupported = check_citations(text, [FILING])
    assert [c.marker for c in citations] == [1] and not dangling and not unsupported


def test_markers_after_the_full_stop_belong_to_the_claim_before() -> None:
    text = "Revenues were $1.11 billion in 2021 . [1] Bread rises after kneading . [2]"
    support = assess(text, "What were the revenues?", [FILING, BREAD])
    assert support.verdict == "supported" and support.claims == 2, support


def test_verdicts() -> None:
    context = [FILING, BREAD]
    question = "What were Pfizer's revenues in 2021?"
    assert assess("Revenues were $1.11 billion in 2021 [1].", question, context).verdict == "supported"
    partly = assess("Revenues were $1.11 billion in 2021 [1]. Profits doubled in Asia.", question, context)
    assert partly.verdict == "partly" and partly.uncited == ("Profits doubled in Asia.",)
    invented = assess("Revenues were $9.99 billion in 2021 [1].", question, context)
    assert invented.verdict == "unsupported" and invented.unsupported
    uncited = assess("Revenues were $1.11 billion in 2021.", question, context)
    assert uncited.verdict == "unsupported" and uncited.uncited
    declined = assess("I don't know based on the provided documents.", question, context)
    assert declined.verdict == "declined" and is_decline(declined.reason) is False
    assert assess("", question, context).verdict == "declined"


def test_citations_of_another_company_are_flagged() -> None:
    context = [FILING, BREAD]
    support = assess("Revenues were $1.11 billion in 2021 [1].", "What were Moderna's revenues in 2021?", context)
    assert support.verdict == "unsupported" and support.off_topic == ("moderna",)
    assert "moderna" in support.reason
    # the name found in the source path counts: the filing is Pfizer's even where its text does not say so
    quiet = make_hit(2, "Revenues were $1.11 billion in 2021.", source="pfizer-10k.pdf")
    assert off_topic_terms("What were Pfizer's revenues?", [quiet]) == ()
    assert off_topic_terms("what were the revenues?", [quiet]) == ()  # no names: nothing to check


def test_answer_verdict_defaults_to_unsupported_when_unchecked() -> None:
    assert Answer("x", (), ()).verdict == "unsupported"


def test_a_soft_line_wrap_inside_a_sentence_is_one_claim() -> None:
    deadline = make_hit(4, "A separate regulation sets the deadline: June 30 of each calendar year.")
    text = "The deadline for filing the report with the agency is \nJune 30 of each calendar year [1]."
    support = assess(text, "What is the deadline for filing the report?", [deadline])
    assert support.claims == 1 and support.verdict == "supported", support
