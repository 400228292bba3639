"""The answerability check: the generator's own yes/no log-probabilities decide, before generating, whether the
passages answer the question (transformers and llama.cpp on the same tiny GGUF chat model)."""

from __future__ import annotations

import asyncio
import importlib.util
import math
from pathlib import Path

import pytest

from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
from ragloom.adapters.generators.extractive import ExtractiveGenerator
from ragloom.adapters.generators.local import TransformersGenerator
from ragloom.answerability import CHECK_QUESTION, AnswerabilityCheck, fit_threshold, yes_no_token_ids
from ragloom.errors import ConfigError, InvalidInputError
from ragloom.pipeline import Pipeline
from ragloom.prompting import PromptBuilder
from ragloom.tokens import default_token_counter
from ragloom.types import Answer, Chunk, Document, Hit, Message

QUESTION = "the cat?"
PROMPT = PromptBuilder(system_prompt="Answer.", instructions="Cite.", context_tokens=80)
HITS = [
    Hit(Chunk(f"d{i}#0-7", f"d{i}", text, 0, 7), 1.0, "cosine", "dense", i + 1)
    for i, text in enumerate(["the cat", "a hat"])
]

needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (pip install 'ragloom[llamacpp]' builds it from its sdist)",
)


@pytest.fixture(scope="module")
def hf(tiny_gguf) -> TransformersGenerator:  # type: ignore[no-untyped-def]
    return TransformersGenerator(gguf_file=tiny_gguf[0], max_new_tokens=6, dtype="float32")


@pytest.fixture(scope="module")
def retriever(tiny_bert_dir: Path) -> DenseRetriever:
    dense = DenseRetriever(TransformersDenseEncoder(tiny_bert_dir), chunk_size=24)
    dense.add([Document(id="cat", text="the cat sat", source="cat.txt"), Document(id="hat", text="a red hat")])
    return dense


def test_check_conversation_keeps_the_answer_prompt_up_to_the_passages(hf: TransformersGenerator) -> None:
    parts = PROMPT.build(QUESTION, HITS, default_token_counter(hf), hf)
    check = AnswerabilityCheck(hf)
    messages = check.messages(QUESTION, parts.messages, PROMPT.instructions)
    assert messages[:-1] == parts.messages[:-1]
    answer_turn, check_turn = parts.messages[-1].content, messages[-1].content
    passages = answer_turn.split("\n\nCite.")[0]
    assert passages.startswith("Context passages:\n\n[1]") and "the cat" in passages and "a hat" in passages
    assert check_turn == f"{passages}\n\nQuestion: {QUESTION}\n\n{CHECK_QUESTION}"  # the instructions left out
    with pytest.raises(InvalidInputError, match="user's turn"):
        check.messages(QUESTION, [Message("system", "x")])


def test_score_is_the_yes_share_of_the_models_first_token(hf: TransformersGenerator) -> None:
    yes, no = yes_no_token_ids(hf)
    assert yes and no and not set(yes) & set(no)
    parts = PROMPT.build(QUESTION, HITS, default_token_counter(hf), hf)
    check = AnswerabilityCheck(hf)
    row = hf.next_token_logprobs([check.messages(QUESTION, parts.messages, PROMPT.instructions)], yes + no)[0]
    p_yes = sum(math.exp(v) for v in row[: len(yes)])
    p_no = sum(math.exp(v) for v in row[len(yes) :])
    assert check.score(QUESTION, parts.messages, PROMPT.instructions) == pytest.approx(p_yes / (p_yes + p_no))


def test_decline_phrase_mode_scores_the_answer_prompt_itself(hf: TransformersGenerator) -> None:
    parts = PROMPT.build(QUESTION, HITS, default_token_counter(hf), hf)
    check = AnswerabilityCheck(hf, mode="decline-phrase", decline_phrase="the end")
    assert check.messages(QUESTION, parts.messages, PROMPT.instructions) == tuple(parts.messages)
    first = hf.tokenizer.encode("the end", add_special_tokens=False)[0]
    (row,) = hf.next_token_logprobs([parts.messages], [first])
    assert check.score(QUESTION, parts.messages) == pytest.approx(1.0 - math.exp(row[0]))
    with pytest.raises(ConfigError, match="mode"):
        AnswerabilityCheck(hf, mode="other")  # type: ignore[arg-type]


def test_pipeline_declines_without_generating_and_says_what_was_searched(
    hf: TransformersGenerator, retriever: DenseRetriever
) -> None:
    never = Pipeline([retriever], generator=hf, k=2, prompt=PROMPT, answerability=AnswerabilityCheck(hf, 1.0))
    answer = never.ask(QUESTION)
    assert answer.verdict == "declined" and answer.citations == ()
    assert answer.text.startswith("I could not find the answer") and "judged by the model" in answer.text
    assert answer.timings["generate_s"] == 0.0 and 0.0 <= answer.timings["answerable_p"] <= 1.0
    assert answer.support is not None and "declined before generation: P(the passages answer)" in answer.support.reason
    *pieces, last = list(never.ask_stream(QUESTION))
    assert isinstance(last, Answer) and last.text == answer.text and pieces == [answer.text]
    assert asyncio.run(never.aask(QUESTION)).text == answer.text

    always = Pipeline([retriever], generator=hf, k=2, prompt=PROMPT, answerability=AnswerabilityCheck(hf, 0.0))
    answered = always.ask(QUESTION)
    assert "judged by the model" not in answered.text and answered.timings["generate_s"] > 0
    assert answered.timings["answerable_p"] == answer.timings["answerable_p"]
    plain = Pipeline([retriever], generator=hf, k=2, prompt=PROMPT).ask(QUESTION)
    assert answered.text == plain.text, "a passed check leaves the answer as it was"


def test_check_needs_a_scoring_generator() -> None:
    with pytest.raises(ConfigError, match="log-probabilities"):
        AnswerabilityCheck(ExtractiveGenerator())


def test_check_threshold_must_be_a_probability(hf: TransformersGenerator) -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        AnswerabilityCheck(hf, 1.5)


def test_fit_threshold_keeps_false_declines_under_the_cap() -> None:
    answerable = [0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.3, 0.2, 0.1]
    unanswerable = [0.05, 0.15, 0.25, 0.35, 0.6]
    threshold = fit_threshold(answerable, unanswerable, max_false_decline=0.2)
    assert sum(s < threshold for s in answerable) <= 2
    assert threshold == 0.3 and sum(s < threshold for s in unanswerable) == 3
    assert fit_threshold(answerable, unanswerable, 0.0) == 0.1  # no answerable question may be declined
    with pytest.raises(InvalidInputError):
        fit_threshold([], unanswerable)


@needs_llama_cpp
def test_llamacpp_scores_like_transformers_and_reuses_the_prompt_cache(tiny_gguf, hf: TransformersGenerator) -> None:
    from ragloom.adapters.generators.llamacpp import LlamaCppGenerator

    llama = LlamaCppGenerator(tiny_gguf[0], max_new_tokens=6, threads=1)
    fresh = LlamaCppGenerator(tiny_gguf[0], max_new_tokens=6, threads=1)
    try:
        assert yes_no_token_ids(llama) == yes_no_token_ids(hf)
        parts = PROMPT.build(QUESTION, HITS, default_token_counter(llama), llama)
        check = AnswerabilityCheck(llama)
        ids = list(range(40, 60))
        conversation = check.messages(QUESTION, parts.messages, PROMPT.instructions)
        expected = hf.next_token_logprobs([conversation], ids)[0]
        cold = llama.next_token_logprobs([conversation], ids)[0]
        assert cold == pytest.approx(expected, abs=0.05)  # the same weights (bf16 conversion on the torch side)
        # the answer prompt shares the passages: scoring it reuses them, and gives what a fresh model gives
        warm = llama.next_token_logprobs([parts.messages], ids)[0]
        assert warm == pytest.approx(fresh.next_token_logprobs([parts.messages], ids)[0], abs=1e-4)
        assert llama.next_token_logprobs([conversation], ids)[0] == pytest.approx(cold, abs=1e-4)
        # a generation after a check is the generation alone
        assert llama.generate(parts.messages) == fresh.generate(parts.messages)
        llama.next_token_logprobs([conversation], ids)
        assert llama.generate(parts.messages) == fresh.generate(parts.messages)
        with pytest.raises(InvalidInputError):
            llama.next_token_logprobs([conversation], [10**9])
    finally:
        llama.close()
        fresh.close()
