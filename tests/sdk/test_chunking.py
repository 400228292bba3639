"""Chunking: exact spans, token limits, overlap, sentence boundaries, pages; hypothesis over random text."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragloom.chunking import OffsetTokenizer, TokenChunker, WordTokenizer, sentence_boundaries
from ragloom.errors import ConfigError
from ragloom.types import Document


def test_sentence_boundaries() -> None:
    text = "One sentence. Another one! A third?\n\nNew paragraph"
    ends = sentence_boundaries(text)
    assert text[: ends[0]] == "One sentence."
    assert len(ends) == 4


def test_spans_are_exact_and_bounded() -> None:
    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(60))
    chunker = TokenChunker(WordTokenizer(), chunk_size=40, overlap=8)
    doc = Document(id="d", text=text)
    chunks = chunker.chunk(doc)
    words = WordTokenizer()
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert len(words.token_spans(chunk.text)) <= 40
        assert chunk.id == f"d#{chunk.start}-{chunk.end}"
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert all(c.text.endswith(".") for c in chunks), "sentence-aware chunks end at sentence ends"
    assert all(a.start < b.start for a, b in zip(chunks, chunks[1:]))
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:])), "neighbours overlap"


def test_pages_are_never_crossed() -> None:
    doc = Document.from_pages("p", ["alpha beta gamma. " * 10, "delta epsilon. " * 10, "", "zeta."])
    chunks = TokenChunker(WordTokenizer(), chunk_size=16, overlap=2).chunk(doc)
    for chunk in chunks:
        page = doc.pages[chunk.page - 1]
        assert page.start <= chunk.start and chunk.end <= page.end
    assert {c.page for c in chunks} == {1, 2, 4}


def test_empty_and_whitespace() -> None:
    chunker = TokenChunker(WordTokenizer(), chunk_size=8, overlap=0)
    assert chunker.chunk(Document(id="e", text="")) == []
    assert chunker.chunk(Document(id="w", text="   \n\t ")) == []
    single = chunker.chunk(Document(id="s", text="tiny"))
    assert len(single) == 1 and single[0].text == "tiny"


def test_bad_config() -> None:
    with pytest.raises(ConfigError):
        TokenChunker(WordTokenizer(), chunk_size=0)
    with pytest.raises(ConfigError):
        TokenChunker(WordTokenizer(), chunk_size=4, overlap=4)


def test_subword_tokens_never_split_a_word(tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    counter = OffsetTokenizer(tokenizer)
    text = " ".join(["polymorphisms", "telescope", "unbelievably"] * 30)
    chunker = TokenChunker(counter, chunk_size=20, overlap=5, sentence_aware=False)
    for chunk in chunker.chunk(Document(id="x", text=text)):
        assert chunk.text.split()[0] in ("polymorphisms", "telescope", "unbelievably")
        assert len(tokenizer(chunk.text, add_special_tokens=False)["input_ids"]) <= 20


@settings(max_examples=80, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400),
    st.integers(2, 30),
    st.integers(0, 10),
    st.booleans(),
)
def test_chunking_properties(text: str, size: int, overlap: int, sentences: bool) -> None:
    overlap = min(overlap, size - 1)
    chunker = TokenChunker(WordTokenizer(), chunk_size=size, overlap=overlap, sentence_aware=sentences)
    chunks = chunker.chunk(Document(id="h", text=text or " "))
    tokens = WordTokenizer().token_spans(text)
    covered = set()
    for chunk in chunks:
        assert (text or " ")[chunk.start : chunk.end] == chunk.text
        inside = [t for t in tokens if chunk.start <= t[0] and t[1] <= chunk.end]
        assert 1 <= len(inside) <= size
        covered.update(inside)
    assert covered == set(tokens), "every token lands in some chunk"


@pytest.mark.parametrize(("capacity", "asked", "expected"), [(8190, None, 512), (254, None, 254), (8190, 1024, 1024)])
def test_default_chunk_size_is_capped_for_long_context_encoders(
    capacity: int, asked: int | None, expected: int
) -> None:
    """Without chunk_size a retriever chunks at the encoder's capacity, but never beyond 512 tokens."""
    from dataclasses import dataclass

    from ragloom.retrieval import DEFAULT_CHUNK_TOKENS, default_chunker

    @dataclass
    class Encoder:  # what default_chunker reads from an encoder: its tokenizer and how many tokens fit
        token_counter: WordTokenizer
        document_capacity: int

    chunker = default_chunker(Encoder(WordTokenizer(), capacity), asked, 32)
    assert chunker.chunk_size == expected and DEFAULT_CHUNK_TOKENS == 512
    with pytest.raises(ConfigError, match="capacity"):
        default_chunker(Encoder(WordTokenizer(), capacity), capacity + 1, 32)
