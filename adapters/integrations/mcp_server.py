"""ragloom tools over the Model Context Protocol (``pip install 'ragloom[mcp]'``, the ``mcp`` 2.x SDK).

The server lists exactly the tools of :class:`~ragloom.adapters.integrations.tools.RagloomTools` (same names,
descriptions and JSON schemas as the OpenAI export) and dispatches calls through the same validating dispatcher.
Transports: stdio (what desktop agents spawn) and streamable HTTP, bound to 127.0.0.1 by default. Binding to any
other address needs a bearer token; with a token, every HTTP request must send ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ragloom._imports import require

require("mcp", "mcp", "the MCP server")

from mcp import types  # noqa: E402
from mcp.server.lowlevel import Server  # noqa: E402
from mcp.server.stdio import stdio_server  # noqa: E402

from ragloom.adapters.integrations.tools import RagloomTools  # noqa: E402
from ragloom.errors import ConfigError, RagloomError  # noqa: E402

__all__ = [
    "BearerTokenMiddleware",
    "build_mcp_server",
    "check_exposure",
    "http_app",
    "is_loopback",
    "serve_http",
    "serve_stdio",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_READ_ONLY = types.ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def build_mcp_server(tools: RagloomTools, *, name: str = "ragloom", instructions: str | None = None) -> Server:
    """A low-level MCP server whose ``tools/list`` and ``tools/call`` are ragloom's tools.

    A successful call returns the JSON result as text and as ``structured_content``; a ragloom error (invalid
    arguments, unknown tool, an empty index...) returns ``is_error`` with the message, so the agent can retry.
    """
    from ragloom import __version__

    specs = {spec.name: spec for spec in tools.specs}

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=spec.name,
                    description=spec.description,
                    input_schema=spec.parameters,
                    output_schema=spec.output_schema,
                    annotations=_READ_ONLY,
                )
                for spec in specs.values()
            ]
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            result = await tools.adispatch(params.name, params.arguments or {})
        except RagloomError as exc:
            return types.CallToolResult(content=[types.TextContent(text=str(exc))], is_error=True)
        text = json.dumps(result, ensure_ascii=False)
        return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=result)

    def input_schema(tool: str) -> dict[str, Any] | None:
        spec = specs.get(tool)
        return spec.parameters if spec is not None else None

    return Server(
        name,
        version=__version__,
        instructions=instructions
        or "Search (and, when offered, ask) an indexed document collection; results cite document, page and span.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=input_schema,
    )


async def serve_stdio(server: Server) -> None:
    """Serve over this process's stdin/stdout until the client closes them."""
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, *, service: str = "MCP", token_env: str = "RAGLOOM_MCP_TOKEN") -> None:
    """Refuse to serve beyond this machine without a bearer token, and refuse weak tokens (``ragloom serve`` and
    ``ragloom mcp`` both; ``service`` and ``token_env`` only name them in the message)."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"Serving {service} on {host} exposes the index beyond this machine; pass --token (or set {token_env}) "
            "so clients must send 'Authorization: Bearer <token>', or bind to 127.0.0.1"
        )
    if token is not None and len(token) < 16:
        raise ConfigError(
            f"The {service} bearer token is too short; use at least 16 characters (e.g. `openssl rand -hex 32`)"
        )


class BearerTokenMiddleware:
    """ASGI middleware answering 401 to any HTTP request without ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorised(scope):
            body = json.dumps({"error": "missing or invalid bearer token"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="ragloom"'),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        for key, value in scope.get("headers", ()):
            if key.lower() == b"authorization":
                scheme, _, supplied = bytes(value).partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(supplied.strip(), self._token)
        return False


def http_app(server: Server, *, host: str = "127.0.0.1", token: str | None = None, path: str = "/mcp") -> ASGIApp:
    """The streamable-HTTP ASGI app (DNS-rebinding protection on loopback), behind a bearer check when a token
    is given. Raises ConfigError for a non-loopback host without a token."""
    check_exposure(host, token)
    app: ASGIApp = server.streamable_http_app(streamable_http_path=path, host=host)
    return BearerTokenMiddleware(app, token) if token else app


async def serve_http(
    server: Server,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    path: str = "/mcp",
    sock: socket.socket | None = None,
) -> None:
    """Serve streamable HTTP with uvicorn until interrupted (on ``sock`` when given: a socket already bound, so
    that a busy port was reported before anything else happened)."""
    import uvicorn

    app = http_app(server, host=host, token=token, path=path)
    uv = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    await uv.serve(sockets=[sock] if sock is not None else None)
