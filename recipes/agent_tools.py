"""Recipe: register a ragloom index with an agent through OpenAI function calling.

Prints the tool schemas an agent is given and answers a sample tool call, as an agent loop would::

    python -m ragloom.recipes.agent_tools --index .ragloom/index --query "termination clause"

With ``--base-url`` it runs the whole loop against an OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp,
OpenAI): the model decides when to call ``ragloom_search``/``ragloom_ask`` and answers from the results::

    python -m ragloom.recipes.agent_tools --index DIR --base-url http://127.0.0.1:8000/v1 --model qwen2.5 \\
        --question "What did the Court hold?"

In code::

    tools = RagloomTools(open_pipeline(DIR), about="court opinions")
    reply = client.chat.completions.create(model=..., messages=messages, tools=tools.openai_schemas())
    for call in reply.choices[0].message.tool_calls or []:
        messages.append(tools.handle_tool_call(call.model_dump()))
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from ragloom.adapters.integrations.tools import RagloomTools
from ragloom.errors import EndpointError
from ragloom.pipeline import Pipeline
from ragloom.recipes.config import IndexSpec, generator_spec_with, open_pipeline

__all__ = ["main", "open_for_answers", "run_agent", "sample_call"]


def open_for_answers(
    index: str | Path,
    *,
    llm: str | None = None,
    base_url: str | None = None,
    answer: bool = True,
    allow_download: bool = False,
) -> Pipeline:
    """Open an index with its generator, or with an OpenAI-compatible endpoint when ``base_url`` is given."""
    index = Path(index)
    if not answer:
        return open_pipeline(index, allow_download=allow_download)
    index_spec = IndexSpec.load(index)
    spec = generator_spec_with(index_spec.generator, kind="openai" if base_url else None, model=llm, base_url=base_url)
    index_spec = dataclasses.replace(index_spec, generator=spec)
    return open_pipeline(index, spec=index_spec, with_generator=True, allow_download=allow_download)


def sample_call(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    """A tool call as an OpenAI-compatible model emits it (arguments are a JSON string)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def run_agent(
    tools: RagloomTools,
    question: str,
    *,
    base_url: str,
    model: str,
    api_key: str | None = None,
    max_turns: int = 4,
    timeout: float = 120.0,
) -> tuple[str, list[dict[str, Any]]]:
    """A minimal function-calling loop: the model calls ragloom's tools until it answers.

    Returns the final answer and the transcript (messages, tool results included).
    """
    import httpx

    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Use the tools to find passages, then answer citing document and page."},
        {"role": "user", "content": question},
    ]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout) as http:
        for _ in range(max_turns):
            body = {"model": model, "messages": messages, "tools": tools.openai_schemas(), "tool_choice": "auto"}
            response = http.post("/chat/completions", json=body)
            if response.status_code != 200:
                raise EndpointError(f"{base_url} answered {response.status_code}: {response.text[:300]}")
            message = response.json()["choices"][0]["message"]
            messages.append({k: v for k, v in message.items() if v is not None})
            calls = message.get("tool_calls") or []
            if not calls:
                return str(message.get("content") or ""), messages
            messages.extend(tools.handle_tool_call(call) for call in calls)
    raise EndpointError(f"The model was still calling tools after {max_turns} turns; raise max_turns or simplify")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path(".ragloom/index"))
    parser.add_argument("--query", default="What did the Court hold?", help="query of the sample search call")
    parser.add_argument("--ask", action="store_true", help="also offer the ask tool (loads the index's generator)")
    parser.add_argument("--about", default="", help="one line on what the index holds, shown to the agent")
    parser.add_argument("--base-url", help="run a full agent loop against this OpenAI-compatible endpoint")
    parser.add_argument("--model", default="default", help="endpoint model name for --base-url")
    parser.add_argument("--question", default="What did the Court hold?", help="question for the agent loop")
    parser.add_argument("--offline", action="store_true", help="never download models")
    args = parser.parse_args(argv)
    with open_for_answers(args.index, answer=args.ask, allow_download=not args.offline) as pipeline:
        tools = RagloomTools(pipeline, about=args.about, ask=args.ask)
        print(json.dumps({"tools": tools.openai_schemas()}, indent=2))
        call = sample_call(tools.names[0], {"query": args.query, "k": 3})
        print(json.dumps({"tool_call": call}, indent=2))
        reply = tools.handle_tool_call(call)
        print(json.dumps({**reply, "content": json.loads(reply["content"])}, indent=2, ensure_ascii=False))
        if args.base_url:
            answer, _ = run_agent(
                tools,
                args.question,
                base_url=args.base_url,
                model=args.model,
                api_key=os.environ.get("OPENAI_API_KEY"),
            )
            print(answer)


if __name__ == "__main__":
    main()
