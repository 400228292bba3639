"""Local chat generation with a transformers causal LM (chat template, greedy by default, streaming).

GGUF files are dequantised once into a cached safetensors folder (``gguf_file=``), so later loads take a second
instead of a minute. On a CPU the default dtype is bfloat16 when the processor has native bf16 support (about
3x faster than fp32 there) and float32 otherwise; fp16 is refused on CPUs.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ragloom._imports import require
from ragloom.errors import ConfigError, InputTooLongError
from ragloom.hf import DType, load_model
from ragloom.models import convert_gguf_causal_lm, models_home
from ragloom.types import Message

__all__ = ["TransformersGenerator", "cpu_has_bf16"]


def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _gguf_cache(gguf_path: Path) -> Path:
    """Convert a GGUF file once; the folder is keyed by the file's sha256."""
    digest = hashlib.sha256()
    with open(gguf_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    target = models_home() / "gguf" / digest.hexdigest()[:24]
    if not (target / ".complete").exists():
        staging = target.with_name(target.name + ".partial")
        convert_gguf_causal_lm(gguf_path, staging)
        (staging / ".complete").write_text(str(gguf_path) + "\n")
        os.replace(staging, target)
    return target


class TransformersGenerator:
    """A local chat model as a :class:`ragloom.protocols.Generator`."""

    def __init__(
        self,
        model: str | os.PathLike[str] = "smollm2",
        *,
        gguf_file: str | os.PathLike[str] | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        dtype: DType | None = None,
        device: str | None = None,
        allow_download: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        self._torch = require("torch", "local-llm", "local generation")
        self.transformers = require("transformers", "local-llm", "local generation")
        if gguf_file is not None:
            model = _gguf_cache(Path(gguf_file))
        if dtype is None:
            dtype = "bfloat16" if (device or "cpu") == "cpu" and cpu_has_bf16() else "auto"
        loaded = load_model(
            model,
            auto_class="AutoModelForCausalLM",
            dtype=dtype,
            device=device,
            allow_download=allow_download,
            trust_remote_code=trust_remote_code,
        )
        self.model, self.tokenizer, self.device = loaded.model, loaded.tokenizer, loaded.device
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"{loaded.name} has no chat template; use an instruction-tuned (chat) model")
        if temperature < 0:
            raise ConfigError("temperature must be >= 0")
        self.max_new_tokens, self.temperature, self.stop = max_new_tokens, temperature, tuple(stop)
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self._name = f"local:{loaded.name}"
        self._lock = threading.Lock()  # one generation at a time per model: tokenizers are not re-entrant

    @property
    def name(self) -> str:
        return self._name

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _inputs(self, messages: Sequence[Message]) -> Any:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        encoded = self.tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        length = int(encoded["input_ids"].shape[1])
        if length + self.max_new_tokens > self.context_window:
            raise InputTooLongError(
                f"The prompt has {length} tokens; with max_new_tokens={self.max_new_tokens} it exceeds the "
                f"model's context window of {self.context_window}. Retrieve fewer passages (k) or lower the "
                "prompt's context_tokens."
            )
        return {k: v.to(self.device) for k, v in encoded.items()}

    def _generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "pad_token_id": self.tokenizer.eos_token_id,
        }
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.stop:
            kwargs.update(stop_strings=list(self.stop), tokenizer=self.tokenizer)
        return kwargs

    def _cut_at_stop(self, text: str) -> str:
        for stop in self.stop:
            position = text.find(stop)
            if position >= 0:
                text = text[:position]
        return text

    def generate(self, messages: Sequence[Message]) -> str:
        with self._lock:
            inputs = self._inputs(messages)
            with self._torch.inference_mode():
                output = self.model.generate(**inputs, **self._generate_kwargs())
            new_tokens = output[0, inputs["input_ids"].shape[1] :]
            return self._cut_at_stop(self.tokenizer.decode(new_tokens, skip_special_tokens=True)).strip()

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        """Yield decoded text pieces as the model produces them."""
        streamer = self.transformers.TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
        )
        with self._lock:
            inputs = self._inputs(messages)
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    with self._torch.inference_mode():
                        self.model.generate(**inputs, **self._generate_kwargs(), streamer=streamer)
                except BaseException as exc:  # surfaced to the consumer below
                    errors.append(exc)
                    streamer.end()

            worker = threading.Thread(target=run, name="ragloom-generate", daemon=True)
            worker.start()
            produced = ""
            for piece in streamer:
                if not piece:
                    continue
                cut = self._cut_at_stop(produced + piece)
                if len(cut) < len(produced) + len(piece):
                    if len(cut) > len(produced):
                        yield cut[len(produced) :]
                    break
                produced += piece
                yield piece
            worker.join()
            if errors:
                raise errors[0]

    def close(self) -> None:
        self.model = None
