"""Answers that look fine but are not: ChatResult.warnings (issue 18, part 3).

Each case is what a server really sends in that situation; the last part runs
the detectors over every dialect fixture and ordinary answers and shows that
they stay silent.
"""
import json
import logging

import pytest
import responses

import bor_openai_compat as boc
import test_dialects as dialects
import helpers
from helpers import BASE, URL, chunk, completion, feed, sse

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]


@pytest.fixture
def warnings_logged(caplog):
    caplog.set_level(logging.WARNING, logger="bor_openai_compat")
    return caplog


def answered(mocked, body, **params):
    mocked.post(URL, json=body)
    return boc.Client(BASE, model="m", max_retries=0).chat("Hi", **params)


# -- Reasoning that ate the answer -------------------------------------------


def test_the_reasoning_used_the_whole_budget(mocked, warnings_logged):
    # llama.cpp/vLLM with a reasoning parser: the budget ran out inside <think>.
    result = answered(mocked, completion("", finish="length", reasoning_content="Let me think. " * 400),
                      max_tokens=1000)
    assert result.text == "" and len(result.warnings) == 1
    assert "never started" in result.warnings[0] and "Raise max_tokens" in result.warnings[0]
    assert [r.getMessage() for r in warnings_logged.records] == result.warnings  # logged once


def test_the_answer_sits_in_the_reasoning(mocked):
    result = answered(mocked, completion("", finish="stop", reasoning="The capital is Paris."))
    assert len(result.warnings) == 1 and "The answer is in .reasoning" in result.warnings[0]


def test_a_stream_whose_reasoning_used_the_budget():
    body = sse(chunk(reasoning_content="thinking "), chunk(reasoning_content="more"), chunk(finish="length"))
    stream = feed([body])
    assert [d.text for d in stream if d.text] == []
    assert "never started" in stream.result.warnings[0]


# -- Tool calls written as text ----------------------------------------------

WRITTEN_CALLS = [
    pytest.param('{"name": "get_weather", "arguments": {"city": "Paris"}}', id="bare"),
    pytest.param('```json\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}\n```', id="fence"),
    pytest.param('<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>', id="hermes-tags"),
    # Llama 3.1/3.2 without a tool parser: "parameters", sometimes after <|python_tag|>.
    pytest.param('{"name": "get_weather", "parameters": {"city": "Paris"}}', id="llama3-parameters"),
    pytest.param('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', id="python-tag"),
    pytest.param('[{"name": "get_weather", "arguments": {}}, {"name": "get_time", "arguments": {}}]', id="list"),
    pytest.param('I will call it.\n```\n{"type": "function", "function": {"name": "get_time", "arguments": {}}}\n```',
                 id="openai-shape-after-prose"),
]


@pytest.mark.parametrize("text", WRITTEN_CALLS)
def test_a_tool_call_written_as_text(mocked, text):
    result = answered(mocked, completion(text), tools=TOOLS)
    assert result.tool_calls == [] and len(result.warnings) == 1
    assert "did not parse tool calls" in result.warnings[0] and "--jinja" in result.warnings[0]


NOT_CALLS = [
    pytest.param("The weather tool get_weather needs a city.", id="prose-naming-the-tool"),
    pytest.param('{"name": "Paris", "arguments": {"x": 1}}', id="json-with-another-name"),
    pytest.param('{"name": "get_weather"}', id="name-without-arguments"),
    pytest.param('{"city": "Paris", "temperature": 21}', id="json-data"),
    pytest.param("```python\nget_weather(city='Paris')\n```", id="code"),
]


@pytest.mark.parametrize("text", NOT_CALLS)
def test_no_warning_for_text_that_is_no_call(mocked, text):
    assert answered(mocked, completion(text), tools=TOOLS).warnings == []


def test_no_warning_when_the_call_came_as_a_tool_call(mocked):
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    body = completion('{"name": "get_weather", "arguments": {}}', finish="tool_calls", tool_calls=[call])
    assert answered(mocked, body, tools=TOOLS).warnings == []


def test_no_warning_when_no_tools_were_sent(mocked):
    assert answered(mocked, completion('{"name": "get_weather", "arguments": {}}')).warnings == []


# -- A prompt cut to the window ----------------------------------------------


def ollama_like(mocked, num_ctx):
    """A fake Ollama that cuts a long conversation as its server does.

    ollama/ollama@fb30760996871fa9460115c753afd2c60d4ab0f7 server/prompt.go
    chatPrompt: the oldest messages are dropped until the rendered prompt
    fits num_ctx, keeping the system messages and the last one; the usage it
    reports (prompt_eval_count) counts what was kept. Its /v1 answers carry
    system_fingerprint "fp_ollama" (openai/openai.go). Tokens here: 4
    characters each, as a tokenizer of English roughly counts.
    """
    mocked.get(BASE + "/models", json={"object": "list", "data": [
        {"id": "llama3.2:latest", "object": "model", "created": 1, "owned_by": "library"}]})
    mocked.post("http://api.test/api/show", json={
        "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
        "capabilities": ["completion", "tools"]})
    mocked.get("http://api.test/api/ps", json={"models": [
        {"name": "llama3.2:latest", "model": "llama3.2:latest", "context_length": num_ctx}]})

    def answer(request):
        messages = json.loads(request.body)["messages"]
        size = lambda kept: sum(len(m["content"]) for m in kept) // 4  # noqa: E731
        kept = list(messages)
        while size(kept) > num_ctx and len(kept) > 1:
            first = next(i for i, m in enumerate(kept) if m["role"] != "system")
            if first == len(kept) - 1:
                break
            del kept[first]
        body = completion("Sure.", model="llama3.2:latest",
                          usage={"prompt_tokens": size(kept), "completion_tokens": 2, "total_tokens": size(kept) + 2})
        body["system_fingerprint"] = "fp_ollama"
        return 200, {}, json.dumps(body)

    mocked.add_callback(responses.POST, URL, callback=answer)
    return boc.Client(BASE, model="llama3.2:latest", max_retries=0)


def long_conversation():
    history = []
    for i in range(12):
        history += [{"role": "user", "content": "Here is part %d of the report: %s" % (i, "data " * 300)},
                    {"role": "assistant", "content": "Noted."}]
    return history + [{"role": "user", "content": "Summarise the whole report."}]


def test_a_prompt_cut_silently_is_said_once_the_window_is_known(mocked):
    client = ollama_like(mocked, 2048)
    info = client.model_info()
    assert (info.server, info.context_length, info.max_context_length) == ("ollama", 2048, 131072)
    result = client.chat(long_conversation())
    assert result.text == "Sure." and result.usage["prompt_tokens"] <= 2048
    [warning] = result.warnings
    assert "The prompt was cut" in warning and "window of 2048" in warning
    assert "OLLAMA_CONTEXT_LENGTH" in warning


def test_a_prompt_that_fits_is_not_said_to_be_cut(mocked):
    client = ollama_like(mocked, 32768)
    client.model_info()
    assert client.chat(long_conversation()).warnings == []


def test_without_model_info_nothing_is_guessed(mocked):
    # The window is not known: the client does not guess one from the name.
    client = ollama_like(mocked, 2048)
    assert client.chat(long_conversation()).warnings == []


# -- Options a server drops without a word -----------------------------------


def test_options_sent_to_ollama_v1_are_said_to_be_dropped(mocked):
    body = dict(completion("Hi"), system_fingerprint="fp_ollama")
    result = answered(mocked, body, options={"num_ctx": 8192}, keep_alive="10m", temperature=0)
    [warning] = result.warnings
    assert warning.startswith("keep_alive, options does not reach the model") and "Modelfile" in warning


def test_the_same_options_elsewhere_are_not_warned_about(mocked):
    assert answered(mocked, completion("Hi"), options={"num_ctx": 8192}).warnings == []


# -- No false alarms ---------------------------------------------------------

ORDINARY = [
    completion("Hello! How can I help?"),
    completion("", finish="tool_calls", tool_calls=[
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]),
    completion("Paris.", reasoning_content="The capital of France is Paris."),
    completion("Cut off here", finish="length"),
    completion('{"name": "Ada", "age": 36}'),
    completion("```json\n{\"items\": [1, 2, 3]}\n```"),
    completion(""),
]


def every_dialect_body():
    for table in (dialects.TOOL_STREAMS, dialects.USAGE_STREAMS, dialects.FRAMINGS):
        for param in table:
            yield pytest.param(param.values[0], id="%s" % param.id)
    for field in ("reasoning_content", "reasoning"):
        yield pytest.param(dialects.ev(dialects.delta_chunk({field: "think"}))
                           + dialects.ev(dialects.delta_chunk({"content": "answer"}, "stop")) + dialects.DONE,
                           id="reasoning-" + field)


def known_client():
    """A client that knows a small window, as after model_info(), for the strictest check."""
    client = boc.Client(BASE, model="m")
    client._infos["m"] = boc.ModelInfo("m", server="ollama", context_length=2048, max_context_length=131072)
    return client


def call_with_everything():
    call = boc._Call(None, "m", stream=True)
    call.tools = ("get_weather", "get_time")
    call.params = frozenset(("temperature", "max_tokens"))
    call.prompt_chars = 4000
    return call


@pytest.mark.parametrize("body", list(every_dialect_body()))
def test_no_warning_on_any_dialect_stream(body, warnings_logged):
    client = known_client()
    stream = boc.ChatStream(client, helpers._Response(), call_with_everything(), chunks=iter([body]))
    assert stream.result.warnings == []
    assert warnings_logged.records == []


@pytest.mark.parametrize("body", ORDINARY, ids=lambda b: b["choices"][0]["message"]["content"][:20] or "empty")
def test_no_warning_on_ordinary_answers(mocked, body, warnings_logged):
    mocked.post(URL, json=body)
    client = known_client()
    result = client.chat("What is the weather in Paris?" * 20, tools=TOOLS, temperature=0)
    assert result.warnings == [] and warnings_logged.records == []
