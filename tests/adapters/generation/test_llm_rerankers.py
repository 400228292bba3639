"""LLM rerankers: pointwise yes/no logits on a tiny local model, text judgements and RankGPT-style listwise
ranking through the real HTTP generator talking to a loopback OpenAI-compatible server."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragloom.adapters.generators.local import TransformersGenerator
from ragloom.adapters.generators.openai_http import OpenAICompatibleGenerator
from ragloom.adapters.rerankers.llm import LLMListwiseReranker, LLMPointwiseReranker, parse_permutation, parse_yes_no
from ragloom.errors import ConfigError, InvalidInputError
from ragloom.protocols import Reranker
from ragloom.types import Chunk, Hit, Message

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from openai_fake import FakeOpenAIServer, Reply

QUERY = "what did the telescope observe ?"
TEXTS = [
    "bread rise in a warm kitchen",
    "the telescope observed a distant galaxy cluster",
    "glaciers carving valleys",
    "court held the statute did not apply",
    "volcanoes lava flows",
]


def hit(i: int, text: str) -> Hit:
    return Hit(Chunk(f"d{i}#0-{len(text)}", f"d{i}", text, 0, len(text)), 1.0 - i / 10, "cosine", "dense", i + 1)


HITS = [hit(i, t) for i, t in enumerate(TEXTS)]


@pytest.fixture
def http(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAICompatibleGenerator]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    gen = OpenAICompatibleGenerator("fake-model", base_url=server.base_url, read_timeout=5.0, max_retries=0)
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def local(tiny_llm_dir: Path) -> TransformersGenerator:
    return TransformersGenerator(tiny_llm_dir, max_new_tokens=12, dtype="float32")


def user_text(server: FakeOpenAIServer, i: int) -> str:
    return server.requests[i].body["messages"][-1]["content"]


@pytest.mark.parametrize(
    ("reply", "n", "order"),
    [
        ("[3] > [1] > [2]", 3, [2, 0, 1]),
        ("[2]>[3]>[1]", 3, [1, 2, 0]),
        ("Ranking: [ 2 ] > [1]", 3, [1, 0, 2]),  # missing ones follow in input order
        ("[3] > [3] > [9] > [1]", 3, [2, 0, 1]),  # repeats and out-of-range ids dropped
        ("3 > 1 > 2", 3, [2, 0, 1]),  # bare numbers when nothing is bracketed
        ("[2] is the most relevant, then 2023", 3, [1, 0, 2]),  # bracketed ids win over bare numbers
        ("I cannot rank these passages.", 3, None),
        ("[7] > [8]", 3, None),
        ("", 3, None),
    ],
)
def test_parse_permutation(reply: str, n: int, order: list[int] | None) -> None:
    assert parse_permutation(reply, n) == order


@pytest.mark.parametrize(
    ("reply", "verdict"), [("Yes.", True), ("no", False), (" YES, it does", True), ("Nope", None), ("", None)]
)
def test_parse_yes_no(reply: str, verdict: bool | None) -> None:
    assert parse_yes_no(reply) is verdict


def test_pointwise_logits_match_the_model(local: TransformersGenerator) -> None:
    import torch

    reranker = LLMPointwiseReranker(local, batch_size=2)
    assert isinstance(reranker, Reranker) and reranker.mode == "logits"
    out = reranker.rerank(QUERY, HITS, k=5)
    assert [h.rank for h in out] == [1, 2, 3, 4, 5]
    assert all(h.retriever == "llm-pointwise" and h.score_kind == "rerank" for h in out)
    assert [h.score for h in out] == sorted((h.score for h in out), reverse=True)
    yes = local.tokenizer.convert_tokens_to_ids("yes")
    no = local.tokenizer.convert_tokens_to_ids("no")
    for h in out:  # the score is log p(yes) - log p(no) for the first reply token, from a plain forward pass
        chat = [{"role": m.role, "content": m.content} for m in reranker._messages(QUERY, h.chunk.text)]
        encoded = local.tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.inference_mode():
            logprobs = torch.log_softmax(local.model(**encoded).logits[0, -1].float(), -1)
        assert h.score == pytest.approx(float(logprobs[yes] - logprobs[no]), abs=1e-4)


def test_pointwise_logits_window_long_passages(local: TransformersGenerator) -> None:
    long_text = " ".join(["the telescope observed a distant galaxy cluster"] * 20)
    reranker = LLMPointwiseReranker(local, max_passage_tokens=32, overlap=4)
    out = reranker.rerank(QUERY, [hit(0, long_text), HITS[1]], k=2)
    long_hit = next(h for h in out if h.chunk.doc_id == "d0")
    assert "windowed: judged as" in long_hit.explanation and long_hit.chunk.text == long_text


def test_pointwise_text_mode_over_http(http: OpenAICompatibleGenerator, server: FakeOpenAIServer) -> None:
    server.script(Reply(content="No."), Reply(content="Yes, it does."), Reply(content="Perhaps"))
    reranker = LLMPointwiseReranker(http)
    assert reranker.mode == "text"
    out = reranker.rerank(QUERY, HITS[:3], k=3)
    assert [h.chunk.doc_id for h in out] == ["d1", "d2", "d0"]
    assert [h.score for h in out] == [1.0, 0.5, 0.0]
    assert "unparsable judgement 'Perhaps'" in out[1].explanation
    assert TEXTS[1] in user_text(server, 1) and "yes or no" in user_text(server, 1)


def test_pointwise_text_mode_windows_and_concurrency(http: OpenAICompatibleGenerator, server: FakeOpenAIServer) -> None:
    long_text = " ".join(f"word{i}" for i in range(40))
    server.script(*[Reply(content="yes")] * 20)
    reranker = LLMPointwiseReranker(http, max_passage_tokens=16, overlap=4, concurrency=4)
    out = reranker.rerank(QUERY, [hit(0, long_text), *HITS[1:3]], k=3)
    windows = len(server.requests) - 2
    assert windows > 1 and all(h.score == 1.0 for h in out)
    assert f"judged as {windows} windows" in next(h for h in out if h.chunk.doc_id == "d0").explanation


def test_pointwise_refuses_logits_without_a_local_model(http: OpenAICompatibleGenerator) -> None:
    with pytest.raises(ConfigError, match="mode='text'"):
        LLMPointwiseReranker(http, mode="logits")
    with pytest.raises(ConfigError):
        LLMPointwiseReranker(http, max_passage_tokens=4)


def test_listwise_permutes_and_scores(http: OpenAICompatibleGenerator, server: FakeOpenAIServer) -> None:
    server.script(Reply(content="[3] > [1] > [2]"))
    reranker = LLMListwiseReranker(http)
    out = reranker.rerank(QUERY, HITS[:3], k=2)
    assert [h.chunk.doc_id for h in out] == ["d2", "d0"] and [h.rank for h in out] == [1, 2]
    assert [h.score for h in out] == [3.0, 2.0] and all(h.retriever == "llm-listwise" for h in out)
    prompt = user_text(server, 0)
    assert all(f"[{i + 1}] {TEXTS[i]}" in prompt for i in range(3)) and "[2] > [1]" in prompt


def test_listwise_sliding_window_bubbles_up(http: OpenAICompatibleGenerator, server: FakeOpenAIServer) -> None:
    reranker = LLMListwiseReranker(http, window=3, step=2)
    assert reranker.windows(5) == [(2, 5), (0, 3)]
    default = LLMListwiseReranker(http)  # RankGPT's 20/10, but the top of a 25-list is reached too
    assert default.windows(25) == [(5, 25), (0, 15)] and default.windows(30) == [(10, 30), (0, 20)]
    assert default.windows(1) == [] and default.windows(20) == [(0, 20)]
    server.script(Reply(content="[3] > [2] > [1]"), Reply(content="[3] > [1] > [2]"))
    out = reranker.rerank(QUERY, HITS, k=5)
    # window (2,5) sees d2 d3 d4 -> d4 d3 d2; window (0,3) sees d0 d1 d4 -> d4 d0 d1
    assert [h.chunk.doc_id for h in out] == ["d4", "d0", "d1", "d3", "d2"]
    assert f"[3] {TEXTS[4]}" in user_text(server, 1), "the second window saw the bubbled-up passage"
    assert len(server.requests) == 2


def test_listwise_unparsable_or_partial_replies(http: OpenAICompatibleGenerator, server: FakeOpenAIServer) -> None:
    server.script(Reply(content="Sorry, I can't help with that."))
    out = LLMListwiseReranker(http).rerank(QUERY, HITS[:3], k=3)
    assert [h.chunk.doc_id for h in out] == ["d0", "d1", "d2"]
    assert all("unparsable LLM reply, input order kept" in h.explanation for h in out)
    server.script(Reply(content="[2]"))
    out = LLMListwiseReranker(http).rerank(QUERY, HITS[:3], k=3)
    assert [h.chunk.doc_id for h in out] == ["d1", "d0", "d2"]
    assert not out[0].explanation and all("left out by the LLM" in h.explanation for h in out[1:])


def test_listwise_shows_long_passages_cut_and_says_so(
    http: OpenAICompatibleGenerator, server: FakeOpenAIServer
) -> None:
    long_text = " ".join(f"word{i}" for i in range(50))
    server.script(Reply(content="[1] > [2]"))
    out = LLMListwiseReranker(http, max_passage_words=10).rerank(QUERY, [hit(0, long_text), HITS[1]], k=2)
    assert "cut to its first 10 of 50 words" in out[0].explanation and out[0].chunk.text == long_text
    assert "word9 ..." in user_text(server, 0) and "word10" not in user_text(server, 0)


def test_listwise_with_a_local_model(local: TransformersGenerator) -> None:
    out = LLMListwiseReranker(local, window=3, step=2).rerank(QUERY, HITS, k=4)
    assert [h.rank for h in out] == [1, 2, 3, 4] and len({h.chunk.id for h in out}) == 4
    assert all(h.retriever == "llm-listwise" and math.isfinite(h.score) for h in out)


def test_listwise_config_and_input_errors(http: OpenAICompatibleGenerator) -> None:
    with pytest.raises(ConfigError):
        LLMListwiseReranker(http, window=4, step=5)
    with pytest.raises(InvalidInputError):
        LLMListwiseReranker(http).rerank(" ", HITS, k=1)
    assert LLMListwiseReranker(http).rerank(QUERY, HITS[:1], k=3)[0].rank == 1  # one hit: nothing to ask


def test_messages_are_chat_messages(http: OpenAICompatibleGenerator) -> None:
    messages = LLMListwiseReranker(http)._messages(QUERY, ["a", "b"])
    assert [m.role for m in messages] == ["system", "user"] and all(isinstance(m, Message) for m in messages)
