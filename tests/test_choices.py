"""n > 1: several choices in one answer.

Servers stream one choice per chunk, each with its own ``index``. The result
follows the first choice (index 0, or the lowest index seen); every chunk still
reaches the caller, and ``delta.index`` says which choice it belongs to.
"""
import json

import pytest

from helpers import URL, completion, sse
from helpers import feed


def choice_chunk(index, text=None, *, finish=None, tool_calls=None):
    delta = {}
    if text is not None:
        delta["content"] = text
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "test-model",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def call_start(call_id, name):
    return [{"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]


def call_args(arguments):
    return [{"index": 0, "function": {"arguments": arguments}}]


def interleaved(first=0, second=1):
    """Two choices, interleaved chunk by chunk, as OpenAI sends n=2."""
    return [
        choice_chunk(first, "Hel"),
        choice_chunk(second, "Bon"),
        choice_chunk(first, "lo"),
        choice_chunk(second, "jour"),
        choice_chunk(first, finish="stop"),
        choice_chunk(second, finish="length"),
    ]


def tool_choices():
    return [
        choice_chunk(0, tool_calls=call_start("call_a", "get_weather")),
        choice_chunk(1, tool_calls=call_start("call_b", "get_time")),
        choice_chunk(0, tool_calls=call_args('{"city": ')),
        choice_chunk(1, tool_calls=call_args('{"zone": ')),
        choice_chunk(0, tool_calls=call_args('"Paris"}')),
        choice_chunk(1, tool_calls=call_args('"UTC"}')),
        choice_chunk(0, finish="tool_calls"),
        choice_chunk(1, finish="tool_calls"),
    ]


def test_the_result_follows_choice_0_for_text():
    stream = feed([sse(*interleaved())])
    deltas = list(stream)
    result = stream.result
    assert result.text == "Hello"
    assert result.finish_reason == "stop"
    assert result.raw["choices"][0]["message"]["content"] == "Hello"
    assert [d.index for d in deltas] == [0, 1, 0, 1, 0, 1]


def test_the_result_follows_choice_0_for_tool_calls():
    stream = feed([sse(*tool_choices())])
    list(stream)
    calls = stream.result.tool_calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [("call_a", "get_weather", '{"city": "Paris"}')]
    assert stream.result.finish_reason == "tool_calls"


def test_every_chunk_reaches_the_caller_and_all_answers_can_be_built():
    chunks = interleaved() + [{"id": "chatcmpl-1", "choices": [], "usage": {"total_tokens": 9}}]
    deltas = list(feed([sse(*chunks)]))
    assert [d.raw for d in deltas] == chunks
    answers = {}
    for delta in deltas[:-1]:
        answers[delta.index] = answers.get(delta.index, "") + delta.text
    assert answers == {0: "Hello", 1: "Bonjour"}
    assert deltas[-1].usage == {"total_tokens": 9}


def test_without_choice_0_the_lowest_index_is_followed():
    stream = feed([sse(*interleaved(first=1, second=2))])
    assert [d.index for d in stream] == [1, 2, 1, 2, 1, 2]
    assert stream.result.text == "Hello" and stream.result.finish_reason == "stop"


def test_index_is_0_when_the_server_sends_none():
    body = sse({"choices": [{"delta": {"content": "a"}}]}, {"choices": [{"delta": {}, "finish_reason": "stop"}]})
    assert [d.index for d in feed([body])] == [0, 0]


@pytest.mark.parametrize("order", [[0, 1], [1, 0]], ids=["in-order", "choice-1-listed-first"])
def test_chat_with_n_2_returns_choice_0(mocked, client, order):
    body = completion("zero")
    body["choices"] = [
        {"index": 0, "message": {"role": "assistant", "content": "zero"}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "one"}, "finish_reason": "length"},
    ]
    body["choices"] = [body["choices"][i] for i in order]
    mocked.post(URL, json=body)
    result = client.chat("Hi", n=2)
    assert result.text == "zero" and result.finish_reason == "stop"
    assert json.loads(mocked.calls[0].request.body)["n"] == 2


def test_think_tags_are_split_in_every_choice():
    def ch(i, content=None, finish=None):
        delta = {"content": content} if content is not None else {}
        return {"choices": [{"index": i, "delta": delta, "finish_reason": finish}]}

    body = sse(ch(0, "<think>r0</think>A0"), ch(1, "<th"), ch(1, "ink>r1</think>A1"), ch(0, finish="stop"),
               ch(1, finish="stop"))
    deltas = list(feed([body]))
    by_index = {}
    for d in deltas:
        text, reasoning = by_index.get(d.index, ("", ""))
        by_index[d.index] = (text + d.text, reasoning + d.reasoning)
    assert by_index == {0: ("A0", "r0"), 1: ("A1", "r1")}
