"""Shared helpers for the tests: canned bodies in the shapes servers send,
a stream reader fed exact byte chunks, and a way to time a call."""
import contextlib
import json
import signal
import socket
import time
import tracemalloc

import bor_openai_compat as boc

BASE = "http://api.test/v1"
URL = BASE + "/chat/completions"
CANARY_KEY = "sk-canary-7f3a9c21e4b8"


def completion(text="Hello!", *, model="test-model", finish="stop", usage=None, **message):
    """A non-stream chat completion body, as OpenAI sends it."""
    message = dict({"role": "assistant", "content": text}, **message)
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def chunk(content=None, *, finish=None, **delta):
    """One stream chunk with a content delta."""
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def sse(*events, done=True):
    """Encode dicts (as JSON) or raw strings as SSE events."""
    out = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        out.append("data: %s\n\n" % data)
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def text_stream(*texts, finish="stop", done=True):
    return sse(*[chunk(t) for t in texts], chunk(finish=finish), done=done)


def free_port():
    """A port on 127.0.0.1 with nothing listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def events(*texts, finish="stop", done=True):
    """SSE events as separate pieces: one per text, then finish, then [DONE]."""
    out = [sse(chunk(t), done=False) for t in texts]
    if finish:
        out.append(sse(chunk(finish=finish), done=False))
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


class _Response:
    url = "http://api.test/v1/chat/completions"
    closed = False

    def close(self):
        self.closed = True


def feed(chunks, client=None):
    """A ChatStream reading the given byte chunks, exactly as split."""
    client = client or boc.Client("http://api.test/v1", model="m")
    call = boc._Call(None, "m", stream=True)
    return boc.ChatStream(client, _Response(), call, chunks=iter(chunks))


def run(call):
    """Call, and return (exception or result, seconds taken)."""
    start = time.monotonic()
    try:
        outcome = call()
    except boc.OpenAICompatError as exc:
        outcome = exc
    return outcome, time.monotonic() - start


def consume(client, *args, **kwargs):
    """A call that streams "Hi" (or the given messages) to the end."""
    return lambda: client.stream(*(args or ("Hi",)), **kwargs).result


def visible(error, records=()):
    """Everything of an error that a user, a program or a log can see, as one text."""
    seen = [str(error), repr(error)]
    for name in ("message", "body", "code", "result", "partial", "available", "suggestion"):
        seen.append(repr(getattr(error, name, None)))
    partial = getattr(error, "partial", None)
    if partial is not None:
        seen += [partial.text, repr(partial.raw)]
    seen += [record.getMessage() for record in records]
    return "\n".join(seen)


def assert_hidden(secret, text):
    """Fail, showing where, if ``secret`` is in ``text``."""
    at = text.find(secret)
    assert at < 0, "the secret shows here: ...%s..." % text[max(0, at - 100):at + 60]


class TookTooLong(BaseException):
    """Raised into a call that runs past its wall-clock guard (not an Exception,
    so no ``except Exception`` in the library swallows it)."""


@contextlib.contextmanager
def bounded(cpu=2.0, wall=10.0):
    """Fail if the block uses more than ``cpu`` seconds of CPU; stop it after
    ``wall`` seconds, so a minutes-long regex fails in seconds (the regex
    engine checks for signals as it runs)."""

    def stop(signum, frame):
        raise TookTooLong("still running after %ss" % wall)

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, wall)
    start = time.process_time()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    used = time.process_time() - start
    assert used < cpu, "took %.1fs of CPU" % used


@contextlib.contextmanager
def peak_memory():
    """Trace allocations in the block; ``box["peak"]`` is the peak in bytes."""
    box = {}
    tracemalloc.start()
    try:
        yield box
    finally:
        box["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
