"""Shared helpers for the tests: canned bodies in the shapes servers send,
a stream reader fed exact byte chunks, and a way to time a call."""
import json
import socket
import time

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
