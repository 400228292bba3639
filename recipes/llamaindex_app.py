"""Recipe: a ragloom retriever inside a LlamaIndex query engine, answering with source nodes.

LlamaIndex's own ``RetrieverQueryEngine`` (response synthesis, prompts) runs over the index's ragloom retrievers
(fused with RRF when there are several); the LLM is ragloom's generator wrapped as a LlamaIndex LLM, so nothing
calls OpenAI unless you point ``--base-url`` at an endpoint. A ragloom reranker can sit in between as a node
postprocessor::

    python -m ragloom.recipes.llamaindex_app "What did the Court hold?" --index .ragloom/index

In code::

    engine = build_query_engine(open_pipeline(DIR, with_generator=True))
    response = engine.query("What did the Court hold?")   # response.source_nodes carry the ragloom hits
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ragloom.errors import ConfigError
from ragloom.pipeline import Pipeline
from ragloom.protocols import Generator, Reranker
from ragloom.recipes.agent_tools import open_for_answers

__all__ = ["build_query_engine", "main"]


def build_query_engine(
    pipeline: Pipeline,
    generator: Generator | None = None,
    *,
    reranker: Reranker | None = None,
    k: int | None = None,
    top_n: int | None = None,
    response_mode: str = "compact",
) -> Any:
    """A LlamaIndex ``RetrieverQueryEngine`` over the pipeline's retrievers, with a ragloom generator as its LLM."""
    from ragloom._imports import require
    from ragloom.adapters.integrations.llamaindex import RagloomLLM, RagloomNodePostprocessor, RagloomNodeRetriever

    engines = require("llama_index.core.query_engine", "llamaindex", "the LlamaIndex recipe")

    generator = generator or pipeline.generator
    if generator is None:
        raise ConfigError("The engine needs a generator: open the index with with_generator=True or pass generator=")
    postprocessors = []
    if reranker is not None:
        postprocessors.append(RagloomNodePostprocessor(reranker=reranker, top_n=top_n or pipeline.k))
    return engines.RetrieverQueryEngine.from_args(
        RagloomNodeRetriever(pipeline, k=k),
        llm=RagloomLLM(generator=generator),
        node_postprocessors=postprocessors,
        response_mode=response_mode,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="What did the Court hold?")
    parser.add_argument("--index", type=Path, default=Path(".ragloom/index"))
    parser.add_argument("--llm", help="generator model (alias, folder, or endpoint model with --base-url)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint instead of the index's local model")
    parser.add_argument("-k", type=int, default=None, help="passages to retrieve")
    parser.add_argument("--offline", action="store_true", help="never download models")
    args = parser.parse_args(argv)
    with open_for_answers(args.index, llm=args.llm, base_url=args.base_url, allow_download=not args.offline) as p:
        response = build_query_engine(p, k=args.k).query(args.question)
    print(response)
    for number, node in enumerate(response.source_nodes, start=1):
        meta = node.node.metadata
        print(f"[{number}] {meta['doc_id']} page {meta['page']} chars {meta['start']}-{meta['end']} ({node.score:.3f})")


if __name__ == "__main__":
    main()
