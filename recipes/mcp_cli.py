"""``ragloom mcp``: serve an index's search (and ask) tools to agents over the Model Context Protocol.

stdio by default (what Claude Desktop, Cursor or an MCP client library spawn)::

    ragloom mcp --index .ragloom/index
    python -m ragloom.recipes.mcp_cli --index .ragloom/index

Streamable HTTP on 127.0.0.1 (any other ``--host`` needs ``--token`` or ``RAGLOOM_MCP_TOKEN``)::

    ragloom mcp --index .ragloom/index --transport http --port 8765
"""

from __future__ import annotations

import contextlib
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["app", "mcp"]


class Transport(str, Enum):
    stdio = "stdio"
    http = "http"


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code=2)


def mcp(
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory.")] = Path(".ragloom/index"),
    transport: Annotated[Transport, typer.Option(help="stdio, or streamable HTTP.")] = Transport.stdio,
    host: Annotated[str, typer.Option(help="HTTP bind address; not loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(envvar="RAGLOOM_MCP_TOKEN", help="Bearer token HTTP clients must send (env RAGLOOM_MCP_TOKEN)."),
    ] = None,
    ask: Annotated[bool, typer.Option("--ask/--no-ask", help="Also offer the ask tool (loads the LLM).")] = False,
    prefix: Annotated[str, typer.Option(help="Tool name prefix: PREFIX_search, PREFIX_ask.")] = "ragloom",
    about: Annotated[str, typer.Option(help="One line on what the index holds, shown to the agent.")] = "",
    offline: Annotated[bool, typer.Option("--offline", help="Never download models.")] = False,
) -> None:
    """Serve the index's tools over MCP: stdio by default, or streamable HTTP bound to 127.0.0.1."""
    from ragloom.errors import RagloomError

    try:
        from ragloom.adapters.integrations import mcp_server
        from ragloom.adapters.integrations.tools import RagloomTools
        from ragloom.recipes.config import open_pipeline

        if transport is Transport.http:
            mcp_server.check_exposure(host, token)
        # stdout is the protocol channel in stdio mode: keep anything printed while loading off it
        with contextlib.redirect_stdout(sys.stderr):
            pipeline = open_pipeline(index, with_generator=ask, allow_download=not offline)
        tools = RagloomTools(pipeline, prefix=prefix, about=about, ask=ask)
        server = mcp_server.build_mcp_server(tools)
    except RagloomError as exc:
        _fail(str(exc))
        return
    import anyio

    with pipeline:
        if transport is Transport.stdio:
            anyio.run(mcp_server.serve_stdio, server)
        else:
            print(f"ragloom MCP server on http://{host}:{port}/mcp ({', '.join(tools.names)})", file=sys.stderr)
            with contextlib.suppress(KeyboardInterrupt):
                anyio.run(lambda: mcp_server.serve_http(server, host=host, port=port, token=token))


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(mcp)

if __name__ == "__main__":
    app()
