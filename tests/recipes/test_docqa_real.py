"""Real-model tier: the docqa recipe on the shipped sample PDFs with all-MiniLM-L6-v2 and SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.adapters.generators.local import TransformersGenerator
from ragloom.pipeline import Pipeline
from ragloom.recipes.docqa import SAMPLE_DATA

pytestmark = pytest.mark.realmodel


@pytest.fixture(scope="module")
def pipeline(minilm_dir: Path, smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    retriever = DenseRetriever(TransformersDenseEncoder(minilm_dir), tmp_path_factory.mktemp("idx"), store="chroma")
    pipe = Pipeline([retriever], generator=TransformersGenerator(smollm2_dir, max_new_tokens=60), k=4)
    report = pipe.ingest([SAMPLE_DATA], include=["*.pdf"])
    assert len(report.documents) == 4 and not report.failures
    return pipe


def test_retrieval_finds_the_right_opinion_and_page(pipeline: Pipeline) -> None:
    hits = pipeline.retrieve("maximum penalty for a nonwillful violation of the Bank Secrecy Act", k=4)
    assert hits[0].chunk.doc_id == "598us1r6_0813.pdf", "Bittner v. United States is the BSA case"
    doc_text = "$10,000"
    assert any(doc_text in h.chunk.text for h in hits)
    for hit in hits:
        assert hit.chunk.page is not None and hit.chunk.page >= 1


def test_answer_cites_pages(pipeline: Pipeline) -> None:
    answer = pipeline.ask("What is the maximum penalty for a nonwillful violation of the Bank Secrecy Act?")
    assert "10,000" in answer.text
    assert answer.citations, "the answer maps to its sources"
    cited = answer.citations[0]
    assert cited.doc_id == "598us1r6_0813.pdf" and cited.page is not None
    assert "10,000" in cited.hit.chunk.text
