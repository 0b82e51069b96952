"""Bounds on what a hostile server can make a call cost (issue 13): wall time
(stream_timeout bounds the whole call), CPU time (regexes see a few KiB) and
memory (max_event_bytes, bounded decompression). The server sends gigabytes
lazily, never held; each case has a generous hang guard."""
import json
import socket
import time

import pytest
import requests

import bor_openai_compat as boc
import netservers as ns
import server as sv
from helpers import bounded, chunk, consume, endless, feed, gzip_bomb, peak_memory, run, sse, trickle

GOOD = sse(chunk("tok "), done=False)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
MiB = 1 << 20


# -- Time: stream_timeout bounds the whole call ----------------------------------


@pytest.fixture
def unanswered_port():
    """A port whose listen queue is full: a connection attempt hangs there."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(server.getsockname())
        fillers.append(filler)
    yield server.getsockname()[1]
    for sock in fillers + [server]:
        sock.close()


def test_stream_timeout_bounds_the_connection(unanswered_port):
    client = boc.Client("http://127.0.0.1:%d/v1" % unanswered_port, model="m", connect_timeout=5, max_retries=0)
    error, took = run(lambda: client.chat("Hi", stream_timeout=0.5))
    assert isinstance(error, boc.Timeout)
    assert "stream_timeout" in str(error)
    assert took < 3


TRICKLED_MODELS = json.dumps({"data": [{"id": "model-%03d" % i} for i in range(10)]}).encode()
TRICKLE = 0.02  # seconds between bytes: 4-5 s for these bodies


@pytest.mark.parametrize("scripts, call, exc_type", [
    pytest.param(lambda: [sv.answer(trickle(b'{"error": {"message": "%s"}}' % (b"x" * 200)), status=500,
                                   delay=TRICKLE)],
                 lambda c: c.chat("Hi", stream_timeout=0.5), (boc.Timeout, boc.ServerError), id="error-body-trickles"),
    pytest.param(lambda: [sv.answer({"error": {"message": "model 'm' not found"}}, status=404),
                          sv.answer(trickle(TRICKLED_MODELS), delay=TRICKLE)],
                 lambda c: c.chat("Hi", stream_timeout=0.5), boc.UnknownModel, id="models-after-an-unknown-model"),
    pytest.param(lambda: [sv.answer(trickle(TRICKLED_MODELS), delay=TRICKLE)],
                 lambda c: c.models(stream_timeout=0.5), boc.Timeout, id="models-per-call"),
    pytest.param(lambda: [sv.answer(trickle(TRICKLED_MODELS), delay=TRICKLE)],
                 lambda c: boc.Client(c.base_url, model="m", stream_timeout=0.5, max_retries=0).models(),
                 boc.Timeout, id="models-client-wide"),
])
def test_stream_timeout_bounds_the_whole_call(fault_server, make_client, scripts, call, exc_type):
    fault_server.script(*scripts())
    client = make_client(timeout=5, max_retries=0)
    error, took = run(lambda: call(client))
    assert isinstance(error, exc_type), repr(error)
    assert took < 2.5  # the limit is 0.5 s; the trickle would take 5 s


# -- CPU: regexes over server text run in linear time --------------------------


def repeated(piece, size=MiB):
    return piece * (size // len(piece))


REGEX_BODIES = [
    pytest.param("chat", 500, "application/json", b'{"error": {"message": "{' + repeated(b"'message': '", MiB - 64) + b'"}}',
                 boc.ServerError, id="python-repr-message"),
    pytest.param("chat", 502, "text/html", b"<html>" + repeated(b"<title>"), boc.ServerError, id="html-title"),
    pytest.param("chat", 502, "text/html", b"<html>" + repeated(b"<h1>"), boc.ServerError, id="html-h1"),
    pytest.param("chat", 200, "text/html", b"<html>" + repeated(b"<title>"), boc.InvalidResponse,
                 id="200-html-title"),
    pytest.param("chat", 404, "text/plain", repeated(b"model "), boc.OpenAICompatError, id="model-words"),
    pytest.param("images", 400, "text/plain", repeated(b"image"), boc.BadRequest, id="image-words"),
    pytest.param("stream", 400, "text/plain", repeated(b"stream "), boc.OpenAICompatError, id="stream-words"),
    pytest.param("stream", 200, "text/event-stream",
                 GOOD + b'data: {"error": {"message": "' + repeated(b"model ") + b'"}}\n\n',
                 boc.StreamInterrupted, id="error-event-model-words"),
]


@pytest.mark.parametrize("kind, status, ctype, body, exc_type", REGEX_BODIES)
def test_a_hostile_megabyte_is_classified_quickly(fault_server, make_client, kind, status, ctype, body, exc_type):
    fault_server.script(sv.answer(body, status=status, ctype=ctype))
    client = make_client(max_retries=0)
    calls = {"chat": lambda: client.chat("Hi"), "images": lambda: client.chat("Hi", images=[PNG]),
             "stream": consume(client)}
    with bounded(cpu=2.0, wall=4.0):
        error, _ = run(calls[kind])
    assert isinstance(error, exc_type), repr(error)
    assert len(str(error)) < 2000


# -- Memory: max_event_bytes and bounded decompression --------------------------

LIMIT = 200 * MiB  # max_event_bytes is 32 MiB; a few copies of it at most


def endless_x(total=160 * MiB):
    return endless(b"x" * MiB, total)


MEMORY = [
    pytest.param("stream", lambda: sv.answer(_then(GOOD, b"data: ", endless_x()), ctype="text/event-stream",
                                            framing="chunked"), "tok ", id="stream-line-without-end"),
    pytest.param("chat", lambda: sv.answer(_then(b'{"choices": "', endless_x()), framing="chunked"), None,
                 id="chat-body-without-end"),
    pytest.param("models", lambda: sv.answer(_then(b'{"data": ["', endless_x()), framing="close"), None,
                 id="models-body-without-end"),
    pytest.param("stream", lambda: sv.answer([_gzip(GOOD) + gzip_bomb(256 * MiB)], ctype="text/event-stream",
                                            framing="chunked", declare="gzip"), "tok ", id="stream-gzip-bomb"),
    pytest.param("chat", lambda: sv.answer(gzip_bomb(256 * MiB), declare="gzip"), None, id="chat-gzip-bomb"),
    pytest.param("models", lambda: sv.answer(gzip_bomb(256 * MiB), declare="gzip", framing="close"), None,
                 id="models-gzip-bomb"),
]


def _then(*parts):
    for part in parts:
        if isinstance(part, bytes):
            yield part
        else:
            yield from part


def _gzip(data):
    import gzip

    return gzip.compress(data)


@pytest.mark.parametrize("kind, script, partial", MEMORY)
def test_a_body_without_end_is_refused_in_bounded_memory(fault_server, make_client, kind, script, partial):
    fault_server.script(script())
    client = make_client(max_retries=0)
    calls = {"chat": lambda: client.chat("Hi"), "stream": consume(client), "models": client.models}
    with bounded(cpu=20, wall=20), peak_memory() as memory:
        error, _ = run(calls[kind])
    assert memory["peak"] < LIMIT, "peak %d MiB" % (memory["peak"] // MiB)
    assert isinstance(error, boc.InvalidResponse), repr(error)
    assert "max_event_bytes" in str(error)
    if partial is not None:
        assert isinstance(error, boc.StreamInterrupted) and error.partial.text == partial


@pytest.mark.parametrize("status, exc_type", [(500, boc.ServerError), (401, boc.AuthenticationError)])
def test_a_compressed_error_body_is_capped_after_decompression(fault_server, make_client, status, exc_type):
    """urllib3 1.26 applied the 1 MiB cap to the compressed bytes."""
    fault_server.script(sv.answer(gzip_bomb(256 * MiB), status=status, declare="gzip"))
    client = make_client(max_retries=0)
    with bounded(cpu=5, wall=10), peak_memory() as memory:
        error, _ = run(lambda: client.chat("Hi"))
    assert memory["peak"] < LIMIT, "peak %d MiB" % (memory["peak"] // MiB)
    assert type(error) is exc_type and error.status_code == status


def test_max_event_bytes_is_an_option(fault_server):
    """A smaller bound is honoured: an event of 2 MiB against max_event_bytes=1 MiB."""
    fault_server.script(sv.answer([GOOD, sse(chunk("y" * 2 * MiB), done=False)], ctype="text/event-stream",
                                 framing="chunked"))
    client = boc.Client(fault_server.url, model="m", max_retries=0, max_event_bytes=MiB)
    error, _ = run(consume(client))
    assert isinstance(error, boc.InvalidResponse) and isinstance(error, boc.StreamInterrupted)
    assert error.partial.text == "tok "


def test_events_up_to_the_default_bound_still_arrive(fault_server):
    text = "z" * (24 * MiB)
    fault_server.script(sv.answer([sse(chunk(text), chunk(finish="stop"))], ctype="text/event-stream",
                                 framing="chunked"))
    result, _ = run(consume(boc.Client(fault_server.url, model="m", max_retries=0)))
    assert isinstance(result, boc.ChatResult) and result.text == text


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "many-reads"])
def test_an_event_of_many_data_lines_costs_linear_time(split):
    # sseclient-py adds each data line to a growing string; 300,000 lines
    # (a few MB) took minutes of CPU that way. The values joined with LF are
    # the event's data, as the WHATWG rules say.
    lines = b"".join(b"data: ab\n" for _ in range(300_000)) + b"data: \n"
    event = b'data: {"choices":[{"delta":{"content":"x"},"finish_reason":"stop"}]}\n\n'
    body = lines + b"\n" + event + b"data: [DONE]\n\n"
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)] if split else [body]
    with bounded(cpu=5, wall=10):
        stream = feed(pieces)
        with pytest.raises(boc.InvalidResponse) as info:  # the many-line event is not JSON
            list(stream)
    assert info.value.partial.text == ""
    assert "not JSON" in str(info.value)
    assert info.value.excerpt.startswith("ab\nab\n")  # the values joined with LF


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "many-reads"])
def test_json_over_many_data_lines_is_joined_with_lf_in_linear_time(split):
    # The WHATWG rules join data lines with LF, which JSON takes as
    # whitespace: 300,000 lines make one chunk.
    head = b'data: {"choices":[{"delta":{"content":"x"},"finish_reason":"stop"}],"pad":[\n'
    body = head + b"data: 1,\n" * 300_000 + b"data: 1]}\n\n" + b"data: [DONE]\n\n"
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)] if split else [body]
    with bounded(cpu=5, wall=10):
        deltas = list(feed(pieces))
    assert [d.text for d in deltas] == ["x"]
    assert len(deltas[0].raw["pad"]) == 300_001


def _trickling_head(conn, request):
    """A status line, then a header line every 0.1 s: a minute of headers."""
    try:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for i in range(600):
            time.sleep(0.1)
            conn.sendall(b"X-A%d: b\r\n" % (i % 90) if i < 90 else b"x")
    except OSError:
        pass
    return False


@pytest.mark.parametrize("call", ["chat", "stream", "models"])
def test_stream_timeout_bounds_headers_that_trickle(fault_server, call):
    # Each read waits no longer than the time left, yet a header line every
    # 0.1 s would make reads for minutes: the call still ends at its deadline.
    fault_server.script(_trickling_head)
    client = boc.Client(fault_server.url, model="m", stream_timeout=1, timeout=5, max_retries=0)
    calls = {"chat": lambda: client.chat("Hi"), "stream": lambda: client.stream("Hi"), "models": client.models}
    outcome, took = run(calls[call])
    assert isinstance(outcome, boc.Timeout), outcome
    assert "stream_timeout=1" in str(outcome)
    assert took < 8


# -- Issue 17: redirect bodies are never read; stream_timeout through a proxy ----
#
# requests reads a redirect's body to the end before it hands the answer back
# (resolve_redirects' "resp.content", even with allow_redirects=False), and
# reads it again undecoded when decoding failed: an endless body, a gzip bomb
# or a broken brotli body on a 3xx cost all the memory or time the server
# likes, and raise what no caller expects (MemoryError, RuntimeError,
# brotli.error). A redirect's body is never needed.



REDIRECT_PEAK = 50 * MiB
NOT_BROTLI = b"\x1b\xff\xff\xff this is not a brotli stream " * 64


def _redirect_body(kind):
    """answer() keywords for a redirect body of each hostile kind."""
    return {
        "endless": dict(body=endless_x(), framing="close"),
        "gzip-bomb": dict(body=gzip_bomb(128 * MiB), declare="gzip"),
        "broken-brotli": dict(body=NOT_BROTLI, declare="br"),
        # Not brotli, and endless: requests reads it again, undecoded, after the decoder failed.
        "broken-brotli-endless": dict(body=_then(NOT_BROTLI, endless_x()), declare="br", framing="close"),
        # 600 bytes, 0.1 s apart: a minute, each read well within timeout=5.
        "trickle": dict(body=trickle(b"x" * 600), delay=0.1, framing="close"),
    }[kind]


REDIRECT_BODY_KINDS = ["endless", "gzip-bomb", "broken-brotli", "broken-brotli-endless", "trickle"]


@pytest.fixture
def good_server():
    server = sv.Server(ns.openai("moved here"))
    yield server
    server.close()


@pytest.fixture(params=["our-session", "own-session"])
def session(request):
    if request.param == "our-session":
        yield None
        return
    own = requests.Session()
    yield own
    own.close()


def _redirect_client(fault_server, session):
    return boc.Client(fault_server.url, model="m", max_retries=0, timeout=5, stream_timeout=3, session=session)


@pytest.mark.parametrize("kind", REDIRECT_BODY_KINDS)
@pytest.mark.parametrize("call, status", [
    pytest.param("chat", 307, id="chat-307"),
    pytest.param("models", 301, id="models-301"),
    pytest.param("models", 308, id="models-308"),
])
def test_a_redirect_loop_with_a_hostile_body_is_one_redirect_error(fault_server, session, kind, call, status):
    # The redirect points back at itself: the error is the loop, said at
    # once, without reading a byte of the body.
    target = fault_server.url + ("/chat/completions" if call == "chat" else "/models")
    fault_server.script(sv.answer(status=status, ctype="text/plain", headers=["Location: " + target],
                                 **_redirect_body(kind)))
    client = _redirect_client(fault_server, session)
    calls = {"chat": lambda: client.chat("Hi"), "models": client.models}
    with bounded(cpu=10, wall=8), peak_memory() as memory:
        error, took = run(calls[call])
    assert isinstance(error, boc.ConnectionFailed), repr(error)
    assert "redirect loop" in str(error), str(error)
    assert memory["peak"] < REDIRECT_PEAK, "peak %d MiB" % (memory["peak"] // MiB)
    assert took < 2.5, "took %.1fs" % took  # stream_timeout is 3 s; the trickle would take 60 s


@pytest.mark.parametrize("kind", REDIRECT_BODY_KINDS)
@pytest.mark.parametrize("call", ["chat", "stream", "models"])
def test_a_followed_redirect_with_a_hostile_body_still_answers(fault_server, good_server, session, kind, call):
    # A 307 (a 308 for GET /models) to a good server on another port: its
    # answer arrives, whatever the body of the redirect was.
    target = good_server.url + ("/models" if call == "models" else "/chat/completions")
    fault_server.script(sv.answer(status=308 if call == "models" else 307, ctype="text/plain",
                                 headers=["Location: " + target], **_redirect_body(kind)))
    client = _redirect_client(fault_server, session)
    calls = {"chat": lambda: client.chat("Hi").text, "stream": lambda: client.stream("Hi").result.text,
             "models": client.models}
    with bounded(cpu=10, wall=8), peak_memory() as memory:
        outcome, took = run(calls[call])
    assert outcome == (["m", "other-model"] if call == "models" else "moved here"), repr(outcome)
    assert memory["peak"] < REDIRECT_PEAK, "peak %d MiB" % (memory["peak"] // MiB)
    assert took < 2.5, "took %.1fs" % took
    assert [r.method for r in good_server.requests] == ["GET" if call == "models" else "POST"]


@pytest.mark.parametrize("kind", REDIRECT_BODY_KINDS)
def test_a_post_redirect_that_is_not_followed_does_not_read_the_body(fault_server, session, kind):
    # 301 to a POST: a ConfigurationError naming the base URL to use, at once.
    origin = fault_server.url[: -len("/v1")]
    fault_server.script(sv.answer(status=301, ctype="text/plain",
                                 headers=["Location: %s/api/v1/chat/completions" % origin], **_redirect_body(kind)))
    client = _redirect_client(fault_server, session)
    with bounded(cpu=10, wall=8), peak_memory() as memory:
        error, took = run(lambda: client.chat("Hi"))
    assert isinstance(error, boc.ConfigurationError), repr(error)
    assert "/api/v1" in str(error) and "base URL" in str(error), str(error)
    assert memory["peak"] < REDIRECT_PEAK, "peak %d MiB" % (memory["peak"] // MiB)
    assert took < 2.5, "took %.1fs" % took


# -- stream_timeout through an HTTP proxy --


@pytest.fixture
def trickling_proxy(monkeypatch):
    proxy = sv.Server(_trickling_head)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    yield proxy
    proxy.close()


@pytest.mark.parametrize("scheme, variable", [("http", "HTTP_PROXY"), ("https", "HTTPS_PROXY")],
                         ids=["http-via-HTTP_PROXY", "https-CONNECT-via-HTTPS_PROXY"])
@pytest.mark.parametrize("call", ["chat", "stream", "models"])
def test_stream_timeout_bounds_headers_that_trickle_through_a_proxy(trickling_proxy, monkeypatch, scheme,
                                                                    variable, call):
    # api.test is no loopback name, so the request goes through the proxy,
    # which answers (or answers CONNECT) one header line at a time.
    monkeypatch.setenv(variable, trickling_proxy.origin)
    client = boc.Client("%s://api.test/v1" % scheme, model="m", stream_timeout=1, timeout=5, max_retries=0)
    calls = {"chat": lambda: client.chat("Hi"), "stream": lambda: client.stream("Hi"), "models": client.models}
    with bounded(cpu=5, wall=10):
        outcome, took = run(calls[call])
    assert isinstance(outcome, boc.Timeout), repr(outcome)
    assert "stream_timeout=1" in str(outcome), str(outcome)
    assert took < 8, "took %.1fs" % took
    assert trickling_proxy.requests, "the request did not go through the proxy"
