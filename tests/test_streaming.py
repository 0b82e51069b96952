"""Streaming: SSE framing, accumulation, and tokens arriving as they are sent."""
import gc
import json
import threading
import time

import pytest

import bor_openai_compat as boc
import server as sv
from helpers import URL, chunk, completion, events, feed, http_chunk, sse, text_stream


def texts(stream):
    return [d.text for d in stream]


def test_stream_yields_deltas_and_result(mocked, client):
    body = sse(
        chunk(role="assistant"),
        chunk("Hel"),
        chunk("lo"),
        chunk(finish="stop"),
        {"id": "chatcmpl-1", "choices": [], "usage": {"total_tokens": 12}},
    )
    mocked.post(URL, body=body, content_type="text/event-stream")
    with client.stream("Hi") as stream:
        deltas = list(stream)
    assert "".join(d.text for d in deltas) == "Hello"
    assert [d.finish_reason for d in deltas][3] == "stop"
    assert deltas[-1].usage == {"total_tokens": 12}
    result = stream.result
    assert result.text == "Hello" and result.finish_reason == "stop" and result.usage == {"total_tokens": 12}
    assert result.raw["choices"][0]["message"]["content"] == "Hello"
    assert json.loads(mocked.calls[0].request.body)["stream"] is True
    assert mocked.calls[0].request.headers["Accept"] == "text/event-stream"


def test_result_reads_the_rest_when_not_iterated(mocked, client):
    mocked.post(URL, body=text_stream("a", "b"), content_type="text/event-stream")
    assert client.stream("Hi").result.text == "ab"


BODY = text_stream("Grüße ", "aus ", "Köln ☕ 𝄞")


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_every_split_point_gives_the_same_answer(line_end):
    body = BODY.replace(b"\n", line_end)
    for i in range(1, len(body)):
        stream = feed([body[:i], body[i:]])
        assert stream.result.text == "Grüße aus Köln ☕ 𝄞", "split at %d" % i


def test_one_byte_at_a_time():
    body = BODY.replace(b"\n", b"\r\n")
    assert feed([body[i:i + 1] for i in range(len(body))]).result.text == "Grüße aus Köln ☕ 𝄞"


def test_comments_and_keepalives_are_ignored():
    body = b": keep-alive\n\n:\n\n" + text_stream("x") + b": trailing\n\n"
    assert texts(feed([body]))[0] == "x"


def test_data_without_space_and_multiline_data():
    body = b'data:{"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"choices":\ndata: [{"delta":{"content":"b"},"finish_reason":"stop"}]}\n\n'
    assert feed([body]).result.text == "ab"


def test_finish_without_done_is_a_normal_end():
    result = feed([text_stream("a", "b", done=False)]).result
    assert result.text == "ab" and result.finish_reason == "stop"


def test_done_without_finish_is_a_normal_end():
    result = feed([sse(chunk("a"))]).result
    assert result.text == "a" and result.finish_reason is None


def test_end_without_finish_or_done_is_an_interruption():
    stream = feed([sse(chunk("a"), chunk("b"), done=False)])
    with pytest.raises(boc.StreamInterrupted, match="ended before the answer was finished") as info:
        list(stream)
    assert info.value.partial.text == "ab"


def test_truncated_final_event_keeps_what_came_before():
    body = sse(chunk("a"), done=False) + b'data: {"choices":[{"delta":{"content":"b'
    with pytest.raises(boc.StreamInterrupted) as info:
        list(feed([body]))
    assert isinstance(info.value, boc.InvalidResponse)
    assert info.value.partial.text == "a"
    assert "not JSON" in str(info.value)


def test_unterminated_but_complete_last_event_is_used():
    body = sse(chunk("a"), done=False) + b'data: {"choices":[{"delta":{"content":"b"},"finish_reason":"stop"}]}'
    assert feed([body]).result.text == "ab"


def test_invalid_utf8_is_replaced_not_fatal():
    body = b'data: {"choices":[{"delta":{"content":"a\xff\xfeb"},"finish_reason":"stop"}]}\n\n'
    assert feed([body]).result.text == "a\ufffd\ufffdb"


def test_big_event_in_many_pieces():
    text = "x" * (1 << 20)
    body = text_stream(text)
    pieces = [body[i:i + 4096] for i in range(0, len(body), 4096)]
    assert feed(pieces).result.text == text


def test_stream_to_a_json_answer_keeps_the_answer(mocked, client):
    mocked.post(URL, json=completion("whole answer"))
    with pytest.raises(boc.StreamingNotSupported, match="application/json instead of text/event-stream") as info:
        client.stream("Hi")
    assert info.value.result.text == "whole answer"


def test_stream_parameter_rejected(mocked, client):
    mocked.post(URL, json={"error": {"message": "Streaming is not supported for this model"}}, status=400)
    with pytest.raises(boc.StreamingNotSupported, match="rejected stream=true.*Streaming is not supported"):
        client.stream("Hi")


def test_sse_with_a_wrong_content_type_is_still_read(mocked, client):
    mocked.post(URL, body=text_stream("a", "b"), content_type="text/plain")
    assert client.stream("Hi").result.text == "ab"


def test_chat_reads_an_sse_answer(mocked, client):
    mocked.post(URL, body=text_stream("not ", "asked"), content_type="text/event-stream")
    result = client.chat("Hi")
    assert result.text == "not asked" and result.finish_reason == "stop"


def test_chat_reads_sse_even_under_a_json_content_type(mocked, client):
    mocked.post(URL, body=text_stream("x"), content_type="application/json")
    assert client.chat("Hi").text == "x"


# -- Against a real socket ---------------------------------------------------


def numbered(n):
    return ["t%d " % i for i in range(n)]


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
def test_tokens_arrive_as_they_are_sent(fault_server, chunked):
    # Causal, not timed: event i+1 is sent only once the caller has seen
    # delta i. A client that holds an event back until more bytes come makes
    # the server wait; after a bound the lateness is recorded.
    pieces = events(*numbered(4))
    seen = [threading.Event() for _ in range(4)]  # one per text delta
    late = []

    def script(conn, request):
        conn.sendall(sv.head(200, "text/event-stream", framing="chunked" if chunked else "close"))
        for i, piece in enumerate(pieces):
            conn.sendall(http_chunk(piece) if chunked else piece)
            if i < len(seen) and not late and not seen[i].wait(10):
                late.append(i)
        if chunked:
            conn.sendall(b"0\r\n\r\n")
            return True
        return False

    fault_server.script(script)
    client = boc.Client(fault_server.url, model="m")
    texts = []
    with client.stream("Hi") as stream:
        for delta in stream:
            if delta.text:
                seen[len(texts)].set()
                texts.append(delta.text)
    assert late == [], "delta %d reached the caller only after the next event was sent" % late[0]
    assert texts == ["t0 ", "t1 ", "t2 ", "t3 "]
    assert stream.result.text == "t0 t1 t2 t3 " and stream.result.finish_reason == "stop"


def test_breaking_out_early_releases_the_connection(fault_server):
    gone = threading.Event()

    def endless(conn, request):
        conn.sendall(sv.head(200, "text/event-stream", framing="chunked"))
        piece = sse(chunk("x"), done=False)
        try:
            for _ in range(1000):
                conn.sendall(http_chunk(piece))
                time.sleep(0.01)
        except OSError:
            gone.set()
        return False

    fault_server.script(endless)
    client = boc.Client(fault_server.url, model="m")
    stream = client.stream("Hi")
    for delta in stream:
        break
    stream.close()
    assert gone.wait(3), "the server never saw the client go"


def test_leaving_the_with_block_closes(fault_server):
    fault_server.script(sv.stream(events(*numbered(50)), delay=0.01))
    client = boc.Client(fault_server.url, model="m")
    with client.stream("Hi") as stream:
        next(stream)
    assert stream.response.raw.closed
    with pytest.raises(StopIteration):
        next(stream)


def test_a_stream_dropped_before_its_first_delta_leaves_no_timer(fault_server):
    # With stream_timeout, a watchdog's timer bounds the call; a stream that
    # is made and dropped unread must not keep it for the whole stream_timeout.
    fault_server.script(sv.answer(sse(chunk("a"), chunk(finish="stop")), ctype="text/event-stream"))
    client = boc.Client(fault_server.url, model="m", stream_timeout=600)
    timers = lambda: [t for t in threading.enumerate() if isinstance(t, threading.Timer)]  # noqa: E731
    stream = client.stream("Hi")
    assert len(timers()) == 1
    del stream
    gc.collect()
    deadline = time.monotonic() + 5
    while timers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert timers() == []
