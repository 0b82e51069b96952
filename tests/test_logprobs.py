"""Log probabilities (logprobs=True): ChatResult.logprobs, whole and streamed."""
import json

import pytest

import bor_openai_compat as boc
from helpers import URL, chunk, completion, sse


def entry(token, logprob=-0.5):
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": []}


def with_logprobs(body, *entries):
    body["choices"][0]["logprobs"] = {"content": list(entries), "refusal": None}
    return body


def test_whole_answer(mocked, client):
    mocked.post(URL, json=with_logprobs(completion("Hi there"), entry("Hi"), entry(" there", -1.25)))
    result = client.chat("Hello", logprobs=True, top_logprobs=2)
    assert [e["token"] for e in result.logprobs] == ["Hi", " there"]
    assert result.logprobs[1]["logprob"] == -1.25
    sent = json.loads(mocked.calls[0].request.body)
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2


def test_stream_puts_the_entries_together(mocked, client):
    body = sse(
        chunk(role="assistant"),
        with_logprobs(chunk("Hi"), entry("Hi")),
        with_logprobs(chunk(" there"), entry(" the"), entry("re")),
        chunk(finish="stop"),
    )
    mocked.post(URL, body=body, content_type="text/event-stream")
    with client.stream("Hello", logprobs=True) as stream:
        result = stream.result
    assert [e["token"] for e in result.logprobs] == ["Hi", " the", "re"]
    assert result.raw["choices"][0]["logprobs"]["content"] == result.logprobs


@pytest.mark.parametrize("logprobs", [None, {"content": None}, {"content": []}], ids=["absent", "null", "empty"])
def test_none_when_not_asked_for(mocked, client, logprobs):
    body = completion("Hi")
    if logprobs is not None:
        body["choices"][0]["logprobs"] = logprobs
    mocked.post(URL, json=body)
    assert client.chat("Hello").logprobs is None


def test_interrupted_stream_keeps_the_entries_so_far(mocked, client):
    mocked.post(URL, body=sse(with_logprobs(chunk("Hi"), entry("Hi")), done=False), content_type="text/event-stream")
    with pytest.raises(boc.StreamInterrupted) as info:
        client.stream("Hello", logprobs=True).result
    assert [e["token"] for e in info.value.partial.logprobs] == ["Hi"]


# -- Issue 17: logprobs.content of the wrong type is an invalid answer --

BROKEN_CONTENT = [
    pytest.param("Hi there", id="a-string"),
    pytest.param({"Hi": -0.5, " there": -1.0}, id="a-dict"),
    pytest.param(42, id="a-number"),
]


@pytest.mark.parametrize("content", BROKEN_CONTENT)
def test_logprobs_content_that_is_not_a_list_is_invalid(mocked, client, content):
    body = completion("Hi there")
    body["choices"][0]["logprobs"] = {"content": content}
    mocked.post(URL, json=body)
    with pytest.raises(boc.InvalidResponse, match="logprobs"):
        client.chat("Hello", logprobs=True)


@pytest.mark.parametrize("content", BROKEN_CONTENT)
def test_logprobs_content_that_is_not_a_list_is_invalid_in_a_stream(mocked, client, content):
    broken = chunk(" there")
    broken["choices"][0]["logprobs"] = {"content": content}
    body = sse(with_logprobs(chunk("Hi"), entry("Hi")), broken, chunk(finish="stop"))
    mocked.post(URL, body=body, content_type="text/event-stream")
    with pytest.raises(boc.InvalidResponse, match="logprobs") as info:
        client.stream("Hello", logprobs=True).result
    assert isinstance(info.value, boc.StreamInterrupted)
    assert info.value.partial.text == "Hi"
