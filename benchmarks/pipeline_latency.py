"""Ingest throughput and hybrid query latency: a ragloom Pipeline vs the same models wired through LangChain and
through LlamaIndex.

Corpus: the four sample PDFs (106 pages). Each system parses the PDFs its usual way (ragloom: pypdfium2;
LangChain's PyPDFLoader and LlamaIndex's SimpleDirectoryReader: pypdf), chunks, embeds with all-MiniLM-L6-v2
(ragloom: its own encoder, bf16 where the CPU has it; peers: sentence-transformers through their HuggingFace
integrations) and builds BM25 (ragloom: bm25s; LangChain: rank_bm25; LlamaIndex: bm25s). Query: dense + BM25,
fused by RRF (LangChain's EnsembleRetriever, LlamaIndex's QueryFusionRetriever with one query and no LLM call), top
5, no reranker (no cross-encoder weights exist offline here) and no LLM. Queries alternate between systems.
"Overhead" is the median query latency minus the median time to embed the query alone. Each system keeps its
usual chunking (LlamaIndex's SentenceSplitter counts file metadata against the 256-token budget, so it makes many
more, smaller chunks); the table shows the chunk counts.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks._common import REPO, machine, median, peak_rss_mib, percentile

QUESTIONS = [
    "What is the maximum penalty for a nonwillful violation of the Bank Secrecy Act?",
    "How many hours a week did Hewitt typically work on the offshore oil rig?",
    "Was Cruz allowed to tell the jury that a life sentence would be without parole?",
    "Can a debt obtained by a partner's fraud be discharged in bankruptcy?",
    "What is the salary basis test for a bona fide executive?",
    "Which court decided Lynch v. Arizona?",
    "What does Arizona Rule of Criminal Procedure 32.1(g) permit?",
    "How was Hewitt paid by Helix Energy Solutions?",
    "Who sold the house to Kieran Buckley?",
    "Does the FBAR penalty accrue per report or per account?",
]


def _ragloom(folder: Path):  # type: ignore[no-untyped-def]
    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
    from ragloom.adapters.sparse import BM25Retriever
    from ragloom.pipeline import Pipeline

    encoder = TransformersDenseEncoder("minilm")
    dense = DenseRetriever(encoder, store="memory")
    pipeline = Pipeline([dense, BM25Retriever(chunker=dense.chunker)], k=5, candidates=20)
    started = time.perf_counter()
    pipeline.ingest([folder], include=["*.pdf"])
    ingest = time.perf_counter() - started
    return ingest, (lambda q: pipeline.retrieve(q, k=5)), (lambda q: encoder.encode_queries([q])), len(dense)


def _langchain(folder: Path):  # type: ignore[no-untyped-def]
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.retrievers import BM25Retriever
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from ragloom.models import resolve_model

    embeddings = HuggingFaceEmbeddings(
        model_name=str(resolve_model("minilm")), encode_kwargs={"normalize_embeddings": True}
    )
    started = time.perf_counter()
    pages = [page for pdf in sorted(folder.glob("*.pdf")) for page in PyPDFLoader(str(pdf)).load()]
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100).split_documents(pages)
    store = InMemoryVectorStore.from_documents(chunks, embeddings)
    bm25 = BM25Retriever.from_documents(chunks, k=20)
    ensemble = EnsembleRetriever(retrievers=[store.as_retriever(search_kwargs={"k": 20}), bm25], weights=[0.5, 0.5])
    ingest = time.perf_counter() - started
    return ingest, (lambda q: ensemble.invoke(q)[:5]), embeddings.embed_query, len(chunks)


def _llamaindex(folder: Path):  # type: ignore[no-untyped-def]
    from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
    from llama_index.core.llms import MockLLM
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.retrievers.bm25 import BM25Retriever

    from ragloom.models import resolve_model

    embed = HuggingFaceEmbedding(model_name=str(resolve_model("minilm")), device="cpu")
    started = time.perf_counter()
    documents = SimpleDirectoryReader(str(folder), required_exts=[".pdf"]).load_data()
    nodes = SentenceSplitter(chunk_size=256, chunk_overlap=32).get_nodes_from_documents(documents)
    index = VectorStoreIndex(nodes, embed_model=embed)
    bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=20)
    fusion = QueryFusionRetriever(
        [index.as_retriever(similarity_top_k=20), bm25],
        mode="reciprocal_rerank",
        num_queries=1,
        similarity_top_k=5,
        llm=MockLLM(),
        use_async=False,
    )
    ingest = time.perf_counter() - started
    return ingest, fusion.retrieve, embed.get_query_embedding, len(nodes)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks pipeline_latency", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="passes over the question list")
    parser.add_argument("--folder", type=Path, default=REPO / "recipes" / "sample_data")
    args = parser.parse_args(argv)
    systems = {}
    for name, build in (("ragloom", _ragloom), ("LangChain", _langchain), ("LlamaIndex", _llamaindex)):
        systems[name] = build(args.folder)
        print(
            f"built {name}: {systems[name][3]} chunks in {systems[name][0]:.1f}s (peak RSS {peak_rss_mib():.0f} MiB)",
            flush=True,
        )
    for _, search, embed, _ in systems.values():
        search(QUESTIONS[0])
        embed(QUESTIONS[0])
    latency: dict[str, list[float]] = {name: [] for name in systems}
    embedding: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(args.rounds):
        for question in QUESTIONS:
            for name, (_, search, embed, _) in systems.items():
                started = time.perf_counter()
                search(question)
                latency[name].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                embed(question)
                embedding[name].append((time.perf_counter() - started) * 1000)
    pages = 106
    print(
        f"\n# pipeline_latency · 4 PDFs ({pages} pages) · dense MiniLM + BM25, RRF, top 5 · "
        f"{len(QUESTIONS) * args.rounds} queries · {machine()}"
    )
    print(
        "| system | ingest s | pages/s | query p50 ms | query p99 ms | embed p50 ms | overhead p50 ms | "
        "p50 ratio ragloom/peer |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    base = median(latency["ragloom"])
    for name, (ingest, _, _, chunks) in systems.items():
        p50 = median(latency[name])
        overhead = p50 - median(embedding[name])
        ratio = "—" if name == "ragloom" else f"{base / p50:.2f}x"
        print(
            f"| {name} | {chunks} | {ingest:.1f} | {pages / ingest:.1f} | {p50:.1f} | "
            f"{percentile(latency[name], 99):.1f} | {median(embedding[name]):.1f} | {overhead:.2f} | {ratio} |"
        )
