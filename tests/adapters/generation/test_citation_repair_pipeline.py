"""Pipeline(repair_citations=True) end to end against an OpenAI-compatible endpoint (the fake server speaking the
real protocol): a marker on the wrong passage is moved, the words are the model's, the validator then agrees."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from ragloom.adapters.dense import DenseRetriever
from ragloom.adapters.generators.openai_http import OpenAICompatibleGenerator
from ragloom.pipeline import Pipeline

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from openai_fake import FakeOpenAIServer, Reply

QUESTION = "how long should the bread dough be kneaded in a warm kitchen ?"


@pytest.mark.parametrize("repair", [False, True])
def test_wrong_marker_is_moved_to_the_supporting_passage(
    retriever: DenseRetriever, server: FakeOpenAIServer, repair: bool
) -> None:
    generator = OpenAICompatibleGenerator("fake", base_url=server.base_url, read_timeout=5.0, max_retries=0)
    with Pipeline([retriever], generator=generator, k=3, candidates=5, repair_citations=repair) as pipeline:
        context = pipeline.retrieve(QUESTION, k=3)
        bread = next(i for i, hit in enumerate(context, start=1) if hit.chunk.doc_id == "bake")
        wrong = next(i for i in range(1, len(context) + 1) if i != bread)
        reply = f"Knead the dough for ten minutes, then let the bread rise in a warm kitchen [{wrong}]."
        server.script(Reply(content=reply))
        answer = pipeline.ask(QUESTION)
    if not repair:
        assert answer.text == reply and answer.unsupported_markers == (wrong,)
        return
    assert answer.text == reply.replace(f"[{wrong}]", f"[{bread}]")
    assert re.sub(r" \[\d\]", "", answer.text) == re.sub(r" \[\d\]", "", reply), "the model's words are kept"
    assert [c.hit.chunk.doc_id for c in answer.citations] == ["bake"]
    assert answer.is_grounded and answer.verdict == "supported"
