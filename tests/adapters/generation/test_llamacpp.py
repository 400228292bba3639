"""The llama.cpp generator on a tiny random GGUF (written like llama.cpp writes one): the same chat template and
tokens as the transformers path, streaming with stop sequences, token accounting, errors naming the fix."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from ragloom.errors import InputTooLongError, MissingExtraError, ModelNotFoundError
from ragloom.gguf_files import gguf_file
from ragloom.types import Message

CHAT = (Message("system", "Answer briefly."), Message("user", "the cat the cat"))


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, tiny_gguf) -> None:
    from ragloom.adapters.generators.llamacpp import LlamaCppGenerator

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if llama-cpp-python were not installed
    with pytest.raises(MissingExtraError, match=r"ragloom\[llamacpp\]"):
        LlamaCppGenerator(tiny_gguf[0])


def test_gguf_file_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_gguf) -> None:
    monkeypatch.setenv("RAGLOOM_HOME", str(tmp_path))
    assert gguf_file(tiny_gguf[0]) == tiny_gguf[0]
    with pytest.raises(ModelNotFoundError, match="allow_download=True"):
        gguf_file("qwen2.5-coder-0.5b")  # registered, not fetched, and fetching not allowed
    with pytest.raises(ModelNotFoundError, match=r"qwen2\.5-coder-1\.5b"):
        gguf_file("no-such-model")  # the message lists the registry's GGUF models
    with pytest.raises(ModelNotFoundError):
        gguf_file("minilm")  # registered, but not a GGUF chat model


needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (pip install 'ragloom[llamacpp]' builds it from its sdist)",
)


@pytest.fixture(scope="module")
def generator(tiny_gguf):  # type: ignore[no-untyped-def]
    from ragloom.adapters.generators.llamacpp import LlamaCppGenerator

    gen = LlamaCppGenerator(tiny_gguf[0], max_new_tokens=12, threads=1)
    yield gen
    gen.close()


@needs_llama_cpp
def test_same_prompt_and_tokens_as_the_transformers_path(generator, tiny_gguf) -> None:
    from transformers import AutoTokenizer

    path = tiny_gguf[0]
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    chat = [{"role": m.role, "content": m.content} for m in CHAT]
    expected = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert generator.prompt(CHAT) == expected
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert generator._encode(CHAT) == list(ids)
    assert generator.prompt_tokens(CHAT) == len(ids)
    assert generator.count_tokens(" the cat") == len(tokenizer(" the cat", add_special_tokens=False)["input_ids"])
    assert generator.context_window == 256  # the model's trained context caps the 4096 asked for
    assert generator.name.startswith("llamacpp:")


@needs_llama_cpp
def test_stream_and_generate_agree(generator) -> None:
    pieces = list(generator.stream(CHAT))
    text = generator.generate(CHAT)
    assert pieces and "".join(pieces).strip() == text  # greedy: the same reply twice
    assert 0 < generator.count_tokens(text) <= 12


@needs_llama_cpp
def test_stop_applies_while_streaming(tiny_gguf) -> None:
    from ragloom.adapters.generators.llamacpp import LlamaCppGenerator

    free = LlamaCppGenerator(tiny_gguf[0], max_new_tokens=12, threads=1)
    full = "".join(free.stream(CHAT))
    free.close()
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert len(stop) == 2 and stop.strip(), full
    stopped = LlamaCppGenerator(tiny_gguf[0], max_new_tokens=12, threads=1, stop=stop)
    pieces = list(stopped.stream(CHAT))
    stopped.close()
    shown = "".join(pieces)
    assert shown == full[: full.find(stop)]  # cut before the first stop, never half-shown
    assert all(stop not in p for p in pieces)


@needs_llama_cpp
def test_prompt_too_long_names_the_fix(generator) -> None:
    long = (Message("user", "the cat " * 400),)
    with pytest.raises(InputTooLongError, match="context_window"):
        generator.generate(long)
