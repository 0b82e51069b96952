"""Property tests: whatever bytes or JSON a server sends, the caller gets a
result or one of our exceptions, and no complete content event is lost."""
import json

import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bor_openai_compat as boc
from helpers import URL, chunk, feed

FUZZ = settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", 300)), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def chunked(draw, body):
    """The body cut at random points."""
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=8)))
    edges = [0] + cuts + [len(body)]
    return [body[a:b] for a, b in zip(edges, edges[1:]) if b > a]


def outcome(chunks):
    try:
        return feed(chunks).result
    except boc.OpenAICompatError as exc:
        return exc


SSE_BITS = st.sampled_from(
    [b"data: ", b"data:", b"\n", b"\r\n", b"\r", b"\n\n", b": ping\n\n", b"[DONE]", b"event: error\n",
     b"error: ", b'{"choices":[{"delta":{"content":"x"}}]}', b'{"error":{"message":"e"}}',
     b'{"choices":[]}', b"{", b"}", b"\xff", b"\xe2\x82", b"null", b"[1]", b'"s"']
)


@FUZZ
@given(st.data())
def test_any_bytes_end_in_a_result_or_our_error(data):
    body = data.draw(st.one_of(st.binary(max_size=300), st.lists(SSE_BITS, max_size=30).map(b"".join)))
    result = outcome(data.draw(chunked(body)))
    assert isinstance(result, (boc.ChatResult, boc.OpenAICompatError))


@FUZZ
@given(st.data())
def test_complete_events_before_a_fault_are_kept(data):
    texts = data.draw(st.lists(st.text(max_size=12), max_size=6))
    line_end = data.draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    good = b"".join(
        (b"data: " + json.dumps(chunk(t)).encode() + b"\n\n").replace(b"\n", line_end) for t in texts
    )
    fault = data.draw(st.one_of(st.binary(max_size=100), st.lists(SSE_BITS, max_size=15).map(b"".join)))
    result = outcome(data.draw(chunked(good + fault)))
    if isinstance(result, boc.OpenAICompatError):
        assert isinstance(result, boc.StreamInterrupted), repr(result)
        result = result.partial
    assert result.text.startswith("".join(texts))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["choices", "message", "content", "error", "delta", "tool_calls", "usage", "model",
                         "object", "code", "detail", "function", "arguments", "name", "index", "id", "data"]),
        inner, max_size=4),
    max_leaves=20,
)


def shaped(value):
    """Dicts shaped like the API's, holding any JSON where a value goes."""
    call = st.fixed_dictionaries({}, optional={
        "index": value, "id": value, "type": value,
        "function": st.fixed_dictionaries({}, optional={"name": value, "arguments": value}) | value})
    message = st.fixed_dictionaries({}, optional={
        "role": value, "content": value | st.lists(st.fixed_dictionaries({"type": value, "text": value})),
        "reasoning": value, "reasoning_content": value, "tool_calls": st.lists(call | value, max_size=3) | value})
    choice = st.fixed_dictionaries({}, optional={
        "index": value, "message": message | value, "delta": message | value, "finish_reason": value})
    return st.fixed_dictionaries({}, optional={
        "choices": st.lists(choice | value, max_size=2) | value, "usage": value, "model": value,
        "error": value, "object": value, "x_groq": st.fixed_dictionaries({"usage": value}) | value,
        "data": st.lists(st.fixed_dictionaries({}, optional={"id": value, "name": value}) | value) | value})


ANSWERS = JSON | shaped(JSON)


@FUZZ
@given(body=ANSWERS, status=st.sampled_from([200, 200, 400, 404, 429, 500]))
def test_any_json_body_ends_in_a_result_or_our_error(body, status):
    client = boc.Client("http://api.test/v1", model="m", max_retries=0)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.post(URL, json=body, status=status)
        mocked.get("http://api.test/v1/models", json=body)
        try:
            result = client.chat("Hi")
        except boc.OpenAICompatError:
            return
        assert isinstance(result, boc.ChatResult)
        assert isinstance(result.text, str)
        for call in result.tool_calls:
            try:
                call.json()
            except boc.InvalidResponse:
                pass


@FUZZ
@given(chunks=st.lists(ANSWERS, max_size=5), data=st.data())
def test_any_json_chunks_in_a_stream(chunks, data):
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    result = outcome(data.draw(chunked(body)))
    assert isinstance(result, (boc.ChatResult, boc.OpenAICompatError))
    if isinstance(result, boc.ChatResult):
        assert isinstance(result.text, str) and isinstance(result.reasoning, str)
        for call in result.tool_calls:
            assert isinstance(call.arguments, str)


@FUZZ
@given(body=ANSWERS)
def test_any_json_models_body(body):
    client = boc.Client("http://api.test/v1", model="m")
    with responses.RequestsMock() as mocked:
        mocked.get("http://api.test/v1/models", json=body)
        try:
            ids = client.models()
        except boc.OpenAICompatError:
            return
        assert all(isinstance(i, str) for i in ids)
