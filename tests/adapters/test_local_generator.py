"""Local transformers generator: tiny random chat model for every path; SmolLM2 in the real-model tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragloom.adapters.generators.local import TransformersGenerator
from ragloom.errors import ConfigError, InputTooLongError
from ragloom.types import Message

MESSAGES = [Message("system", "Answer briefly."), Message("user", "What is the cat doing ?")]


@pytest.fixture(scope="module")
def generator(tiny_llm_dir: Path) -> TransformersGenerator:
    return TransformersGenerator(tiny_llm_dir, max_new_tokens=8, dtype="float32")


def test_generate_is_deterministic(generator: TransformersGenerator) -> None:
    first = generator.generate(MESSAGES)
    assert isinstance(first, str) and first == generator.generate(MESSAGES)
    assert generator.name.startswith("local:")


def test_stream_matches_generate(generator: TransformersGenerator) -> None:
    streamed = "".join(generator.stream(MESSAGES)).strip()
    assert streamed == generator.generate(MESSAGES)


def test_count_tokens_and_context_limit(tiny_llm_dir: Path) -> None:
    gen = TransformersGenerator(tiny_llm_dir, max_new_tokens=500, dtype="float32")
    assert gen.count_tokens("the cat sat") == 3
    with pytest.raises(InputTooLongError, match="context window"):
        gen.generate([Message("user", "cat " * 100)])


def test_fp16_on_cpu_refused(tiny_llm_dir: Path) -> None:
    with pytest.raises(ConfigError, match="float16"):
        TransformersGenerator(tiny_llm_dir, dtype="float16", device="cpu")


def test_model_without_chat_template_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises((ConfigError, ValueError)):
        TransformersGenerator(tiny_bert_dir)


@pytest.mark.realmodel
def test_smollm2_answers_from_context(smollm2_dir: Path) -> None:
    gen = TransformersGenerator(smollm2_dir, max_new_tokens=40)
    text = gen.generate(
        [
            Message("system", "Answer using only the context. Cite it as [1]."),
            Message(
                "user",
                "Context:\n[1] The penalty for a nonwillful violation is at most $10,000 per report.\n\n"
                "Question: What is the maximum penalty for a nonwillful violation?",
            ),
        ]
    )
    assert "10,000" in text or "10000" in text
