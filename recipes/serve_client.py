"""A small httpx client for ``ragloom serve`` (what ``ragloom search/ask --server URL`` use)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ragloom.errors import EndpointError

__all__ = ["ServerClient"]


class ServerClient:
    """Calls a running ``ragloom serve``; HTTP and server errors become :class:`EndpointError` with the reason."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            response = httpx.post(self.url + path, json=body, headers=self.headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise EndpointError(
                f"Could not reach the ragloom server at {self.url}: {exc}; is `ragloom serve` running?"
            ) from exc
        return _checked(response, self.url)

    def search(self, query: str, k: int = 5, group_by: str | None = None) -> list[dict[str, Any]]:
        return list(self._post("/v1/search", {"query": query, "k": k, "group_by": group_by})["hits"])

    def ask(self, question: str, k: int = 4, group_by: str | None = None) -> dict[str, Any]:
        return self._post("/v1/ask", {"question": question, "k": k, "group_by": group_by})

    def ask_stream(self, question: str, k: int = 4, group_by: str | None = None) -> Iterator[tuple[str, Any]]:
        """``(event, data)`` pairs: ``token`` pieces then one ``answer``; an ``error`` event raises."""
        import httpx

        body = {"question": question, "k": k, "group_by": group_by, "stream": True}
        try:
            with httpx.stream(
                "POST", self.url + "/v1/ask", json=body, headers=self.headers, timeout=self.timeout
            ) as response:
                if response.status_code != 200:
                    response.read()
                    _checked(response, self.url)
                event = "message"
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line[5:].strip())
                        if event == "error":
                            raise EndpointError(f"The server failed: {data.get('message')}")
                        yield event, data
        except httpx.HTTPError as exc:
            raise EndpointError(f"Could not reach the ragloom server at {self.url}: {exc}") from exc


def _checked(response: Any, url: str) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code != 200:
        error = payload.get("error") if isinstance(payload, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        raise EndpointError(
            f"The ragloom server at {url} answered {response.status_code}: {message or response.text[:200]}",
            status_code=response.status_code,
        )
    if not isinstance(payload, dict):
        raise EndpointError(f"The ragloom server at {url} answered something that is not a JSON object")
    return payload
