"""Reasoning written inside ``content`` as ``<think>...</think>`` (think_tags)."""
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bor_openai_compat as boc
from helpers import URL, chunk, completion, sse

# (content, think_tags, answer text, reasoning)
CASES = [
    pytest.param("<think>plan</think>answer", None, "answer", "plan", id="tags"),
    pytest.param(" \n<think>\nplan it\n</think>\n\nThe answer.", None, "The answer.", "plan it\n", id="whitespace"),
    pytest.param("<think></think>answer", None, "answer", "", id="empty-reasoning"),
    pytest.param("<think>a <b> c </thin></think>d", None, "d", "a <b> c </thin>", id="lookalikes-inside"),
    pytest.param("<think>a</think>b</think>c", None, "b</think>c", "a", id="second-close-is-answer"),
    pytest.param("<think>cut off while thin", None, "", "cut off while thin", id="unclosed"),
    pytest.param("<think>cut off at </thi", None, "", "cut off at </thi", id="unclosed-in-a-tag"),
    pytest.param("<thi", None, "<thi", "", id="half-a-tag-only"),
    pytest.param("plan</think>answer", None, "plan</think>answer", "", id="close-only-default"),
    pytest.param("plan</think>answer", True, "answer", "plan", id="close-only-true"),
    pytest.param("<think>plan</think>answer", True, "answer", "plan", id="tags-true"),
    pytest.param("all reasoning, no tag", True, "", "all reasoning, no tag", id="no-tag-true"),
    pytest.param("answer", None, "answer", "", id="plain"),
    pytest.param("  answer <think>x</think>", None, "  answer <think>x</think>", "", id="tag-later-untouched"),
    pytest.param("<b>bold</b>", None, "<b>bold</b>", "", id="other-markup"),
    pytest.param("<think>plan</think>answer", False, "<think>plan</think>answer", "", id="false"),
    pytest.param("plan</think>answer", False, "plan</think>answer", "", id="false-close-only"),
    pytest.param("\n\n", None, "\n\n", "", id="whitespace-only"),
]


def run_stream(pieces, think_tags, reasoning=None):
    """Feed content pieces as stream chunks; return (deltas, result)."""
    acc = boc._Accumulator("m", think_tags)
    deltas = []
    for piece in pieces:
        extra = {"reasoning_content": reasoning} if reasoning and not deltas else {}
        deltas.append(acc.add(chunk(piece, **extra)))
        if acc.splitter is not None:
            # Held back: only what may still be a tag (whitespace aside).
            assert len(acc.splitter.held.lstrip()) < len("</think>")
    deltas.append(acc.add(chunk(finish="stop")))
    return deltas, acc.result()


def joined(deltas):
    return "".join(d.text for d in deltas), "".join(d.reasoning for d in deltas)


@pytest.mark.parametrize("content, think_tags, text, reasoning", CASES)
def test_whole_answer(mocked, client, content, think_tags, text, reasoning):
    mocked.post(URL, json=completion(content))
    result = client.chat("Hi", think_tags=think_tags)
    assert (result.text, result.reasoning) == (text, reasoning)
    assert "think_tags" not in json.loads(mocked.calls[0].request.body)


@pytest.mark.parametrize("content, think_tags, text, reasoning", CASES)
def test_stream_cut_at_every_character(content, think_tags, text, reasoning):
    for cut in range(len(content) + 1):
        deltas, result = run_stream([content[:cut], content[cut:]], think_tags)
        assert joined(deltas) == (text, reasoning), cut
        assert (result.text, result.reasoning) == (text, reasoning), cut


@pytest.mark.parametrize("content, think_tags, text, reasoning", CASES)
def test_stream_one_character_per_delta(content, think_tags, text, reasoning):
    deltas, result = run_stream(list(content), think_tags)
    assert joined(deltas) == (text, reasoning)
    assert (result.text, result.reasoning) == (text, reasoning)


def test_text_is_not_held_longer_than_it_may_be_a_tag():
    acc = boc._Accumulator("m", None)
    assert acc.add(chunk("<th")).text == ""
    assert acc.add(chunk("ink>Let me see")).reasoning == "Let me see"
    delta = acc.add(chunk(" more </thi"))
    assert (delta.reasoning, delta.text) == (" more ", "")
    delta = acc.add(chunk("nk>\n\nYes"))
    assert (delta.reasoning, delta.text) == ("", "Yes")
    assert acc.splitter is None  # the rest of the answer passes untouched
    assert acc.add(chunk(" <think>")).text == " <think>"


def test_default_gives_up_at_the_first_character_that_is_no_tag():
    acc = boc._Accumulator("m", None)
    assert acc.add(chunk("Hello")).text == "Hello"
    assert acc.splitter is None


def test_server_reasoning_and_tags_both_land_in_reasoning():
    deltas, result = run_stream(["<think>mine</think>", "answer"], None, reasoning="server's ")
    assert result.reasoning == "server's mine"
    assert result.text == "answer"
    message = boc._Accumulator("m").add(completion("<think>b</think>a", reasoning_content="r "))
    assert (message.text, message.reasoning) == ("a", "r b")


def test_client_option_and_per_call_override(mocked):
    mocked.post(URL, json=completion("plan</think>answer"))
    client = boc.Client("http://api.test/v1", model="m", think_tags=True)
    assert client.chat("Hi").text == "answer"
    assert client.chat("Hi", think_tags=False).text == "plan</think>answer"
    with pytest.raises(boc.ConfigurationError, match="think_tags"):
        client.chat("Hi", think_tags="yes")


def test_stream_through_the_client(mocked, client):
    body = sse(chunk("<thi"), chunk("nk>hmm</th"), chunk("ink>ok"), chunk(finish="stop"))
    mocked.post(URL, body=body, content_type="text/event-stream")
    with client.stream("Hi") as stream:
        deltas = list(stream)
    assert joined(deltas) == ("ok", "hmm")
    assert stream.result.raw["choices"][0]["message"] == {
        "role": "assistant", "content": "ok", "reasoning_content": "hmm"}


def test_interrupted_stream_keeps_the_reasoning_held_back(mocked, client):
    body = sse(chunk("<think>almost done </thi"), done=False)
    mocked.post(URL, body=body, content_type="text/event-stream")
    with pytest.raises(boc.StreamInterrupted) as info:
        client.stream("Hi").result
    assert info.value.partial.reasoning == "almost done </thi"
    assert info.value.partial.text == ""


def test_reasoning_is_sent_back_only_when_asked(mocked, client):
    mocked.post(URL, json=completion("<think>why</think>because"))
    result = client.chat("Hi")
    assert result.message == {"role": "assistant", "content": "because"}
    assert result.to_message(reasoning=True) == {
        "role": "assistant", "content": "because", "reasoning_content": "why"}
    # DeepSeek wants the field on every assistant message, even an empty one.
    assert boc.ChatResult("x").to_message(reasoning=True)["reasoning_content"] == ""


def test_missing_reasoning_content_says_how_to_opt_in(mocked, client):
    message = ("Missing `reasoning_content` field in the assistant message at message index 2. For more "
               "information, please refer to https://api-docs.deepseek.com/guides/thinking_mode#tool-calls")
    mocked.post(URL, status=400, json={"error": {"message": message, "type": "invalid_request_error"}})
    with pytest.raises(boc.BadRequest) as info:
        client.chat("Hi")
    assert "Missing `reasoning_content`" in str(info.value)
    assert "to_message(reasoning=True)" in str(info.value)


PIECES = st.lists(
    st.sampled_from(["<think>", "</think>", "<", "</", "<th", "ink>", "think", ">", " ", "\n", "a", "é", "<b>"]),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(reasoning=PIECES.filter(lambda r: "</think>" not in r and not r.startswith((" ", "\n"))),
       answer=PIECES.filter(lambda a: not a.startswith((" ", "\n"))), cuts=st.lists(st.integers(0, 80), max_size=6))
def test_the_tags_never_show(reasoning, answer, cuts):
    content = "<think>" + reasoning + "</think>" + answer
    bounds = sorted({min(c, len(content)) for c in cuts} | {0, len(content)})
    deltas, result = run_stream([content[a:b] for a, b in zip(bounds, bounds[1:])], None)
    assert joined(deltas) == (answer, reasoning)
    assert (result.text, result.reasoning) == (answer, reasoning)


@settings(max_examples=300, deadline=None)
@given(content=PIECES, cuts=st.lists(st.integers(0, 80), max_size=6), think_tags=st.sampled_from([None, True]))
def test_a_stream_cut_anywhere_splits_as_the_whole_answer(content, cuts, think_tags):
    whole = boc._Accumulator("m", think_tags)
    whole.add(completion(content))
    expected = whole.result()
    bounds = sorted({min(c, len(content)) for c in cuts} | {0, len(content)})
    pieces = [content[a:b] for a, b in zip(bounds, bounds[1:])]
    deltas, result = run_stream(pieces, think_tags)
    assert joined(deltas) == (expected.text, expected.reasoning)
    assert (result.text, result.reasoning) == (expected.text, expected.reasoning)


def test_whitespace_before_anything_costs_linear_time():
    # A model looping on newlines before its first word: the whitespace is
    # held (a tag may still follow) without being copied again per delta.
    deltas = ["\n" * 8] * 100_000 + ["Hi"]
    acc = boc._Accumulator("m")
    start = time.process_time()
    texts = [acc.add(chunk(text)).text for text in deltas]
    assert time.process_time() - start < 5
    assert "".join(texts) == "".join(deltas)  # no tag: the content untouched


# -- Issue 17: what is held back as a possible tag is delivered at every end of the stream --

DONE = "data: [DONE]\n\n"


def events_of(*chunks):
    return "".join("data: %s\n\n" % json.dumps(c) for c in chunks)


def usage_only():
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m", "choices": [],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


# (body, think_tags, text, reasoning): each stream ends without a finish_reason
# on the chunk that carried the held text.
ENDINGS = [
    pytest.param(events_of(chunk("<th")) + DONE, None, "<th", "", id="half-a-tag-then-done-no-finish"),
    pytest.param(events_of(chunk("  <")) + DONE, None, "  <", "", id="space-and-a-bracket-then-done"),
    pytest.param(events_of(chunk("<th"), usage_only()) + DONE, None, "<th", "", id="half-a-tag-usage-then-done"),
    pytest.param(events_of(chunk("<think>plan</th")) + DONE, None, "", "plan</th",
                 id="half-a-close-tag-then-done"),
    pytest.param(events_of(chunk("plan</th")) + DONE, True, "", "plan</th", id="true-half-a-close-tag-then-done"),
    pytest.param(events_of(chunk("<th"), chunk(finish="stop")), None, "<th", "", id="finish-chunk-then-eof"),
    pytest.param(events_of(chunk("<th"), chunk(finish="stop"), usage_only()), None, "<th", "",
                 id="finish-usage-then-eof"),
    pytest.param(events_of(chunk("<th", finish="stop")) + DONE, None, "<th", "", id="finish-on-the-same-chunk"),
    pytest.param(events_of(chunk("<th"), chunk(finish="stop")) + "data: [DO", None, "<th", "",
                 id="finish-then-a-cut-off-done"),
]


@pytest.mark.parametrize("body, think_tags, text, reasoning", ENDINGS)
def test_held_text_reaches_the_deltas_at_the_end_of_the_stream(mocked, body, think_tags, text, reasoning):
    mocked.post(URL, body=body.encode(), content_type="text/event-stream")
    client = boc.Client("http://api.test/v1", model="m", think_tags=think_tags)
    with client.stream("Hi") as stream:
        deltas = list(stream)
    assert joined(deltas) == (text, reasoning)
    assert (stream.result.text, stream.result.reasoning) == (text, reasoning)


def _choice(index, content=None, finish=None):
    delta = {} if content is None else {"content": content}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


@pytest.mark.parametrize("second_finishes", [False, True], ids=["other-choice-no-finish", "other-choice-finishes"])
def test_held_text_of_another_choice_reaches_its_deltas(mocked, client, second_finishes):
    # n=2: the second choice's content is only "<th"; the stream ends.
    body = events_of(_choice(0, "Hi"), _choice(1, "<th"), _choice(0, finish="stop"),
                     *([_choice(1, finish="stop")] if second_finishes else [])) + DONE
    mocked.post(URL, body=body.encode(), content_type="text/event-stream")
    with client.stream("Hi", n=2) as stream:
        deltas = list(stream)
    assert "".join(d.text for d in deltas if d.index == 1) == "<th"
    assert "".join(d.text for d in deltas if d.index == 0) == "Hi"
    assert stream.result.text == "Hi"
