"""The error boundary (issue 13): whatever a server, a file or a caller does,
a call raises one of our exceptions (TypeError only for a wrong argument
type), refuses bad input before sending, and a stream keeps ``.partial``."""
import errno
import io
import json
import logging
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bor_openai_compat as boc
import server as sv
from helpers import BASE, CANARY_KEY, URL, chunk, completion, consume, http_chunk, nested, run, sse, visible

GOOD = sse(chunk("tok "), done=False)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def event_stream(*pieces, **kwargs):
    return sv.answer(list(pieces), ctype="text/event-stream", framing="chunked", **kwargs)


def raw_chunked(*pieces, ctype="text/event-stream"):
    return sv.answer(list(pieces), ctype=ctype, framing="raw", headers=["Transfer-Encoding: chunked"])


# -- Types: nothing but our exceptions escapes -----------------------------------

DEEP = nested(100_000)
ESCAPES = [
    pytest.param("chat", lambda: [sv.answer(DEEP)], None, id="deep-json-body"),
    pytest.param("chat", lambda: [sv.answer('{"choices": %s}' % nested(1000))], None, id="json-1000-deep-body"),
    pytest.param("chat", lambda: [sv.answer(DEEP, status=400)], None, id="deep-json-error-body"),
    pytest.param("chat", lambda: [sv.answer('{"error": {"message": %s}}' % nested(1000), status=500)], None,
                 id="json-1000-deep-error-message"),
    pytest.param("stream", lambda: [event_stream(GOOD, "data: %s\n\n" % DEEP)], "tok ", id="deep-json-event"),
    pytest.param("stream", lambda: [event_stream(GOOD, 'data: {"choices": [{"delta": {"content": %s}}]}\n\n'
                                                 % nested(990))], "tok ", id="json-990-deep-delta"),
    pytest.param("models", lambda: [sv.answer(DEEP)], None, id="deep-json-models"),
    pytest.param("stream", lambda: [event_stream(GOOD, 'data: {"error": {"message": "boom", "code": "\u00b2"}}\n\n')],
                 "tok ", id="error-code-superscript-two"),
    pytest.param("stream", lambda: [event_stream(GOOD, 'data: {"error": {"message": "boom", "code": "%s"}}\n\n'
                                                 % ("9" * 5000))], "tok ", id="error-code-5000-digits"),
    pytest.param("stream", lambda: [raw_chunked(http_chunk(GOOD), http_chunk(b"abc", "f" * 40))], "tok ",
                 id="chunk-size-overflows"),
    pytest.param("chat", lambda: [raw_chunked(http_chunk(b"{}", "f" * 40), ctype="application/json")], None,
                 id="chunk-size-overflows-chat"),
    pytest.param("stream", lambda: [raw_chunked(http_chunk(GOOD), http_chunk(b"abc", "-5"))], "tok ",
                 id="negative-chunk-size"),
    pytest.param("stream", lambda: [raw_chunked(http_chunk(GOOD), http_chunk(b"abc", "zz"))], "tok ",
                 id="chunk-size-not-hex"),
    pytest.param("stream", lambda: [sv.answer([GOOD], ctype="text/event-stream", framing="raw",
                                             headers=["Content-Length: 9999", "Connection: close"])], "tok ",
                 id="body-shorter-than-content-length"),
    pytest.param("chat", lambda: [sv.answer(b"", status=302, headers=["Location: http://127.0.0.1:99999/v1"])], None,
                 id="redirect-to-port-99999"),
    pytest.param("chat", lambda: [sv.answer(b"", status=302, headers=["Location: http://exa mple/v1"])], None,
                 id="redirect-to-a-host-with-a-space"),
    pytest.param("chat", lambda: [sv.answer(b"garbage!", status=302, declare="gzip", headers=["Location: /v1/again"]),
                                  sv.answer(completion("after"))], None, id="broken-gzip-on-a-redirect"),
    pytest.param("chat", lambda: [sv.answer(b"garbage!", status=500, declare="gzip")], None,
                 id="broken-gzip-on-an-error"),
    pytest.param("chat", lambda: [sv.answer(b"garbage!", status=500, declare="deflate", framing="chunked")], None,
                 id="broken-deflate-on-a-chunked-error"),
    pytest.param("stream", lambda: [event_stream(GOOD, b"garbage!", declare="gzip")], "", id="broken-gzip-stream"),
]


@pytest.mark.parametrize("kind, scripts, partial", ESCAPES)
def test_only_our_exceptions_escape(fault_server, make_client, kind, scripts, partial):
    fault_server.script(*scripts())
    client = make_client(max_retries=0)
    calls = {"chat": lambda: client.chat("Hi"), "stream": consume(client), "models": client.models}
    try:
        outcome, _ = run(calls[kind])
    except Exception as exc:  # noqa: BLE001 (what the test is about)
        pytest.fail("%s escaped: %s" % (type(exc).__name__, str(exc)[:200]))
    if isinstance(outcome, boc.OpenAICompatError):
        assert len(str(outcome)) < 2000
        if partial is not None:
            assert isinstance(outcome, boc.StreamInterrupted), repr(outcome)
            assert outcome.partial.text.startswith(partial)


@pytest.mark.parametrize("arguments", [nested(100_000), nested(1000), '{"a": %s}' % nested(5000)])
def test_tool_call_json_nested_too_deep(arguments):
    call = boc.ToolCall("call_1", "f", arguments)
    with pytest.raises(boc.InvalidResponse, match="'f'"):
        call.json()


def test_an_error_code_of_odd_digits_keeps_the_message(fault_server, make_client):
    fault_server.script(event_stream(GOOD, 'data: {"error": {"message": "boom", "code": "\u00b2"}}\n\n'))
    error, _ = run(consume(make_client(max_retries=0)))
    assert isinstance(error, boc.APIError) and isinstance(error, boc.StreamInterrupted)
    assert "boom" in str(error) and error.code == "\u00b2" and error.status_code is None
    assert error.partial.text == "tok "


# -- Base URLs and headers refused at construction -------------------------------


@pytest.mark.parametrize("url, words", [
    ("http://127.0.0.1:99999/v1", "port"),
    ("http://my host:8000/v1", "host"),
    ("http:///v1", "host"),
    ("http://:8000/v1", "host"),
    ("http://127.0.0.1:8000/v1#frag", "fragment"),
    ("http://127.0.0.1:-1/v1", "port"),
], ids=["port-99999", "space-in-host", "empty-host", "port-without-host", "fragment", "negative-port"])
def test_a_bad_base_url_is_refused_at_construction(url, words):
    with pytest.raises(boc.ConfigurationError, match=words):
        boc.Client(url, model="m")


@pytest.mark.parametrize("value", ["secret-4e1f\r\nX-Injected: 1", "secret-4e1f\n", "secret-4e1f\u20ac",
                                   "secret-4e1f\x00"], ids=["crlf", "newline", "euro-sign", "nul"])
def test_a_bad_header_value_is_refused_without_showing_it(value):
    with pytest.raises(boc.ConfigurationError) as info:
        boc.Client(BASE, model="m", headers={"X-Custom": value})
    assert "secret-4e1f" not in str(info.value) and "X-Custom" in str(info.value)


# -- Images that cannot be read ----------------------------------------------------


def test_an_unreadable_image_path(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(PNG)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(boc, "open", refuse, raising=False)  # we run as root: chmod 000 would not stop us
    with pytest.raises(boc.InvalidImage, match="Permission denied"):
        boc.image_data_url(path)


def test_an_image_that_vanishes_between_stat_and_open(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    real_stat = os.stat

    def stat_then_vanish(p, *args, **kwargs):
        info = real_stat(p, *args, **kwargs)
        if os.fspath(p) == str(path):
            os.unlink(path)
        return info

    monkeypatch.setattr(boc.os, "stat", stat_then_vanish)
    with pytest.raises(boc.InvalidImage, match="a.png"):
        boc.image_data_url(path)


class _FailingFile(io.RawIOBase):
    name = "disk.png"

    def readable(self):
        return True

    def readinto(self, buffer):
        raise OSError(errno.EIO, "Input/output error")


def test_an_image_file_with_an_io_error():
    with pytest.raises(boc.InvalidImage, match="Input/output error"):
        boc.image_data_url(_FailingFile())


def test_a_real_png_opened_in_text_mode(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    with open(path, "r") as f, pytest.raises(boc.InvalidImage, match="binary mode"):
        boc.image_data_url(f)


# -- Inputs refused before anything is sent --------------------------------------


@pytest.mark.parametrize("params", [
    {"temperature": math.nan}, {"top_p": math.inf}, {"presence_penalty": -math.inf},
    {"logit_bias": {"50256": math.nan}}, {"tools": [{"type": "function", "function": {"x": [1.0, math.inf]}}]},
], ids=["nan", "inf", "minus-inf", "nested-nan", "deeply-nested-inf"])
@pytest.mark.parametrize("method", ["chat", "stream"])
def test_nan_and_infinity_are_refused_before_sending(fault_server, make_client, method, params):
    client = make_client(max_retries=0)
    with pytest.raises(boc.ConfigurationError, match="(?i)nan|inf|finite"):
        getattr(client, method)("Hi", **params)
    assert fault_server.requests == []


@pytest.mark.parametrize("call", [
    lambda c: c.stream("Hi", stream=False), lambda c: c.chat("Hi", stream=True),
], ids=["stream-with-stream-false", "chat-with-stream-true"])
def test_reserved_params_are_refused(fault_server, make_client, call):
    with pytest.raises(boc.ConfigurationError, match="stream"):
        call(make_client(max_retries=0))
    assert fault_server.requests == []


BAD_TIMES = [0, -1, math.nan, math.inf * -1]


@pytest.mark.parametrize("name", ["timeout", "connect_timeout", "stream_timeout"])
@pytest.mark.parametrize("value", BAD_TIMES, ids=["zero", "negative", "nan", "minus-inf"])
def test_bad_timeouts_are_refused_on_the_client(name, value):
    with pytest.raises(boc.ConfigurationError, match=name):
        boc.Client(BASE, model="m", **{name: value})


@pytest.mark.parametrize("name", ["timeout", "connect_timeout"])
def test_none_is_not_a_timeout_on_the_client(name):
    with pytest.raises(boc.ConfigurationError, match=name):
        boc.Client(BASE, model="m", **{name: None})


def test_no_stream_timeout_means_no_overall_limit(mocked):
    mocked.post(URL, json=completion("fine"))
    assert boc.Client(BASE, model="m", stream_timeout=None).chat("Hi", stream_timeout=None).text == "fine"


@pytest.mark.parametrize("name", ["timeout", "stream_timeout"])
@pytest.mark.parametrize("value", BAD_TIMES, ids=["zero", "negative", "nan", "minus-inf"])
@pytest.mark.parametrize("method", ["chat", "stream", "models"])
def test_bad_timeouts_are_refused_per_call(fault_server, make_client, method, name, value):
    client = make_client(max_retries=0)
    args = () if method == "models" else ("Hi",)
    with pytest.raises(boc.ConfigurationError, match=name):
        getattr(client, method)(*args, **{name: value})
    assert fault_server.requests == []


# -- The image splice marker in a user's text --------------------------------------


# Texts shaped like the mark that stands in for a lifted image URL: the mark
# of earlier versions, and one of today's shape (a random one per request).
MARKS = ["\x00bor-splice\x00", "\x00bor-splice-0123456789abcdef\x00"]


@pytest.mark.parametrize("mark", MARKS, ids=["old-mark", "mark-shape"])
@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "MARK"}],
    [{"role": "system", "content": "MARK"}, {"role": "user", "content": "look"}],
    [{"role": "user", "content": "a MARK b MARK"}],
], ids=["user-text-is-the-mark", "system-text-is-the-mark", "mark-twice-inside-text"])
def test_the_splice_marker_in_text_cannot_break_a_request(mocked, messages, mark):
    messages = [dict(m, content=m["content"].replace("MARK", mark)) for m in messages]
    big = PNG + os.urandom(200_000)
    mocked.post(URL, json=completion("seen"))
    assert boc.Client(BASE, model="m").chat(messages, images=[big]).text == "seen"
    sent = json.loads(mocked.calls[0].request.body)
    assert sent == boc.build_chat_payload(messages, model="m", images=[big])
    texts = [m["content"] if isinstance(m["content"], str) else m["content"][0]["text"] for m in sent["messages"]]
    assert texts == [m["content"] for m in messages]


# -- Property: any answer ends in a result or our error, never a secret -----------

STATUS_LINES = st.one_of(
    st.sampled_from([200, 200, 200, 201, 204, 301, 302, 307, 400, 401, 404, 408, 413, 422, 429, 500, 502, 503, 599])
    .map(lambda s: "HTTP/1.1 %d X" % s),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=30),
)
HEADER_LINES = st.lists(st.sampled_from([
    "Retry-After: 0", "Retry-After: nan", "Retry-After: 1e400", "retry-after-ms: -5", "Retry-After: Wed, 99 Foo",
    "Location: /v1/redirected?k=" + CANARY_KEY, "Location: ftp://" + CANARY_KEY, "Location: http://[::1",
    "Content-Type: text/event-stream; charset=latin-1", "X-Echo: " + CANARY_KEY,
    "Content-Length: 99999999999999999999", "Transfer-Encoding: gzip, chunked",
]), max_size=3)
CANARY_TEXTS = st.sampled_from([CANARY_KEY, "Bearer " + CANARY_KEY, "<title>%s</title>" % CANARY_KEY])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | CANARY_TEXTS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["choices", "message", "delta", "content", "error", "code", "data", "detail", "object"]),
        inner, max_size=3),
    max_leaves=12,
)
BODIES = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.lists(JSON_VALUES.map(lambda v: b"data: " + json.dumps(v).encode() + b"\n\n"), max_size=4).map(b"".join),
    st.binary(max_size=200),
    CANARY_TEXTS.map(lambda t: ("<html><head>%s</head></html>" % t).encode()),
    st.integers(1, 3000).map(lambda depth: nested(depth).encode()),
)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(status_line=STATUS_LINES, headers=HEADER_LINES, body=BODIES,
       ctype=st.sampled_from(["application/json", "text/event-stream", "text/html", "TEXT/Event-Stream", None]),
       encoding=st.sampled_from([None, "gzip", "deflate-zlib", "deflate-raw"]),
       lie=st.sampled_from([None, None, "gzip", "deflate", "br", "identity"]),
       framing=st.sampled_from(["length", "chunked", "close"]),
       kind=st.sampled_from(["chat", "stream", "models"]))
def test_any_answer_ends_in_a_result_or_our_error_without_the_key(_fault_server, status_line, headers, body, ctype,
                                                                  encoding, lie, framing, kind):
    _fault_server.script(sv.answer(body, status_line=status_line, headers=headers, ctype=ctype, framing=framing,
                                  encoding=None if lie else encoding, declare=lie, keep=False))
    client = boc.Client(_fault_server.url, api_key=CANARY_KEY, model="m", max_retries=0, timeout=2,
                        stream_timeout=5)
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("bor_openai_compat")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        calls = {"chat": lambda: client.chat("Hi"), "stream": consume(client), "models": client.models}
        outcome, took = run(calls[kind])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        client.close()
    assert isinstance(outcome, (boc.ChatResult, list, boc.OpenAICompatError)), repr(outcome)
    if isinstance(outcome, boc.OpenAICompatError):
        text = visible(outcome, records)
    else:
        text = "\n".join(r.getMessage() for r in records)
    assert CANARY_KEY not in text
    assert took < 6
