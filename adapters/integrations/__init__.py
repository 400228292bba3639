"""Bridges to LangChain, LlamaIndex, agent tools (OpenAI function calling) and MCP.

Each framework loads only when its module is imported (or a name below is first used), so importing this package
imports no framework. A missing framework raises :class:`ragloom.errors.MissingExtraError` naming the extra:

- ``ragloom.adapters.integrations.langchain`` — ``pip install 'ragloom[langchain]'``
- ``ragloom.adapters.integrations.llamaindex`` — ``pip install 'ragloom[llamaindex]'``
- ``ragloom.adapters.integrations.tools`` — ``pip install 'ragloom[tools]'``
- ``ragloom.adapters.integrations.mcp_server`` — ``pip install 'ragloom[mcp]'``
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "METADATA_KEYS",
    "AskInput",
    "LangChainEncoder",
    "LangChainGenerator",
    "LlamaIndexEncoder",
    "LlamaIndexGenerator",
    "RagloomChatModel",
    "RagloomLLM",
    "RagloomNodePostprocessor",
    "RagloomNodeRetriever",
    "RagloomQueryEngine",
    "RagloomRetriever",
    "RagloomTools",
    "SearchInput",
    "build_mcp_server",
]

_PACKAGE = "ragloom.adapters.integrations"
_LAZY = {
    "METADATA_KEYS": "_common",
    "AskInput": "tools",
    "RagloomTools": "tools",
    "SearchInput": "tools",
    "LangChainEncoder": "langchain",
    "LangChainGenerator": "langchain",
    "RagloomChatModel": "langchain",
    "RagloomRetriever": "langchain",
    "LlamaIndexEncoder": "llamaindex",
    "LlamaIndexGenerator": "llamaindex",
    "RagloomLLM": "llamaindex",
    "RagloomNodePostprocessor": "llamaindex",
    "RagloomNodeRetriever": "llamaindex",
    "RagloomQueryEngine": "llamaindex",
    "build_mcp_server": "mcp_server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{_PACKAGE}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
