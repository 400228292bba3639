"""Bridges to LangChain, LlamaIndex, agent tools (OpenAI function calling) and MCP.

Each framework loads only when its module is imported (or a name below is first used), so importing this package
imports no framework. A missing framework raises :class:`ragloom.errors.MissingExtraError` naming the extra:

- ``ragloom.adapters.integrations.langchain`` — ``pip install 'ragloom[langchain]'``
- ``ragloom.adapters.integrations.llamaindex`` — ``pip install 'ragloom[llamaindex]'``
- ``ragloom.adapters.integrations.tools`` — ``pip install 'ragloom[tools]'``
- ``ragloom.adapters.integrations.mcp_server`` — ``pip install 'ragloom[mcp]'``
"""

from __future__ import annotations

from ragloom._imports import lazy_exports

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

_LAZY = {
    "METADATA_KEYS": "ragloom.adapters.integrations._hits",
    "AskInput": "ragloom.adapters.integrations.tools",
    "RagloomTools": "ragloom.adapters.integrations.tools",
    "SearchInput": "ragloom.adapters.integrations.tools",
    "LangChainEncoder": "ragloom.adapters.integrations.langchain",
    "LangChainGenerator": "ragloom.adapters.integrations.langchain",
    "RagloomChatModel": "ragloom.adapters.integrations.langchain",
    "RagloomRetriever": "ragloom.adapters.integrations.langchain",
    "LlamaIndexEncoder": "ragloom.adapters.integrations.llamaindex",
    "LlamaIndexGenerator": "ragloom.adapters.integrations.llamaindex",
    "RagloomLLM": "ragloom.adapters.integrations.llamaindex",
    "RagloomNodePostprocessor": "ragloom.adapters.integrations.llamaindex",
    "RagloomNodeRetriever": "ragloom.adapters.integrations.llamaindex",
    "RagloomQueryEngine": "ragloom.adapters.integrations.llamaindex",
    "build_mcp_server": "ragloom.adapters.integrations.mcp_server",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
