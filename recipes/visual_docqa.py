"""Recipe: visual document QA — PDFs → page images → ColQwen2/ColPali multi-vector index → answers citing pages.

Each PDF page is rendered with pypdfium2 and embedded as ~700-1030 vectors by a ColPali-family model; a dense text
retriever over the same PDFs is fused with it on the (document, page) they share (RRF, ``key="page"``), so a page
found by its look and a chunk found by its words count as one. The generator reads the fused pages' text layer and
cites ``[n]`` → document + page. Run as a script::

    python -m ragloom.recipes.visual_docqa [FOLDER] ["Your question?"] [--index DIR] [--text-model none]

or in code::

    from ragloom.recipes.visual_docqa import build_visual_docqa
    with build_visual_docqa("visual-index", allow_download=True) as pipeline:
        pipeline.ingest(["reports/"])
        answer = pipeline.ask("What was revenue in 2023?")

A real ColQwen2 needs a GPU to index at a useful speed (CPU works, slowly); see docs/multivector.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ragloom.pipeline import Pipeline
from ragloom.recipes.config import GeneratorSpec, IndexSpec, RetrieverSpec, open_pipeline

__all__ = ["SAMPLE_DATA", "build_visual_docqa", "main"]

SAMPLE_DATA = Path(__file__).resolve().parent / "sample_data"


def build_visual_docqa(
    index_dir: str | Path,
    *,
    model: str = "vidore/colqwen2-v1.0-hf",
    text_model: str | None = "minilm",
    llm: str = "smollm2",
    dpi: int = 96,
    pool_factor: int = 1,
    first_stage: str = "exact",
    options: dict[str, Any] | None = None,
    max_new_tokens: int = 256,
    allow_download: bool = False,
) -> Pipeline:
    """Pages retriever (ColPali-family ``model``), optionally fused with a dense ``text_model``, and a local LLM.

    ``options`` go to the page retriever (e.g. ``{"dtype": "bfloat16", "batch_size": 8}``). An existing index
    directory reopens with the settings it was built with.
    """
    index = Path(index_dir)
    if (index / "ragloom.json").exists():
        return open_pipeline(index, with_generator=True, allow_download=allow_download)
    page_options = {"dpi": dpi, "pool_factor": pool_factor, "first_stage": first_stage, **(options or {})}
    retrievers = [RetrieverSpec(name="pages", kind="colpali", model=model, store="multivector", options=page_options)]
    if text_model:
        retrievers.append(RetrieverSpec(name="text", kind="dense", model=text_model, store="memory"))
    spec = IndexSpec(
        retrievers=tuple(retrievers),
        fusion={"kind": "rrf", "k": 60, "key": "page"},
        generator=GeneratorSpec(kind="local", model=llm, max_new_tokens=max_new_tokens),
        k=4,
        candidates=20,
    )
    return open_pipeline(index, spec=spec, with_generator=True, allow_download=allow_download)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=SAMPLE_DATA)
    parser.add_argument("question", nargs="?", default="What did the Court hold in Bittner v. United States?")
    parser.add_argument("--index", type=Path, default=Path(".ragloom/visual_docqa"))
    parser.add_argument("--model", default="vidore/colqwen2-v1.0-hf", help="ColPali/ColQwen2 checkpoint")
    parser.add_argument("--text-model", default="minilm", help="dense text retriever to fuse with, or 'none'")
    parser.add_argument("--llm", default="smollm2")
    parser.add_argument("--dpi", type=int, default=96)
    parser.add_argument("--pool-factor", type=int, default=1)
    parser.add_argument("--first-stage", default="exact", choices=["exact", "int8", "binary", "muvera"])
    parser.add_argument("--offline", action="store_true", help="never download models")
    args = parser.parse_args(argv)
    text_model = None if args.text_model.lower() == "none" else args.text_model
    with build_visual_docqa(
        args.index,
        model=args.model,
        text_model=text_model,
        llm=args.llm,
        dpi=args.dpi,
        pool_factor=args.pool_factor,
        first_stage=args.first_stage,
        allow_download=not args.offline,
    ) as pipeline:
        if not pipeline.retrievers[0].doc_ids():
            report = pipeline.ingest([args.folder])
            print(f"indexed {len(report.documents)} documents; {len(report.failures)} unreadable files")
        answer = pipeline.ask(args.question)
    print(answer.text)
    for citation in answer.citations:
        print(f"[{citation.marker}] {citation.doc_id} page {citation.page}")


if __name__ == "__main__":
    main()
