"""Each fault a real network or server can throw, against a local fault server.

Every case asserts what the caller gets (type and the useful words), what is
kept (.partial / .result), how many requests the server saw (retries) and
that it ended in bounded time.
"""
import logging
import time

import pytest

import bor_openai_compat as boc
import server as sv
from helpers import CANARY_KEY, chunk, completion, consume, events, free_port, http_chunk, open_fds, run, sse


def test_closes_without_answering(fault_server, make_client):
    fault_server.script(sv.close_at_once)
    error, took = run(lambda: make_client().chat("Hi"))
    assert type(error) is boc.ConnectionFailed
    assert "closed the connection without answering" in str(error)
    assert len(fault_server.requests) == 3  # retried twice
    assert took < 2


def test_accepts_and_never_answers(fault_server, make_client):
    fault_server.script(sv.stall(3))
    error, took = run(lambda: make_client(timeout=0.5).chat("Hi"))
    assert isinstance(error, boc.Timeout)
    assert "sent nothing for 0.5s" in str(error) and "timeout=" in str(error)
    assert len(fault_server.requests) == 1  # a read timeout is not retried
    assert 0.5 <= took < 2


def test_stalls_mid_stream_keeps_the_text(fault_server, make_client):
    fault_server.script(sv.stream(events("one ", "two ", finish=None, done=False), then=lambda: time.sleep(3)))
    error, took = run(consume(make_client(timeout=0.5)))
    assert isinstance(error, boc.Timeout) and isinstance(error, boc.StreamInterrupted)
    assert "sent nothing more for 0.5s" in str(error)
    assert error.partial.text == "one two "
    assert len(fault_server.requests) == 1
    assert took < 2.5


def test_slow_trickle_is_bounded_by_stream_timeout(fault_server, make_client):
    fault_server.script(sv.stream(events(*["tok%d " % i for i in range(200)]), delay=0.05))
    error, took = run(consume(make_client(timeout=5), stream_timeout=0.6))
    assert isinstance(error, boc.Timeout) and isinstance(error, boc.StreamInterrupted)
    assert "stream_timeout" in str(error)
    assert error.partial.text.startswith("tok0 tok1 ")
    assert 0.6 <= took < 1.5


def test_slow_non_stream_body_is_bounded_too(fault_server, make_client):
    body = b" " * 100 + b"{}"
    fault_server.script(sv.stream([body[i:i + 1] for i in range(len(body))], delay=0.05, ctype="application/json"))
    error, took = run(lambda: make_client().chat("Hi", stream_timeout=0.5))
    assert type(error) is boc.Timeout and "stream_timeout=0.5s" in str(error)
    assert took < 1.5


def test_non_stream_body_cut_off(fault_server, make_client):
    fault_server.script(sv.stream([b'{"choices": [{"message": {"content": "Hel'], end=False, ctype="application/json"))
    error, _ = run(lambda: make_client().chat("Hi"))
    assert type(error) is boc.ConnectionFailed and "dropped in the middle of the answer" in str(error)


def test_stream_timeout_on_the_client(fault_server, make_client):
    fault_server.script(sv.stream(events(*["t "] * 200), delay=0.05))
    error, took = run(consume(make_client(stream_timeout=0.4)))
    assert isinstance(error, boc.Timeout) and took < 1.2


def test_truncated_stream(fault_server, make_client):
    fault_server.script(sv.stream(events("cut ", "off", finish=None, done=False)))
    error, _ = run(consume(make_client()))
    assert type(error) is boc.StreamInterrupted
    assert "ended before the answer was finished" in str(error)
    assert error.partial.text == "cut off"
    assert len(fault_server.requests) == 1


def test_finish_but_no_done_is_fine(fault_server, make_client):
    fault_server.script(sv.stream(events("all ", "here", done=False)))
    result, _ = run(consume(make_client()))
    assert result.text == "all here" and result.finish_reason == "stop"


def test_connection_dropped_mid_stream(fault_server, make_client):
    fault_server.script(sv.stream(events("half ", finish=None, done=False), end=False))
    error, _ = run(consume(make_client()))
    assert isinstance(error, boc.ConnectionFailed) and isinstance(error, boc.StreamInterrupted)
    assert "dropped in the middle of the answer" in str(error)
    assert error.partial.text == "half "
    assert len(fault_server.requests) == 1  # never retried once data arrived


def test_garbage_bytes(fault_server, make_client):
    fault_server.script(sv.stream([b"\x00\xff\x13garbage\x7f" * 10]))
    error, _ = run(consume(make_client()))
    assert isinstance(error, boc.InvalidResponse) and isinstance(error, boc.StreamInterrupted)
    assert "no server-sent events" in str(error)


def test_invalid_json_in_one_event(fault_server, make_client):
    fault_server.script(sv.stream(events("good ", finish=None, done=False) + [b"data: {not json\n\n"] + events("never")))
    error, _ = run(consume(make_client()))
    assert isinstance(error, boc.InvalidResponse) and isinstance(error, boc.StreamInterrupted)
    assert "not JSON" in str(error) and "{not json" in str(error)
    assert error.partial.text == "good "


def test_invalid_utf8(fault_server, make_client):
    bad = b'data: {"choices":[{"delta":{"content":"caf\xe9 \xf0\x9f"}}]}\n\n'
    fault_server.script(sv.stream([bad] + events("ok")))
    result, _ = run(consume(make_client()))
    assert result.text == "caf\ufffd \ufffdok"


def test_ten_megabyte_event(fault_server, make_client):
    text = "x" * (10 * 1024 * 1024)
    body = sse(chunk(text), chunk(finish="stop"))
    fault_server.script(sv.stream([body[i:i + 65536] for i in range(0, len(body), 65536)]))
    result, took = run(consume(make_client()))
    assert result.text == text
    assert took < 10  # a hang guard, not a benchmark


def test_html_502_from_a_proxy_is_retried(fault_server, make_client):
    page = b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
    fault_server.script(sv.reply(502, page, "text/html"))
    error, took = run(lambda: make_client().chat("Hi"))
    assert type(error) is boc.ServerError
    assert "HTTP 502: 502 Bad Gateway" in str(error)
    assert len(fault_server.requests) == 3
    assert took < 2


@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
def test_200_with_an_html_body(fault_server, make_client, streaming):
    fault_server.script(sv.reply(200, b"<!DOCTYPE html><html><head><title>Sign in</title></head></html>", "text/html"))
    client = make_client()
    error, _ = run(consume(client) if streaming else lambda: client.chat("Hi"))
    assert type(error) is boc.InvalidResponse
    assert "an HTML page" in str(error) and "Sign in" in str(error)
    assert len(fault_server.requests) == 1


def test_error_after_the_first_token_is_not_retried(fault_server, make_client):
    tail = [b'data: {"error": {"message": "CUDA out of memory", "code": 500}}\n\n']
    fault_server.script(sv.stream(events("first ", finish=None, done=False) + tail))
    error, _ = run(consume(make_client()))
    assert isinstance(error, boc.ServerError) and isinstance(error, boc.StreamInterrupted)
    assert "CUDA out of memory" in str(error) and error.partial.text == "first "
    assert len(fault_server.requests) == 1


def test_redirect_to_another_host_drops_the_key(fault_server, make_client):
    other = sv.Server()
    try:
        other.script(sv.reply(200, completion("elsewhere")))
        target = "http://localhost:%d/v1/chat/completions" % other.port
        fault_server.script(sv.reply(307, b"", headers=["Location: " + target]))
        result, _ = run(lambda: make_client().chat("Hi"))
        assert result.text == "elsewhere"
        assert fault_server.requests[0].headers["authorization"] == "Bearer " + CANARY_KEY
        assert "authorization" not in other.requests[0].headers
    finally:
        other.close()


# -- Secrets -----------------------------------------------------------------

SECRET_FAULTS = [
    pytest.param(lambda: [sv.close_at_once], "chat", id="closed"),
    pytest.param(lambda: [sv.stall(2)], "chat", id="read-timeout"),
    pytest.param(lambda: [sv.reply(401, {"error": {"message": "Invalid key %s" % CANARY_KEY}})], "chat",
                 id="401-echoing-the-key"),
    pytest.param(lambda: [sv.reply(404, {"error": {"message": "model 'm' not found"}}),
                          sv.reply(200, {"data": [{"id": "x"}]})], "chat", id="unknown-model"),
    pytest.param(lambda: [sv.reply(500, "<html><title>%s</title></html>" % CANARY_KEY, "text/html")], "chat",
                 id="500-html-echo"),
    pytest.param(lambda: [sv.reply(429, {}, headers=["Retry-After: 9999"])], "chat", id="429"),
    pytest.param(lambda: [sv.reply(200, b"<html>nope</html>", "text/html")], "chat", id="200-html"),
    pytest.param(lambda: [sv.stream(events("a", finish=None, done=False) + [
        ('data: {"error": {"message": "bad key %s", "code": 401}}\n\n' % CANARY_KEY).encode()])], "stream",
        id="stream-error-echo"),
    pytest.param(lambda: [sv.stream(events("a", finish=None, done=False), then=lambda: time.sleep(2))], "stream",
                 id="stall-mid-stream"),
    pytest.param(lambda: [sv.stream(events("a", finish=None, done=False), end=False)], "stream", id="dropped"),
    pytest.param(lambda: [sv.stream([b"garbage"])], "stream", id="garbage"),
    pytest.param(lambda: [sv.reply(200, completion("x"))], "stream", id="not-streaming"),
    pytest.param(lambda: [sv.stream(events("a", finish=None, done=False) + [b"data: {broken\n\n"])], "stream",
                 id="invalid-json-event"),
    pytest.param(lambda: [sv.stream(events(*["t"] * 100), delay=0.05)], "stream-deadline", id="stream-timeout"),
    pytest.param(lambda: [sv.reply(400, {"error": {"message": "stream is not supported"}})], "stream",
                 id="stream-refused"),
    pytest.param(lambda: [sv.reply(503, b"busy", "text/plain")], "chat", id="retried-503"),
]


@pytest.mark.parametrize("scripts, kind", SECRET_FAULTS)
def test_the_key_never_shows(fault_server, make_client, caplog, scripts, kind):
    """Every error path, with a canary key: not in messages, reprs, bodies or DEBUG logs."""
    caplog.set_level(logging.DEBUG)
    fault_server.script(*scripts())
    client = make_client(timeout=0.5, max_retries=1)
    calls = {"stream": consume(client), "stream-deadline": consume(client, stream_timeout=0.3),
             "chat": lambda: client.chat("Hi")}
    error, _ = run(calls[kind])
    assert isinstance(error, boc.OpenAICompatError)
    seen = [str(error), repr(error), repr(client), str(getattr(error, "body", "")), repr(getattr(error, "partial", ""))]
    seen += [record.getMessage() for record in caplog.records]
    cause = error.__cause__
    while cause is not None:
        seen.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    assert caplog.records, "no DEBUG records captured: the check would be empty"
    for text in seen:
        assert CANARY_KEY not in text


def test_the_key_never_shows_when_refused(caplog):
    caplog.set_level(logging.DEBUG)
    client = boc.Client("http://127.0.0.1:%d/v1" % free_port(), api_key=CANARY_KEY, model="m")
    error, _ = run(lambda: client.chat("Hi"))
    assert isinstance(error, boc.ConnectionRefused)
    for text in [str(error), repr(error), str(error.__cause__)] + [r.getMessage() for r in caplog.records]:
        assert CANARY_KEY not in text


# -- Resources ---------------------------------------------------------------


def test_no_sockets_leak_after_thousands_of_broken_off_streams(fault_server):
    def long_stream(conn, request):
        conn.sendall(sv.head(200, "text/event-stream", framing="chunked"))
        piece = sse(*[chunk("word ") for _ in range(50)], done=False)
        try:
            conn.sendall(http_chunk(piece))
            time.sleep(0.05)
        except OSError:
            pass
        return False

    fault_server.script(long_stream)
    client = boc.Client(fault_server.url, model="m")

    for _ in range(20):  # warm up the pool and the logging machinery
        with client.stream("Hi") as s:
            next(s)
    time.sleep(0.3)  # the server's own sockets (same process) settle
    before = open_fds()
    for i in range(2000):
        stream = client.stream("Hi")
        for delta in stream:
            break
        if i % 2:
            stream.close()
        else:
            del stream  # dropped without close(): the generator's finally closes it
    time.sleep(0.3)
    after = open_fds()
    assert after - before <= 2, (before, after)
