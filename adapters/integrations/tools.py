"""Agent tools: one pydantic input model per tool, exported as OpenAI function schemas, framework tools and MCP.

:class:`RagloomTools` turns a Retriever or Pipeline into a ``search`` tool (and an ``ask`` tool when the pipeline
has a generator). The same input models drive the OpenAI JSON schema, the dispatcher's validation, LangChain's
``StructuredTool``, LlamaIndex's ``FunctionTool`` and the MCP server, so an agent sees one contract everywhere.
Needs ``pip install 'ragloom[tools]'`` (pydantic).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from ragloom._imports import require

require("pydantic", "tools", "agent tools")

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, ValidationError  # noqa: E402

from ragloom.adapters.integrations._hits import answer_to_dict, hit_to_dict  # noqa: E402
from ragloom.adapters.integrations._sources import SearchSource, search_source  # noqa: E402
from ragloom.errors import InvalidInputError, RagloomError  # noqa: E402

if TYPE_CHECKING:
    from langchain_core.tools import StructuredTool
    from llama_index.core.tools import FunctionTool

__all__ = [
    "MAX_QUERY_CHARS",
    "AskInput",
    "AskOutput",
    "RagloomTools",
    "SearchInput",
    "SearchOutput",
    "ToolSpec",
    "describe_validation_error",
    "openai_parameters",
    "strict_parameters",
]

MAX_QUERY_CHARS = 4096
"""Longest query or question a tool accepts: far beyond any real question, far below what would cost seconds of
encoding or push a reply past an MCP client's message limit."""

FilterValue = (
    Annotated[str, Strict()] | Annotated[bool, Strict()] | Annotated[int, Strict()] | Annotated[float, Strict()]
)
Text = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS)]
Count = Annotated[int, Strict()]
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,50}$")


class SearchInput(BaseModel):
    """Arguments of the search tool."""

    model_config = ConfigDict(extra="forbid")

    query: Text = Field(description="What to look for: a question, a claim or keywords.")
    k: Count = Field(default=5, ge=1, le=50, description="How many passages to return, best first.")
    filters: dict[str, FilterValue] | None = Field(
        default=None,
        description="Optional equality filters on doc_id, source or a document metadata key; all must match.",
    )


class AskInput(BaseModel):
    """Arguments of the ask tool."""

    model_config = ConfigDict(extra="forbid")

    question: Text = Field(description="The question to answer from the indexed documents.")
    k: Count = Field(default=4, ge=1, le=20, description="How many passages the answer may draw on.")


class PassageOutput(BaseModel):
    """One passage found: where it is (document, source, page, character span) and its text (``Hit.to_dict``)."""

    rank: int
    score: float
    score_kind: str
    retriever: str
    chunk_id: str
    doc_id: str
    source: str
    page: int | None
    start: int
    end: int
    text: str
    metadata: dict[str, FilterValue]
    explanation: str = ""


class SearchOutput(BaseModel):
    """What the search tool returns."""

    hits: list[PassageOutput]


class CitationOutput(BaseModel):
    """Where an ``[n]`` marker points (``Citation.to_dict``); the passage itself is in ``context``."""

    marker: int
    chunk_id: str
    doc_id: str
    source: str
    page: int | None
    start: int
    end: int


class AskOutput(BaseModel):
    """What the ask tool returns (``Answer.to_dict``): the answer, its citations and the passages it was given."""

    answer: str
    citations: list[CitationOutput]
    context: list[PassageOutput]
    timings: dict[str, float]
    dangling_markers: list[int]
    unsupported_markers: list[int]
    citations_inferred: bool
    grounded: bool
    verdict: str
    support: dict[str, Any] | None


def _strict_text(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS, "description": description}


_STRICT_FILTERS = {
    "type": ["array", "null"],
    "description": "Optional equality filters on doc_id, source or a document metadata key, all of which must "
    "match; null for none.",
    "items": {
        "type": "object",
        "properties": {"key": {"type": "string"}, "value": {"type": ["string", "number", "boolean"]}},
        "required": ["key", "value"],
        "additionalProperties": False,
    },
}


def strict_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """The tool's schema in the subset OpenAI's ``strict: true`` (Structured Outputs) and the Responses API
    accept: every property required, ``additionalProperties: false``, optional values as ``["T", "null"]``
    (null means the default) and filters as a list of ``{"key", "value"}`` pairs."""
    properties: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        description = info.description or ""
        if name in ("query", "question"):
            properties[name] = _strict_text(description)
        elif name == "k":
            default = info.default
            properties[name] = {"type": ["integer", "null"], "description": f"{description} null for {default}."}
        elif name == "filters":
            properties[name] = _STRICT_FILTERS
        else:  # pragma: no cover - every field of the tool models is listed above
            raise AssertionError(name)
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _from_strict(model: type[BaseModel], arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments in the strict schema's form (nulls for defaults, filters as pairs) in the model's form."""
    out = {k: v for k, v in arguments.items() if not (v is None and k in model.model_fields and k != "filters")}
    pairs = out.get("filters")
    if isinstance(pairs, list):
        filters: dict[str, Any] = {}
        for pair in pairs:
            if not (isinstance(pair, Mapping) and set(pair) == {"key", "value"} and isinstance(pair["key"], str)):
                raise InvalidInputError(
                    'filters given as a list must hold {"key": "...", "value": ...} objects, e.g. '
                    '[{"key": "doc_id", "value": "a.pdf"}]'
                )
            filters[pair["key"]] = pair["value"]
        out["filters"] = filters
    return out


def _strip_titles(schema: Any) -> Any:
    """Drop pydantic's ``title`` annotations (noise in a tool schema); property names are kept."""
    if isinstance(schema, list):
        return [_strip_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        else:
            out[key] = _strip_titles(value)
    return out


def openai_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema (Draft 2020-12) of a tool's input model, as OpenAI's ``parameters`` expects it."""
    schema = _strip_titles(model.model_json_schema())
    schema.pop("description", None)
    return schema


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, what it does (for the model), and its input model."""

    name: str
    description: str
    input_model: type[BaseModel]

    output_model: type[BaseModel] | None = None

    @property
    def parameters(self) -> dict[str, Any]:
        return openai_parameters(self.input_model)

    @property
    def output_schema(self) -> dict[str, Any] | None:
        """The JSON schema of the tool's structured result (MCP ``outputSchema``)."""
        return openai_parameters(self.output_model) if self.output_model is not None else None

    def openai_schema(self, *, strict: bool = False) -> dict[str, Any]:
        """``{"type": "function", "function": {"name", "description", "parameters"}}`` for chat completions;
        ``strict=True`` gives the Structured Outputs form (``"strict": true``, :func:`strict_parameters`)."""
        if not strict:
            return {
                "type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
            }
        function = {
            "name": self.name,
            "description": self.description,
            "parameters": strict_parameters(self.input_model),
            "strict": True,
        }
        return {"type": "function", "function": function}

    def responses_schema(self) -> dict[str, Any]:
        """The tool as the OpenAI Responses API lists it (flat, ``strict: true``)."""
        return {"type": "function", **self.openai_schema(strict=True)["function"]}


def describe_validation_error(tool: str, error: ValidationError) -> str:
    """One line naming each bad field and what is wrong with it, for the agent to correct its call."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        problems.append(f"{where}: {item['msg']}")
    return (
        f"Invalid arguments for tool {tool!r}: {'; '.join(problems)}. Call it again with arguments matching its schema."
    )


@dataclass(frozen=True)
class RagloomTools:
    """A Retriever or Pipeline as agent tools: ``{prefix}_search`` and, with a generator, ``{prefix}_ask``.

    ``about`` (e.g. "U.S. Supreme Court opinions from 2023") is appended to the descriptions so the agent knows
    when to call the tools. ``ask`` defaults to "when the source is a Pipeline with a generator".
    """

    source: Any
    prefix: str = "ragloom"
    about: str = ""
    ask: bool | None = None
    _source: SearchSource = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.prefix):
            raise InvalidInputError(
                f"Tool prefix {self.prefix!r} must be 1-50 letters, digits, '_' or '-' (OpenAI's tool-name rule)"
            )
        object.__setattr__(self, "_source", search_source(self.source))
        if self.ask and not self._source.can_answer:
            raise InvalidInputError(
                "ask=True needs a Pipeline with a generator; open it with open_pipeline(DIR, with_generator=True)"
            )

    # -- the tool list ------------------------------------------------------------------------------------------
    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        about = f" The collection: {self.about.strip()}" if self.about.strip() else ""
        tools = [
            ToolSpec(
                f"{self.prefix}_search",
                "Search the indexed documents and return the best-matching passages with their document id, "
                f"source, page and character span, best first.{about}",
                SearchInput,
                SearchOutput,
            )
        ]
        if self.ask if self.ask is not None else self._source.can_answer:
            tools.append(
                ToolSpec(
                    f"{self.prefix}_ask",
                    "Answer a question from the indexed documents; the answer cites passages as [n] and lists "
                    f"the cited documents, pages and spans.{about}",
                    AskInput,
                    AskOutput,
                )
            )
        return tuple(tools)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)

    def spec(self, name: str) -> ToolSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise InvalidInputError(f"Unknown tool {name!r}; this toolset has {', '.join(self.names)}")

    def openai_schemas(self, *, strict: bool = False) -> list[dict[str, Any]]:
        """The ``tools`` list for an OpenAI-compatible chat-completions request (``strict=True``: Structured
        Outputs form, see :func:`strict_parameters`; calls in either form are accepted by :meth:`dispatch`)."""
        return [spec.openai_schema(strict=strict) for spec in self.specs]

    def responses_schemas(self) -> list[dict[str, Any]]:
        """The ``tools`` list for an OpenAI Responses API request (strict)."""
        return [spec.responses_schema() for spec in self.specs]

    # -- validation and dispatch --------------------------------------------------------------------------------
    def parse(self, name: str, arguments: Mapping[str, Any] | str | None) -> BaseModel:
        """Validate a call's arguments (a mapping or the JSON string a model sends) against the tool's model."""
        spec = self.spec(name)
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise InvalidInputError(
                    f"Arguments for tool {name!r} are not valid JSON ({exc}); send an object"
                ) from exc
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping):
            raise InvalidInputError(
                f"Arguments for tool {name!r} must be a JSON object, got {type(arguments).__name__}"
            )
        try:
            return spec.input_model.model_validate(_from_strict(spec.input_model, dict(arguments)))
        except ValidationError as exc:
            raise InvalidInputError(describe_validation_error(name, exc)) from exc

    def dispatch(self, name: str, arguments: Mapping[str, Any] | str | None = None) -> dict[str, Any]:
        """Validate and run one tool call; returns a JSON-serialisable dict."""
        args = self.parse(name, arguments)
        if isinstance(args, SearchInput):
            hits = self._source.search(args.query, args.k, args.filters)
            return {"hits": [hit_to_dict(h) for h in hits]}  # the agent has its query: never echoed back
        assert isinstance(args, AskInput)
        return answer_to_dict(self._source.ask(args.question, args.k))

    async def adispatch(self, name: str, arguments: Mapping[str, Any] | str | None = None) -> dict[str, Any]:
        """Async twin of :meth:`dispatch`; never blocks the event loop."""
        args = self.parse(name, arguments)
        if isinstance(args, SearchInput):
            hits = await self._source.asearch(args.query, args.k, args.filters)
            return {"hits": [hit_to_dict(h) for h in hits]}
        assert isinstance(args, AskInput)
        return answer_to_dict(await self._source.aask(args.question, args.k))

    def handle_tool_call(self, call: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one OpenAI ``tool_calls`` entry with the ``{"role": "tool", ...}`` message to send back.

        A bad call (unknown tool, invalid arguments, a ragloom error) is reported to the model as
        ``{"error": ...}`` content so it can correct itself; anything else propagates.
        """
        name, arguments, call_id = _unpack_call(call)
        try:
            content: dict[str, Any] = self.dispatch(name, arguments)
        except RagloomError as exc:
            content = {"error": str(exc)}
        return {"role": "tool", "tool_call_id": call_id, "content": json.dumps(content, ensure_ascii=False)}

    async def ahandle_tool_call(self, call: Mapping[str, Any]) -> dict[str, Any]:
        """Async twin of :meth:`handle_tool_call`."""
        name, arguments, call_id = _unpack_call(call)
        try:
            content: dict[str, Any] = await self.adispatch(name, arguments)
        except RagloomError as exc:
            content = {"error": str(exc)}
        return {"role": "tool", "tool_call_id": call_id, "content": json.dumps(content, ensure_ascii=False)}

    # -- framework exports ----------------------------------------------------------------------------------------
    def langchain(self) -> list[StructuredTool]:
        """These tools as LangChain ``StructuredTool`` objects (needs ``ragloom[langchain]``)."""
        from ragloom.adapters.integrations.langchain import langchain_tools

        return langchain_tools(self)

    def llamaindex(self) -> list[FunctionTool]:
        """These tools as LlamaIndex ``FunctionTool`` objects (needs ``ragloom[llamaindex]``)."""
        from ragloom.adapters.integrations.llamaindex import llamaindex_tools

        return llamaindex_tools(self)


def _unpack_call(call: Mapping[str, Any]) -> tuple[str, Any, str]:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise InvalidInputError(
            'A tool call looks like {"id": ..., "type": "function", "function": {"name": ..., "arguments": "{...}"}}'
        )
    return function["name"], function.get("arguments"), str(call.get("id", ""))
