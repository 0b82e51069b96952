"""The wire: compressed bodies in every framing, 1xx answers, connection reuse, threads.

Every test here talks to a real socket (:mod:`server`), because these are
things ``responses`` cannot show: how a body is framed and encoded, how many
TCP connections a client opens, and what happens to them.
"""
import gzip
import json
import select
import threading
import time
import zlib

import pytest

import bor_openai_compat as boc
import server as sv
from helpers import ENCODINGS, FRAMINGS, Reader, chunk, completion, events, http_chunk, open_fds, sse, text_stream

MODELS = {"object": "list", "data": [{"id": "m1", "object": "model"}, {"id": "m2", "object": "model"}]}


@pytest.fixture
def server():
    server = sv.Server()
    yield server
    server.close()


def client_for(server, **options):
    options.setdefault("max_retries", 0)
    return boc.Client(server.url, model="m1", **options)


# -- Compressed bodies in every framing --------------------------------------
#
# Each endpoint: what the server answers (status, body pieces, content type)
# and what the client must make of it.


def _chat(client):
    assert client.chat("Hi").text == "Bonjour"


def _stream(client):
    with client.stream("Hi") as stream:
        texts = [d.text for d in stream]
    assert "".join(texts) == "Bon jour" and stream.result.finish_reason == "stop"


def _models(client):
    assert client.models() == ["m1", "m2"]


def _server_error(client):
    with pytest.raises(boc.ServerError, match="the GPU caught fire"):
        client.chat("Hi")


def _stream_server_error(client):
    with pytest.raises(boc.ServerError, match="the GPU caught fire"):
        client.stream("Hi")


def _unknown_model(client):
    with pytest.raises(boc.UnknownModel, match="does not exist") as info:
        client.chat("Hi", model="nope")
    assert info.value.available == ["m1", "m2"]  # GET /models, compressed too


FIRE = {"error": {"message": "the GPU caught fire", "type": "server_error"}}
MISSING = {"error": {"message": "The model `nope` does not exist", "code": "model_not_found"}}

ENDPOINTS = {
    # name: (what the server answers POST /chat/completions with, check)
    "chat": ((200, [json.dumps(completion("Bonjour")).encode()], "application/json"), _chat),
    "stream": ((200, events("Bon ", "jour"), "text/event-stream"), _stream),
    "models": (None, _models),
    "error-500": ((500, [json.dumps(FIRE).encode()], "application/json"), _server_error),
    "stream-error-500": ((500, [json.dumps(FIRE).encode()], "application/json"), _stream_server_error),
    "error-404-unknown-model": ((404, [json.dumps(MISSING).encode()], "application/json"), _unknown_model),
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("framing", FRAMINGS)
def test_compressed_bodies_decode_in_every_framing(server, framing, encoding, endpoint):
    answer, check = ENDPOINTS[endpoint]

    def handler(conn, request):
        if request.path.endswith("/models"):
            return sv.send(conn, MODELS, framing=framing, encoding=encoding)
        status, pieces, ctype = answer
        if len(pieces) == 1:  # a body in several pieces, cut inside the compressed data
            middle = len(pieces[0]) // 2
            pieces = [pieces[0][:middle], pieces[0][middle:]]
        return sv.send(conn, pieces, status=status, framing=framing, ctype=ctype, encoding=encoding)

    server.script(handler)
    with client_for(server) as client:
        check(client)


@pytest.mark.parametrize("call", ["chat", "stream", "models"])
def test_only_gzip_and_deflate_are_advertised(server, call):
    def handler(conn, request):
        if request.path.endswith("/models"):
            return sv.send(conn, MODELS)
        return sv.send(conn, text_stream("x"), ctype="text/event-stream")

    server.script(handler)
    with client_for(server) as client:
        if call == "models":
            client.models()
        else:
            getattr(client, call)("Hi")
    header = server.requests[0].headers.get("accept-encoding", "")
    assert "br" not in header.lower()
    assert {token.split(";")[0].strip().lower() for token in header.split(",")} == {"gzip", "deflate"}, header


# -- 1xx interim answers -------------------------------------------------------


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"


@pytest.mark.parametrize("first", ["chat", "stream"])
def test_an_interim_103_is_not_the_answer_and_does_not_cross_calls(server, first):
    def handler(conn, request):
        text = request.json()["messages"][-1]["content"]
        if text == "A":
            conn.sendall(EARLY_HINTS)
            # The real answer takes a while: until the client hangs up, or
            # sends its next request on this connection.
            select.select([conn], [], [], 5)
        if request.json().get("stream"):
            return sv.send(conn, text_stream("answer " + text), ctype="text/event-stream")
        return sv.send(conn, completion("answer " + text))

    server.script(handler)
    with client_for(server, max_retries=2) as client:
        with pytest.raises(boc.InvalidResponse, match="103"):
            if first == "chat":
                client.chat("A")
            else:
                client.stream("A").result
        assert client.chat("B").text == "answer B"
    assert len(server.requests) == 2, "the call with a 103 was retried"
    assert server.accepts == 2, "the connection that sent the 103 was used again"


# -- OpenAI's refusal of stream=true -----------------------------------------


def test_openai_unsupported_value_for_stream_is_streaming_not_supported(server):
    refusal = {
        "error": {
            "message": "Unsupported value: 'stream' does not support true with this model. "
            "Supported values are: false.",
            "type": "invalid_request_error",
            "param": "stream",
            "code": "unsupported_value",
        }
    }
    server.script(sv.reply(400, refusal))
    with client_for(server) as client:
        with pytest.raises(boc.StreamingNotSupported, match="does not support true with this model"):
            client.stream("Hi")


# -- Connection reuse ----------------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_streams_read_to_the_end_share_one_connection(server, framing):
    def handler(conn, request):
        return sv.send(conn, events("a", "b"), framing=framing, ctype="text/event-stream")

    server.script(handler)
    with client_for(server) as client:
        for i in range(20):
            with client.stream("Hi") as stream:
                assert [d.text for d in stream][:2] == ["a", "b"], "stream %d" % i
            assert stream.result.text == "ab"
    assert len(server.requests) == 20
    assert server.accepts == 1


@pytest.mark.parametrize("leave", ["with", "close", "drop"])
@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_streams_left_early_close_their_connection(server, framing, leave):
    first = sse(chunk("a"), done=False)
    rest = text_stream("b", "c")

    def handler(conn, request):
        length = len(first) + len(rest)
        conn.sendall(sv.head(200, "text/event-stream", length, framing=framing))
        conn.sendall(http_chunk(first) if framing == "chunked" else first)
        if sv.wait_closed(conn, 5, server.release):  # the rest never goes
            server.client_hung_up()
        return False

    server.script(handler)
    client = client_for(server)
    before = open_fds()
    for _ in range(20):
        if leave == "with":
            with client.stream("Hi") as stream:
                for delta in stream:
                    break
        else:
            stream = client.stream("Hi")
            for delta in stream:
                break
            if leave == "close":
                stream.close()
            del stream, delta
    assert server.wait_idle(10)
    client.close()
    assert server.accepts == 20
    assert server.closed_by_client == 20, "the client left connections open"
    assert open_fds() <= before


def test_done_on_a_chunked_body_that_stays_open_does_not_hang(server):
    def handler(conn, request):
        conn.sendall(sv.head(200, "text/event-stream", framing="chunked"))
        conn.sendall(http_chunk(text_stream("a", "b")))
        server.release.wait(30)  # the terminating chunk never comes
        return False

    server.script(handler)
    outcome = []

    def read():
        try:
            with client_for(server, timeout=60) as client:
                with client.stream("Hi") as stream:
                    outcome.append([d.text for d in stream])
                outcome.append(stream.result.text)
        except Exception as exc:  # reported below
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "the stream hung after [DONE]"
    assert outcome[-1] == "ab", outcome


# -- Closing from another thread -----------------------------------------------


def test_close_from_another_thread_ends_the_loop_quietly(server):
    seen_close = threading.Event()

    def handler(conn, request):
        conn.sendall(sv.head(200, "text/event-stream", framing="chunked"))
        conn.sendall(http_chunk(sse(chunk("first"), done=False)))
        if sv.wait_closed(conn, 30, server.release):
            seen_close.set()
        return False

    server.script(handler)
    client = client_for(server)
    before = open_fds()
    stream = client.stream("Hi")
    reader = Reader(stream)
    assert reader.got_one.wait(5), "the first delta never arrived"
    time.sleep(0.05)  # let the reader block on the socket again
    stream.close()
    reader.join(5)
    assert not reader.is_alive(), "close() did not stop the reading thread"
    assert reader.errors == []
    assert reader.texts == ["first"]
    assert stream.result.text == "first" and stream.result.finish_reason is None
    assert seen_close.wait(5), "the server never saw the connection close"
    assert server.wait_idle(5)
    client.close()
    assert open_fds() <= before


# -- Found in review -------------------------------------------------------------------


def test_a_call_made_inside_the_loop_after_the_body_ended_gets_its_own_answer(fault_server):
    # The last event has no blank line after it: the body (Content-Length) has
    # ended and its connection is back in the pool before that event reaches
    # the caller. A call made then reuses the connection: http.client must
    # have seen the old response closed, or that request fails after it was sent.
    body = (b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
            b'data: {"choices":[{"delta":{"content":"b"},"finish_reason":"stop"}]}')
    models = b'{"data":[{"id":"m"}]}'

    def stream(conn, request):
        conn.sendall(sv.head(200, "text/event-stream", len(body)) + body)
        return True

    def listing(conn, request):
        conn.sendall(sv.head(200, "application/json", len(models)) + models)
        return True

    fault_server.script(stream, listing)
    client = boc.Client(fault_server.url, model="m", max_retries=0)
    seen = []
    for delta in client.stream("Hi"):
        if delta.finish_reason:
            seen = client.models()
    assert seen == ["m"]
    assert [r.path for r in fault_server.requests] == ["/v1/chat/completions", "/v1/models"]


def test_the_wait_after_done_is_short_also_with_a_stream_timeout(fault_server):
    # After [DONE] the body stays open: the loop ends after about a second,
    # not at stream_timeout (the bound catches a wait of 30 s).
    done = b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    fault_server.script(sv.stream([done], end=False, then=lambda: time.sleep(40)))
    client = boc.Client(fault_server.url, model="m", stream_timeout=30)
    start = time.monotonic()
    with client.stream("Hi") as stream:
        assert [d.text for d in stream] == ["hi"]
    assert time.monotonic() - start < 10


def test_a_compressed_body_that_is_not_sse_is_shown_decoded(fault_server):
    page = gzip.compress(b"<html><title>Gateway says no</title></html>\n")

    def script(conn, request):
        conn.sendall(sv.head(200, "text/event-stream", len(page), headers=["Content-Encoding: gzip"]) + page)
        return True

    fault_server.script(script)
    with pytest.raises(boc.InvalidResponse) as info:
        boc.Client(fault_server.url, model="m").stream("Hi").result
    assert "Gateway says no" in str(info.value)


def test_deflate_whose_first_read_is_one_byte_decodes():
    # Which deflate it is (zlib-wrapped or raw) is told by two bytes; a proxy
    # that flushes byte by byte may deliver only one first.
    body = sse(chunk("Hello"), chunk(finish="stop"))
    for wrapped in (zlib.compress(body), zlib.compress(body)[2:-4]):  # zlib, then raw deflate
        decoder = boc._Decoder("deflate")
        out = b"".join(list(decoder.feed(wrapped[:1])) + list(decoder.feed(wrapped[1:])) + [decoder.flush()])
        assert out == body


def test_a_trailer_that_never_ends_is_bounded(fault_server):
    # After the last chunk, trailer lines trickle: stream_timeout still holds,
    # and a stream still ends soon after [DONE].
    def trickle(body, ctype):
        def script(conn, request):
            conn.sendall(sv.head(200, ctype, framing="chunked"))
            conn.sendall(http_chunk(body) + b"0\r\n")
            try:
                for i in range(200):
                    conn.sendall(b"X-T: %d\r\n" % i)
                    time.sleep(0.05)
            except OSError:
                pass
            return False

        return script

    fault_server.script(trickle(sse(chunk("hi", finish="stop")), "text/event-stream"),
                        trickle(json.dumps(completion("hi")).encode(), "application/json"))
    client = boc.Client(fault_server.url, model="m", stream_timeout=1, max_retries=0)
    start = time.monotonic()
    assert client.stream("Hi").result.text == "hi"
    with pytest.raises(boc.Timeout):
        client.chat("Hi")  # the answer's end never comes
    assert time.monotonic() - start < 8
