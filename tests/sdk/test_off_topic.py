"""The off-topic citation check reads documents, not passages: the README demo's answer (a page of Bittner v.
United States that discusses the Bank Secrecy Act without naming it) is not flagged, another company's filing is."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.citations import assess, off_topic_terms
from ragloom.loaders import load_file
from ragloom.pipeline import Pipeline
from ragloom.types import Chunk, Document, Hit, Message

SAMPLE = Path(__file__).resolve().parents[2] / "recipes" / "sample_data" / "598us1r6_0813.pdf"
DEMO_QUESTION = "What is the maximum penalty for a nonwillful violation of the Bank Secrecy Act?"
DEMO_ANSWER = "The maximum penalty for a nonwillful violation of the Bank Secrecy Act is $10,000 [1]."


@pytest.fixture(scope="module")
def bittner() -> Document:
    return load_file(SAMPLE)


def passage(doc: Document, start: int, end: int) -> Hit:
    chunk = Chunk(
        id=f"{doc.id}#{start}-{end}", doc_id=doc.id, text=doc.text[start:end], start=start, end=end, source=doc.source
    )
    return Hit(chunk, 0.6, "cosine", "dense", 1)


def demo_hit(doc: Document) -> Hit:
    """The passage the demo cited: page 17, from "Everyone agrees he is subject to a single penalty of $10,000"."""
    start = doc.text.index("Everyone agrees he is subject to a single penalty of $10,000")
    return passage(doc, start, start + 830)


def test_the_demo_passage_does_not_name_the_act(bittner: Document) -> None:
    # the premise of the regression: judged on the passage alone, the demo answer looks off-topic
    hit = demo_hit(bittner)
    assert "bank" not in hit.chunk.text.lower() and "secrecy" not in hit.chunk.text.lower()
    assert off_topic_terms(DEMO_QUESTION, [hit]) == ("act", "bank", "secrecy")


def test_the_demo_answer_is_supported_when_the_whole_document_is_read(bittner: Document) -> None:
    hit = demo_hit(bittner)
    looked_up: list[Sequence[str]] = []

    def documents(ids: Sequence[str]) -> dict[str, str]:
        looked_up.append(ids)
        return {bittner.id: bittner.text} if bittner.id in ids else {}

    support = assess(DEMO_ANSWER, DEMO_QUESTION, [hit], documents=documents)
    assert support.verdict == "supported" and support.off_topic == (), support
    assert looked_up == [[bittner.id]]


def test_another_retrieved_page_of_the_same_document_counts(bittner: Document) -> None:
    hit = demo_hit(bittner)
    start = bittner.text.index("Bank Secrecy Act")
    other_page = passage(bittner, max(0, start - 200), start + 200)
    assert off_topic_terms(DEMO_QUESTION, [hit], context=[hit, other_page]) == ()


def test_the_initials_of_a_multi_word_name_count(bittner: Document) -> None:
    hit = demo_hit(bittner)
    start = bittner.text.index("BSA")
    bsa_only = passage(bittner, start, start + 3)
    assert off_topic_terms(DEMO_QUESTION, [hit, bsa_only]) == ()
    # two-letter initials are ordinary words ("us"): they never count
    assert off_topic_terms("What did the United States argue?", [passage(bittner, 0, 0)]) != ()


def test_another_company_filing_is_flagged_even_when_read_whole(bittner: Document) -> None:
    filing = Document(
        id="pfizer-10k",
        text="Pfizer Inc. 2021 Form 10-K. Total revenues were $1.11 billion in 2021. " * 20,
        source="filings/pfizer-2021-10k.pdf",
    )
    hit = passage(filing, 0, 72)
    support = assess(
        "Revenues were $1.11 billion in 2021 [1].",
        "What were Moderna's revenues in 2021?",
        [hit],
        documents=lambda ids: {filing.id: filing.text},
    )
    assert support.verdict == "unsupported" and support.off_topic == ("moderna",)
    # and an opinion cited for a question about another case is flagged too
    other_case = assess(DEMO_ANSWER, "What did the court hold in Loper Bright?", [demo_hit(bittner)],
                        documents=lambda ids: {bittner.id: bittner.text})  # fmt: skip
    assert other_case.off_topic == ("bright", "loper")


class FirstWordsGenerator:
    """Answers with passage 1's first words and cites it (a scripted reply: the validator is under test)."""

    name = "first-words"

    def _text(self, messages: Sequence[Message]) -> str:
        first = messages[-1].content.split("[1] (", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
        return " ".join(first.split()[:8]) + " [1]."

    def generate(self, messages: Sequence[Message]) -> str:
        return self._text(messages)

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        yield self._text(messages)


def test_pipeline_reads_its_document_store(tiny_bert_dir: Path, bittner: Document) -> None:
    pipeline = Pipeline(
        [DenseRetriever(TransformersDenseEncoder(tiny_bert_dir), chunk_size=48)],
        generator=FirstWordsGenerator(),
        k=2,
        candidates=4,
    )
    pipeline.ingest([bittner])
    on_topic = pipeline.ask(DEMO_QUESTION)
    assert on_topic.citations and on_topic.support.off_topic == (), on_topic.support
    off = pipeline.ask("What were Moderna's revenues in 2021?")
    assert off.citations and off.support.off_topic == ("moderna",) and off.verdict == "unsupported"
