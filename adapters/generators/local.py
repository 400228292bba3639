"""Local chat generation with a transformers causal LM: chat template, greedy by default, stop sequences, streaming.

GGUF files (``gguf_file=``) are dequantised once into a cached bf16 safetensors folder keyed by the file's
sha256, so later loads take a second instead of a minute. On a CPU the default dtype is bfloat16 when the
processor computes bf16 natively (AVX512-BF16 or AMX) and float32 otherwise; fp16 is refused on CPUs. Measured
with SmolLM2-135M on an AVX512-BF16 CPU: prompt prefill 2x faster in bf16, end-to-end ClapNQ answers 1.2x (see
docs/generators.md); pass ``dtype="float32"`` for fp32's exact numerics.

Stop sequences end generation (checked on the decoded reply, so any tokenizer works) and are cut from the text;
a stream holds back any tail that could still become a stop sequence, so a stop string is never half-shown.
Abandoning a stream stops the model at its next token.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ragloom._imports import require
from ragloom.errors import ConfigError, InputTooLongError, InvalidInputError, ModelNotFoundError
from ragloom.gguf import convert_gguf_causal_lm
from ragloom.hf import DType, load_model, pick_device
from ragloom.models import models_home
from ragloom.stops import StopFilter, cut_at_stop
from ragloom.stores.files import file_sha256
from ragloom.tool_calls import ToolReply, check_tools, parse_tool_calls, tool_choice_instruction
from ragloom.types import Message

__all__ = ["StopFilter", "TransformersGenerator", "gguf_cache_dir"]


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """``file_sha256`` cached per (path, size, mtime): a GGUF file is hashed once per change."""
    return file_sha256(path)


def gguf_cache_dir(gguf_path: str | os.PathLike[str]) -> Path:
    """The converted transformers folder for a GGUF file, converting it the first time (keyed by sha256).

    Conversion runs under a file lock (two processes never convert the same file at once) into a staging
    folder that is renamed into place only when complete.
    """
    filelock = require("filelock", "local-llm", "GGUF conversion")
    source = Path(gguf_path).resolve()
    stat = source.stat()
    digest = _sha256(str(source), stat.st_size, stat.st_mtime_ns)
    root = models_home() / "gguf"
    target = root / digest[:24]
    if (target / ".complete").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(root / f"{digest[:24]}.lock")):
        if (target / ".complete").exists():  # another process converted it while we waited
            return target
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{digest[:24]}-"))
        try:
            convert_gguf_causal_lm(source, staging / "model")
            info = {"source": source.name, "sha256": digest, "dtype": "bfloat16"}
            (staging / "model" / "ragloom-gguf.json").write_text(json.dumps(info, indent=2) + "\n")
            (staging / "model" / ".complete").write_text(digest + "\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / "model", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _find_gguf(model: str | os.PathLike[str], gguf_file: str | os.PathLike[str]) -> Path:
    direct = Path(gguf_file).expanduser()
    if direct.is_file():
        return direct
    tried = [f"file {direct}"]
    folder = Path(str(model)).expanduser()
    if folder.is_dir():
        inside = folder / gguf_file
        if inside.is_file():
            return inside
        tried.append(f"file {inside}")
    raise ModelNotFoundError(str(gguf_file), tried, "Pass the path of a .gguf file (or a folder plus its name).")


class TransformersGenerator:
    """A local chat model as a :class:`ragloom.protocols.Generator` (also usable by the LLM rerankers).

    ``model`` is a folder, a registry alias (``"smollm2"``) or a hub id; ``gguf_file`` a ``.gguf`` path (or a
    name inside the ``model`` folder). ``dtype=None`` picks bf16 on CPUs with native bf16, else fp32 on CPU and
    bf16 on GPUs.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = "smollm2",
        *,
        gguf_file: str | os.PathLike[str] | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | str = (),
        dtype: DType | None = None,
        device: str | None = None,
        allow_download: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        self._torch = require("torch", "local-llm", "local generation")
        self.transformers = require("transformers", "local-llm", "local generation")
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        if temperature < 0:
            raise ConfigError("temperature must be >= 0")
        if max_new_tokens < 1:
            raise ConfigError("max_new_tokens must be >= 1")
        if not all(isinstance(s, str) and s for s in stop):
            raise ConfigError("stop must hold non-empty strings")
        if gguf_file is not None:
            model = gguf_cache_dir(_find_gguf(model, gguf_file))
        device = pick_device(device)
        if dtype is None:
            dtype = "auto"  # bf16 on GPUs and on CPUs with native bf16, else fp32
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
        self.max_new_tokens, self.temperature, self.stop = max_new_tokens, temperature, stop
        self.dtype = str(self.model.dtype).replace("torch.", "")
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self._pad_id = self.tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        self._name = f"local:{loaded.name}"
        self._lock = threading.Lock()  # one generation at a time per model: tokenizers are not re-entrant

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"TransformersGenerator({self.name!r}, dtype={self.dtype}, device={self.device!r})"

    # -- token accounting ---------------------------------------------------------------------------------------
    @property
    def reply_tokens(self) -> int:
        """The reply's cap (``max_new_tokens``): prompt builders leave this much of the window free."""
        return int(self.max_new_tokens)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with this model's tokenizer (no special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        """Exact prompt length of ``messages`` once the chat template is applied."""
        return len(self._encode(messages))

    def _encode(self, messages: Sequence[Message]) -> list[int]:
        if not messages or not all(isinstance(m, Message) for m in messages):
            raise InvalidInputError("messages must be a non-empty sequence of ragloom.Message")
        chat = [{"role": m.role, "content": m.content} for m in messages]
        encoded = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])

    def _check_length(self, length: int, new_tokens: int) -> None:
        if length + new_tokens > self.context_window:
            raise InputTooLongError(
                f"The prompt has {length} tokens; with {new_tokens} new tokens it exceeds the model's context "
                f"window of {self.context_window}. Retrieve fewer passages (k) or lower the prompt's context_tokens."
            )

    def _inputs(self, messages: Sequence[Message]) -> dict[str, Any]:
        ids = self._encode(messages)
        self._check_length(len(ids), self.max_new_tokens)
        input_ids = self._torch.tensor([ids], device=self.device)
        return {"input_ids": input_ids, "attention_mask": self._torch.ones_like(input_ids)}

    # -- generation ----------------------------------------------------------------------------------------------
    def _generate_kwargs(self, prompt_length: int, cancel: threading.Event | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "pad_token_id": self._pad_id}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.stop or cancel is not None:
            criterion = _StopCriterion(self.tokenizer, self.stop, prompt_length, cancel, self._torch)
            kwargs["stopping_criteria"] = self.transformers.StoppingCriteriaList([criterion])
        return kwargs

    def generate(self, messages: Sequence[Message]) -> str:
        """The whole reply (greedy unless ``temperature`` > 0), cut at the first stop sequence."""
        with self._lock:
            inputs = self._inputs(messages)
            with self._torch.inference_mode():
                output = self.model.generate(**inputs, **self._generate_kwargs(inputs["input_ids"].shape[1]))
            new_tokens = output[0, inputs["input_ids"].shape[1] :]
            return cut_at_stop(self.tokenizer.decode(new_tokens, skip_special_tokens=True), self.stop).strip()

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        """Yield decoded text pieces as the model produces them (the model runs in a worker thread)."""
        streamer = self.transformers.TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
        )
        with self._lock:
            inputs = self._inputs(messages)
            errors: list[BaseException] = []
            cancel = threading.Event()

            def run() -> None:
                try:
                    with self._torch.inference_mode():
                        kwargs = self._generate_kwargs(inputs["input_ids"].shape[1], cancel)
                        self.model.generate(**inputs, **kwargs, streamer=streamer)
                except BaseException as exc:  # surfaced to the consumer below
                    errors.append(exc)
                    streamer.end()

            worker = threading.Thread(target=run, name="ragloom-generate", daemon=True)
            worker.start()
            try:
                yield from StopFilter(self.stop).filter(streamer)
            finally:
                cancel.set()  # a consumer that stops early (or a stop sequence) ends the model at its next token
                worker.join()
            if errors:
                raise errors[0]

    # -- tool calling ------------------------------------------------------------------------------------------------
    def _tool_chat(
        self, chat: Sequence[Any], tools: Sequence[Any], tool_choice: Any
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        template = self.tokenizer.chat_template
        if "tools" not in (template if isinstance(template, str) else json.dumps(template)):
            raise ConfigError(
                f"{self.name}'s chat template has no tool format; use a model whose template has one "
                "(e.g. the registry's qwen2.5-coder-0.5b or qwen2.5-coder-1.5b)"
            )
        schemas = check_tools(tools)
        messages = []
        for original in chat:
            message = dict(original)
            if message.get("tool_calls"):  # templates want arguments as a mapping, OpenAI sends a JSON string
                message["tool_calls"] = [
                    {**c, "function": {**c["function"], "arguments": _json_arguments(c["function"]["arguments"])}}
                    for c in message["tool_calls"]
                ]
            messages.append(message)
        if instruction := tool_choice_instruction(tool_choice, schemas):
            if messages and messages[0].get("role") == "system":
                messages[0] = {**messages[0], "content": f"{messages[0].get('content') or ''}\n{instruction}"}
            else:
                messages.insert(0, {"role": "system", "content": instruction})
        return messages, schemas

    def _tool_ids(
        self, chat: Sequence[Any], tools: Sequence[Any], tool_choice: Any
    ) -> tuple[list[int], list[dict[str, Any]]]:
        messages, schemas = self._tool_chat(chat, tools, tool_choice)
        encoded = self.tokenizer.apply_chat_template(
            messages, tools=schemas, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"]), schemas

    def tool_prompt(self, chat: Sequence[Any], tools: Sequence[Any], tool_choice: Any = None) -> str:
        """The templated prompt :meth:`generate_with_tools` sends (tool schemas included), for inspection."""
        messages, schemas = self._tool_chat(chat, tools, tool_choice)
        return str(
            self.tokenizer.apply_chat_template(messages, tools=schemas, add_generation_prompt=True, tokenize=False)
        )

    def generate_with_tools(self, chat: Sequence[Any], tools: Sequence[Any], tool_choice: Any = None) -> ToolReply:
        """A reply that may call ``tools`` (OpenAI schemas), in the model's own chat-template tool format.

        ``chat`` holds OpenAI-style message dicts (tool results included); see :mod:`ragloom.tool_calls`.
        """
        with self._lock:
            ids, schemas = self._tool_ids(chat, tools, tool_choice)
            self._check_length(len(ids), self.max_new_tokens)
            input_ids = self._torch.tensor([ids], device=self.device)
            with self._torch.inference_mode():
                output = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=self._torch.ones_like(input_ids),
                    **self._generate_kwargs(len(ids)),
                )
            text = self.tokenizer.decode(output[0, len(ids) :], skip_special_tokens=False)
        for token in self.tokenizer.all_special_tokens:  # end-of-turn markers; tool-call tags are kept
            if token not in ("<tool_call>", "</tool_call>"):
                text = text.replace(token, "")
        return parse_tool_calls(cut_at_stop(text, self.stop), [t["function"]["name"] for t in schemas])

    # -- scoring (for rerankers) ------------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` with this model's tokenizer (no special tokens)."""
        return [int(t) for t in self.tokenizer.encode(text, add_special_tokens=False)] if text else []

    def next_token_logprobs(
        self, conversations: Sequence[Sequence[Message]], token_ids: Sequence[int], *, batch_size: int = 4
    ) -> list[list[float]]:
        """Log-probabilities of ``token_ids`` as the first token of the reply to each conversation.

        One forward pass per batch (left-padded, positions from the attention mask), no sampling.
        """
        torch = self._torch
        if not token_ids:
            raise InvalidInputError("token_ids is empty")
        vocab = int(self.model.get_output_embeddings().weight.shape[0])
        if not all(0 <= t < vocab for t in token_ids):
            raise InvalidInputError(f"token ids must be in 0..{vocab - 1}")
        with self._lock:
            encoded = [self._encode(messages) for messages in conversations]
            for ids in encoded:
                self._check_length(len(ids), 1)
            order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
            rows: list[list[float]] = [[] for _ in encoded]
            wanted = torch.tensor(list(token_ids), device=self.device)
            with torch.inference_mode():
                for start in range(0, len(order), max(1, batch_size)):
                    batch = order[start : start + max(1, batch_size)]
                    width = max(len(encoded[i]) for i in batch)
                    ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
                    mask = torch.zeros((len(batch), width), dtype=torch.long)
                    for row, i in enumerate(batch):
                        ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                        mask[row, width - len(encoded[i]) :] = 1
                    positions = (mask.cumsum(-1) - 1).clamp(min=0)
                    logits = self.model(
                        input_ids=ids.to(self.device),
                        attention_mask=mask.to(self.device),
                        position_ids=positions.to(self.device),
                        logits_to_keep=1,
                    ).logits[:, -1, :]
                    logprobs = torch.log_softmax(logits.float(), dim=-1)[:, wanted]
                    for row, i in enumerate(batch):
                        rows[i] = [float(v) for v in logprobs[row].tolist()]
        return rows

    def close(self) -> None:
        self.model = None


def _json_arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return {"_raw": arguments}
    return arguments


class _StopCriterion:
    """Ends generation once the reply contains a stop sequence, or once ``cancel`` is set.

    Decodes only the reply's last few tokens each step, so it works with any tokenizer (transformers'
    ``stop_strings`` needs a tokenizer whose vocabulary it can analyse, and fails on some).
    """

    def __init__(
        self, tokenizer: Any, stops: Sequence[str], prompt_length: int, cancel: threading.Event | None, torch: Any
    ) -> None:
        self.tokenizer, self.stops, self.prompt_length, self.cancel, self.torch = (
            tokenizer,
            tuple(stops),
            prompt_length,
            cancel,
            torch,
        )
        self.window = max((len(s) for s in stops), default=0) + 4  # a stop of n characters spans <= n tokens

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        done = self.cancel is not None and self.cancel.is_set()
        if not done and self.stops:
            tail = input_ids[0, self.prompt_length :][-self.window :]
            text = self.tokenizer.decode(tail, skip_special_tokens=True)
            done = any(stop in text for stop in self.stops)
        return self.torch.full((input_ids.shape[0],), done, dtype=self.torch.bool, device=input_ids.device)
