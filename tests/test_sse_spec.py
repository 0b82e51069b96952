"""Event streams parsed by the WHATWG rules, however the bytes arrive.

https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream

The cases below come from the spec's text: one leading BOM is stripped; lines
end in CRLF, LF or CR; a blank line dispatches the event; a line starting with
a colon is a comment; ``field:value`` drops one space after the colon; a line
without a colon is a field with an empty value; ``data`` lines join with LF;
``id``, ``retry``, ``event`` and unknown fields carry no data; an event whose
data buffer is empty is not dispatched. On top of the spec (the API plan): an
event whose data is empty or blank is a keep-alive and skipped, and after a
finish_reason an unterminated tail that does not parse ends the stream normally.

Each case is served whole, one byte per read, cut at every byte, and over a
real socket in each framing. :func:`spec_events` is the spec's algorithm, used
to say how many deltas must have reached the caller once a given prefix of the
body has been read: an event reaches the caller at its blank line, not later.
"""
import json
import re
import threading

import pytest
import sseclient

import bor_openai_compat as boc
import server as sv
from helpers import FRAMINGS, chunk, feed, http_chunk

BOM = b"\xef\xbb\xbf"


# -- The spec's parser, as a yardstick ---------------------------------------

_LINE = re.compile(rb"([^\r\n]*)(\r\n|\r|\n)")


def spec_events(data):
    """The (type, data) of every event the spec dispatches from the bytes ``data``.

    Only complete lines count: a line ends at CRLF, LF or CR (a CR ends a line
    at once; an LF right after it belongs to it). An unterminated line is not
    processed, so a prefix of a body gives the events known so far.
    """
    if data.startswith(BOM):
        data = data[len(BOM):]
    events, buffer, kind = [], None, ""
    position = 0
    for match in _LINE.finditer(data):
        assert match.start() == position
        position = match.end()
        line = match.group(1)
        if not line:
            if buffer:  # "If the data buffer is an empty string, ... return."
                text = buffer.decode("utf-8", "replace")
                events.append((kind or "message", text[:-1] if text.endswith("\n") else text))
            buffer, kind = None, ""
            continue
        if line.startswith(b":"):
            continue
        field, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            buffer = (buffer or b"") + value + b"\n"
        elif field == b"event":
            kind = value.decode("utf-8", "replace")
    return events


def deltas_due(prefix):
    """How many deltas must have reached the caller once ``prefix`` was read."""
    count = 0
    for _, data in spec_events(prefix):
        if data.strip() == "[DONE]":
            break
        if data.strip():  # empty or blank data: a keep-alive, skipped
            count += 1
    return count


def test_the_yardstick_follows_the_spec():
    body = BOM + b": c\n\nid: 1\n\ndata\n\nevent: x\ndata:a\ndata:  b\r\rdata: c\r"
    assert spec_events(body) == [("message", ""), ("x", "a\n b")]
    assert spec_events(body + b"\n") == [("message", ""), ("x", "a\n b")]  # CRLF: one line end
    assert spec_events(body + b"\r") == [("message", ""), ("x", "a\n b"), ("message", "c")]
    assert spec_events(BOM + BOM + b"data: x\n\n") == []


# -- The cases -----------------------------------------------------------------


def c(text):
    return json.dumps(chunk(text))


STOP = json.dumps(chunk(finish="stop"))
REST = "data: %s\n\ndata: %s\n\ndata: [DONE]\n\n" % (c("b"), STOP)  # after an event "a"

# Written with LF; each is also served with CRLF and with CR line ends.
CASES = {
    "plain": ("data: %s\n\n" % c("a") + REST, "ab", "stop"),
    "bom": ("\ufeffdata: %s\n\n" % c("a") + REST, "ab", "stop"),
    # Only one BOM is stripped: the next one makes the first field "\ufeffdata".
    "two-boms": ("\ufeff\ufeffdata: %s\n\ndata: %s\n\n" % (c("x"), c("a")) + REST, "ab", "stop"),
    "comments": (
        ": hello\n\n:\n\ndata: %s\n: inside an event\n\n: ping\n\n" % c("a") + REST + ": trailing\n\n",
        "ab",
        "stop",
    ),
    "comment-between-data-lines": (
        'data: {"choices":[{"delta":\n: note\ndata: {"content":"a"}}]}\n\n' + REST,
        "ab",
        "stop",
    ),
    "data-without-space": ("data:%s\n\ndata:%s\n\ndata:%s\n\ndata:[DONE]\n\n" % (c("a"), c("b"), STOP), "ab", "stop"),
    "data-with-two-spaces": ("data:  %s\n\n" % c("a") + REST, "ab", "stop"),
    # A line without a colon is a field with an empty value: a bare "data"
    # adds an empty line to the data.
    "field-without-colon": (
        'data\n\ndata: {"choices":[{"delta":{"content":"a"}}]\ndata\ndata: }\n\n' + REST,
        "ab",
        "stop",
    ),
    "unknown-fields": ("foo: bar\nfoo\nevent: message\ndata: %s\n\n" % c("a") + REST, "ab", "stop"),
    "id-and-retry": (
        "id: 1\nretry: 1000\ndata: %s\n\nid: 2\n\nretry: soon\n\nid\n\n" % c("a") + REST,
        "ab",
        "stop",
    ),
    "empty-and-blank-data": (
        "data:\n\ndata: %s\n\ndata: \n\ndata:  \n\ndata\n\ndata:\ndata:\n\nevent: ping\ndata:\n\n" % c("a") + REST,
        "ab",
        "stop",
    ),
    "finish-then-cut-done": ("data: %s\n\ndata: %s\n\ndata: [DO" % (c("a"), STOP), "a", "stop"),
    "finish-then-cut-json": (
        'data: %s\n\ndata: %s\n\ndata: {"id":"chatcmpl-1","choices":[],"usage":{"total' % (c("a"), STOP),
        "a",
        "stop",
    ),
    "utf8": ("data: %s\n\ndata: %s\n\ndata: %s\n\n" % (c("Grüße ☕"), c(" 𝄞"), STOP), "Grüße ☕ 𝄞", "stop"),
}

# Line ends mixed within one stream.
MIXED = {
    "mixed-line-ends": (
        "data: %s\r\n\ndata: %s\r\rdata: %s\n\r\ndata: %s\r\n\r\ndata: [DONE]\r\r" % (c("a"), c("b"), c("c"), STOP),
        "abc",
        "stop",
    ),
    # LF then CR is two line ends: a blank line.
    "lf-cr": ("data: %s\n\rdata: %s\n\rdata: %s\n\rdata: [DONE]\n\r" % (c("a"), c("b"), STOP), "ab", "stop"),
    # CR then CRLF is two line ends too.
    "cr-crlf": ("data: %s\r\r\ndata: %s\r\r\ndata: %s\r\r\n" % (c("a"), c("b"), STOP), "ab", "stop"),
    "multiline-data-mixed-ends": (
        'data: {"choices":\rdata: [{"delta":\r\ndata: {"content":"a"}}]}\n\r\n' + REST.replace("\n", "\r"),
        "ab",
        "stop",
    ),
}

ALL = {}
for _name, (_text, _answer, _finish) in CASES.items():
    for _end, _id in (("\n", "lf"), ("\r\n", "crlf"), ("\r", "cr")):
        ALL["%s-%s" % (_name, _id)] = (_text.replace("\n", _end).encode("utf-8"), _answer, _finish)
for _name, (_text, _answer, _finish) in MIXED.items():
    ALL[_name] = (_text.encode("utf-8"), _answer, _finish)

IDS = sorted(ALL)
CLIENT = boc.Client("http://api.test/v1", model="m")


def read(pieces):
    """Feed ``pieces`` to a stream; return (deltas, delivered before each piece, stream)."""
    got, before = [], []

    def chunks():
        for piece in pieces:
            before.append(len(got))
            yield piece

    stream = feed(chunks(), CLIENT)
    for delta in stream:
        got.append(delta)
    return got, before, stream


def check(case, pieces):
    body, answer, finish = ALL[case]
    got, before, stream = read(pieces)
    assert stream.result.text == answer
    assert stream.result.finish_reason == finish
    assert len(got) == deltas_due(body)
    for k, count in enumerate(before):
        assert count == deltas_due(b"".join(pieces[:k])), (
            "after %r, %d deltas had reached the caller" % (b"".join(pieces[:k])[-40:], count)
        )


@pytest.mark.parametrize("case", IDS)
def test_served_whole(case):
    check(case, [ALL[case][0]])


@pytest.mark.parametrize("case", IDS)
def test_one_byte_per_read(case):
    body = ALL[case][0]
    check(case, [body[i:i + 1] for i in range(len(body))])


@pytest.mark.parametrize("case", IDS)
def test_cut_at_every_byte(case):
    body = ALL[case][0]
    for i in range(1, len(body)):
        try:
            check(case, [body[:i], body[i:]])
        except (AssertionError, boc.OpenAICompatError) as exc:
            raise AssertionError("cut at byte %d of %r: %s" % (i, body, exc)) from exc


# -- Over a real socket ----------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    server = sv.Server()
    yield server
    server.close()


@pytest.mark.parametrize("framing", ["chunked", "chunked-byte-per-chunk", "length", "close"])
@pytest.mark.parametrize("case", IDS)
def test_over_a_socket(server, case, framing):
    body, answer, finish = ALL[case]

    def handler(conn, request):
        if framing == "chunked-byte-per-chunk":
            pieces = [body[i:i + 1] for i in range(len(body))]
            return sv.send(conn, pieces, framing="chunked", ctype="text/event-stream")
        return sv.send(conn, body, framing=framing, ctype="text/event-stream")

    server.script(handler)
    with boc.Client(server.url, model="m", max_retries=0) as client:
        with client.stream("Hi") as stream:
            got = list(stream)
    assert stream.result.text == answer and stream.result.finish_reason == finish
    assert len(got) == deltas_due(body)


# -- Event by event, whatever the content type says ------------------------------


def causal_handler(server, events, seen, late, *, framing, ctype):
    """Send ``events`` one by one; event i+1 goes only once the test has seen delta i.

    A client that holds an event back makes the server wait; after a bound
    the lateness is recorded and the rest is sent at once.
    """

    def handler(conn, request):
        conn.sendall(sv.head(200, ctype, sum(map(len, events)), framing=framing))
        patient = True
        for i, event in enumerate(events):
            conn.sendall(http_chunk(event) if framing == "chunked" else event)
            if i < len(seen) and patient and not seen[i].wait(5):
                late.append(i)
                patient = False
        if framing == "chunked":
            conn.sendall(b"0\r\n\r\n")
        return framing != "close"

    return handler


def read_causally(server, events, *, framing, ctype):
    seen = [threading.Event() for _ in events[:-1]]
    late = []
    server.script(causal_handler(server, events, seen, late, framing=framing, ctype=ctype))
    texts = []
    with boc.Client(server.url, model="m", max_retries=0) as client:
        with client.stream("Hi") as stream:
            for delta in stream:
                if delta.text:
                    seen[len(texts)].set()
                    texts.append(delta.text)
    assert late == [], "delta %d reached the caller only after the next event was sent" % late[0]
    return texts, stream.result


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_content_type_in_other_case_streams_event_by_event(server, framing):
    events = [("data: %s\n\n" % c("t%d " % i)).encode() for i in range(3)]
    events.append(("data: %s\n\ndata: [DONE]\n\n" % STOP).encode())
    texts, result = read_causally(server, events, framing=framing, ctype="Text/Event-Stream; charset=UTF-8")
    assert texts == ["t0 ", "t1 ", "t2 "] and result.finish_reason == "stop"


@pytest.mark.parametrize("framing", FRAMINGS)
def test_bare_cr_events_arrive_at_their_blank_line(server, framing):
    events = [("data: %s\r\r" % c("t%d " % i)).encode() for i in range(3)]
    events.append(("data: %s\r\rdata: [DONE]\r\r" % STOP).encode())
    texts, result = read_causally(server, events, framing=framing, ctype="text/event-stream")
    assert texts == ["t0 ", "t1 ", "t2 "] and result.finish_reason == "stop"


# -- The one hook into sseclient-py ------------------------------------------


class _CutAgain(bytes):
    """A block that fails if sseclient-py's own ``_read`` cuts it into lines again."""

    def splitlines(self, keepends=False):
        assert not keepends, "sseclient-py's own _read ran: the module's _read hook was not taken"
        return bytes.splitlines(self)


def test_sseclient_reads_the_blocks_through_the_modules_hook():
    # _SSEClient._read is the one private name the module overrides on
    # sseclient-py (setup.cfg pins < 2). A release that renamed it would
    # leave its own _read running: this test fails then.
    events = list(boc._SSEClient(iter([_CutAgain(b"data: 1\n\n"), _CutAgain(b"data: 2\n\n")])).events())
    assert [event.data for event in events] == ["1", "2"]


def blocks(body):
    return list(boc._event_blocks(iter([body]), boc._Body.__new__(boc._Body), 1 << 20))


@pytest.mark.parametrize("case", IDS + ["many-data-lines"])
def test_without_the_hook_sseclient_reads_the_same_events(case):
    # Were the hook not taken, sseclient's own _read would get the same
    # blocks: each is one whole event ending in a blank line, so nothing is
    # lost, only time.
    body = ALL[case][0] if case in ALL else b"data: 1,\n" * 100 + b"data: 2\n\ndata: [DONE]\n\n"
    cut = blocks(body)
    assert all(block.endswith(b"\n\n") for block in cut if block.strip())
    plain = [(e.event, e.data) for e in sseclient.SSEClient(iter(cut)).events()]
    hooked = [(e.event, e.data) for e in boc._SSEClient(iter(cut)).events()]
    assert plain == hooked and hooked
