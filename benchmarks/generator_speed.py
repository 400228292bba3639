"""Prefill and decode speed of local generators on the same grounded-QA prompts, alternating models per prompt.

Prefill: one forward pass over the templated prompt (tokens/s). Decode: ``n`` new tokens generated greedily after
the prompt (``min_new_tokens = max_new_tokens = n``), less the prefill time, per token. On a shared CPU the
absolute figures move with the load; compare models within one run (they alternate, so they see the same load).

    nice -n 5 python -m benchmarks generator_speed --models smollm2 qwen2.5-coder-0.5b qwen2.5-coder-1.5b
    python -m benchmarks generator_speed --models qwen2.5-coder-0.5b qwen2.5-coder-1.5b \
        --backends transformers llamacpp --prompts 2 --new-tokens 16

``--backends llamacpp`` runs the registry's GGUF quantised with llama.cpp (``ragloom[llamacpp]``) on the same
templated prompt (same tokens), timing prefill as one evaluation of the prompt and decode as the next tokens.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks generator_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
    parser.add_argument("--prompts", type=int, default=3, help="ClapNQ prompts (k=3 passages each)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backends", nargs="+", default=["transformers"], choices=["transformers", "llamacpp"])
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.clapnq_qa import load_questions
    from ragloom.adapters.generators.local import TransformersGenerator
    from ragloom.prompting import PromptBuilder
    from ragloom.tokens import default_token_counter
    from ragloom.types import Chunk, Hit

    questions, documents = load_questions(args.prompts, 0, seed=0)
    by_id = {d.id: d for d in documents}
    generators: dict[str, Any] = {}
    for name in args.models:
        for backend in args.backends:
            if backend == "llamacpp":
                from ragloom.adapters.generators.llamacpp import LlamaCppGenerator

                generators[f"{name} llamacpp"] = LlamaCppGenerator(
                    name, max_new_tokens=args.new_tokens, threads=args.threads
                )
            else:
                generators[f"{name} transformers"] = TransformersGenerator(name, max_new_tokens=args.new_tokens)
    prompts = []
    for question in questions:
        hits = [
            Hit(Chunk(id=f"{d}#0", doc_id=d, text=by_id[d].text, start=0, end=1, source=by_id[d].source), 1.0,
                "cosine", "dense", i + 1)
            for i, d in enumerate(question["gold_docs"][:3])
        ]  # fmt: skip
        prompts.append(PromptBuilder().build(question["input"], hits, default_token_counter(None)).messages)
    stats: dict[str, dict[str, list[float]]] = {n: {"prefill": [], "decode": [], "length": []} for n in generators}
    for gen in generators.values():  # warm-up
        gen.generate(prompts[0])
    for messages in prompts:
        for name, gen in generators.items():
            if name.endswith("llamacpp"):
                prefill, decode, length = _llamacpp_speed(gen, messages, args.new_tokens)
                stats[name]["prefill"].append(length / prefill)
                stats[name]["decode"].append(args.new_tokens / decode)
                stats[name]["length"].append(length)
                continue
            ids = gen._inputs(messages)
            with torch.inference_mode():
                started = time.perf_counter()
                gen.model(**ids, logits_to_keep=1)
                prefill = time.perf_counter() - started
                started = time.perf_counter()
                gen.model.generate(
                    **ids,
                    max_new_tokens=args.new_tokens,
                    min_new_tokens=args.new_tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=gen._pad_id,
                )
                total = time.perf_counter() - started
            length = int(ids["input_ids"].shape[1])
            stats[name]["prefill"].append(length / prefill)
            stats[name]["decode"].append(args.new_tokens / max(1e-9, total - prefill))
            stats[name]["length"].append(length)
    print(
        f"{len(prompts)} ClapNQ prompts, {args.new_tokens} new tokens, {args.threads} thread(s), "
        f"load average {os.getloadavg()[0]:.1f} (shared CPU: compare rows, not absolute values)"
    )
    print(f"{'model / backend':34s} {'dtype':9s} {'prompt tok':>10s} {'prefill tok/s':>14s} {'decode tok/s':>13s}")
    result: dict[str, Any] = {}
    for name, s in stats.items():
        row = {k: statistics.median(v) for k, v in s.items()}
        result[name] = row
        print(
            f"{name:34s} {str(generators[name].dtype)[:9]:9s} {row['length']:10.0f} {row['prefill']:14.1f} "
            f"{row['decode']:13.2f}"
        )


def _llamacpp_speed(gen: Any, messages: Any, new_tokens: int) -> tuple[float, float, int]:
    """(prefill seconds, decode seconds for ``new_tokens``, prompt length) with llama.cpp, greedy."""
    ids = gen._checked(messages)
    llm = gen.llm
    llm.reset()
    started = time.perf_counter()
    llm.eval(ids)
    prefill = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(new_tokens):
        token = llm.sample(top_k=1, temp=0.0)
        llm.eval([token])  # end-of-text ignored: timing, like min_new_tokens on the transformers side
    return prefill, time.perf_counter() - started, len(ids)


if __name__ == "__main__":
    main()
