"""ClapNQ: two more decline signals beside the decline-phrase check, measured on answers a clapnq_qa run stored.

The decline-phrase check (``ragloom.answerability``, mode ``decline-phrase``) is the label-free default for Qwen
2.5-Coder-1.5B. This benchmark measures what else could raise the unanswerable decline rate, on the ``ROWS.jsonl``
of ``python -m benchmarks clapnq_qa … --decline-score --json RUN.json`` (same index, same k, same prompt):

- ``self-verify``: after the answer, the model is asked "Is your answer correct according to the passages above?"
  and ``P(yes)`` is read from its first reply token (P(True), Kadavath et al. 2022). The conversation starts with
  the answer prompt and the answer, so llama.cpp's prompt cache evaluates only the new turn once the prompt is in.
- ``retrieval``: the retriever's top-1 score combined with the decline-phrase score by a logistic regression fitted
  **without labels** on the ``ragloom tune-check`` pairs (a question the model writes for a sampled chunk, over its
  own top k = answerable; over the top k of other documents = unanswerable), and its threshold set at <= 10%
  declines of those answerable pairs, like ``fit_check_threshold``.

Each prints, for the stored questions, unanswerable and answerable declines; the self-verify scores are also
printed sorted by kind so their overlap can be read. Labels are read only to score.

    python -m benchmarks clapnq_decline_signals self-verify ROWS.jsonl [ROWS2.jsonl] --index-dir IDX --out sv.jsonl
    python -m benchmarks clapnq_decline_signals retrieval ROWS.jsonl [ROWS2.jsonl] --index-dir IDX --sample 30 \\
        --seed 5 --out pairs.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

VERIFY_QUESTION = "Is your answer correct according to the passages above? Reply yes or no."


def load_rows(paths: list[Path], prompt: str) -> list[dict[str, Any]]:
    """One row per question (the first seen) for ``prompt``, from clapnq_qa's ROWS.jsonl files."""
    rows: dict[str, dict[str, Any]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else None
            if row and row.get("prompt") == prompt and row.get("decline_token_p") is not None:
                rows.setdefault(row["id"], row)
    return list(rows.values())


def _pipeline(index_dir: Path, model: str, threads: int, max_new_tokens: int) -> tuple[Any, Any]:
    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
    from ragloom.adapters.generators.llamacpp import LlamaCppGenerator
    from ragloom.pipeline import Pipeline
    from ragloom.qa_prompts import GUIDED_PROMPT

    retriever = DenseRetriever(TransformersDenseEncoder("minilm"), index_dir)
    generator = LlamaCppGenerator(model, max_new_tokens=max_new_tokens, threads=threads)
    return Pipeline([retriever], generator=generator, k=3, candidates=20, prompt=GUIDED_PROMPT), retriever


def _append(path: Path | None, record: dict[str, Any]) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def self_verify(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """P(yes) to :data:`VERIFY_QUESTION` after each answer the model wrote (its own declines stay declines)."""
    from ragloom.answerability import AnswerabilityCheck
    from ragloom.types import Message

    pipeline, _ = _pipeline(args.index_dir, args.generator, args.threads, 1)
    check = AnswerabilityCheck(pipeline.generator, question=VERIFY_QUESTION)  # yes/no on the conversation given
    scored = []
    for row in rows:
        started = time.perf_counter()
        hits = pipeline.retrieve(row["question"])
        if [h.chunk.doc_id for h in hits] != row["context"]:
            print(f"  {row['id']}: retrieved passages differ from the stored run's; skipped")
            continue
        messages = pipeline._prompt(row["question"], hits).messages
        conversation = (*messages, Message("assistant", row["answer"]), Message("user", VERIFY_QUESTION))
        verify_p = check.score_conversation(conversation)
        record = {**_key(row), "verify_p": verify_p, "s": time.perf_counter() - started}
        scored.append(record)
        _append(args.out, record)
        print(f"  {len(scored)}/{len(rows)} {record}", flush=True)
    for kind in (True, False):
        values = sorted(round(r["verify_p"], 3) for r in scored if r["answerable"] is kind and not r["declined"])
        print(f"{'answerable' if kind else 'unanswerable'} (not declined by the model), P(yes) sorted: {values}")
    _report(scored, lambda r: r["verify_p"] < 0.5, "self-verify at 0.5 (the model's own choice)")


def _key(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "answerable", "declined", "decline_token_p", "top_score")}


def _report(rows: list[dict[str, Any]], declines: Any, name: str) -> None:
    for kind, label in ((False, "unanswerable"), (True, "answerable")):
        subset = [r for r in rows if r["answerable"] is kind]
        n = sum(bool(r["declined"] or declines(r)) for r in subset)
        print(f"  {name}: {label} declined {n}/{len(subset)}")


def retrieval_combined(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """Fit decline-phrase score + top-1 retrieval score on tune-check pairs (no labels); apply to ``rows``."""
    import numpy as np

    from ragloom.answerability import AnswerabilityCheck, fit_threshold
    from ragloom.answerability_fit import _pair
    from ragloom.calibration import index_chunks
    from ragloom.pseudo_queries import LLMQueries
    from ragloom.tokens import default_token_counter

    pipeline, retriever = _pipeline(args.index_dir, args.generator, args.threads, 48)
    check = AnswerabilityCheck(pipeline.generator, mode="decline-phrase")
    counter = default_token_counter(pipeline.generator)
    writer = LLMQueries(pipeline.generator)
    pairs = []
    for chunk in random.Random(args.seed).sample(list(index_chunks([retriever])), args.sample):
        question = writer.generate([chunk], args.seed)[0]
        pair = _pair(question, chunk, pipeline.retrieve(question, k=20), 3) if question else None
        if pair is None:
            continue
        scores = [
            check.score(question, pipeline.prompt.build(question, h, counter, check.generator).messages) for h in pair
        ]
        record = {"question": question, "checks": scores, "tops": [pair[0][0].score, pair[1][0].score]}
        pairs.append(record)
        _append(args.out, record)
        print(f"  {len(pairs)} pairs {record}", flush=True)

    def features(check_score: float, top: float) -> list[float]:
        return [math.log(max(1.0 - check_score, 1e-6)), top]

    x = np.array([features(p["checks"][i], p["tops"][i]) for i in (0, 1) for p in pairs])
    y = np.array([i for i in (0, 1) for _ in pairs], dtype=float)  # 1 = the unanswerable pair
    mean, scale = x.mean(0), x.std(0)
    z = (x - mean) / scale
    w, b = np.zeros(2), 0.0
    for _ in range(5000):  # L2-regularised logistic regression by gradient descent (2 features, a few dozen pairs)
        g = 1.0 / (1.0 + np.exp(-(z @ w + b))) - y
        w -= 0.1 * (z.T @ g / len(y) + 0.1 * w / len(y))
        b -= 0.1 * float(g.mean())

    def decision(check_score: float, top: float) -> float:
        return float(((np.array(features(check_score, top)) - mean) / scale) @ w + b)

    answerable = [-decision(p["checks"][0], p["tops"][0]) for p in pairs]
    combined = -fit_threshold(answerable, [-decision(p["checks"][1], p["tops"][1]) for p in pairs], 0.1)
    alone = fit_threshold([p["checks"][0] for p in pairs], [p["checks"][1] for p in pairs], 0.1)
    print(
        f"{len(pairs)} pairs; weights (standardised) check {w[0]:.3f}, top score {w[1]:.3f}; threshold {combined:.3f}"
    )
    _report(rows, lambda r: 1.0 - r["decline_token_p"] < alone, f"decline-phrase alone, label-free {alone:.4f}")
    _report(rows, lambda r: decision(1.0 - r["decline_token_p"], r["top_score"]) > combined, "combined, label-free")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks clapnq_decline_signals", description=__doc__)
    parser.add_argument("signal", choices=["self-verify", "retrieval"])
    parser.add_argument("rows", type=Path, nargs="+", help="clapnq_qa ROWS.jsonl (run with --decline-score)")
    parser.add_argument("--index-dir", type=Path, required=True, help="the MiniLM index the rows were answered from")
    parser.add_argument(
        "--generator", default="qwen2.5-coder-1.5b", choices=["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    )
    parser.add_argument("--prompt", default="guided", help="which prompt's rows (the pipeline uses GUIDED_PROMPT)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sample", type=int, default=30, help="retrieval: chunks drawn for the label-free pairs")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="append each scored record here (JSON lines)")
    args = parser.parse_args(argv)
    if args.prompt != "guided":
        parser.error("only the guided prompt's rows can be rebuilt (the pipeline here uses GUIDED_PROMPT)")
    rows = load_rows(args.rows, args.prompt)
    print(f"{len(rows)} questions ({sum(r['answerable'] for r in rows)} answerable) from {len(args.rows)} file(s)")
    (self_verify if args.signal == "self-verify" else retrieval_combined)(args, rows)


if __name__ == "__main__":
    main()
