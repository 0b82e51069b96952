"""Error answers become typed exceptions with messages that say what to fix."""
import time

import pytest
import requests

import bor_openai_compat as boc
from helpers import BASE, CANARY_KEY, URL, chunk, completion, free_port, sse

E = boc

# status, body, exception, words the message must contain
TABLE = [
    pytest.param(401, {"error": {"message": "Invalid API Key", "type": "authentication_error", "code": 401}},
                 E.AuthenticationError, "rejected the API key (HTTP 401: Invalid API Key)", id="401-llama.cpp"),
    pytest.param(403, {"error": {"message": "forbidden"}}, E.AuthenticationError, "HTTP 403: forbidden", id="403"),
    pytest.param(404, {"error": {"message": "model 'nope' not found"}}, E.UnknownModel,
                 "Model 'nope' is not served", id="404-ollama-model"),
    pytest.param(404, {"error": {"message": 'model "nope" not found, try pulling it first'}}, E.UnknownModel,
                 "try pulling it first", id="404-ollama-old"),
    pytest.param(404, {"object": "error", "message": "The model `nope` does not exist.", "type": "NotFoundError", "code": 404},
                 E.UnknownModel, "does not exist", id="404-vllm"),
    pytest.param(404, {"error": {"message": "The model `nope` does not exist or you do not have access to it.",
                                 "type": "invalid_request_error", "code": "model_not_found"}},
                 E.UnknownModel, "you do not have access", id="404-openai"),
    pytest.param(400, {"error": {"message": "/chat/completions: Invalid model name passed in model=nope. Call `/v1/models` to view available models for your key.",
                                 "type": "invalid_request_error", "code": "400"}},
                 E.UnknownModel, "Invalid model name passed in model=nope", id="400-litellm"),
    pytest.param(400, {"error": 'Invalid model identifier "nope". Please specify a valid downloaded model.'},
                 E.UnknownModel, "Invalid model identifier", id="400-lmstudio"),
    pytest.param(400, {"error": {"code": 400, "message": "model 'nope' not found", "type": "invalid_request_error"}},
                 E.UnknownModel, "model 'nope' not found", id="400-llama.cpp-router"),
    pytest.param(404, "404 page not found", E.EndpointNotFound, "404 page not found). Check the base URL", id="404-ollama-path"),
    pytest.param(404, {"detail": "Not Found"}, E.EndpointNotFound, "HTTP 404: Not Found", id="404-fastapi"),
    pytest.param(404, {"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}},
                 E.EndpointNotFound, "File Not Found", id="404-llama.cpp"),
    pytest.param(400, {"error": {"message": "'messages' is a required property"}}, E.BadRequest,
                 "rejected the request (HTTP 400: 'messages' is a required property)", id="400"),
    pytest.param(422, {"detail": [{"loc": ["body", "messages"], "msg": "field required", "type": "missing"}]},
                 E.BadRequest, "messages: field required", id="422-fastapi"),
    pytest.param(429, {"error": {"message": "Rate limit reached"}}, E.RateLimited, "Rate limited (HTTP 429", id="429"),
    pytest.param(500, {"error": {"message": "boom"}}, E.ServerError, "The server failed (HTTP 500: boom)", id="500"),
    pytest.param(502, "<html><head><title>502 Bad Gateway</title></head><body><h1>502</h1></body></html>",
                 E.ServerError, "HTTP 502: 502 Bad Gateway", id="502-html"),
    pytest.param(500, {"error": {"message": "1 validation error for CreateChatCompletionRequest\nmessages\n  Field required", "type": "internal_server_error"}},
                 E.BadRequest, "validation error", id="500-validation-llama-cpp-python"),
    pytest.param(418, "I'm a teapot", E.BadRequest, "HTTP 418: I'm a teapot", id="418"),
    pytest.param(409, {"error": {"message": "conflict"}}, E.APIError, "error (HTTP 409: conflict)", id="409"),
    pytest.param(503, "", E.ServerError, "HTTP 503: Service Unavailable", id="503-empty"),
]


@pytest.mark.parametrize("status, body, exc_type, words", TABLE)
def test_error_table(mocked, client, status, body, exc_type, words):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    mocked.post(URL, status=status, **kwargs)
    mocked.get(BASE + "/models", json={"data": [{"id": "test-model"}, {"id": "nope-7b"}]})
    with pytest.raises(exc_type) as info:
        client.chat("Hi", model="nope")
    error = info.value
    assert type(error) is exc_type
    assert words in str(error)
    assert error.status_code == status
    assert error.message and error.message in str(error)
    assert CANARY_KEY not in str(error) and CANARY_KEY not in repr(error)


def test_unknown_model_lists_served_models_and_suggests(mocked, client):
    mocked.post(URL, status=404, json={"error": {"message": "model 'llama3' not found"}})
    mocked.get(BASE + "/models", json={"data": [{"id": "qwen2.5:7b"}, {"id": "llama3:latest"}]})
    with pytest.raises(boc.UnknownModel) as info:
        client.chat("Hi", model="llama3")
    error = info.value
    assert error.model == "llama3"
    assert error.available == ["qwen2.5:7b", "llama3:latest"]
    assert error.suggestion == "llama3:latest"
    assert "Did you mean 'llama3:latest'?" in str(error)
    assert "Served models: qwen2.5:7b, llama3:latest." in str(error)


def test_unknown_model_when_models_cannot_be_listed(mocked, client):
    mocked.post(URL, status=404, json={"error": {"message": "model 'x' not found"}})
    mocked.get(BASE + "/models", status=404, body="404 page not found")
    with pytest.raises(boc.UnknownModel) as info:
        client.chat("Hi", model="x")
    assert info.value.available is None and info.value.suggestion is None


def test_endpoint_not_found_when_base_has_v1(mocked):
    mocked.post(URL, status=404, body="404 page not found")
    with pytest.raises(boc.EndpointNotFound, match="Check the base URL 'http://api.test/v1'"):
        boc.Client(BASE, model="m").chat("Hi")


def test_endpoint_not_found_suggests_v1(mocked):
    mocked.post("http://api.test/chat/completions", status=404, json={"detail": "Not Found"})
    with pytest.raises(boc.EndpointNotFound, match=r"try 'http://api.test/v1'"):
        boc.Client("http://api.test", model="m").chat("Hi")


def test_no_key_sent_and_401(mocked):
    mocked.post(URL, status=401, json={"error": "Unauthorized"})
    with pytest.raises(boc.AuthenticationError, match="wants an API key.*OPENAI_API_KEY"):
        boc.Client(BASE, model="m").chat("Hi")


def test_vision_refusal(mocked, client):
    mocked.post(URL, status=500, json={"error": {"code": 500, "message": "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj", "type": "server_error"}})
    with pytest.raises(boc.VisionNotSupported, match="does not accept images"):
        client.chat("what is it", images=[b"\x89PNG\r\n\x1a\nxx"])
    assert len(mocked.calls) == 1  # not retried, although a 500


def test_200_with_non_json_body(mocked, client):
    mocked.post(URL, body="<!DOCTYPE html><html><head><title>Login</title></head></html>", content_type="text/html")
    with pytest.raises(boc.InvalidResponse, match="an HTML page.*Login"):
        client.chat("Hi")


def test_200_json_without_choices(mocked, client):
    mocked.post(URL, json={"object": "list", "data": []})
    with pytest.raises(boc.InvalidResponse, match="without the 'choices'"):
        client.chat("Hi")


def test_error_event_mid_stream_is_typed_and_keeps_partial(mocked, client):
    body = sse(chunk("Hel"), chunk("lo"), {"error": {"message": "out of memory", "code": 500}})
    mocked.post(URL, body=body, content_type="text/event-stream")
    stream = client.stream("Hi")
    seen = []
    with pytest.raises(boc.ServerError) as info:
        for delta in stream:
            seen.append(delta.text)
    error = info.value
    assert isinstance(error, boc.StreamInterrupted)
    assert error.partial.text == "Hello" == "".join(seen)
    assert "out of memory" in str(error) and "5 characters had arrived" in str(error)


# -- Retries -----------------------------------------------------------------
#
# Whether and how long to wait is one pure decision, _retry_wait(error,
# attempt, max_retries, time_left, jitter): a table, no sleeping. A few calls
# below prove the client asks it and retries.

BACKOFF = boc._RETRY_BASE  # our own first wait, with jitter=1.0
# error, attempt, max_retries, time_left, jitter -> seconds to wait, or None to give up
RETRY_TABLE = [
    pytest.param(E.ServerError(status_code=503), 0, 2, None, 1.0, BACKOFF, id="503-our-backoff"),
    pytest.param(E.ServerError(status_code=503), 0, 2, None, 0.0, BACKOFF / 2, id="503-jitter-halves-the-wait"),
    pytest.param(E.ServerError(status_code=502), 1, 2, None, 1.0, 2 * BACKOFF, id="502-second-try-doubles"),
    pytest.param(E.ServerError(status_code=500), 20, 30, None, 1.0, boc._RETRY_MAX_WAIT, id="500-backoff-capped"),
    pytest.param(E.ServerError(status_code=500), 2, 2, None, 1.0, None, id="500-gives-up-after-max_retries"),
    pytest.param(E.ServerError(status_code=504), 0, 0, None, 1.0, None, id="max_retries=0-never-retries"),
    pytest.param(E.APIError(status_code=408), 0, 2, None, 1.0, BACKOFF, id="408"),
    pytest.param(E.APIError(status_code=409), 0, 2, None, 1.0, BACKOFF, id="409"),
    pytest.param(E.RateLimited(status_code=429), 0, 2, None, 1.0, BACKOFF, id="429-without-retry-after"),
    pytest.param(E.RateLimited(status_code=429, retry_after=1.0), 0, 2, None, 1.0, 1.0, id="429-retry-after-seconds"),
    pytest.param(E.RateLimited(status_code=429, retry_after=0.25), 0, 2, None, 0.0, 0.25,
                 id="429-retry-after-ms-no-jitter"),
    pytest.param(E.ServerError(status_code=503, retry_after=0.3), 0, 2, None, 1.0, 0.3, id="503-retry-after"),
    pytest.param(E.RateLimited(status_code=429, retry_after=3600), 0, 2, None, 1.0, None,
                 id="retry-after-beyond-the-cap-is-not-waited-for"),
    pytest.param(E.ServerError(status_code=503, retry_after=5), 0, 3, 1.0, 1.0, None,
                 id="retry-after-past-the-deadline"),
    pytest.param(E.ServerError(status_code=503), 0, 3, BACKOFF / 2, 1.0, None, id="backoff-past-the-deadline"),
    pytest.param(E.ServerError(status_code=503), 0, 3, 10.0, 1.0, BACKOFF, id="backoff-within-the-deadline"),
    pytest.param(E.BadRequest(status_code=400), 0, 3, None, 1.0, None, id="400-not-retried"),
    pytest.param(E.AuthenticationError(status_code=401), 0, 3, None, 1.0, None, id="401-not-retried"),
    pytest.param(E.EndpointNotFound(status_code=404), 0, 3, None, 1.0, None, id="404-not-retried"),
    pytest.param(E.UnknownModel(status_code=404), 0, 3, None, 1.0, None, id="404-unknown-model-not-retried"),
    pytest.param(E.BadRequest(status_code=422), 0, 3, None, 1.0, None, id="422-not-retried"),
    pytest.param(E.BadRequest(status_code=500), 0, 3, None, 1.0, None, id="500-validation-error-not-retried"),
    pytest.param(E.VisionNotSupported(status_code=500), 0, 3, None, 1.0, None, id="500-vision-refusal-not-retried"),
    pytest.param(E.ConnectionFailed(), 0, 2, None, 1.0, BACKOFF, id="connection-failed"),
    pytest.param(E.ConnectionRefused(), 0, 2, None, 1.0, BACKOFF, id="refused-elsewhere"),
    pytest.param(E.ConnectionRefused(retryable=False), 0, 5, None, 1.0, None, id="refused-loopback"),
    pytest.param(E.Timeout(connecting=True), 0, 2, None, 1.0, BACKOFF, id="connect-timeout"),
    pytest.param(E.Timeout(), 0, 2, None, 1.0, None, id="read-timeout-not-retried"),
    pytest.param(E.InvalidResponse(), 0, 2, None, 1.0, None, id="invalid-response-not-retried"),
]


@pytest.mark.parametrize("error, attempt, max_retries, time_left, jitter, wait", RETRY_TABLE)
def test_retry_decision(error, attempt, max_retries, time_left, jitter, wait):
    assert boc._retry_wait(error, attempt, max_retries, time_left, jitter) == wait


def test_5xx_is_retried_then_succeeds(mocked, fast_retries):
    mocked.post(URL, status=503, body="busy")
    mocked.post(URL, status=502, body="busy")
    mocked.post(URL, json=completion("finally"))
    client = boc.Client(BASE, model="m", max_retries=2)
    assert client.chat("Hi").text == "finally"
    assert len(mocked.calls) == 3


def test_retries_give_up_after_max_retries(mocked, fast_retries):
    mocked.post(URL, status=500, json={"error": {"message": "still broken"}})
    client = boc.Client(BASE, model="m", max_retries=2)
    with pytest.raises(boc.ServerError, match="still broken"):
        client.chat("Hi")
    assert len(mocked.calls) == 3


def test_retry_after_beyond_the_cap_is_not_waited_for(mocked):
    mocked.post(URL, status=429, headers={"Retry-After": "3600"}, json={"error": {"message": "quota"}})
    start = time.monotonic()
    with pytest.raises(boc.RateLimited) as info:
        boc.Client(BASE, model="m").chat("Hi")
    assert time.monotonic() - start < 1
    assert info.value.retry_after == 3600
    assert "retry after 3600s" in str(info.value)
    assert len(mocked.calls) == 1


@pytest.mark.parametrize(
    "header, expected",
    [({"Retry-After": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5), ({"Retry-After": "soon"}, None), ({}, None)],
)
def test_retry_after_parsing(header, expected):
    assert boc._retry_after(requests.structures.CaseInsensitiveDict(header)) == expected


def test_retry_after_as_http_date():
    from email.utils import formatdate

    value = boc._retry_after({"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    assert 25 < value <= 31


def test_refused_loopback_fails_at_once_without_retries():
    port = free_port()
    client = boc.Client("http://127.0.0.1:%d/v1" % port, model="m", max_retries=5)
    start = time.monotonic()
    with pytest.raises(boc.ConnectionRefused) as info:
        client.chat("Hi")
    assert time.monotonic() - start < 0.5
    message = str(info.value)
    assert "127.0.0.1:%d" % port in message and "isn't running or the base URL/port is wrong" in message
    assert isinstance(info.value, boc.ConnectionFailed)
    assert isinstance(info.value.__cause__, requests.ConnectionError)


def test_refused_elsewhere_is_retried_and_still_refused(monkeypatch, fast_retries):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(1)
        raise requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))

    client = boc.Client("http://gpu-box.internal:8000/v1", model="m", max_retries=2)
    monkeypatch.setattr(client.session, "request", refuse)
    with pytest.raises(boc.ConnectionRefused, match="gpu-box.internal:8000"):
        client.chat("Hi")
    assert len(attempts) == 3


def test_dns_failure(monkeypatch):
    client = boc.Client("http://no-such-host.invalid/v1", model="m", max_retries=0)
    with pytest.raises(boc.ConnectionFailed, match="could not resolve the host 'no-such-host.invalid'"):
        client.chat("Hi")


def test_no_retry_past_the_stream_timeout(mocked):
    mocked.post(URL, status=503, headers={"Retry-After": "5"}, body="busy")
    start = time.monotonic()
    with pytest.raises(boc.ServerError):
        boc.Client(BASE, model="m", max_retries=3).chat("Hi", stream_timeout=1)
    assert time.monotonic() - start < 1 and len(mocked.calls) == 1


def test_a_missing_path_under_a_base_url_with_a_query_is_advised_rightly(mocked):
    # Azure's deployment URL with ?api-version=: no "/v1" advice, and never one
    # appended after the query.
    base = "https://x.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21"
    mocked.post("https://x.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
                status=404, json={"error": {"code": "404", "message": "Resource not found"}})
    with pytest.raises(boc.EndpointNotFound) as info:
        boc.Client(base, model="m", max_retries=0).chat("Hi")
    assert "api-version=2024-10-21/v1" not in str(info.value)
    assert "Check the base URL" in str(info.value)


@pytest.mark.parametrize("inside", [True, False], ids=["in-a-container", "on-the-host"])
def test_a_refused_loopback_port_in_a_container_suggests_the_host(monkeypatch, inside):
    # Inside a container, localhost is the container itself: a server on the
    # host is at host.docker.internal (issue 18).
    monkeypatch.setattr(boc, "_in_container", lambda: inside)
    port = free_port()
    with pytest.raises(boc.ConnectionRefused) as info:
        boc.Client("http://localhost:%d/v1" % port, model="m", max_retries=0).chat("Hi")
    hint = "try http://host.docker.internal:%d" % port
    assert (hint in str(info.value)) is inside
    assert "the local server isn't running" in str(info.value)
