"""Pipeline.aask / aask_stream never block the event loop (local model: thread offload; HTTP: native async),
and the citation validator flags dangling and unsupported markers on the Answer."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ragloom.adapters.dense import DenseRetriever
from ragloom.adapters.generators.local import TransformersGenerator
from ragloom.adapters.generators.openai_http import OpenAICompatibleGenerator
from ragloom.adapters.rerankers.cross_encoder import CrossEncoderReranker
from ragloom.pipeline import Pipeline
from ragloom.prompting import PromptBuilder, check_citations, citation_markers
from ragloom.types import Answer, Chunk, Hit

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from openai_fake import FakeOpenAIServer, Reply, tokens_of

QUESTION = "what did the telescope observe ?"


async def watch(work: Callable[[], Awaitable[Any]]) -> tuple[Any, float, float]:
    """Run ``work`` beside a 5 ms ticker; return its result, its duration and the longest gap between ticks."""
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    finished = False

    async def ticker() -> None:
        last = loop.time()
        while not finished:
            await asyncio.sleep(0.005)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    result = await work()
    elapsed = time.perf_counter() - started
    finished = True
    await task
    return result, elapsed, max(gaps)


async def collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


async def test_local_generator_is_offloaded(
    retriever: DenseRetriever, tiny_llm_dir: Path, tiny_cross_encoder_dir: Path
) -> None:
    generator = TransformersGenerator(tiny_llm_dir, max_new_tokens=60, dtype="float32")
    pipeline = Pipeline(
        [retriever],
        reranker=CrossEncoderReranker(tiny_cross_encoder_dir),
        generator=generator,
        prompt=PromptBuilder(context_tokens=200),
        k=2,
        candidates=5,
    )
    answer, elapsed, gap = await watch(lambda: pipeline.aask(QUESTION))
    assert isinstance(answer, Answer) and answer.text == generator.generate(answer_prompt(pipeline))
    assert gap < elapsed / 2, f"the loop stalled {gap:.3f}s of {elapsed:.3f}s"
    items, elapsed, gap = await watch(lambda: collect(pipeline.aask_stream(QUESTION)))
    assert isinstance(items[-1], Answer) and all(isinstance(i, str) for i in items[:-1]) and len(items) > 3
    assert items[-1].text == "".join(items[:-1]).strip() or items[-1].citations_inferred
    assert gap < elapsed / 2, f"the loop stalled {gap:.3f}s of {elapsed:.3f}s while streaming"
    assert all(h.retriever == "cross-encoder" for h in items[-1].context)


def answer_prompt(pipeline: Pipeline) -> Any:
    return pipeline._prompt(QUESTION, pipeline.retrieve(QUESTION)).messages


async def test_http_generator_is_native_async(retriever: DenseRetriever, server: FakeOpenAIServer) -> None:
    text = "The telescope observed a distant galaxy cluster [1]."
    generator = OpenAICompatibleGenerator("fake", base_url=server.base_url, read_timeout=5.0, max_retries=0)
    pipeline = Pipeline([retriever], generator=generator, k=2, candidates=5)
    await pipeline.aask(QUESTION)  # warm-up: the first call on a loop builds the AsyncClient (SSL context)
    server.script(Reply(content=text, delay=0.4), Reply(content=text, gap=0.05))
    answer, elapsed, gap = await watch(lambda: pipeline.aask(QUESTION))
    assert answer.text == text and elapsed >= 0.4 and gap < elapsed / 2, f"stalled {gap:.3f}s of {elapsed:.3f}s"
    seen_threads: set[str] = set()

    async def stream() -> list[Any]:
        items = []
        async for item in pipeline.aask_stream(QUESTION):
            seen_threads.update(t.name for t in threading.enumerate())
            items.append(item)
        return items

    items, elapsed, gap = await watch(stream)
    assert items[:-1] == tokens_of(text) and items[-1].text == text
    assert elapsed >= 0.05 * len(tokens_of(text)) * 0.8 and gap < elapsed / 2
    assert "ragloom-stream" not in seen_threads, "the HTTP stream ran natively, not in a worker thread"
    assert server.requests[-1].body["stream"] is True
    await generator.aclose()


def test_answer_flags_dangling_and_unsupported_markers(retriever: DenseRetriever, server: FakeOpenAIServer) -> None:
    server.script(Reply(content="The telescope observed a distant galaxy cluster in 1999 [1]. Lava flows [7]."))
    generator = OpenAICompatibleGenerator("fake", base_url=server.base_url, read_timeout=5.0, max_retries=0)
    with Pipeline([retriever], generator=generator, k=2, candidates=5) as pipeline:
        answer = pipeline.ask(QUESTION)
    assert answer.dangling_markers == (7,)
    assert answer.unsupported_markers == (1,), "1999 appears in no passage"
    assert not answer.is_grounded and [c.marker for c in answer.citations] == [1]


def passage(i: int, text: str) -> Hit:
    return Hit(Chunk(f"d{i}#0-{len(text)}", f"d{i}", text, 0, len(text)), 1.0, "cosine", "dense", i + 1)


CONTEXT = [
    passage(0, "The statute imposes a maximum $10,000 penalty for nonwillful violations."),
    passage(1, "Inflation rose to 3.5 percent in 2019, the bank reported."),
    passage(2, "Glaciers carve valleys over thousands of years."),
]


@pytest.mark.parametrize(
    ("text", "dangling", "unsupported"),
    [
        ("The maximum penalty is $10,000 [1].", (), ()),
        ("The maximum penalty is $10,000. [1]", (), ()),  # a marker after the full stop cites that sentence
        ("The maximum penalty is 10000 dollars [1].", (), ()),  # thousands separators do not matter
        ("The maximum penalty is $20,000 [1].", (), (1,)),  # an invented figure
        ("Inflation rose to 3.5 percent [2].", (), ()),  # a decimal point does not end the sentence
        ("Inflation rose to 4.5 percent [2].", (), (2,)),
        ("Penalties apply to nonwillful violations [1, 2].", (), (2,)),  # grouped markers, checked one by one
        ("Glaciers carved the valleys [3][1].", (), (1,)),  # stemming: carved ~ carve; [1] is off-topic
        ("Glaciers carve valleys [3]. See also [0] and [4].", (0, 4), ()),
        ("The bank reported inflation [2]. The bank reported inflation [1].", (), (1,)),
        ("Glaciers carve valleys [3]. The moon is cheese [3].", (), ()),  # one supported use suffices
    ],
)
def test_citation_validator(text: str, dangling: tuple[int, ...], unsupported: tuple[int, ...]) -> None:
    citations, found_dangling, found_unsupported = check_citations(text, CONTEXT)
    assert found_dangling == dangling
    assert found_unsupported == unsupported
    assert {c.marker for c in citations} == {m for m in citation_markers(text) if 1 <= m <= len(CONTEXT)}
