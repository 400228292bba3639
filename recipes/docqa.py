"""Recipe: document QA over a folder — ingest once into an embedded chromadb, then answer with citations.

Run as a script::

    python -m ragloom.recipes.docqa FOLDER "Your question?" [--index DIR]

or through the CLI (``ragloom ingest FOLDER`` then ``ragloom ask "..."``). In code::

    from ragloom.recipes.docqa import build_docqa
    pipeline = build_docqa("my-index", allow_download=True)
    pipeline.ingest(["docs/"])
    print(pipeline.ask("What does the contract say about termination?").text)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ragloom.pipeline import Pipeline
from ragloom.recipes.config import GeneratorSpec, IndexSpec, RetrieverSpec, open_pipeline

__all__ = ["SAMPLE_DATA", "build_docqa", "main"]

SAMPLE_DATA = Path(__file__).resolve().parent / "sample_data"
"""Four public-domain U.S. Supreme Court opinions (preliminary prints, Feb 2023) shipped for the demo."""


def build_docqa(
    index_dir: str | Path,
    *,
    encoder: str = "minilm",
    llm: str = "smollm2",
    store: str = "chroma",
    allow_download: bool = False,
) -> Pipeline:
    """A dense retriever (MiniLM by default) over an embedded chromadb, with a local chat model."""
    spec = IndexSpec(
        retrievers=(RetrieverSpec(name="dense", kind="dense", model=encoder, store=store),),
        generator=GeneratorSpec(kind="local", model=llm),
    )
    index = Path(index_dir)
    existing = (index / "ragloom.json").exists()
    return open_pipeline(index, spec=None if existing else spec, with_generator=True, allow_download=allow_download)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=SAMPLE_DATA)
    parser.add_argument("question", nargs="?", default="What did the Court hold in Bittner v. United States?")
    parser.add_argument("--index", type=Path, default=Path(".ragloom/docqa"))
    parser.add_argument("--offline", action="store_true", help="never download models")
    args = parser.parse_args(argv)
    with build_docqa(args.index, allow_download=not args.offline) as pipeline:
        if not pipeline.retrievers[0].doc_ids():
            report = pipeline.ingest([args.folder])
            print(f"indexed {len(report.documents)} documents; skipped {len(report.failures)} unreadable files")
        answer = pipeline.ask(args.question)
    print(answer.text)
    for citation in answer.citations:
        print(f"[{citation.marker}] {citation.doc_id} page {citation.page} chars {citation.span[0]}-{citation.span[1]}")


if __name__ == "__main__":
    main()
