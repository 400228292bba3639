"""Local generator: stop sequences (whole and streamed), cancellation, next-token scoring, GGUF conversion cache."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ragloom.adapters.generators.local import StopFilter, TransformersGenerator, gguf_cache_dir
from ragloom.errors import ConfigError, InputTooLongError, ModelNotFoundError
from ragloom.hf import cpu_has_bf16
from ragloom.prompting import PromptBuilder
from ragloom.tokens import default_token_counter
from ragloom.types import Chunk, Hit, Message

CHAT = [Message("system", "Answer briefly."), Message("user", "What is the cat doing ?")]


@pytest.fixture(scope="module")
def plain(tiny_llm_dir: Path) -> TransformersGenerator:
    return TransformersGenerator(tiny_llm_dir, max_new_tokens=24, dtype="float32")


@pytest.mark.parametrize(
    ("pieces", "stops", "shown", "text"),
    [
        (["Hello ", "wor", "ld"], ["\n\nQuestion:"], ["Hello ", "wor", "ld"], "Hello world"),
        (["Answer [1].", "\n", "\nQues", "tion: next"], ["\n\nQuestion:"], ["Answer [1].", "", "", ""], "Answer [1]."),
        (["a\n", "\nb"], ["\n\nQuestion:"], ["a", "\n\nb"], "a\n\nb"),  # a held-back prefix is released
        (["ab", "cSTOP"], ["STOP", "bcS"], ["a", ""], "a"),  # the earliest stop wins
        (["the end\n"], ["\n\n"], ["the end"], "the end\n"),  # a prefix left at the end is flushed
    ],
)
def test_stop_filter_never_shows_a_stop_prefix(
    pieces: list[str], stops: list[str], shown: list[str], text: str
) -> None:
    stop = StopFilter(stops)
    assert [stop.feed(p) for p in pieces] == shown
    assert "".join(shown) + stop.flush() == text


def test_stop_sequences_cut_generate_and_stream(tiny_llm_dir: Path, plain: TransformersGenerator) -> None:
    full = plain.generate(CHAT)
    words = full.split()
    assert len(words) > 8, full
    stop = " ".join(words[4:6])  # a stop string spanning two tokens, i.e. two streamed pieces
    cut = full[: full.find(stop)].strip()
    stopping = TransformersGenerator(tiny_llm_dir, max_new_tokens=24, dtype="float32", stop=[stop])
    assert stopping.generate(CHAT) == cut
    pieces = list(stopping.stream(CHAT))
    assert "".join(pieces).strip() == cut
    assert not any(stop.split()[0] in p for p in pieces[-1:]), "a stop prefix leaked into the stream"


def test_abandoned_stream_stops_the_model(tiny_llm_dir: Path) -> None:
    gen = TransformersGenerator(tiny_llm_dir, max_new_tokens=400, dtype="float32")
    stream = gen.stream(CHAT)
    next(stream)
    started = time.perf_counter()
    stream.close()  # what a consumer that stops reading (or a cancelled async task) does
    assert time.perf_counter() - started < 2.0
    assert not [t for t in threading.enumerate() if t.name == "ragloom-generate"]
    assert gen.next_token_logprobs([CHAT], [0]), "the model is free for the next call"


def test_default_dtype_is_bf16_on_cpus_that_have_it(tiny_llm_dir: Path) -> None:
    gen = TransformersGenerator(tiny_llm_dir, max_new_tokens=4, device="cpu")
    assert gen.dtype == ("bfloat16" if cpu_has_bf16() else "float32")
    with pytest.raises(ConfigError, match="float16"):
        TransformersGenerator(tiny_llm_dir, dtype="float16", device="cpu")
    with pytest.raises(ConfigError, match="stop"):
        TransformersGenerator(tiny_llm_dir, stop=[""])


def test_next_token_logprobs_batched_equals_one_by_one(plain: TransformersGenerator) -> None:
    import torch

    chats = [CHAT, [Message("user", "yes or no ?")], [Message("user", "the telescope observed a distant galaxy")]]
    ids = plain.tokenizer.encode("yes no", add_special_tokens=False)
    batched = plain.next_token_logprobs(chats, ids, batch_size=3)
    for chat, row in zip(chats, batched):
        encoded = plain.tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in chat],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.inference_mode():
            logits = plain.model(**encoded).logits[0, -1].float()
        expected = torch.log_softmax(logits, -1)[ids].tolist()
        assert row == pytest.approx(expected, abs=1e-4)
    with pytest.raises(InputTooLongError):
        plain.next_token_logprobs([[Message("user", "cat " * 600)]], ids)


def test_prompt_packing_fits_the_generator_window(plain: TransformersGenerator) -> None:
    text = "the telescope observed a distant galaxy cluster bending light from faint background sources " * 4
    hits = [
        Hit(Chunk(f"d{i}#0-{len(text)}", f"d{i}", text, 0, len(text)), 1.0, "cosine", "dense", i + 1) for i in range(20)
    ]
    builder = PromptBuilder(context_tokens=100_000)
    parts = builder.build("what did the telescope observe ?", hits, default_token_counter(plain), plain)
    assert 0 < len(parts.context) < 20 and parts.dropped == 20 - len(parts.context)
    assert plain.prompt_tokens(parts.messages) + plain.max_new_tokens <= plain.context_window
    assert parts.budget < plain.context_window
    assert plain.generate(parts.messages) is not None  # no InputTooLongError
    for hit in parts.context:
        assert hit.chunk.text.strip() in parts.messages[1].content, "passages are whole or absent"


def test_gguf_is_converted_once_and_matches_its_weights(tiny_gguf, tmp_path: Path) -> None:
    import torch

    path, original = tiny_gguf
    gen = TransformersGenerator(gguf_file=path, max_new_tokens=6)
    converted = gguf_cache_dir(path)
    assert (converted / ".complete").exists() and (converted / "ragloom-gguf.json").exists()
    state = gen.model.state_dict()
    for key, tensor in original.items():
        assert torch.equal(state[key].to(torch.bfloat16).cpu(), tensor.to(torch.bfloat16)), key
    assert gen.tokenizer.chat_template and isinstance(gen.generate(CHAT), str)
    stamp = (converted / ".complete").stat().st_mtime_ns
    again = TransformersGenerator(path.parent, gguf_file=path.name, max_new_tokens=6)  # a name inside a folder
    assert (converted / ".complete").stat().st_mtime_ns == stamp, "the second load reused the conversion"
    assert again.generate(CHAT) == gen.generate(CHAT)
    with pytest.raises(ModelNotFoundError, match=r"missing\.gguf"):
        TransformersGenerator(gguf_file=tmp_path / "missing.gguf")


@pytest.mark.realmodel
def test_smollm2_stops_and_scores_yes_no(smollm2_dir: Path) -> None:
    gen = TransformersGenerator(smollm2_dir, max_new_tokens=16, stop=["\n"])
    text = gen.generate([Message("user", "List three colours, one per line.")])
    assert "\n" not in text and text
    ids = [gen.tokenizer.encode(w, add_special_tokens=False)[0] for w in ("yes", "no")]
    asked = "Is Paris the capital of France? Answer yes or no."
    (row,) = gen.next_token_logprobs([[Message("user", asked)]], ids)
    assert row[0] > row[1]
