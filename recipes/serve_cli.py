"""``ragloom serve``: load an index's models once and answer over HTTP (see :mod:`ragloom.recipes.serve`).

ragloom serve --index .ragloom/index                       # http://127.0.0.1:8088, search + ask + MCP
ragloom search "query" --server http://127.0.0.1:8088      # no model loading in the client
ragloom serve --host 0.0.0.0 --token "$(openssl rand -hex 32)" --workers 2 --queue 64
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import typer

from ragloom.recipes.config import generator_spec_with
from ragloom.recipes.generator_options import CheckThresholdOpt, PromptOpt

__all__ = ["serve"]


def serve(
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory.")] = Path(".ragloom/index"),
    host: Annotated[str, typer.Option(help="Bind address; anything but loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8088,
    token: Annotated[
        str | None, typer.Option(envvar="RAGLOOM_TOKEN", help="Bearer token clients must send (env RAGLOOM_TOKEN).")
    ] = None,
    ask: Annotated[bool, typer.Option("--ask/--no-ask", help="Load the generator for /v1/ask and chat.")] = True,
    generator: Annotated[str | None, typer.Option(help="local or openai (default: the index's).")] = None,
    llm: Annotated[str | None, typer.Option(help="Generator model (alias, folder or endpoint model).")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint URL.")] = None,
    prompt: PromptOpt = None,
    check_threshold: CheckThresholdOpt = None,
    per_page: Annotated[bool, typer.Option("--per-page", help="Default to one hit per page.")] = False,
    workers: Annotated[int, typer.Option(help="Queries run at once.")] = 1,
    queue: Annotated[int, typer.Option(help="Queries that may wait; more get 503.")] = 32,
    max_k: Annotated[int, typer.Option(help="Largest k a request may ask for.")] = 50,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes.")] = 64 * 1024,
    mcp: Annotated[bool, typer.Option("--mcp/--no-mcp", help="Mount the MCP endpoint at /mcp.")] = True,
    chroma_url: Annotated[
        str | None, typer.Option(help="The Chroma server holding the index's vectors, if it moved.")
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Never download models.")] = False,
) -> None:
    """Serve an index over HTTP: /v1/search, /v1/ask (JSON or SSE), /v1/chat/completions, MCP at /mcp."""
    from ragloom.errors import RagloomError
    from ragloom.recipes.config import IndexSpec, open_pipeline
    from ragloom.recipes.index_plan import spec_with_chroma_url
    from ragloom.recipes.serve import ServerLimits, build_app, check_exposure

    try:
        check_exposure(host, token)
        limits = ServerLimits(max_body=max_body, max_k=max_k, workers=workers, queue=queue)
        index_spec = spec_with_chroma_url(index, chroma_url) or IndexSpec.load(index)
        gen_spec = generator_spec_with(
            index_spec.generator,
            kind=generator,
            model=llm,
            base_url=base_url,
            prompt=prompt,
            check_threshold=check_threshold,
        )
        index_spec = dataclasses.replace(index_spec, generator=gen_spec)
        pipeline = open_pipeline(index, spec=index_spec, with_generator=ask, allow_download=not offline)
        if per_page:
            pipeline.group_by = "page"
        app = build_app(pipeline, limits=limits, token=token, host=host, mcp=mcp)
    except RagloomError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(code=2) from None
    import uvicorn

    print(
        f"ragloom serving {index} on http://{host}:{port} (/v1/search, /v1/ask, /v1/chat/completions"
        f"{', /mcp' if mcp else ''})",
        file=sys.stderr,
        flush=True,
    )
    with pipeline, contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
