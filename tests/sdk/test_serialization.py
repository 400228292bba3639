"""One JSON form per value type: ``to_dict`` → JSON text → ``from_dict`` gives back an equal value, and a bad
field is a typed error naming it. The surfaces (CLI/server rows, agent tools, docstore) print exactly that form."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragloom.adapters.integrations._hits import answer_to_dict, hit_to_dict
from ragloom.docstore import document_from_json, document_to_json
from ragloom.errors import InvalidInputError
from ragloom.recipes.output import answer_json, hit_rows
from ragloom.types import Answer, Chunk, Citation, Document, Hit, Page, ScoreKind, Support, Verdict

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
IDS = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12).filter(str.strip)
SCALARS = st.one_of(TEXT, st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False), st.booleans())
METADATA = st.dictionaries(IDS, SCALARS, max_size=4)


def _json(data: Any) -> Any:
    """Through JSON text, as every surface sends it."""
    return json.loads(json.dumps(data, ensure_ascii=False))


@st.composite
def documents(draw: st.DrawFn) -> Document:
    pages = draw(st.lists(TEXT, max_size=4))
    if pages:
        return Document.from_pages(draw(IDS), pages, source=draw(TEXT), metadata=draw(METADATA))
    return Document(id=draw(IDS), text=draw(TEXT), source=draw(TEXT), metadata=draw(METADATA))


@st.composite
def hits(draw: st.DrawFn, chunk_id: str | None = None) -> Hit:
    start = draw(st.integers(0, 10_000))
    chunk = Chunk(
        id=chunk_id or draw(IDS),
        doc_id=draw(IDS),
        text=draw(TEXT),
        start=start,
        end=start + draw(st.integers(0, 500)),
        page=draw(st.none() | st.integers(1, 999)),
        source=draw(TEXT),
        metadata=draw(METADATA),
    )
    return Hit(
        chunk=chunk,
        score=draw(st.floats(allow_nan=False, allow_infinity=False)),
        score_kind=draw(st.sampled_from(get_args(ScoreKind))),
        retriever=draw(IDS),
        rank=draw(st.integers(1, 1000)),
        explanation=draw(TEXT),
    )


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    ids = draw(st.lists(IDS, unique=True, max_size=4))
    context = tuple(draw(hits(chunk_id=i)) for i in ids)
    cited = draw(st.lists(st.integers(1, len(context)), unique=True)) if context else []
    support = draw(
        st.none()
        | st.builds(
            Support,
            verdict=st.sampled_from(get_args(Verdict)),
            claims=st.integers(0, 9),
            supported_claims=st.integers(0, 9),
            uncited=st.tuples(TEXT),
            unsupported=st.tuples(),
            off_topic=st.tuples(IDS, IDS),
            reason=TEXT,
        )
    )
    return Answer(
        text=draw(TEXT),
        citations=tuple(Citation(n, context[n - 1]) for n in cited),
        context=context,
        timings=draw(st.dictionaries(IDS, st.floats(0, 1e6), max_size=3)),
        dangling_markers=tuple(draw(st.lists(st.integers(1, 50), max_size=3))),
        unsupported_markers=tuple(draw(st.lists(st.integers(1, 50), max_size=3))),
        citations_inferred=draw(st.booleans()),
        support=support,
    )


@settings(max_examples=60, deadline=None)
@given(documents())
def test_document_round_trips_exactly(doc: Document) -> None:
    assert Document.from_dict(_json(doc.to_dict())) == doc
    assert document_to_json(doc) == doc.to_dict() and document_from_json(_json(doc.to_dict())) == doc


@settings(max_examples=60, deadline=None)
@given(hits())
def test_hit_round_trips_exactly(hit: Hit) -> None:
    assert Hit.from_dict(_json(hit.to_dict())) == hit
    assert Chunk.from_dict(_json(hit.chunk.to_dict())) == hit.chunk
    assert hit_rows([hit]) == [hit.to_dict()] == [hit_to_dict(hit)], "CLI, server and tools: one shape"


@settings(max_examples=60, deadline=None)
@given(answers())
def test_answer_round_trips_exactly(answer: Answer) -> None:
    data = answer.to_dict()
    assert Answer.from_dict(_json(data)) == answer
    assert answer_json(answer) == data == answer_to_dict(answer), "CLI, server and tools: one shape"
    assert data["grounded"] == answer.is_grounded and data["verdict"] == answer.verdict
    for citation, row in zip(answer.citations, data["citations"]):
        assert Citation.from_dict(row, answer.context) == citation


def _hit() -> Hit:
    chunk = Chunk(id="d#0-5", doc_id="d", text="hello", start=0, end=5, page=2, metadata={"lang": "en"})
    return Hit(chunk=chunk, score=0.5, score_kind="cosine", retriever="dense", rank=1)


def test_the_shapes_keep_the_field_names_every_surface_printed() -> None:
    hit = _hit()
    assert list(hit.to_dict()) == [
        "rank",
        "score",
        "score_kind",
        "retriever",
        "chunk_id",
        "doc_id",
        "source",
        "page",
        "start",
        "end",
        "text",
        "metadata",
        "explanation",
    ]
    answer = Answer("hi [1]", (Citation(1, hit),), (hit,), {"total_s": 0.1})
    assert set(answer.to_dict()) == {
        "answer",
        "citations",
        "context",
        "timings",
        "dangling_markers",
        "unsupported_markers",
        "citations_inferred",
        "grounded",
        "verdict",
        "support",
    }
    assert answer.to_dict()["citations"] == [
        {"marker": 1, "chunk_id": "d#0-5", "doc_id": "d", "source": "", "page": 2, "start": 0, "end": 5}
    ]
    doc = Document(id="a", text="xy", pages=(Page(1, 0, 1), Page(2, 1, 2)))
    assert doc.to_dict() == {"id": "a", "text": "xy", "source": "", "pages": [[1, 0, 1], [2, 1, 2]], "metadata": {}}


@pytest.mark.parametrize(
    ("build", "data", "message"),
    [
        (Hit.from_dict, {**_hit().to_dict(), "rank": "1"}, "'rank' must be an integer, got str"),
        (Hit.from_dict, {**_hit().to_dict(), "rank": True}, "'rank' must be an integer, got bool"),
        (Hit.from_dict, {**_hit().to_dict(), "score": float("nan")}, "'score' must be a finite number"),
        (Hit.from_dict, {**_hit().to_dict(), "score_kind": "magic"}, "'score_kind' must be one of cosine"),
        (Hit.from_dict, {k: v for k, v in _hit().to_dict().items() if k != "chunk_id"}, "'chunk_id' must be a"),
        (Hit.from_dict, {**_hit().to_dict(), "metadata": {"tags": ["a"]}}, "values must be str, int, float or bool"),
        (Hit.from_dict, {**_hit().to_dict(), "rank": 0}, "Hit.rank starts at 1"),
        (Hit.from_dict, [1, 2], "Hit must be a JSON object"),
        (Document.from_dict, {"id": "a", "text": 3}, "'text' must be a string, got int"),
        (Document.from_dict, {"id": "a", "text": "xy", "pages": [[1, 0]]}, "'pages' must be three integers"),
        (Document.from_dict, {"id": "a", "text": "xy", "pages": [[1, 0, 9]]}, "runs past the text"),
        (Document.from_dict, {"text": "xy"}, "'id' must be a string, got nothing"),
        (Chunk.from_dict, {"id": "c", "doc_id": "d", "start": "0", "end": 1}, "'start' must be an integer"),
        (Support.from_dict, {"verdict": "maybe", "claims": 0, "supported_claims": 0}, "'verdict' must be one of"),
        (Answer.from_dict, {"answer": "x", "citations": "[1]"}, "'citations' must be a list, got str"),
        (
            Answer.from_dict,
            {"answer": "x", "citations": [{"marker": 1, "chunk_id": "gone"}], "context": []},
            "not among the answer's context passages",
        ),
        (Answer.from_dict, {"answer": "x", "timings": {"total_s": "fast"}}, "'timings.total_s' must be a finite"),
        (Answer.from_dict, {"answer": "x", "dangling_markers": [1.5]}, "'dangling_markers' must be a list of int"),
    ],
)
def test_bad_input_is_a_typed_error_naming_the_field(build: Any, data: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("(", r"\(")):
        build(data)
