"""JSON answers: ChatResult.json() and schema= (response_format json_schema)."""
import json

import pytest

import bor_openai_compat as boc
from helpers import URL, completion

SCHEMA = {
    "title": "City",
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "text, value",
    [
        ('{"a": 1}', {"a": 1}),
        ('  \n{"a": [1, 2]}\n ', {"a": [1, 2]}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('```JSON\n{"a": 1}```', {"a": 1}),
        ('\n```\n[1, 2]\n```\n', [1, 2]),
        ("```json\r\n\"text\"\r\n```", "text"),
        ("42", 42),
        ("null", None),
    ],
    ids=["object", "whitespace", "json-fence", "fence-closing-on-the-line", "plain-fence", "crlf", "number", "null"],
)
def test_json_parses_the_answer(text, value):
    assert boc.ChatResult(text).json() == value


@pytest.mark.parametrize(
    "text",
    [
        'Sure! Here it is: {"a": 1}',
        '```json\n{"a": 1}\n```\nHope this helps.',
        '```json\n{"a": 1}',
        '```python\n{"a": 1}\n```',
        '{"a": 1',
        "",
    ],
    ids=["prose-before", "prose-after", "unclosed-fence", "other-language", "cut-off", "empty"],
)
def test_anything_else_raises_showing_the_start(text):
    with pytest.raises(boc.InvalidResponse, match="not JSON") as info:
        boc.ChatResult(text).json()
    assert text.strip()[:20] in str(info.value)


def test_deep_nesting_is_an_invalid_response_not_a_recursion_error():
    with pytest.raises(boc.InvalidResponse, match="nested too deeply"):
        boc.ChatResult("[" * 200000 + "]" * 200000).json()


def test_reasoning_is_not_part_of_the_json(mocked, client):
    mocked.post(URL, json=completion('<think>The user wants {"x"}</think>\n```json\n{"x": 2}\n```'))
    result = client.chat("Give me x")
    assert result.json() == {"x": 2}
    assert "user wants" in result.reasoning


def test_schema_is_sent_as_response_format(mocked, client):
    mocked.post(URL, json=completion('{"name": "Köln", "population": 1084831}'))
    result = client.chat("A city?", schema=SCHEMA, temperature=0)
    sent = json.loads(mocked.calls[0].request.body)
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "City", "schema": SCHEMA, "strict": True},
    }
    assert "schema" not in sent and sent["temperature"] == 0
    assert result.json()["population"] == 1084831


@pytest.mark.parametrize(
    "schema, name",
    [({"type": "object"}, "answer"), ({"title": "A city, please!"}, "A_city_please_"), ({"title": "x" * 80}, "x" * 64)],
    ids=["no-title", "title-with-spaces", "long-title"],
)
def test_schema_name(mocked, client, schema, name):
    mocked.post(URL, json=completion("{}"))
    client.chat("Hi", schema=schema)
    assert json.loads(mocked.calls[0].request.body)["response_format"]["json_schema"]["name"] == name


def test_schema_in_a_stream(mocked, client):
    mocked.post(URL, body=b'data: {"choices":[{"delta":{"content":"[1]"},"finish_reason":"stop"}]}\n\n',
                content_type="text/event-stream")
    with client.stream("Hi", schema={"type": "array"}) as stream:
        assert stream.result.json() == [1]
    assert json.loads(mocked.calls[0].request.body)["response_format"]["type"] == "json_schema"


def test_schema_and_response_format_together_is_a_mistake(client):
    with pytest.raises(boc.ConfigurationError, match="not both"):
        client.chat("Hi", schema=SCHEMA, response_format={"type": "json_object"})
    with pytest.raises(boc.ConfigurationError, match="JSON schema dict"):
        client.chat("Hi", schema='{"type": "object"}')


REFUSALS = [
    # llama-cpp-python: pydantic's words, with status 500 (not retried: a validation error)
    pytest.param(500, {"error": {"message": "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n"
                                            "  Input should be 'text' or 'json_object' [type=literal_error, "
                                            "input_value='json_schema', input_type=str]",
                                 "type": "internal_server_error", "param": None, "code": None}}, id="llama-cpp-python"),
    # llama.cpp's server before json_schema was known
    pytest.param(400, {"error": {"code": 400, "type": "invalid_request_error", "message":
                                 'response_format type must be one of "text" or "json_object", but got: json_schema'}},
                 id="llama.cpp-old"),
    # llama.cpp's server when the schema's grammar cannot start after the template's generation prompt
    pytest.param(400, {"error": {"code": 400, "type": "invalid_request_error", "message":
                                 "Failed to initialize samplers: Unexpected empty grammar stack after accepting piece: "
                                 "<|im_start|> (3)"}}, id="llama.cpp-samplers"),
    pytest.param(400, {"error": {"message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported "
                                            "with this model.", "type": "invalid_request_error"}}, id="openai-style"),
]


@pytest.mark.parametrize("status, body", REFUSALS)
def test_a_server_that_rejects_the_schema(mocked, client, status, body):
    mocked.post(URL, status=status, json=body)
    with pytest.raises(boc.BadRequest) as info:
        client.chat("Hi", schema=SCHEMA)
    message = str(info.value)
    assert "does not support JSON schemas" in message
    assert 'response_format={"type": "json_object"}' in message
    assert len(mocked.calls) == 1


def test_no_schema_hint_without_a_schema(mocked, client):
    mocked.post(URL, status=400, json={"error": {"message": "response_format is invalid"}})
    with pytest.raises(boc.BadRequest) as info:
        client.chat("Hi", response_format={"type": "bogus"})
    assert "JSON schemas" not in str(info.value)
