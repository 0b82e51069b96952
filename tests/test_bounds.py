"""Bounds on what a hostile server can make a call cost (issue 13): wall time
(stream_timeout bounds the whole call), CPU time (regexes see a few KiB) and
memory (max_event_bytes, bounded decompression). The server sends gigabytes
lazily, never held; each case has a generous hang guard."""
import json
import socket
import time

import pytest

import bor_openai_compat as boc
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
    text = "ab\n" * 300_000
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


@pytest.mark.parametrize("call", ["chat", "stream", "models"])
def test_stream_timeout_bounds_headers_that_trickle(fault_server, call):
    # Each read waits no longer than the time left, yet a header line every
    # 0.1 s would make reads for minutes: the call still ends at its deadline.
    def trickle(conn, request):
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        try:
            for i in range(600):
                time.sleep(0.1)
                conn.sendall(b"X-A%d: b\r\n" % (i % 90) if i < 90 else b"x")
        except OSError:
            pass
        return False

    fault_server.script(trickle)
    client = boc.Client(fault_server.url, model="m", stream_timeout=1, timeout=5, max_retries=0)
    calls = {"chat": lambda: client.chat("Hi"), "stream": lambda: client.stream("Hi"), "models": client.models}
    outcome, took = run(calls[call])
    assert isinstance(outcome, boc.Timeout), outcome
    assert "stream_timeout=1" in str(outcome)
    assert took < 8
