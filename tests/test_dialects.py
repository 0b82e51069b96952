"""How real servers differ, one case per behaviour, with where it comes from.

The bytes are written here, modelled on each server's source or on output
pasted in its issue tracker; the server and version are named per case.
"""
import json

import pytest

import bor_openai_compat as boc
from helpers import BASE, URL, completion, feed


def ev(obj):
    return ("data: %s\n\n" % json.dumps(obj, separators=(",", ":"))).encode()


def delta_chunk(delta, finish=None, **extra):
    return dict({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}, **extra)


DONE = b"data: [DONE]\n\n"


# -- Reasoning ---------------------------------------------------------------

REASONING = [
    # llama.cpp server (b5000+ with --reasoning-format deepseek), DeepSeek API, vLLM < 0.10.
    pytest.param("reasoning_content", id="llama.cpp/deepseek/old-vllm"),
    # Ollama 0.9+ OpenAI layer, OpenRouter, vLLM 0.10+.
    pytest.param("reasoning", id="ollama/openrouter/new-vllm"),
]


@pytest.mark.parametrize("field", REASONING)
def test_stream_reasoning(field):
    body = (ev(delta_chunk({"role": "assistant", field: "Let me "}))
            + ev(delta_chunk({field: "think."}))
            + ev(delta_chunk({"content": "42"}))
            + ev(delta_chunk({}, "stop")) + DONE)
    stream = feed([body])
    deltas = list(stream)
    assert [d.reasoning for d in deltas[:2]] == ["Let me ", "think."]
    assert stream.result.reasoning == "Let me think." and stream.result.text == "42"


@pytest.mark.parametrize("field", REASONING)
def test_message_reasoning(mocked, client, field):
    mocked.post(URL, json=completion("42", **{field: "Because."}))
    result = client.chat("Why?")
    assert result.reasoning == "Because." and result.text == "42"


# -- Tool calls --------------------------------------------------------------


def call_fragment(index=None, id=None, name=None, arguments=None):
    fragment = {"function": {}}
    if index is not None:
        fragment["index"] = index
    if id is not None:
        fragment["id"] = id
        fragment["type"] = "function"
    if name is not None:
        fragment["function"]["name"] = name
    if arguments is not None:
        fragment["function"]["arguments"] = arguments
    return fragment


def tool_stream(*fragment_lists, finish="tool_calls"):
    body = ev(delta_chunk({"role": "assistant", "content": None}))
    for fragments in fragment_lists:
        body += ev(delta_chunk({"tool_calls": fragments}))
    return body + ev(delta_chunk({}, finish)) + DONE


TOOL_STREAMS = [
    # OpenAI and vLLM: id and name first, arguments in pieces, by index.
    pytest.param(tool_stream(
        [call_fragment(0, "call_1", "get_weather", "")],
        [call_fragment(0, arguments='{"city":')],
        [call_fragment(0, arguments=' "Paris"}')],
        [call_fragment(1, "call_2", "get_time", "")],
        [call_fragment(1, arguments='{"tz": "CET"}')],
    ), id="openai-by-index"),
    # Parallel calls interleaved (OpenAI, LiteLLM passing them on).
    pytest.param(tool_stream(
        [call_fragment(0, "call_1", "get_weather"), call_fragment(1, "call_2", "get_time")],
        [call_fragment(0, arguments='{"city": "Paris"}'), call_fragment(1, arguments='{"tz": "CET"}')],
    ), id="interleaved"),
    # Ollama 0.5+: each call whole, in one delta, with its own id.
    pytest.param(tool_stream(
        [call_fragment(0, "call_1", "get_weather", '{"city": "Paris"}'),
         call_fragment(1, "call_2", "get_time", '{"tz": "CET"}')],
    ), id="ollama-whole"),
    # Servers that omit index (Gemini's OpenAI layer, some gateways): by id.
    pytest.param(tool_stream(
        [call_fragment(None, "call_1", "get_weather", '{"city": "Paris"}')],
        [call_fragment(None, "call_2", "get_time", '{"tz": "CET"}')],
    ), id="no-index-by-id"),
    # No index, and the id only on the first fragment: by position.
    pytest.param(tool_stream(
        [call_fragment(None, "call_1", "get_weather", '{"city":')],
        [call_fragment(None, arguments=' "Paris"}')],
        [call_fragment(None, "call_2", "get_time", '{"tz": "CET"}')],
    ), id="no-index-by-position"),
    # Index 0 reused for every call, told apart by id (seen from vLLM's
    # hermes parser and some gateways).
    pytest.param(tool_stream(
        [call_fragment(0, "call_1", "get_weather", '{"city": "Paris"}')],
        [call_fragment(0, "call_2", "get_time", "")],
        [call_fragment(0, arguments='{"tz": "CET"}')],
    ), id="reused-index-new-id"),
    # The name repeated on every fragment (some vLLM tool parsers).
    pytest.param(tool_stream(
        [call_fragment(0, "call_1", "get_weather", '{"city": ')],
        [call_fragment(0, "call_1", "get_weather", '"Paris"}')],
        [call_fragment(1, "call_2", "get_time", '{"tz": "CET"}')],
    ), id="repeated-name"),
]


@pytest.mark.parametrize("body", TOOL_STREAMS)
def test_stream_tool_calls_merge(body):
    result = feed([body]).result
    assert [(c.id, c.name, c.json()) for c in result.tool_calls] == [
        ("call_1", "get_weather", {"city": "Paris"}),
        ("call_2", "get_time", {"tz": "CET"}),
    ]
    assert result.finish_reason == "tool_calls"
    assert result.message["tool_calls"][0]["function"]["name"] == "get_weather"


def test_non_stream_tool_calls_with_null_content(mocked, client):
    # OpenAI and Ollama: content null beside tool_calls.
    calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]
    mocked.post(URL, json=completion(None, finish="tool_calls", tool_calls=calls))
    result = client.chat("Hi", tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="auto")
    sent = json.loads(mocked.calls[0].request.body)
    assert sent["tool_choice"] == "auto" and sent["tools"][0]["function"]["name"] == "f"
    assert result.text == "" and result.tool_calls == [boc.ToolCall("call_1", "f", '{"x": 1}')]
    assert result.tool_calls[0].json() == {"x": 1}


def test_tool_arguments_that_are_not_json():
    call = boc.ToolCall("call_9", "get_weather", '{"city": "Par')
    with pytest.raises(boc.InvalidResponse, match=r"'get_weather' \(id call_9\) has arguments that are not valid JSON"):
        call.json()
    assert boc.ToolCall("c", "noargs", "").json() == {}


def test_arguments_sent_as_an_object():
    # Ollama's native layer sends arguments as an object, not a string.
    body = tool_stream([{"index": 0, "id": "c1", "function": {"name": "f", "arguments": {"x": 1}}}])
    assert feed([body]).result.tool_calls[0].json() == {"x": 1}


def test_tool_message():
    call = boc.ToolCall("call_1", "f", "{}")
    assert boc.tool_message(call, {"temp": 21}) == {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'}
    assert boc.tool_message("call_2", "done")["content"] == "done"


# -- Usage -------------------------------------------------------------------

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
USAGE_STREAMS = [
    # OpenAI with stream_options.include_usage; llama.cpp; Ollama 0.5+.
    pytest.param(ev(delta_chunk({"content": "hi"})) + ev(delta_chunk({}, "stop"))
                 + ev({"id": "c1", "choices": [], "usage": USAGE}) + DONE, id="empty-choices-chunk"),
    # LiteLLM 1.x: usage on a chunk after the finish, with an empty delta.
    pytest.param(ev(delta_chunk({"content": "hi"})) + ev(delta_chunk({}, "stop"))
                 + ev(delta_chunk({}, None, usage=USAGE)) + DONE, id="after-finish"),
    # vLLM with continuous_usage_stats / some gateways: usage on the finish chunk.
    pytest.param(ev(delta_chunk({"content": "hi"})) + ev(delta_chunk({}, "stop", usage=USAGE)) + DONE,
                 id="on-finish-chunk"),
    # Groq: usage inside x_groq on the last chunk.
    pytest.param(ev(delta_chunk({"content": "hi"}))
                 + ev(delta_chunk({}, "stop", x_groq={"id": "req_1", "usage": USAGE})) + DONE, id="x_groq"),
]


@pytest.mark.parametrize("body", USAGE_STREAMS)
def test_usage_is_not_lost(body):
    result = feed([body]).result
    assert result.usage == USAGE and result.text == "hi" and result.finish_reason == "stop"


# -- Framing -----------------------------------------------------------------

FRAMINGS = [
    # OpenRouter: processing comments before and between events.
    pytest.param(b": OPENROUTER PROCESSING\n\n" + ev(delta_chunk({"content": "a"}))
                 + b": OPENROUTER PROCESSING\n\n" + ev(delta_chunk({"content": "b"}, "stop")) + DONE,
                 id="openrouter-comments"),
    # sse-starlette (LiteLLM, llama-cpp-python): ": ping" keep-alives and CRLF.
    pytest.param((": ping - 2025-01-01 00:00:00\r\n\r\n" + "data: %s\r\n\r\n" % json.dumps(delta_chunk({"content": "ab"}, "stop"))
                  + "data: [DONE]\r\n\r\n").encode(), id="sse-starlette-crlf"),
    # A bare ":" ping and "data:" without a space (hand-written servers).
    pytest.param(b":\n\n" + b"data:" + json.dumps(delta_chunk({"content": "ab"}, "stop")).encode() + b"\n\ndata:[DONE]\n\n",
                 id="no-space"),
    # ik_llama.cpp (before --send-done): finish chunk, then the body ends.
    pytest.param(ev(delta_chunk({"content": "a"})) + ev(delta_chunk({"content": "b"}, "stop")), id="no-done"),
]


@pytest.mark.parametrize("body", FRAMINGS)
def test_framings(body):
    assert feed([body]).result.text == "ab"


def test_ollama_stream_that_ends_early():
    # Ollama when the runner dies: content deltas, then the body just ends.
    body = ev(delta_chunk({"role": "assistant", "content": "Once upon"})) + ev(delta_chunk({"content": " a time"}))
    with pytest.raises(boc.StreamInterrupted, match="ended before the answer was finished") as info:
        list(feed([body]))
    assert info.value.partial.text == "Once upon a time"


# -- Errors inside streams ---------------------------------------------------

STREAM_ERRORS = [
    # vLLM 0.6+: an error chunk, then [DONE].
    pytest.param(ev({"error": {"object": "error", "message": "This model's maximum context length is 4096 tokens.",
                               "type": "BadRequestError", "param": None, "code": 400}}) + DONE,
                 boc.BadRequest, "maximum context length", id="vllm-error-then-done"),
    # llama.cpp server 2025+: data: {"error": {...}}.
    pytest.param(ev({"error": {"code": 500, "message": "the request exceeds the available context size",
                               "type": "exceed_context_size_error"}}),
                 boc.ContextLengthExceeded, "exceeds the available context size", id="llama.cpp-data-error"),
    # Old llama.cpp server (2024): an "error:" field line instead of data.
    pytest.param(b'error: {"code":500,"message":"slot unavailable","type":"server_error"}\n\n',
                 boc.ServerError, "slot unavailable", id="llama.cpp-old-error-field"),
    # An "event: error" frame (TGI, Anthropic-style gateways).
    pytest.param(b'event: error\ndata: {"error": {"message": "Overloaded", "type": "overloaded_error"}}\n\n',
                 boc.APIError, "Overloaded", id="event-error"),
    pytest.param(b"event: error\ndata: upstream went away\n\n", boc.APIError, "upstream went away",
                 id="event-error-plain-text"),
    # OpenRouter: a mid-stream error beside choices with finish_reason "error".
    pytest.param(ev(dict(delta_chunk({"content": ""}, "error"), error={"code": "server_error",
                                                                     "message": "Provider disconnected unexpectedly"})),
                 boc.APIError, "Provider disconnected", id="openrouter-error-with-choices"),
    # Ollama: {"error": {"message": ...}} with no code.
    pytest.param(ev({"error": {"message": "model runner has unexpectedly stopped", "type": "api_error",
                               "param": None, "code": None}}),
                 boc.APIError, "runner has unexpectedly stopped", id="ollama-error"),
    # vLLM < 0.5: the flat error object.
    pytest.param(ev({"object": "error", "message": "Internal error", "type": "InternalServerError", "code": 500}),
                 boc.ServerError, "Internal error", id="old-vllm-flat"),
]


@pytest.mark.parametrize("tail, exc_type, words", STREAM_ERRORS)
def test_stream_errors_keep_partial(tail, exc_type, words):
    body = ev(delta_chunk({"content": "Partial "})) + ev(delta_chunk({"content": "text"})) + tail
    with pytest.raises(exc_type) as info:
        list(feed([body]))
    error = info.value
    assert isinstance(error, boc.StreamInterrupted)
    assert error.partial.text == "Partial text"
    assert words in str(error) and words in error.message


# -- Error bodies ------------------------------------------------------------

ERROR_BODIES = [
    # OpenAI: code as a string.
    pytest.param(400, {"error": {"message": "Invalid 'messages': empty array.", "type": "invalid_request_error",
                                 "param": "messages", "code": "empty_array"}},
                 boc.BadRequest, "Invalid 'messages': empty array.", "empty_array", id="openai-code-str"),
    # llama.cpp: code as an int.
    pytest.param(400, {"error": {"code": 400, "message": "'messages' is required", "type": "invalid_request_error"}},
                 boc.BadRequest, "'messages' is required", 400, id="llama.cpp-code-int"),
    # vLLM 401 and LM Studio: {"error": "text"}.
    pytest.param(401, {"error": "Unauthorized"}, boc.AuthenticationError, "Unauthorized", None, id="vllm-401"),
    # vLLM < 0.5: flat.
    pytest.param(400, {"object": "error", "message": "best_of must be 1", "type": "BadRequestError", "code": 400},
                 boc.BadRequest, "best_of must be 1", 400, id="old-vllm-flat"),
    # FastAPI servers (llama-cpp-python, TGI proxies): {"detail": ...}.
    pytest.param(400, {"detail": "Model is still loading"}, boc.BadRequest, "Model is still loading", None,
                 id="fastapi-detail"),
    # LiteLLM: message that is itself a dict.
    pytest.param(400, {"error": {"message": {"error": "Budget exceeded for key"}, "type": "budget_exceeded",
                                 "param": None, "code": "400"}},
                 boc.BadRequest, "Budget exceeded for key", "400", id="litellm-message-dict"),
    # LiteLLM: a Python repr of the upstream error inside message.
    pytest.param(400, {"error": {"message": "litellm.BadRequestError: OpenAIException - Error code: 400 - "
                                            "{'error': {'message': 'max_tokens is too large: 100000', 'type': "
                                            "'invalid_request_error', 'param': 'max_tokens', 'code': None}}",
                                 "type": None, "param": None, "code": "400"}},
                 boc.BadRequest, "max_tokens is too large: 100000", "400", id="litellm-repr"),
    # A reverse proxy's HTML page.
    pytest.param(504, "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
                 boc.ServerError, "504 Gateway Time-out", None, id="nginx-html"),
    # Plain text (Ollama's router).
    pytest.param(405, "405 method not allowed", boc.BadRequest, "405 method not allowed", None, id="plain-text"),
]


@pytest.mark.parametrize("status, body, exc_type, words, code", ERROR_BODIES)
def test_error_bodies(mocked, client, status, body, exc_type, words, code):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    mocked.post(URL, status=status, **kwargs)
    with pytest.raises(exc_type) as info:
        client.chat("Hi")
    assert info.value.message == words
    assert words in str(info.value)
    assert info.value.code == code


def test_validation_error_as_500_is_not_retried(mocked, fast_retries):
    # llama-cpp-python 0.3: a pydantic validation error comes back as 500.
    mocked.post(URL, status=500, json={"error": {
        "message": "1 validation error for CreateChatCompletionRequest\nmessages.0.role\n  Input should be 'system', 'user' or 'assistant'",
        "type": "internal_server_error", "param": None, "code": None}})
    client = boc.Client(BASE, model="m", max_retries=3)
    with pytest.raises(boc.BadRequest, match="validation error"):
        client.chat("Hi")
    assert len(mocked.calls) == 1


def test_lm_studio_wrong_path_answers_200(mocked):
    # LM Studio 0.3: 200 {"error": "Unexpected endpoint or method. (POST /chat/completions)"}.
    mocked.post("http://api.test/chat/completions",
                json={"error": "Unexpected endpoint or method. (POST /chat/completions)"})
    with pytest.raises(boc.EndpointNotFound, match=r"Unexpected endpoint.*try 'http://api.test/v1'"):
        boc.Client("http://api.test", model="m").chat("Hi")


# -- Non-stream quirks -------------------------------------------------------


def test_blank_lines_before_the_json_body(mocked, client):
    # DeepSeek under load: keep-alive blank lines before the JSON.
    mocked.post(URL, body="\n\n\n" + json.dumps(completion("late")), content_type="application/json")
    assert client.chat("Hi").text == "late"


def test_sse_answer_to_a_non_stream_request(mocked, client):
    # Some gateways stream regardless, with a trailing [DONE].
    body = ev(delta_chunk({"content": "stre"})) + ev(delta_chunk({"content": "amed"}, "stop")) + DONE
    mocked.post(URL, body=body, content_type="text/event-stream; charset=utf-8")
    result = client.chat("Hi")
    assert result.text == "streamed" and result.finish_reason == "stop"


def test_content_as_a_list_of_parts(mocked, client):
    # Mistral's reasoning models: content as a list of typed parts.
    mocked.post(URL, json=completion([{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]))
    assert client.chat("Hi").text == "Hello there"


MODEL_LISTS = [
    # Ollama with nothing pulled.
    pytest.param({"object": "list", "data": None}, [], id="ollama-null"),
    # llama.cpp and LM Studio: entries without "created".
    pytest.param({"object": "list", "data": [{"id": "a", "object": "model", "owned_by": "llamacpp"}]}, ["a"],
                 id="no-created"),
    # A bare list (some proxies).
    pytest.param([{"id": "a"}, {"id": "b"}], ["a", "b"], id="bare-list"),
    # Ollama's native /api/tags shape, when the base URL points there.
    pytest.param({"models": [{"name": "llama3:latest", "model": "llama3:latest"}]}, ["llama3:latest"],
                 id="ollama-native"),
]


@pytest.mark.parametrize("body, ids", MODEL_LISTS)
def test_model_lists(mocked, client, body, ids):
    mocked.get(BASE + "/models", json=body)
    assert client.models() == ids


# -- Issue 17: Groq's error events; Mistral's reasoning as content parts ----------

# Groq: an error inside the stream carries its HTTP status as "status_code",
# and its code is a word ("tool_use_failed"), not a number.
GROQ_ERROR = {"error": {"message": "Failed to call a function. Please adjust your prompt.",
                        "type": "invalid_request_error", "code": "tool_use_failed", "status_code": 400,
                        "failed_generation": "<function=get_weather>{\"city\": }"}}


@pytest.mark.parametrize("frame", [
    pytest.param(ev(GROQ_ERROR), id="data-error"),
    pytest.param(b"event: error\n" + ev(GROQ_ERROR), id="event-error"),
])
@pytest.mark.parametrize("before", [["Partial ", "text"], []], ids=["after-tokens", "first-event"])
def test_groq_error_event_is_a_bad_request_with_its_status(frame, before):
    body = b"".join(ev(delta_chunk({"content": text})) for text in before) + frame + DONE
    with pytest.raises(boc.BadRequest) as info:
        list(feed([body]))
    error = info.value
    assert isinstance(error, boc.StreamInterrupted)
    assert error.status_code == 400
    assert error.partial.text == "".join(before)
    assert "Failed to call a function" in str(error) and error.code == "tool_use_failed"


# Mistral's reasoning models (magistral): content as typed parts, the thinking
# in a "thinking" part holding parts of its own (as the issue quotes it).
MISTRAL_PARTS = [{"type": "thinking", "thinking": [{"type": "text", "text": "Let me think"}]},
                 {"type": "text", "text": "The answer"}]


def test_mistral_thinking_parts_in_a_whole_answer(mocked, client):
    mocked.post(URL, json=completion(MISTRAL_PARTS))
    result = client.chat("Hi")
    assert (result.text, result.reasoning) == ("The answer", "Let me think")
    assert result.raw["choices"][0]["message"]["content"] == MISTRAL_PARTS


def test_mistral_thinking_parts_in_a_stream():
    body = (ev(delta_chunk({"role": "assistant", "content": [
                {"type": "thinking", "thinking": [{"type": "text", "text": "Let me "}]}]}))
            + ev(delta_chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "think"}]}]}))
            + ev(delta_chunk({"content": [{"type": "text", "text": "The "}]}))
            + ev(delta_chunk({"content": "answer"}, "stop")) + DONE)
    stream = feed([body])
    deltas = list(stream)
    assert [(d.text, d.reasoning) for d in deltas] == [
        ("", "Let me "), ("", "think"), ("The ", ""), ("answer", "")]
    assert (stream.result.text, stream.result.reasoning) == ("The answer", "Let me think")


@pytest.mark.parametrize("part", [
    pytest.param({"type": "weird", "weird": "x"}, id="unknown-type"),
    pytest.param({"type": "weird", "text": "x"}, id="unknown-type-with-a-text-field"),
    pytest.param({"type": "reference", "reference_ids": [1, 2]}, id="mistral-reference"),
])
def test_unknown_content_parts_stay_out_of_the_text(mocked, client, part):
    content = [{"type": "text", "text": "The "}, part, {"type": "text", "text": "answer"}]
    mocked.post(URL, json=completion(content))
    result = client.chat("Hi")
    assert result.text == "The answer"
    assert result.raw["choices"][0]["message"]["content"][1] == part


@pytest.mark.parametrize("content", [{"secret": "x"}, 5, True], ids=["object", "number", "boolean"])
def test_content_of_another_type_is_an_invalid_response_not_text(mocked, client, content):
    mocked.post(URL, json=completion(content))
    with pytest.raises(boc.InvalidResponse, match="not text or a list of parts"):
        client.chat("Hi")
