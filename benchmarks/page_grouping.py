"""Page-aware results on the bundled court opinions: per chunk vs one hit per page, single and fused retrievers.

    RAGLOOM_SHARED_DATA=/work/shared/data python -m benchmarks page_grouping

Indexes ``sample_pdfs/`` (4 Supreme Court opinions, 106 pages) with MiniLM (dense) and BM25 chunked with MiniLM's
tokenizer, and asks the 24 questions below. Each question was written by hand from one passage read on one page
(paraphrased, not copied), and its gold pages are that page plus any other page found (by reading) to state the
same fact. Reported per system: page-hit@10 (a gold page among the first 10 results), page MRR@10, and the mean
number of the 10 slots that repeat a page already shown.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

from benchmarks._common import SHARED_DATA, offline_model

R3, R4, R5, R6 = "598us1r3_j4ek.pdf", "598us1r4_1a7d.pdf", "598us1r5_1b72.pdf", "598us1r6_0813.pdf"

QUESTIONS: list[tuple[str, str, tuple[int, ...]]] = [
    ("Which decision summarily reversed Arizona for refusing to apply Simmons?", R3, (2, 5, 7)),
    ("What aggravating circumstance did the jury find against Cruz?", R3, (8,)),
    ("How did the trial judge characterise Cruz's chance of parole after 25 years?", R3, (9,)),
    ("Why did the Arizona Supreme Court hold that Lynch was not a significant change in the law?", R3, (3, 10)),
    ("What did the sixteen defense witnesses say about Cruz's background?", R3, (8,)),
    ("Is an employee paid a daily rate paid on a salary basis under section 602(a)?", R4, (3, 13)),
    ("What hourly pay satisfies the salary-level test?", R4, (17,)),
    ("How did the District Court rule on Hewitt's compensation and what did the Fifth Circuit do?", R4, (11,)),
    ("Which kinds of workers are never exempt executives however much they earn?", R4, (23,)),
    ("What question did the Court agree to decide, as the dissent frames it?", R4, (25,)),
    ("What does the FLSA require employers to pay for hours beyond forty in a week?", R4, (7, 27)),
    ("How much must an executive earn per year to fall under the highly compensated rule?", R4, (29,)),
    ("Can a debtor discharge a debt for money her partner obtained by fraud?", R5, (3, 5, 7)),
    ("Why were innocent partners liable in Strang for their associate's fraud?", R5, (13,)),
    ("How do the discharge exceptions in subparagraphs (B) and (C) differ from (A)?", R5, (11,)),
    ("Which separate opinion limits the holding to fraud by agents and partners?", R5, (17,)),
    ("How many accounts in the United Kingdom did Ms. Boyd hold?", R6, (7,)),
    ("Does the nonwillful penalty of the Bank Secrecy Act accrue per report or per account?", R6, (3, 9)),
    ("What is the maximum penalty for a willful violation of the reporting duty?", R6, (11,)),
    ("In which year did Congress first authorise penalties for nonwillful violations?", R6, (15,)),
    ("How much money did Bittner hold abroad and in which countries?", R6, (21,)),
    ("Which interpretive canon does the dissent call inapplicable here?", R6, (27,)),
    ("Did the lower courts accept that Bittner had reasonable cause for filing late?", R6, (31,)),
    ("Which justices joined Justice Barrett's dissent?", R6, (5,)),
]


def score(results: Sequence[Sequence[tuple[str, int | None]]]) -> dict[str, float]:
    """page-hit@10, page MRR@10 and repeated slots per 10 for each question's ranked (doc, page) list."""
    hits = mrr = repeats = 0.0
    for (_, doc, gold), ranked in zip(QUESTIONS, results):
        top = list(ranked[:10])
        repeats += len(top) - len(set(top))
        for position, (doc_id, page) in enumerate(top, start=1):
            if doc_id == doc and page in gold:
                hits += 1
                mrr += 1 / position
                break
    n = len(QUESTIONS)
    return {"page-hit@10": hits / n, "page MRR@10": mrr / n, "repeats/10": repeats / n}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=50)
    args = parser.parse_args(argv)

    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
    from ragloom.adapters.sparse.bm25 import BM25Retriever, tokenizer_chunker
    from ragloom.fusion import ReciprocalRankFusion
    from ragloom.grouping import group_by_page
    from ragloom.loaders import load_paths
    from ragloom.pipeline import Pipeline

    minilm = offline_model("minilm")
    documents = load_paths([SHARED_DATA / "sample_pdfs"], include=["*.pdf"]).documents
    pages = sum(len(d.pages) for d in documents)
    started = time.perf_counter()
    dense = DenseRetriever(TransformersDenseEncoder(minilm), name="dense")
    bm25 = BM25Retriever(chunker=tokenizer_chunker(minilm, dense.chunker.chunk_size), name="bm25")
    for retriever in (dense, bm25):
        retriever.add(documents)
    print(
        f"# {len(documents)} PDFs, {pages} pages, {len(dense)} chunks of {dense.chunker.chunk_size} tokens; "
        f"indexed in {time.perf_counter() - started:.0f}s; {len(QUESTIONS)} questions; candidates {args.candidates}"
    )
    queries = [q for q, _, _ in QUESTIONS]
    n = args.candidates
    runs = {r.name: r.search_many(queries, n) for r in (dense, bm25)}

    def pages_of(hits: Sequence[object]) -> list[tuple[str, int | None]]:
        return [(h.chunk.doc_id, h.chunk.page) for h in hits]  # type: ignore[attr-defined]

    chunk_rrf = ReciprocalRankFusion()
    page_rrf = ReciprocalRankFusion(key="page")
    systems: dict[str, Callable[[int], list[object]]] = {
        "dense, per chunk": lambda i: runs["dense"][i],
        "dense, per page (max)": lambda i: group_by_page(runs["dense"][i], score="max"),
        "dense, per page (rrf of chunks)": lambda i: group_by_page(runs["dense"][i]),
        "bm25, per chunk": lambda i: runs["bm25"][i],
        "bm25, per page (max)": lambda i: group_by_page(runs["bm25"][i], score="max"),
        "bm25, per page (rrf of chunks)": lambda i: group_by_page(runs["bm25"][i]),
        "dense+bm25 RRF by chunk": lambda i: chunk_rrf.fuse({k: v[i] for k, v in runs.items()}, n),
        "dense+bm25 RRF by chunk, then per page (max)": lambda i: group_by_page(
            chunk_rrf.fuse({k: v[i] for k, v in runs.items()}, n), score="max"
        ),
        "dense+bm25 RRF by chunk, then per page (rrf)": lambda i: group_by_page(
            chunk_rrf.fuse({k: v[i] for k, v in runs.items()}, n)
        ),
        "dense+bm25 RRF keyed on page": lambda i: page_rrf.fuse({k: v[i] for k, v in runs.items()}, n),
    }
    print("| system | page-hit@10 | page MRR@10 | repeated pages in 10 slots |\n|---|---|---|---|")
    for label, run in systems.items():
        metrics = score([pages_of(run(i)) for i in range(len(QUESTIONS))])
        print(
            f"| {label} | {metrics['page-hit@10']:.3f} | {metrics['page MRR@10']:.3f} | {metrics['repeats/10']:.2f} |"
        )

    pipeline = Pipeline([dense, bm25], candidates=n)  # the same through Pipeline.retrieve(group_by="page")
    through = score([pages_of(pipeline.retrieve(q, k=10, group_by="page")) for q in queries])
    print(f"\nPipeline.retrieve(group_by='page') over dense+bm25: {through}")


if __name__ == "__main__":
    main()
