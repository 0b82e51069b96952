"""JSON answers: ChatResult.json() and schema= (response_format json_schema)."""
import json

import pytest
import responses

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
def test_a_refused_json_schema_falls_back_to_json_object(mocked, client, status, body):
    def answer(request):
        sent = json.loads(request.body)
        if sent["response_format"]["type"] == "json_schema":
            return status, {}, json.dumps(body)
        return 200, {}, json.dumps(completion('{"name": "Köln", "population": 1084831}'))

    mocked.add_callback(responses.POST, URL, callback=answer)
    result = client.chat("A city?", schema=SCHEMA)
    assert result.parsed == {"name": "Köln", "population": 1084831}
    assert result.schema_mode == "json_object" and len(mocked.calls) == 2
    second = json.loads(mocked.calls[1].request.body)
    assert second["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert second["messages"][0]["role"] == "system" and json.dumps(SCHEMA) in second["messages"][0]["content"]


def test_no_schema_hint_without_a_schema(mocked, client):
    mocked.post(URL, status=400, json={"error": {"message": "response_format is invalid"}})
    with pytest.raises(boc.BadRequest) as info:
        client.chat("Hi", response_format={"type": "bogus"})
    assert "JSON schemas" not in str(info.value)


# -- Validation, re-asks and the ladder (issue 19) ---------------------------


class Server:
    """A fake chat endpoint: refuses the response_format types in ``refuse`` as
    ``refusal`` words it, else answers the next text of ``texts``."""

    def __init__(self, mocked, texts, refuse=(), refusal=(400, {"error": {"message": "response_format is invalid"}}),
                 finish="stop"):
        self.texts, self.refuse, self.refusal, self.finish = list(texts), refuse, refusal, finish
        self.sent = []
        mocked.add_callback(responses.POST, URL, callback=self.answer)

    def answer(self, request):
        body = json.loads(request.body)
        self.sent.append(body)
        kind = (body.get("response_format") or {}).get("type")
        if kind in self.refuse:
            status, refusal = self.refusal
            return status, {}, json.dumps(refusal)
        text = self.texts.pop(0) if len(self.texts) > 1 else self.texts[0]
        return 200, {}, json.dumps(completion(text, finish=self.finish))

    def modes(self):
        return [(b.get("response_format") or {}).get("type", "prompt") for b in self.sent]


GOOD = '{"name": "Köln", "population": 1084831}'
VALUE = {"name": "Köln", "population": 1084831}

# How servers refuse each rung, in their own words.
LADDER = [
    # LM Studio 0.3.x (lmstudio-bug-tracker #169): only json_schema, the error a plain string.
    pytest.param(("json_object",), (400, {"error": "'response_format.type' must be 'json_schema'"}),
                 ["json_schema"], "json_schema", id="lmstudio-takes-json-schema"),
    # llama-cpp-python 0.3.x (llama_cpp/llama_types.py@3691546f: type is Literal["text", "json_object"];
    # FastAPI >= 0.124 words the RequestValidationError, and RouteErrorHandler makes it a 500).
    pytest.param(("json_schema",), (500, {"error": {
        "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                   "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}",
        "type": "internal_server_error", "param": None, "code": None}}),
        ["json_schema", "json_object"], "json_object", id="llama-cpp-python-new-fastapi"),
    # The same with FastAPI < 0.124: str(exc) is the repr of the error list.
    pytest.param(("json_schema",), (500, {"error": {
        "message": "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be "
                   "'text' or 'json_object'\", 'input': 'json_schema', 'ctx': {'expected': \"'text' or 'json_object'\"}}]",
        "type": "internal_server_error", "param": None, "code": None}}),
        ["json_schema", "json_object"], "json_object", id="llama-cpp-python-old-fastapi"),
    # A gateway that takes no response_format at all.
    pytest.param(("json_schema", "json_object"), (400, {"error": {"message": "Unrecognized request argument "
                                                                             "supplied: response_format"}}),
                 ["json_schema", "json_object", "prompt"], "prompt", id="gateway-without-response-format"),
]


@pytest.mark.parametrize("refuse, refusal, modes, answered", LADDER)
def test_the_ladder_down_to_what_the_server_takes(mocked, refuse, refusal, modes, answered):
    server = Server(mocked, [GOOD], refuse=refuse, refusal=refusal)
    client = boc.Client("http://api.test/v1", model="m", max_retries=0)
    result = client.chat("A city?", schema=SCHEMA)
    assert result.parsed == VALUE and result.schema_mode == answered
    assert server.modes() == modes
    if answered == "prompt":
        assert "response_format" not in server.sent[-1]
        assert json.dumps(SCHEMA) in server.sent[-1]["messages"][0]["content"]
    # Learned: the next call of this client and model asks the working way first.
    client.chat("Another?", schema=SCHEMA)
    assert server.modes()[len(modes):] == [answered]
    # Another model starts from the top again.
    client.chat("Another?", schema=SCHEMA, model="other")
    assert server.modes()[len(modes) + 1] == "json_schema"


def test_a_network_error_never_moves_down_the_ladder(mocked):
    mocked.post(URL, body=__import__("requests").ConnectionError("reset"))
    client = boc.Client("http://api.test/v1", model="m", max_retries=0)
    with pytest.raises(boc.ConnectionFailed):
        client.chat("A city?", schema=SCHEMA)
    assert len(mocked.calls) == 1 and client._json_modes == {}


def test_a_refusal_of_something_else_is_raised(mocked):
    Server(mocked, [GOOD], refuse=("json_schema",), refusal=(400, {"error": {"message": "temperature too high"}}))
    with pytest.raises(boc.BadRequest, match="temperature too high"):
        boc.Client("http://api.test/v1", model="m", max_retries=0).chat("A city?", schema=SCHEMA)


def test_a_system_message_of_the_caller_keeps_its_place(mocked):
    server = Server(mocked, [GOOD], refuse=("json_schema",))
    boc.Client("http://api.test/v1", model="m").chat(
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "A city?"}], schema=SCHEMA)
    messages = server.sent[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].startswith("You are terse.\n\nAnswer with a JSON value only")


NEAR_JSON = [
    pytest.param("```json\n%s\n```" % GOOD, id="fence"),
    pytest.param("Here you go:\n%s\nHope this helps!" % GOOD, id="prose-around"),
    pytest.param("%s\n\nThe population is from 2023." % GOOD, id="trailing-prose"),
]


@pytest.mark.parametrize("text", NEAR_JSON)
def test_near_json_is_read_without_asking_again(mocked, text):
    server = Server(mocked, [text])
    assert boc.Client("http://api.test/v1", model="m").chat("A city?", schema=SCHEMA).parsed == VALUE
    assert len(server.sent) == 1


def test_single_quotes_are_asked_for_again(mocked):
    server = Server(mocked, ["{'name': 'Köln', 'population': 1084831}", GOOD])
    result = boc.Client("http://api.test/v1", model="m").chat("A city?", schema=SCHEMA)
    assert result.parsed == VALUE and len(server.sent) == 2
    # The re-ask: the answer, then one user message quoting the error.
    assert server.sent[1]["messages"][-2] == {"role": "assistant", "content": "{'name': 'Köln', 'population': 1084831}"}
    assert server.sent[1]["messages"][-1]["role"] == "user"
    assert "not JSON" in server.sent[1]["messages"][-1]["content"]


WRONG_SHAPES = [
    pytest.param('{"name": "Köln"}', "lacks the required key 'population'", id="missing-field"),
    pytest.param('{"name": "Köln", "population": "1084831"}', "'population' is a string, not integer",
                 id="string-for-integer"),
    pytest.param('{"name": "Köln", "population": true}', "'population' is a boolean, not integer",
                 id="boolean-for-integer"),
    pytest.param('{"name": "Köln", "population": 10.5}', "'population' is a number, not integer",
                 id="fraction-for-integer"),
    pytest.param('["Köln", 1084831]', "the answer is an array, not object", id="array-for-object"),
]


@pytest.mark.parametrize("text, why", WRONG_SHAPES)
def test_a_wrong_shape_is_fixed_on_the_reask(mocked, text, why):
    server = Server(mocked, [text, GOOD])
    result = boc.Client("http://api.test/v1", model="m").chat("A city?", schema=SCHEMA)
    assert result.parsed == VALUE
    assert why in server.sent[1]["messages"][-1]["content"]


@pytest.mark.parametrize("text, why", WRONG_SHAPES)
def test_every_attempt_is_kept_when_none_passes(mocked, text, why):
    Server(mocked, [text, text, text])
    with pytest.raises(boc.InvalidJSON) as info:
        boc.Client("http://api.test/v1", model="m").chat("A city?", schema=SCHEMA, reask=2)
    error = info.value
    assert isinstance(error, boc.InvalidResponse)
    assert error.attempts == [text] * 3 and why in error.error and why in str(error)
    assert error.partial.text == text


def test_reask_0_raises_at_once(mocked):
    server = Server(mocked, ['{"name": "Köln"}'])
    with pytest.raises(boc.InvalidJSON, match="lacks the required key"):
        boc.Client("http://api.test/v1", model="m").chat("A city?", schema=SCHEMA, reask=0)
    assert len(server.sent) == 1


def test_a_cut_answer_is_not_asked_again(mocked):
    server = Server(mocked, ['{"name": "Kö'], finish="length")
    with pytest.raises(boc.InvalidJSON, match="cut at max_tokens.*raise max_tokens") as info:
        boc.Client("http://api.test/v1", model="m").chat("A city?", schema=SCHEMA, max_tokens=5)
    assert len(server.sent) == 1 and info.value.attempts == ['{"name": "Kö']


def test_a_server_that_ignores_the_schema_is_warned_about(mocked):
    # Older Ollama, several gateways: response_format taken, prose answered.
    server = Server(mocked, ["Köln has about a million people.", GOOD])
    result = boc.Client("http://api.test/v1", model="m").chat("A city?", schema=SCHEMA)
    assert result.parsed == VALUE and len(server.sent) == 2
    assert any("ignored the schema" in w for w in result.warnings)


class City:
    """A pydantic-like model: only the duck-typed surface the module uses."""

    def __init__(self, name, population):
        self.name, self.population = name, population

    @classmethod
    def model_validate(cls, value):
        if not isinstance(value.get("population"), int) or value["population"] < 0:
            raise ValueError("1 validation error for City\npopulation\n  must be a positive integer")
        return cls(**value)

    @classmethod
    def model_json_schema(cls):
        return SCHEMA


def test_a_pydantic_like_class_validates_and_gives_its_schema(mocked):
    server = Server(mocked, ['{"name": "Köln", "population": -3}', GOOD])
    result = boc.Client("http://api.test/v1", model="m").chat("A city?", validate=City)
    assert isinstance(result.parsed, City) and result.parsed.population == 1084831
    assert server.sent[0]["response_format"]["json_schema"]["schema"] == SCHEMA
    assert "must be a positive integer" in server.sent[1]["messages"][-1]["content"]


def test_a_validate_callable_returns_the_value_to_use(mocked):
    Server(mocked, [GOOD])
    result = boc.Client("http://api.test/v1", model="m").chat(
        "A city?", schema=SCHEMA, validate=lambda value: (value["name"], value["population"]))
    assert result.parsed == ("Köln", 1084831)


def test_validate_with_the_callers_own_response_format(mocked):
    server = Server(mocked, ['{"ok": true}'])
    result = boc.Client("http://api.test/v1", model="m").chat(
        "Ok?", validate=lambda v: v["ok"], response_format={"type": "json_object"})
    assert result.parsed is True and server.sent[0]["response_format"] == {"type": "json_object"}


def test_a_stream_with_a_schema_sets_parsed(mocked):
    mocked.post(URL, body=b'data: {"choices":[{"delta":{"content":"{\\"name\\": \\"K\\", "},"finish_reason":null}]}\n\n'
                          b'data: {"choices":[{"delta":{"content":"\\"population\\": 1}"},"finish_reason":"stop"}]}\n\n',
                content_type="text/event-stream")
    with boc.Client("http://api.test/v1", model="m").stream("Hi", schema=SCHEMA) as stream:
        texts = [d.text for d in stream]
        assert stream.result.parsed == {"name": "K", "population": 1}
        assert stream.result.schema_mode == "json_schema"
    assert "".join(texts) == '{"name": "K", "population": 1}'


def test_a_stream_that_fails_the_schema_raises_at_its_end(mocked):
    mocked.post(URL, body=b'data: {"choices":[{"delta":{"content":"no json"},"finish_reason":"stop"}]}\n\n',
                content_type="text/event-stream")
    stream = boc.Client("http://api.test/v1", model="m").stream("Hi", schema=SCHEMA)
    assert [d.text for d in stream] == ["no json"]
    with pytest.raises(boc.InvalidJSON, match="not JSON") as info:
        stream.result
    assert info.value.partial.text == "no json"


def test_reserved_names_are_not_sent(mocked):
    server = Server(mocked, [GOOD])
    boc.Client("http://api.test/v1", model="m").chat("A city?", schema=SCHEMA, validate=dict, reask=3)
    assert not {"schema", "validate", "reask", "_schema_mode"} & set(server.sent[0])


@pytest.mark.parametrize("options, words", [
    ({"reask": -1}, "reask= must be"), ({"reask": True}, "reask= must be"), ({"validate": 3}, "validate= must be"),
], ids=["negative", "bool", "not-callable"])
def test_bad_json_options(client, options, words):
    with pytest.raises(boc.ConfigurationError, match=words):
        client.chat("Hi", schema=SCHEMA, **options)


def test_a_stream_cannot_ask_again(client):
    with pytest.raises(boc.ConfigurationError, match="cannot ask again"):
        client.stream("Hi", schema=SCHEMA, reask=2)


def test_the_whole_json_call_is_bounded_by_stream_timeout(mocked, monkeypatch):
    # Each attempt gets only the time left: once it is gone, no re-ask starts.
    Server(mocked, ["nope"])
    clock = iter([0.0] + [100.0] * 50)
    monkeypatch.setattr(boc.time, "monotonic", lambda: next(clock))
    with pytest.raises(boc.Timeout, match="stream_timeout=5"):
        boc.Client("http://api.test/v1", model="m").chat("A city?", schema=SCHEMA, stream_timeout=5)


SCHEMA_CHECKS = [
    pytest.param({"type": ["string", "null"]}, None, None, id="type-list"),
    pytest.param({"type": "number"}, 3, None, id="integer-is-a-number"),
    pytest.param({"type": "number"}, True, "is a boolean", id="boolean-is-no-number"),
    pytest.param({"enum": ["red", "green"]}, "blue", "not one of", id="enum"),
    pytest.param({"const": 1}, 2, "not 1", id="const"),
    pytest.param({"type": "object", "properties": {"c": {"enum": ["a"]}}}, {"c": "b"}, "'c' is \"b\"", id="property-enum"),
    pytest.param({"type": "object", "properties": {"c": {"type": "array"}}}, {}, None, id="absent-optional"),
    pytest.param({"type": "object", "properties": {"c": {"type": "weird"}}}, {"c": 1}, None, id="unknown-type-ignored"),
    pytest.param({}, [1, "x"], None, id="empty-schema"),
    pytest.param({"type": "integer"}, 3.0, None, id="integral-float-is-an-integer"),
]


@pytest.mark.parametrize("schema, value, problem", SCHEMA_CHECKS)
def test_the_small_schema_checker(schema, value, problem):
    found = boc._schema_problem(schema, value)
    assert (found is None) if problem is None else (problem in found), found


def test_a_stream_takes_reask_0_only(client, mocked):
    mocked.post(URL, body=b'data: {"choices":[{"delta":{"content":"[1]"},"finish_reason":"stop"}]}\n\n',
                content_type="text/event-stream")
    with client.stream("Hi", schema={"type": "array"}, reask=0) as stream:
        assert stream.result.parsed == [1]
    with pytest.raises(boc.ConfigurationError, match="cannot ask again"):
        client.stream("Hi", schema={"type": "array"}, reask=1)
