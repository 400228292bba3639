"""Recipe: a ragloom retriever inside a LangChain LCEL chain, answering with sources.

The index's retrievers (fused with RRF when it has several, e.g. dense + sparse) feed LangChain's own prompt →
chat model → parser chain; the chat model is ragloom's generator wrapped as a LangChain chat model (a local
transformers model, or an OpenAI-compatible endpoint with ``--base-url``)::

    python -m ragloom.recipes.langchain_app "What did the Court hold?" --index .ragloom/index

In code::

    chain = build_chain(open_pipeline(DIR, with_generator=True))
    result = chain.invoke("What did the Court hold?")   # {"question", "context": [Document], "answer"}
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragloom.errors import ConfigError
from ragloom.pipeline import Pipeline
from ragloom.protocols import Generator
from ragloom.recipes.agent_tools import open_for_answers

__all__ = ["SYSTEM_PROMPT", "build_chain", "format_documents", "main"]

SYSTEM_PROMPT = (
    "Answer the question using only the numbered context passages. Cite passages as [n]. "
    'If the passages do not contain the answer, say "I don\'t know".'
)


def format_documents(documents: Sequence[Any]) -> str:
    """Numbered passages with their source and page, the way ragloom prompts its own generators."""
    blocks = []
    for number, doc in enumerate(documents, start=1):
        where = str(doc.metadata.get("source") or doc.metadata.get("doc_id", "")).rsplit("/", 1)[-1]
        page = doc.metadata.get("page")
        blocks.append(f"[{number}] ({where}{f', page {page}' if page else ''})\n{doc.page_content.strip()}")
    return "\n\n".join(blocks) or "(no passages were found)"


def build_chain(pipeline: Pipeline, generator: Generator | None = None, *, k: int | None = None) -> Any:
    """``question → {"question", "context", "answer"}``: ragloom retrieval, LangChain prompt and parser."""
    from ragloom._imports import require
    from ragloom.adapters.integrations.langchain import RagloomChatModel, RagloomRetriever

    parsers = require("langchain_core.output_parsers", "langchain", "the LangChain recipe")
    prompts = require("langchain_core.prompts", "langchain", "the LangChain recipe")
    runnables = require("langchain_core.runnables", "langchain", "the LangChain recipe")

    generator = generator or pipeline.generator
    if generator is None:
        raise ConfigError("The chain needs a generator: open the index with with_generator=True or pass generator=")
    prompt = prompts.ChatPromptTemplate.from_messages(
        [("system", SYSTEM_PROMPT), ("human", "Context passages:\n\n{context}\n\nQuestion: {question}")]
    )
    answer = (
        runnables.RunnablePassthrough.assign(context=lambda x: format_documents(x["context"]))
        | prompt
        | RagloomChatModel(generator=generator)
        | parsers.StrOutputParser()
    )
    retrieve = runnables.RunnableParallel(
        context=RagloomRetriever(source=pipeline, k=k), question=runnables.RunnablePassthrough()
    )
    return retrieve | runnables.RunnablePassthrough.assign(answer=answer)


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
        result = build_chain(p, k=args.k).invoke(args.question)
    print(result["answer"])
    for number, doc in enumerate(result["context"], start=1):
        meta = doc.metadata
        print(
            f"[{number}] {meta['doc_id']} page {meta['page']} chars {meta['start']}-{meta['end']} ({meta['score']:.3f})"
        )


if __name__ == "__main__":
    main()
