"""Tool calling: LangChain bind_tools / with_structured_output, the LlamaIndex function-calling LLM and the
OpenAI-compatible generator's tools, against a loopback server speaking the chat-completions protocol; the
local generator's chat-template tool format on a tiny model; stop applied while streaming."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from ragloom.adapters.generators.openai_http import OpenAICompatibleGenerator
from ragloom.errors import ConfigError
from ragloom.tool_calls import ToolCall, parse_tool_calls
from ragloom.types import Message

sys.path.insert(0, str(Path(__file__).parents[1]))
from openai_fake import FakeOpenAIServer, Reply

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def call(name: str, arguments: dict[str, object], call_id: str = "call_1") -> dict[str, object]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


class Answer(BaseModel):
    """An answer with its confidence."""

    answer: str = Field(description="the answer")
    confidence: float


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def endpoint(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAICompatibleGenerator]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    generator = OpenAICompatibleGenerator("fake-model", base_url=server.base_url, max_retries=0)
    yield generator
    generator.close()


def test_parse_tool_calls_reads_tagged_and_bare_calls() -> None:
    reply = parse_tool_calls(
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    )
    assert reply.content == "Let me check." and [(c.name, dict(c.arguments)) for c in reply.tool_calls] == [
        ("get_weather", {"city": "Oslo"})
    ]
    bare = parse_tool_calls(
        '```json\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}\n```', ["get_weather"]
    )
    assert bare.content == "" and bare.tool_calls[0].arguments == {"city": "Rome"}
    assert parse_tool_calls('{"name": "other", "arguments": {}}', ["get_weather"]).tool_calls == ()
    assert parse_tool_calls("<tool_call>not json</tool_call>").content == "<tool_call>not json</tool_call>"
    assert ToolCall("f", {"a": 1}).to_openai()["function"]["arguments"] == '{"a": 1}'


def test_openai_generator_sends_tools_and_reads_calls(server: FakeOpenAIServer, endpoint) -> None:  # type: ignore[no-untyped-def]
    server.script(Reply(tool_calls=[call("get_weather", {"city": "Oslo"}, "call_9")]))
    chat = [{"role": "user", "content": "Weather in Oslo?"}]
    reply = endpoint.generate_with_tools(chat, [WEATHER], tool_choice="any")
    assert reply.tool_calls == (ToolCall("get_weather", {"city": "Oslo"}, "call_9"),)
    sent = server.requests[-1].body
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "required" and sent["messages"] == chat
    server.script(Reply(content="It is sunny."))
    assert endpoint.generate_with_tools(chat, [WEATHER]).content == "It is sunny."


def test_tool_reply_cut_at_max_tokens_warns_at_the_users_call(server: FakeOpenAIServer, endpoint) -> None:  # type: ignore[no-untyped-def]
    """generate and generate_with_tools share one request loop; the truncation warning still names the line that
    called the module-level generate_with_tools (what agents and the framework bridges call)."""
    from ragloom.adapters.integrations.tool_calling import generate_with_tools
    from ragloom.errors import TruncationWarning

    server.script(Reply(content="It is", finish_reason="length"), Reply(content="It is", finish_reason="length"))
    chat = [{"role": "user", "content": "Weather in Oslo?"}]
    with pytest.warns(TruncationWarning, match="max_tokens") as caught:
        assert generate_with_tools(endpoint, chat, [WEATHER]).content == "It is"
    assert caught[0].filename == __file__
    with pytest.warns(TruncationWarning) as caught:
        assert endpoint.generate([Message("user", "Weather in Oslo?")]) == "It is"
    assert caught[0].filename == __file__


def test_langchain_bind_tools_and_structured_output(server: FakeOpenAIServer, endpoint) -> None:  # type: ignore[no-untyped-def]
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from ragloom.adapters.integrations.langchain import RagloomChatModel

    model = RagloomChatModel(generator=endpoint)
    server.script(Reply(tool_calls=[call("get_weather", {"city": "Oslo"})]))
    message = model.bind_tools([WEATHER]).invoke("Weather in Oslo?")
    assert isinstance(message, AIMessage)
    assert message.tool_calls == [
        {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_1", "type": "tool_call"}
    ]
    # the tool result goes back as a tool message, in OpenAI form
    server.script(Reply(content="Sunny in Oslo."))
    history = [HumanMessage("Weather in Oslo?"), message, ToolMessage("sunny", tool_call_id="call_1")]
    assert model.bind_tools([WEATHER]).invoke(history).content == "Sunny in Oslo."
    sent = server.requests[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "get_weather" and sent[2]["role"] == "tool"

    server.script(Reply(tool_calls=[call("Answer", {"answer": "Paris", "confidence": 0.9})]))
    parsed = model.with_structured_output(Answer).invoke("Capital of France?")
    assert parsed == Answer(answer="Paris", confidence=0.9)
    assert server.requests[-1].body["tool_choice"] == "required"


async def test_langchain_tools_async_and_streamed(server: FakeOpenAIServer, endpoint) -> None:  # type: ignore[no-untyped-def]
    from ragloom.adapters.integrations.langchain import RagloomChatModel

    model = RagloomChatModel(generator=endpoint).bind_tools([WEATHER])
    server.script(Reply(tool_calls=[call("get_weather", {"city": "Rome"})]))
    message = await model.ainvoke("Weather in Rome?")
    assert message.tool_calls[0]["args"] == {"city": "Rome"}
    server.script(Reply(tool_calls=[call("get_weather", {"city": "Bern"})]))
    chunks = list(model.stream("Weather in Bern?"))
    assert chunks[0].tool_call_chunks[0]["name"] == "get_weather"


def test_tools_need_a_generator_that_calls_tools() -> None:
    from ragloom.adapters.integrations.langchain import RagloomChatModel

    class Plain:
        name = "plain"

        def generate(self, messages: Sequence[Message]) -> str:
            return "x"

    with pytest.raises(ConfigError, match="cannot call tools"):
        RagloomChatModel(generator=Plain()).bind_tools([WEATHER])


def test_llamaindex_function_calling_llm(server: FakeOpenAIServer, endpoint) -> None:  # type: ignore[no-untyped-def]
    from llama_index.core.tools import FunctionTool

    from ragloom.adapters.integrations.llamaindex_function_calling import RagloomFunctionCallingLLM

    def get_weather(city: str) -> str:
        """Current weather of a city."""
        return f"sunny in {city}"

    llm = RagloomFunctionCallingLLM(generator=endpoint)
    assert llm.metadata.is_function_calling_model
    tool = FunctionTool.from_defaults(fn=get_weather)
    server.script(Reply(tool_calls=[call("get_weather", {"city": "Oslo"})]))
    response = llm.chat_with_tools([tool], user_msg="Weather in Oslo?", tool_required=True)
    selections = llm.get_tool_calls_from_response(response)
    assert [(s.tool_name, s.tool_kwargs) for s in selections] == [("get_weather", {"city": "Oslo"})]
    assert server.requests[-1].body["tool_choice"] == "required"
    server.script(Reply(tool_calls=[call("get_weather", {"city": "Rome"})]))
    output = llm.predict_and_call([tool], user_msg="Weather in Rome?")
    assert "sunny in Rome" in str(output)
    server.script(Reply(content="plain words"))
    assert llm.get_tool_calls_from_response(llm.chat_with_tools([tool], "hi"), error_on_no_tool_call=False) == []


TOOL_TEMPLATE = (
    "{% if tools %}<|system|> Tools: {% for t in tools %}{{ t.function.name }} {% endfor %}<|end|>{% endif %}"
    "{% for m in messages %}<|{{ m.role if m.role != 'tool' else 'user' }}|> {{ m.content or '' }}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %} call {{ c.function.name }} {{ c.function.arguments.city }}"
    "{% endfor %}{% endif %}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_local_generator_uses_the_chat_template_tool_format(tiny_llm_dir: Path, tmp_path: Path) -> None:
    import shutil

    from ragloom.adapters.generators.local import TransformersGenerator

    plain = TransformersGenerator(tiny_llm_dir, max_new_tokens=4)
    with pytest.raises(ConfigError, match="no tool format"):
        plain.generate_with_tools([{"role": "user", "content": "the"}], [WEATHER])
    folder = tmp_path / "tool-llm"
    shutil.copytree(tiny_llm_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = TOOL_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    generator = TransformersGenerator(folder, max_new_tokens=4)
    history = [
        {"role": "user", "content": "the"},
        {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "the"})]},
        {"role": "tool", "content": "the", "tool_call_id": "call_1"},
    ]
    prompt = generator.tool_prompt(history, [WEATHER], tool_choice="get_weather")
    assert "Tools: get_weather" in prompt and "call get_weather the" in prompt  # arguments reach the template
    assert "You must answer by calling the tool 'get_weather'." in prompt  # tool_choice, asked for in words
    reply = generator.generate_with_tools(history, [WEATHER])
    assert isinstance(reply.content, str)  # a random model: no call expected, but the reply is parsed


class SlowWords:
    """A generator streaming one word every 50 ms, recording whether it was told to stop early."""

    name = "slow"

    def __init__(self) -> None:
        self.closed = threading.Event()

    def generate(self, messages: Sequence[Message]) -> str:
        return " ".join(self.stream(messages))

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        try:
            for word in ["alpha ", "beta ", "STOP ", *["more "] * 40]:
                time.sleep(0.05)
                yield word
        finally:
            self.closed.set()


def test_invoke_with_stop_stops_the_model_early() -> None:
    from ragloom.adapters.integrations.langchain import RagloomChatModel

    generator = SlowWords()
    started = time.perf_counter()
    text = RagloomChatModel(generator=generator).invoke("go", stop=["STOP"]).content
    assert text == "alpha beta " and generator.closed.is_set()
    assert time.perf_counter() - started < 1.0  # 43 words would take 2.2 s
