"""``ragloom mcp``: serve an index's search (and ask) tools to agents over the Model Context Protocol.

stdio by default (what Claude Desktop, Cursor or an MCP client library spawn)::

    ragloom mcp --index .ragloom/index
    python -m ragloom.recipes.mcp_cli --index .ragloom/index

Streamable HTTP on 127.0.0.1 (any other ``--host`` needs a token: ``--token-file``, ``RAGLOOM_MCP_TOKEN`` or
``--token``, the last visible to every user of the machine in ``ps``)::

    ragloom mcp --index .ragloom/index --transport http --port 8765

The port is bound before the index loads and before the server says it is running, so a busy port is an error
at once.
"""

from __future__ import annotations

import contextlib
import socket
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
        typer.Option(
            envvar="RAGLOOM_MCP_TOKEN",
            help="Bearer token HTTP clients must send (prefer --token-file or env RAGLOOM_MCP_TOKEN: ps shows this).",
        ),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="File holding the bearer token (first line), e.g. made with mode 600.")
    ] = None,
    ask: Annotated[bool, typer.Option("--ask/--no-ask", help="Also offer the ask tool (loads the LLM).")] = False,
    prefix: Annotated[str, typer.Option(help="Tool name prefix: PREFIX_search, PREFIX_ask.")] = "ragloom",
    about: Annotated[str, typer.Option(help="One line on what the index holds, shown to the agent.")] = "",
    offline: Annotated[bool, typer.Option("--offline", help="Never download models.")] = False,
) -> None:
    """Serve the index's tools over MCP: stdio by default, or streamable HTTP bound to 127.0.0.1."""
    from ragloom.errors import RagloomError

    listener: socket.socket | None = None
    try:
        from ragloom.adapters.integrations import mcp_server
        from ragloom.adapters.integrations.tools import RagloomTools
        from ragloom.recipes.config import open_pipeline

        if token_file is not None:
            token = _read_token(token_file, token)
        if transport is Transport.http:
            mcp_server.check_exposure(host, token)
            listener = _bind(host, port)
        # stdout is the protocol channel in stdio mode: keep anything printed while loading off it
        with contextlib.redirect_stdout(sys.stderr):
            pipeline = open_pipeline(index, with_generator=ask, allow_download=not offline)
        tools = RagloomTools(pipeline, prefix=prefix, about=about, ask=ask)
        server = mcp_server.build_mcp_server(tools)
    except RagloomError as exc:
        if listener is not None:
            listener.close()
        _fail(str(exc))
        return
    import anyio

    with pipeline:
        if transport is Transport.stdio:
            anyio.run(mcp_server.serve_stdio, server)
        else:
            print(f"ragloom MCP server on http://{host}:{port}/mcp ({', '.join(tools.names)})", file=sys.stderr)
            with contextlib.suppress(KeyboardInterrupt):
                anyio.run(lambda: mcp_server.serve_http(server, host=host, port=port, token=token, sock=listener))


def _read_token(path: Path, given: str | None) -> str:
    from ragloom.errors import ConfigError

    if given:
        raise ConfigError("Pass the token once: --token-file, or --token / RAGLOOM_MCP_TOKEN, not both")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the token file {path}: {exc}") from exc
    token = lines[0].strip() if lines else ""
    if not token:
        raise ConfigError(f"The token file {path} is empty; write the token on its first line")
    return token


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now: a busy port fails here, before any 'running' message."""
    from ragloom.errors import ConfigError

    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host.strip("[]"), port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise ConfigError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}; is another server using the port? Pick "
            "another with --port"
        ) from exc
    listener.set_inheritable(True)
    return listener


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(mcp)

if __name__ == "__main__":
    app()
