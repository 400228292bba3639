"""Recipe: question answering over long documents (transcripts, reports, contracts) with late chunking.

Each document is encoded whole by a long-context encoder (nomic-embed-text-v1.5 by default) and cut into 256-token
chunks afterwards, so a chunk that says "he agreed to the second option" still carries who and which option.
Optionally fused with BM25 over the very same chunks (``--hybrid``). Run as a script::

    python -m ragloom.recipes.longdoc_qa FOLDER "What did the committee decide about the budget?" [--index DIR]
    python -m ragloom.recipes.longdoc_qa FOLDER "..." --retrieve-only        # passages with spans, no LLM

In code::

    from ragloom.recipes.longdoc_qa import build_longdoc_qa
    with build_longdoc_qa("my-index", rope_factor=2.0) as pipeline:   # 4096-token windows, dynamic NTK RoPE
        pipeline.ingest(["meetings/"])
        print(pipeline.ask("Who objected to the proposal, and why?").text)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ragloom.pipeline import Pipeline
from ragloom.recipes.config import GeneratorSpec, IndexSpec, RetrieverSpec, open_pipeline

__all__ = ["build_longdoc_qa", "longdoc_spec", "main"]


def longdoc_spec(
    *,
    encoder: str = "nomic",
    llm: str = "smollm2",
    store: str = "chroma",
    chunk_size: int = 256,
    window: int | None = None,
    window_overlap: int | None = None,
    rope_factor: float | None = None,
    hybrid: bool = False,
    k: int = 5,
) -> IndexSpec:
    """The index a long-document QA pipeline uses: a late-chunking retriever (plus BM25 on the same chunks)."""
    options: dict[str, Any] = {}
    if window is not None:
        options["window"] = window
    if window_overlap is not None:
        options["overlap"] = window_overlap
    if rope_factor is not None:
        options["rope_factor"] = rope_factor
    retrievers = [
        RetrieverSpec(name="late", kind="late", model=encoder, store=store, chunk_size=chunk_size, options=options)
    ]
    if hybrid:  # the encoder's tokenizer measures BM25 chunks too, so both retrievers return the same chunk ids
        retrievers.append(RetrieverSpec(name="bm25", kind="bm25", model=encoder, chunk_size=chunk_size))
    return IndexSpec(retrievers=tuple(retrievers), generator=GeneratorSpec(kind="local", model=llm), k=k)


def build_longdoc_qa(
    index_dir: str | Path,
    *,
    with_generator: bool = True,
    allow_download: bool = False,
    **settings: Any,
) -> Pipeline:
    """Open the pipeline in ``index_dir``, creating it from :func:`longdoc_spec` ``settings`` when new.

    An existing index keeps the settings it was built with (they are in its ``ragloom.json``).
    """
    index = Path(index_dir)
    spec = None if (index / "ragloom.json").exists() else longdoc_spec(**settings)
    return open_pipeline(index, spec=spec, with_generator=with_generator, allow_download=allow_download)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="documents to index (skipped if the index already has them)")
    parser.add_argument("question")
    parser.add_argument("--index", type=Path, default=Path(".ragloom/longdoc"))
    parser.add_argument("--encoder", default="nomic", help="a long-context, mean-pooling encoder")
    parser.add_argument("--llm", default="smollm2")
    parser.add_argument("--window", type=int, default=None, help="tokens per model input (default: model's)")
    parser.add_argument("--window-overlap", type=int, default=None)
    parser.add_argument("--rope-factor", type=float, default=None, help="dynamic NTK RoPE (2.0: 4096 tokens)")
    parser.add_argument("--hybrid", action="store_true", help="fuse with BM25 over the same chunks")
    parser.add_argument("--retrieve-only", action="store_true", help="print passages; load no LLM")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--offline", action="store_true", help="never download models")
    args = parser.parse_args(argv)
    pipeline = build_longdoc_qa(
        args.index,
        with_generator=not args.retrieve_only,
        allow_download=not args.offline,
        encoder=args.encoder,
        llm=args.llm,
        window=args.window,
        window_overlap=args.window_overlap,
        rope_factor=args.rope_factor,
        hybrid=args.hybrid,
        k=args.k,
    )
    with pipeline:
        if not pipeline.retrievers[0].doc_ids():
            report = pipeline.ingest([args.folder])
            print(f"indexed {len(report.documents)} documents; skipped {len(report.failures)} unreadable files")
        if args.retrieve_only:
            for hit in pipeline.retrieve(args.question, k=args.k):
                where = f"{hit.chunk.doc_id} chars {hit.chunk.start}-{hit.chunk.end}"
                print(f"{hit.rank}. {where} ({hit.score:.3f}) {' '.join(hit.chunk.text.split())[:160]}")
            return
        answer = pipeline.ask(args.question)
    print(answer.text)
    for citation in answer.citations:
        print(f"[{citation.marker}] {citation.doc_id} chars {citation.span[0]}-{citation.span[1]}")


if __name__ == "__main__":
    main()
