"""Secrets never show (issue 13): a server that echoes what it was sent cannot
put the API key, a URL password or a secret header into an exception's str(),
repr(), .message, .body, .partial or a DEBUG log record of our logger."""
import base64
import gc
import io
import json
import logging
import pickle
import sys
import weakref

import pytest
import requests

import bor_openai_compat as boc
import netservers as ns
import server as sv
from helpers import CANARY_KEY, assert_hidden, chunk, consume, free_port, run, sse, visible

GOOD = sse(chunk("tok "), done=False)


def key(request):
    """What the server saw in Authorization: "Bearer <key>"."""
    return request.headers["authorization"]


def stream_of(*pieces):
    return sv.answer(lambda r: [p(r) if callable(p) else p for p in pieces], ctype="text/event-stream",
                    framing="chunked")


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG, logger="bor_openai_compat")
    return caplog


# The nine paths of the issue where an echoed key reached str(exc), each with
# the error the caller gets and the words that make it useful.
ECHOES = [
    pytest.param("chat", sv.answer(key, ctype="text/plain"), boc.InvalidResponse, "not JSON", None, id="200-plain-text"),
    pytest.param("chat", sv.answer(lambda r: "<html><title>%s</title></html>" % key(r), ctype="text/html"),
                 boc.InvalidResponse, "HTML page", None, id="200-html-title"),
    pytest.param("chat", sv.answer(lambda r: {"object": "list", "echo": key(r)}), boc.InvalidResponse,
                 "without the 'choices'", None, id="200-json-without-choices"),
    pytest.param("chat", sv.answer(lambda r: {"choices": [key(r)]}), boc.InvalidResponse, "unexpected shape", None,
                 id="choices-of-the-wrong-shape"),
    pytest.param("stream", stream_of(GOOD, lambda r: "data: {%s\n\n" % key(r)), boc.InvalidResponse, "not JSON",
                 "tok ", id="non-json-event"),
    pytest.param("stream", stream_of(lambda r: "hello " + key(r)), boc.InvalidResponse, "no server-sent events",
                 "", id="non-sse-stream-body"),
    pytest.param("stream", stream_of(GOOD, lambda r: "data: %s\n\n" % json.dumps([key(r)])), boc.InvalidResponse,
                 "not an object", "tok ", id="event-not-an-object"),
    pytest.param("models", sv.answer(lambda r: {"data": key(r)}), boc.InvalidResponse, "no model list", None,
                 id="models-without-a-list"),
    pytest.param("chat", sv.answer(b"", status=302,
                                  headers=lambda r: ["Location: ftp://files.example/" + key(r)[len("Bearer "):]]),
                 boc.OpenAICompatError, "", None, id="redirect-location"),
]


@pytest.mark.parametrize("kind, script, exc_type, words, partial", ECHOES)
def test_an_echoed_key_never_shows(fault_server, make_client, logs, kind, script, exc_type, words, partial):
    fault_server.script(script)
    client = make_client(max_retries=0)
    calls = {"chat": lambda: client.chat("Hi"), "stream": consume(client), "models": client.models}
    error, _ = run(calls[kind])
    assert isinstance(error, exc_type), repr(error)
    assert words in str(error)
    assert_hidden(CANARY_KEY, visible(error, logs.records))
    if partial is not None:
        assert isinstance(error, boc.StreamInterrupted) and error.partial.text == partial


@pytest.mark.parametrize("kind, script, exc_type, words, partial", [p for p in ECHOES if p.id != "redirect-location"])
def test_the_echoed_key_is_replaced_by_stars(fault_server, make_client, kind, script, exc_type, words, partial):
    fault_server.script(script)
    client = make_client(max_retries=0)
    calls = {"chat": lambda: client.chat("Hi"), "stream": consume(client), "models": client.models}
    error, _ = run(calls[kind])
    assert "Bearer ***" in str(error)


def test_sseclient_logs_nothing_under_our_name(fault_server, make_client, logs):
    """sseclient-py logs at DEBUG under the logger of its subclass' module (ours):
    every event, an event's id, and any line without a colon, whole."""
    fault_server.script(stream_of(
        b"id: model-output-id-4d2e\n" + sse(chunk("tok "), done=False),
        lambda r: "%s sent as a line of its own\n" % key(r),
        sse(chunk(finish="stop")),
    ))
    result, _ = run(consume(make_client(max_retries=0)))
    assert result.text == "tok "
    assert logs.records, "no DEBUG records captured: the check would be empty"
    for record in logs.records:
        message = record.getMessage()
        assert not message.startswith(("Initialized SSE client", "Dispatching", "Saw invalid field")), message
        assert_hidden("model-output-id-4d2e", message)
        assert_hidden(CANARY_KEY, message)


# -- Passwords in the base URL -----------------------------------------------

PASSWORD = "pw-canary-91b3e07c"


@pytest.mark.parametrize("url", [
    pytest.param("http://user:p@%s@127.0.0.1:{port}/v1" % PASSWORD, id="password-with-an-at-sign"),
    pytest.param("http://user:%s@127.0.0.1:{port}/v1" % PASSWORD, id="plain-password"),
    pytest.param("http://%s@127.0.0.1:{port}/v1" % PASSWORD, id="user-only"),
])
def test_a_url_password_never_shows(url, logs):
    client = boc.Client(url.format(port=free_port()), api_key=CANARY_KEY, model="m", max_retries=0)
    assert_hidden(PASSWORD, repr(client))
    error, _ = run(lambda: client.chat("Hi"))
    assert isinstance(error, boc.ConnectionRefused)
    assert "127.0.0.1" in str(error)
    assert_hidden(PASSWORD, visible(error, logs.records))


@pytest.mark.parametrize("url", [
    pytest.param("user:%s@gpu-box:8000/v1" % PASSWORD, id="no-scheme"),
    pytest.param("http://user:%s@gpu-box:99999/v1" % PASSWORD, id="invalid-port"),
    pytest.param("http://user:%s@/v1" % PASSWORD, id="empty-host"),
    pytest.param("http://user:%s@gpu box:8000/v1" % PASSWORD, id="space-in-host"),
])
def test_a_url_password_is_not_in_the_configuration_error(url):
    with pytest.raises(boc.ConfigurationError) as info:
        boc.Client(url, model="m")
    assert_hidden(PASSWORD, visible(info.value))


def test_proxy_credentials_never_show(logs):
    session = requests.Session()
    proxy = "http://user:%s@127.0.0.1:%d" % (PASSWORD, free_port())
    session.proxies = {"http": proxy, "https": proxy}
    client = boc.Client("http://api.example/v1", model="m", session=session, max_retries=0)
    error, _ = run(lambda: client.chat("Hi"))
    assert isinstance(error, boc.ConnectionFailed)
    assert_hidden(PASSWORD, visible(error, logs.records))


# -- Secret headers ------------------------------------------------------------

HEADER_SECRET = "hdr-canary-3c7f10aa"


def echo_headers(request):
    """The request's headers, the secret-looking ones first (a message is clipped)."""
    pairs = sorted(request.headers.items(), key=lambda pair: "Bearer" not in pair[1])
    return "\n".join("%s: %s" % pair for pair in pairs)


@pytest.mark.parametrize("name", ["api-key", "x-api-key", "Authorization", "X-Session-Token", "X-Client-Secret",
                                  "X-Goog-Api-Key", "Proxy-Authorization"])
@pytest.mark.parametrize("status", [200, 400])
def test_secret_headers_echoed_back_never_show(fault_server, logs, name, status):
    fault_server.script(sv.answer(lambda r: {"error": {"message": echo_headers(r)}} if status == 400
                                 else echo_headers(r), status=status, ctype="text/plain"))
    client = boc.Client(fault_server.url, model="m", max_retries=0, headers={name: "Bearer " + HEADER_SECRET})
    error, _ = run(lambda: client.chat("Hi"))
    assert isinstance(error, (boc.InvalidResponse, boc.BadRequest)), repr(error)
    sent = fault_server.requests[0].headers.get(name.lower())
    if name != "Proxy-Authorization" or sent is not None:  # requests 2.26 drops it when no proxy is used
        assert sent == "Bearer " + HEADER_SECRET  # it was sent
    assert_hidden(HEADER_SECRET, visible(error, logs.records))
    assert_hidden(HEADER_SECRET, repr(client))


def test_ordinary_headers_are_not_hidden(fault_server):
    fault_server.script(sv.answer(echo_headers, ctype="text/plain"))
    client = boc.Client(fault_server.url, model="m", max_retries=0, headers={"X-Title": "demo-title-xyz"})
    error, _ = run(lambda: client.chat("Hi"))
    assert "demo-title-xyz" in str(error)


def test_a_key_shorter_than_four_characters_is_not_scrubbed(fault_server):
    """Scrubbing "sk" would cut words ("task" -> "ta***")."""
    fault_server.script(sv.answer({"error": {"message": "task failed"}}, status=400))
    client = boc.Client(fault_server.url, api_key="sk", model="m", max_retries=0)
    error, _ = run(lambda: client.chat("Hi"))
    assert isinstance(error, boc.BadRequest) and "task failed" in str(error)


def test_the_key_is_scrubbed_inside_json_values_of_body(fault_server, make_client):
    fault_server.script(sv.answer(lambda r: {"error": {"message": "denied", "details": [{"seen": key(r)}]}},
                                 status=403))
    error, _ = run(lambda: make_client(max_retries=0).chat("Hi"))
    assert isinstance(error, boc.AuthenticationError)
    assert error.body["error"]["details"][0]["seen"] == "Bearer ***"


# -- Found by an attack on the README's promises ---------------------------------


def test_basic_auth_from_the_base_url_echoed_back_never_shows(fault_server):
    # requests sends credentials in the URL as Basic base64(user:password).
    password = "hunter2-very-secret-pw"

    def echo(conn, request):
        auth = request.headers.get("authorization", "")
        return sv.reply(401, {"error": {"message": "bad credentials in header: " + auth}})(conn, request)

    fault_server.script(echo)
    client = boc.Client(fault_server.url.replace("http://", "http://alice:%s@" % password), model="m")
    error, _ = run(lambda: client.chat("Hi"))
    basic = base64.b64encode(("alice:" + password).encode()).decode()
    assert isinstance(error, boc.AuthenticationError)
    for secret in (password, basic):
        assert secret not in str(error) + repr(error) + error.message + json.dumps(error.body)


def test_an_error_keeps_its_secrets_cut_after_its_client_is_gone(fault_server):
    # The secrets of a client are known while it lives; an error shown later,
    # or pickled to another process, was scrubbed as it was made.
    fault_server.script(sv.reply(404, {"error": {"message": "Not Found"}}))

    def failed_call():
        client = boc.Client(fault_server.url + "?api-key=" + CANARY_KEY, api_key=CANARY_KEY, model="m")
        try:
            client.chat("Hi")
        except boc.OpenAICompatError as exc:
            return exc.with_traceback(None), weakref.ref(client)

    error, client = failed_call()
    gc.collect()
    assert client() is None
    data = pickle.dumps(error)
    assert CANARY_KEY.encode() not in data
    assert CANARY_KEY not in str(error) + repr(error) + str(pickle.loads(data))


# -- Issue 17: a key in the base URL's query; DEBUG logs of every logger; a broken proxy URL --



QUERY_SECRET = "qs-canary-5e8a21d4c7"
PROXY_PASSWORD = "pa55word-secret"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def openai_server():
    server = sv.Server(ns.openai())
    yield server
    server.close()


@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.parametrize("name", ["key", "api_key", "api-key"])
def test_doctor_does_not_show_a_key_in_the_base_url_query(openai_server, capsys, name):
    url = "%s?%s=%s" % (openai_server.url, name, QUERY_SECRET)
    code = boc.main(["doctor", "--base-url", url, "--model", "m"])
    out, err = capsys.readouterr()
    first = out.splitlines()[0]
    assert first.startswith("✓ base URL %s" % openai_server.url), first
    assert_hidden(QUERY_SECRET, out + err)
    assert code == 0, out


@pytest.mark.parametrize("name", ["key", "api_key"])
def test_the_chat_banner_does_not_show_a_key_in_the_base_url_query(openai_server, capsys, monkeypatch, name):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    url = "%s?%s=%s" % (openai_server.url, name, QUERY_SECRET)
    code = boc.main(["chat", "-i", "--base-url", url, "--model", "m"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Chatting with m at %s" % openai_server.url in err, err
    assert "OK" in out  # the conversation went on
    assert_hidden(QUERY_SECRET, out + err)


def _redirect_echoing_the_key(server):
    """A 307 whose Location carries the key of the request's query on."""
    def script(conn, request):
        if request.path.startswith("/v1/"):
            query = request.path.partition("?")[2]
            return ns.redirect(307, "%s/v2/chat/completions?%s&again=%s" % (server.origin, query, QUERY_SECRET))(
                conn, request)
        return ns.openai("moved")(conn, request)

    return script


@pytest.mark.parametrize("case", ["request", "redirect-location-echoes-the-key"])
def test_no_debug_record_of_any_logger_shows_a_key_in_the_query(openai_server, caplog, case):
    caplog.set_level(logging.DEBUG)  # the root logger: urllib3's records too
    if case != "request":
        openai_server.script(_redirect_echoing_the_key(openai_server))
    client = boc.Client("%s?key=%s" % (openai_server.url, QUERY_SECRET), model="m", max_retries=0)
    text = client.chat("Hi").text
    assert text == ("OK" if case == "request" else "moved")
    assert any(QUERY_SECRET in r.path for r in openai_server.requests)  # the key was sent
    assert caplog.records, "no DEBUG records captured: the check would be empty"
    for record in caplog.records:
        assert_hidden(QUERY_SECRET, "%s: %s" % (record.name, record.getMessage()))


@pytest.mark.parametrize("scheme, variable", [("https", "HTTPS_PROXY"), ("http", "HTTP_PROXY")])
def test_a_proxy_url_with_a_port_out_of_range_is_a_configuration_error_without_its_password(
        no_proxy_env, monkeypatch, scheme, variable):
    monkeypatch.setenv(variable, "http://user:%s@proxy.test:99999" % PROXY_PASSWORD)
    with pytest.raises(boc.ConfigurationError) as info:
        boc.Client("%s://api.test/v1" % scheme, model="m", max_retries=0).chat("Hi")
    assert "proxy" in str(info.value).lower(), str(info.value)
    assert_hidden(PROXY_PASSWORD, visible(info.value))


@pytest.mark.parametrize("command", [["chat", "Hi"], ["chat", "--no-stream", "Hi"], ["models"]],
                         ids=["chat", "chat-no-stream", "models"])
def test_the_command_line_says_a_broken_proxy_url_in_one_line_without_its_password(
        no_proxy_env, monkeypatch, capsys, command):
    monkeypatch.setenv("HTTPS_PROXY", "http://user:%s@proxy.test:99999" % PROXY_PASSWORD)
    code = boc.main(command[:1] + ["--base-url", "https://api.test/v1", "--model", "m"] + command[1:])
    out, err = capsys.readouterr()
    assert code == 2, err  # ConfigurationError's family
    assert err.startswith("error: ") and err.count("\n") == 1 and "proxy" in err.lower(), err
    assert "Traceback" not in err
    assert_hidden(PROXY_PASSWORD, out + err)
