"""Every exception survives pickle (issue 13): thread and process pools move
them that way. Each is obtained from a real failure, not built by hand, so
the test does not depend on the constructors' signatures."""
import concurrent.futures
import pickle
import time

import pytest

import bor_openai_compat as boc
import server as sv
from helpers import BASE, URL, completion, consume, events, free_port, run

PUBLIC = ("status_code", "message", "code", "body", "model", "available", "suggestion", "retry_after", "limit",
          "requested", "server", "attempts", "error")


def exception_classes():
    return {getattr(boc, name) for name in boc.__all__
            if isinstance(getattr(boc, name), type) and issubclass(getattr(boc, name), BaseException)}


def mocked_error(status, body, call="chat", **kwargs):
    def make(mocked, fault_server):
        mocked.post(URL, status=status, **({"json": body} if isinstance(body, dict) else {"body": body}))
        mocked.get(BASE + "/models", json={"data": [{"id": "qwen"}, {"id": "llama3:latest"}]})
        client = boc.Client(BASE, api_key="sk-pickle", model="llama3", max_retries=0)
        if call == "images":
            return lambda: client.chat("Hi", images=[b"\x89PNG\r\n\x1a\nxx"])
        if call == "json":
            return lambda: client.chat("Hi", schema={"type": "object"}, reask=0)
        if call == "tools":
            return lambda: client.chat("Hi", tools=[{"type": "function", "function": {"name": "f"}}])
        return (lambda: client.stream("Hi")) if call == "stream" else (lambda: client.chat("Hi"))

    return make


def served(*scripts, call="chat", **client_kwargs):
    def make(mocked, fault_server):
        mocked.add_passthru("http://127.0.0.1")
        fault_server.script(*scripts)
        client = boc.Client(fault_server.url, model="m", max_retries=0, **client_kwargs)
        return consume(client) if call == "stream" else (lambda: client.chat("Hi"))

    return make


def refused(mocked, fault_server):
    mocked.add_passthru("http://127.0.0.1")
    return lambda: boc.Client("http://127.0.0.1:%d/v1" % free_port(), model="m", max_retries=0).chat("Hi")


def constant(call):
    return lambda mocked, fault_server: call


FAILURES = [
    pytest.param(boc.ConfigurationError, constant(lambda: boc.Client()), id="ConfigurationError"),
    pytest.param(boc.InvalidImage, constant(lambda: boc.image_data_url(b"not an image")), id="InvalidImage"),
    pytest.param(boc.ConnectionFailed, served(sv.close_at_once), id="ConnectionFailed"),
    pytest.param(boc.ConnectionRefused, refused, id="ConnectionRefused"),
    pytest.param(boc.Timeout, served(sv.stall(3), timeout=0.3), id="Timeout"),
    pytest.param(boc.APIError, mocked_error(409, {"error": {"message": "conflict", "code": "c1"}}), id="APIError"),
    pytest.param(boc.AuthenticationError, mocked_error(401, {"error": {"message": "bad key"}}),
                 id="AuthenticationError"),
    pytest.param(boc.UnknownModel, mocked_error(404, {"error": {"message": "model 'llama3' not found"}}),
                 id="UnknownModel"),
    pytest.param(boc.EndpointNotFound, mocked_error(404, "404 page not found"), id="EndpointNotFound"),
    pytest.param(boc.BadRequest, mocked_error(400, {"error": {"message": "bad", "param": "x"}}), id="BadRequest"),
    pytest.param(boc.VisionNotSupported, mocked_error(500, {"error": {"message": "image input is not supported"}},
                                                      call="images"), id="VisionNotSupported"),
    pytest.param(boc.UnsupportedImage, mocked_error(400, {"error": {"message": "invalid image input"}},
                                                    call="images"), id="UnsupportedImage"),
    pytest.param(boc.ContextLengthExceeded, mocked_error(400, {"error": {
        "code": 400, "message": "request (9412 tokens) exceeds the available context size (8192 tokens), try "
        "increasing it", "type": "exceed_context_size_error", "n_prompt_tokens": 9412, "n_ctx": 8192}}),
        id="ContextLengthExceeded"),
    pytest.param(boc.ToolsNotSupported, mocked_error(400, {"error": {
        "message": "registry.ollama.ai/library/gemma2:2b does not support tools"}}, call="tools"),
        id="ToolsNotSupported"),
    pytest.param(boc.RateLimited, served(sv.reply(429, {"error": {"message": "slow"}}, headers=["Retry-After: 999"])),
                 id="RateLimited"),
    pytest.param(boc.ServerError, mocked_error(503, "busy"), id="ServerError"),
    pytest.param(boc.StreamingNotSupported, mocked_error(200, completion("whole"), call="stream"),
                 id="StreamingNotSupported"),
    pytest.param(boc.StreamInterrupted, served(sv.stream(events("cut ", finish=None, done=False)), call="stream"),
                 id="StreamInterrupted"),
    pytest.param(boc.InvalidResponse, mocked_error(200, "<html><title>Login</title></html>"), id="InvalidResponse"),
    pytest.param(boc.InvalidJSON, mocked_error(200, completion("I cannot do JSON."), call="json"), id="InvalidJSON"),
]

# Errors after a stream started: their own family and StreamInterrupted at once.
MID_STREAM = [
    pytest.param(boc.ServerError, served(sv.stream(events("first ", finish=None, done=False) + [
        b'data: {"error": {"message": "CUDA out of memory", "code": 500}}\n\n']), call="stream"),
        id="server-error-event-after-a-token"),
    pytest.param(boc.Timeout, served(sv.stream(events("first ", finish=None, done=False), then=lambda: time.sleep(2)),
                                     call="stream", timeout=0.3), id="timeout-mid-stream"),
    pytest.param(boc.ConnectionFailed, served(sv.stream(events("first ", finish=None, done=False), end=False),
                                              call="stream"), id="dropped-mid-stream"),
    pytest.param(boc.InvalidResponse, served(sv.stream(events("first ", finish=None, done=False)
                                                       + [b"data: {broken\n\n"]), call="stream"),
                 id="invalid-event-mid-stream"),
    pytest.param(boc.BadRequest, served(sv.stream(events("first ", finish=None, done=False) + [
        b'data: {"error": {"message": "tokens must be at most 5", "code": 400}}\n\n']), call="stream"),
        id="bad-request-event-after-a-token"),
    pytest.param(boc.ContextLengthExceeded, served(sv.stream(events("first ", finish=None, done=False) + [
        b'data: {"error": {"message": "context length exceeded", "code": 400}}\n\n']), call="stream"),
        id="context-event-after-a-token"),
]


def obtain(mocked, fault_server, make):
    outcome, _ = run(lambda: make(mocked, fault_server)())
    assert isinstance(outcome, boc.OpenAICompatError), repr(outcome)
    return outcome


def assert_same(copy, error):
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    for name in PUBLIC:
        assert getattr(copy, name, None) == getattr(error, name, None), name
    for name in ("partial", "result"):
        before, after = getattr(error, name, None), getattr(copy, name, None)
        assert (before is None) == (after is None), name
        if before is not None:
            assert (after.text, after.finish_reason) == (before.text, before.finish_reason)


def test_every_exception_class_is_covered():
    assert {p.values[0] for p in FAILURES} == exception_classes() - {boc.OpenAICompatError}


@pytest.mark.parametrize("exc_type, make", FAILURES)
def test_a_real_error_pickles(mocked, fault_server, exc_type, make):
    error = obtain(mocked, fault_server, make)
    assert type(error) is exc_type or isinstance(error, exc_type)
    assert_same(pickle.loads(pickle.dumps(error)), error)


@pytest.mark.parametrize("exc_type, make", MID_STREAM)
def test_a_mid_stream_error_pickles_with_its_partial(mocked, fault_server, exc_type, make):
    error = obtain(mocked, fault_server, make)
    assert isinstance(error, exc_type) and isinstance(error, boc.StreamInterrupted)
    assert error.partial.text == "first "
    copy = pickle.loads(pickle.dumps(error))
    assert_same(copy, error)
    assert isinstance(copy, exc_type) and isinstance(copy, boc.StreamInterrupted)
    assert copy.partial.text == "first "


def _raise(error):
    raise error


def test_a_mid_stream_error_crosses_a_process_pool(fault_server):
    fault_server.script(sv.stream(events("first ", finish=None, done=False) + [
        b'data: {"error": {"message": "CUDA out of memory", "code": 500}}\n\n']))
    error, _ = run(consume(boc.Client(fault_server.url, model="m", max_retries=0)))
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        copy = pool.submit(_raise, error).exception(timeout=30)
    assert_same(copy, error)
    assert isinstance(copy, boc.ServerError) and copy.partial.text == "first "


def test_the_unknown_model_fields_filled_in_later_survive(mocked):
    mocked.post(URL, status=404, json={"error": {"message": "model 'llama3' not found"}})
    mocked.get(BASE + "/models", json={"data": [{"id": "llama3:latest"}]})
    error, _ = run(lambda: boc.Client(BASE, model="llama3", max_retries=0).chat("Hi"))
    copy = pickle.loads(pickle.dumps(error))
    assert copy.available == ["llama3:latest"] and copy.suggestion == "llama3:latest"
    assert "Did you mean 'llama3:latest'?" in str(copy)
