"""Shared helpers for the tests: canned bodies in the shapes servers send."""
import json
import socket

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
