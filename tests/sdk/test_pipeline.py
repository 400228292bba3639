"""Pipeline end to end on tiny models: ingest (with a bad file), retrieve, fuse, ask, stream, async twins."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.errors import ConfigError, InvalidInputError
from ragloom.fusion import MinMaxFusion
from ragloom.pipeline import Pipeline
from ragloom.testing import CONTRACT_DOCUMENTS
from ragloom.types import Answer, Document, Message


class EchoGenerator:
    """A deterministic generator standing in for an LLM: cites passage 1 with its first words."""

    name = "echo"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[Sequence[Message]] = []

    def _text(self, messages: Sequence[Message]) -> str:
        self.seen.append(messages)
        user = messages[-1].content
        first = user.split("[1] (", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
        return " ".join(first.split()[:8]) + " [1]."

    def generate(self, messages: Sequence[Message]) -> str:
        return self._text(messages)

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        import time

        for word in self._text(messages).split(" "):
            time.sleep(self.delay)
            yield word + " "


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> TransformersDenseEncoder:
    return TransformersDenseEncoder(tiny_bert_dir)


def make_pipeline(encoder, **kw) -> Pipeline:  # type: ignore[no-untyped-def]
    return Pipeline([DenseRetriever(encoder, chunk_size=24)], generator=EchoGenerator(), k=3, candidates=10, **kw)


def test_ingest_folder_skips_bad_file_and_goes_on(tmp_path: Path, encoder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("The telescope observed a distant galaxy cluster.")
    (folder / "notes.md").write_text("# Bread\n\nKnead the dough for ten minutes.")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (folder / "image.png").write_bytes(b"\x89PNG")
    pipeline = make_pipeline(encoder)
    report = pipeline.ingest([folder])
    assert sorted(report.documents) == ["good.txt", "notes.md"]
    assert [Path(f.path).name for f in report.failures] == ["broken.pdf"]
    assert not report.ok and report.chunks["dense"] >= 2
    assert pipeline.retrieve("distant galaxy cluster", k=1)[0].chunk.doc_id == "good.txt"


def test_ask_cites_and_validates(encoder) -> None:
    pipeline = make_pipeline(encoder)
    pipeline.ingest(list(CONTRACT_DOCUMENTS))
    answer = pipeline.ask(CONTRACT_DOCUMENTS[2].text)
    assert isinstance(answer, Answer)
    assert answer.citations and answer.citations[0].marker == 1
    assert answer.citations[0].hit == answer.context[0]
    assert answer.is_grounded, (answer.text, answer.unsupported_markers)
    assert set(answer.timings) == {"retrieve_s", "generate_s", "total_s"}


def test_ask_stream_yields_pieces_then_answer(encoder) -> None:
    pipeline = make_pipeline(encoder)
    pipeline.ingest(list(CONTRACT_DOCUMENTS))
    items = list(pipeline.ask_stream("galaxy cluster lensing"))
    assert all(isinstance(i, str) for i in items[:-1]) and isinstance(items[-1], Answer)
    assert items[-1].text == "".join(items[:-1]).strip()


def test_two_retrievers_fuse(encoder, tiny_bert_other_dir: Path) -> None:
    other = TransformersDenseEncoder(tiny_bert_other_dir)
    pipeline = Pipeline(
        [DenseRetriever(encoder, name="a", chunk_size=24), DenseRetriever(other, name="b", chunk_size=24)],
        k=3,
        candidates=10,
    )
    assert isinstance(pipeline.fuser, MinMaxFusion)
    pipeline.ingest(list(CONTRACT_DOCUMENTS))
    hits = pipeline.retrieve(CONTRACT_DOCUMENTS[0].text)
    assert len(hits) == 3 and all(h.retriever == "fusion" for h in hits)
    assert hits[0].chunk.doc_id == "astro"


def test_failed_retriever_rolls_back_the_others(encoder) -> None:
    class Broken:
        name = "broken"

        def add(self, documents, progress=None):  # type: ignore[no-untyped-def]
            raise RuntimeError("disk on fire")

        def delete(self, doc_ids):  # type: ignore[no-untyped-def]
            return 0

    good = DenseRetriever(encoder, chunk_size=24)
    pipeline = Pipeline([good, Broken()])  # type: ignore[list-item]
    with pytest.raises(RuntimeError, match="disk on fire"):
        pipeline.ingest([Document(id="x", text="galaxy lensing")])
    assert len(good) == 0, "no document may stay visible in one index and missing from another"


def test_config_errors(encoder) -> None:
    with pytest.raises(ConfigError):
        Pipeline([])
    with pytest.raises(ConfigError, match="unique"):
        Pipeline([DenseRetriever(encoder), DenseRetriever(encoder)])
    pipeline = Pipeline([DenseRetriever(encoder)])
    with pytest.raises(ConfigError, match="no generator"):
        pipeline.ask("anything")
    with pytest.raises(InvalidInputError):
        pipeline.retrieve("")


async def test_async_twins_do_not_block_the_loop(encoder) -> None:
    pipeline = Pipeline([DenseRetriever(encoder, chunk_size=24)], generator=EchoGenerator(delay=0.02), k=3)
    pipeline.ingest(list(CONTRACT_DOCUMENTS))
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    hits = await pipeline.aretrieve("volcanoes lava")
    assert hits == pipeline.retrieve("volcanoes lava")
    answer = await pipeline.aask("volcanoes lava")
    items = [item async for item in pipeline.aask_stream("volcanoes lava")]
    done.set()
    await task
    assert isinstance(answer, Answer) and isinstance(items[-1], Answer)
    assert ticks > 5, "the event loop kept running while models and the stream worked"
