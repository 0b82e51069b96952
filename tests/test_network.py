"""The network around the server: TLS trust, proxies, credentials, redirects, base URL queries.

Every case runs against real sockets on 127.0.0.1 (tests/netservers.py), with
the environment a user may have (REQUESTS_CA_BUNDLE, HTTP_PROXY, ~/.netrc)
set on purpose, and asserts what the caller gets and what went over the wire.
"""
import base64
import re
import threading

import pytest

import bor_openai_compat as boc
import netservers as ns
import server as sv
from helpers import CANARY_KEY, Reader, chunk, completion, free_port, http_chunk, sse

ENV_NAMES = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """No proxy, CA bundle or ~/.netrc of the machine running the tests leaks in."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture
def server():
    s = sv.Server(ns.openai())
    yield s
    s.close()


@pytest.fixture
def other_server():
    s = sv.Server(ns.openai("from the other server"))
    yield s
    s.close()


def client(url, **kwargs):
    kwargs.setdefault("model", "m")
    kwargs.setdefault("max_retries", 0)
    return boc.Client(url, **kwargs)


def failure(call):
    with pytest.raises(boc.OpenAICompatError) as info:
        call()
    return info.value


# -- TLS: verify= --------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return ns.Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_server(certs):
    s = sv.Server(ns.openai("over TLS"), tls=certs.server_context())
    yield s
    s.close()


@pytest.mark.parametrize("env", [None, "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_verify_with_a_ca_bundle_wins_over_the_environment(tls_server, certs, monkeypatch, env):
    if env:  # a bundle that does not trust our server
        monkeypatch.setenv(env, certs.other_ca_path)
    with client(tls_server.url, verify=certs.ca_path) as c:
        assert c.chat("Hi").text == "over TLS"
        with c.stream("Hi") as s:
            assert s.result.text == "over TLS"
        assert c.models() == ["m", "other-model"]


@pytest.mark.parametrize("env", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_false_wins_over_the_environment(tls_server, certs, monkeypatch, env):
    # requests lets REQUESTS_CA_BUNDLE override session.verify = False (psf/requests#3829).
    monkeypatch.setenv(env, certs.other_ca_path)
    with client(tls_server.url, verify=False) as c:
        assert c.chat("Hi").text == "over TLS"


@pytest.mark.parametrize("how", ["default", "REQUESTS_CA_BUNDLE elsewhere"])
def test_untrusted_certificate_is_one_clear_error(tls_server, certs, monkeypatch, fast_retries, how):
    if how != "default":
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certs.other_ca_path)
    with client(tls_server.url, max_retries=2) as c:
        error = failure(lambda: c.chat("Hi"))
    assert isinstance(error, boc.ConnectionFailed)
    text = str(error)
    assert "certificate" in text.lower() and "not trusted" in text.lower(), text
    assert "verify=" in text, text
    assert "plain http" not in text.lower(), text
    # A certificate does not become trusted by asking again.
    assert tls_server.accepts == 1, tls_server.tls_errors
    assert tls_server.requests == []


def test_plain_http_on_an_https_url_says_so(server):
    url = server.url.replace("http://", "https://")
    with client(url) as c:
        error = failure(lambda: c.chat("Hi"))
    assert isinstance(error, boc.ConnectionFailed)
    assert "plain http" in str(error).lower(), str(error)


# -- Proxies from the environment ----------------------------------------------

PROXY_SECRET = "proxy-pass-7e1d0c"


@pytest.fixture
def answering_proxy():
    p = sv.Server(ns.proxy("answer"))
    yield p
    p.close()


def set_proxy(monkeypatch, proxy_url):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy_url)
        monkeypatch.setenv(name.lower(), proxy_url)


@pytest.mark.parametrize("proxy_kind", ["refusing", "answering"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_base_url_is_never_proxied(server, answering_proxy, monkeypatch, proxy_kind, host):
    port = answering_proxy.port if proxy_kind == "answering" else free_port()
    set_proxy(monkeypatch, "http://127.0.0.1:%d" % port)
    with client(server.url.replace("127.0.0.1", host)) as c:
        assert c.chat("Hi").text == "OK"
        assert c.models() == ["m", "other-model"]
    assert answering_proxy.requests == []
    assert [r.method for r in server.requests] == ["POST", "GET"]


@pytest.mark.parametrize("host", ["[::1]", "127.0.0.2"])
def test_other_loopback_addresses_are_never_proxied(answering_proxy, monkeypatch, host):
    set_proxy(monkeypatch, "http://127.0.0.1:%d" % answering_proxy.port)
    # Nothing listens there: the call fails, but on its own, not through the proxy.
    with client("http://%s:%d/v1" % (host, free_port())) as c:
        error = failure(lambda: c.chat("Hi"))
    assert isinstance(error, boc.ConnectionFailed)
    assert answering_proxy.requests == []


def test_doctor_on_a_local_server_ignores_a_refusing_proxy(server, monkeypatch, capsys):
    set_proxy(monkeypatch, "http://127.0.0.1:%d" % free_port())
    code = boc.main(["doctor", "--base-url", server.url, "--model", "m"])
    out = capsys.readouterr().out
    assert "nothing answers" not in out, out
    assert "the server answers at 127.0.0.1:%d" % server.port in out, out
    assert code == 0, out


def test_a_working_proxy_carries_the_call(answering_proxy, monkeypatch):
    set_proxy(monkeypatch, "http://puser:%s@127.0.0.1:%d" % (PROXY_SECRET, answering_proxy.port))
    with client("http://llm.test/v1", api_key=CANARY_KEY) as c:
        assert c.chat("Hi").text == "via proxy"
        assert c.models() == ["m", "other-model"]
    chat, models = answering_proxy.requests
    assert (chat.method, chat.path) == ("POST", "http://llm.test/v1/chat/completions")
    assert (models.method, models.path) == ("GET", "http://llm.test/v1/models")
    assert chat.headers["authorization"] == "Bearer " + CANARY_KEY
    expected = "Basic " + base64.b64encode(("puser:" + PROXY_SECRET).encode()).decode()
    assert chat.headers["proxy-authorization"] == expected


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("mode", ["refuse", "drop", "407"])
def test_a_failing_proxy_is_named(monkeypatch, scheme, mode):
    proxy = None if mode == "refuse" else sv.Server(ns.proxy(mode))
    port = proxy.port if proxy else free_port()
    set_proxy(monkeypatch, "http://puser:%s@127.0.0.1:%d" % (PROXY_SECRET, port))
    try:
        with client("%s://llm.test/v1" % scheme, api_key=CANARY_KEY) as c:
            error = failure(lambda: c.chat("Hi"))
    finally:
        if proxy:
            proxy.close()
    text = str(error)
    assert not isinstance(error, boc.BadRequest), text
    assert isinstance(error, (boc.ConnectionFailed, boc.AuthenticationError)), repr(error)
    assert "127.0.0.1:%d" % port in text, text
    assert "proxy" in text.lower(), text
    assert "NO_PROXY" in text, text
    assert PROXY_SECRET not in text and PROXY_SECRET not in repr(error)
    assert CANARY_KEY not in text


# -- Credentials -----------------------------------------------------------------


def test_api_key_wins_over_netrc(server, tmp_path, monkeypatch):
    netrc = tmp_path / "home" / ".netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-pass-4411\n")
    netrc.chmod(0o600)
    with client(server.url, api_key=CANARY_KEY) as c:
        c.chat("Hi")
        c.models()
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer " + CANARY_KEY] * 2


def test_api_key_wins_over_credentials_in_the_base_url(server):
    url = server.url.replace("http://", "http://url-user:url-pass-5678@")
    with client(url, api_key=CANARY_KEY) as c:
        c.chat("Hi")
        c.models()
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer " + CANARY_KEY] * 2


def test_credentials_in_the_base_url_without_api_key_are_basic_auth(server):
    url = server.url.replace("http://", "http://url-user:url-pass-5678@")
    with client(url) as c:
        assert c.chat("Hi").text == "OK"
    expected = "Basic " + base64.b64encode(b"url-user:url-pass-5678").decode()
    assert server.requests[0].headers["authorization"] == expected
    assert server.requests[0].path == "/v1/chat/completions"


# -- Secret headers on redirects -------------------------------------------------

SECRET_HEADERS = {
    "api-key": "azure-secret-1111",
    "x-api-key": "anthropic-secret-2222",
    "X-Goog-Api-Key": "goog-secret-3333",
    "X-Session-Token": "token-secret-4444",
    "X-Client-Secret": "client-secret-5555",
    "X-Auth-User": "auth-secret-6666",
}
AUTH_HEADER = {"Authorization": "Bearer header-secret-7777"}


def secret_values(request):
    values = " ".join(request.headers.values())
    return [v for v in list(SECRET_HEADERS.values()) + [CANARY_KEY, "header-secret-7777"] if v in values]


@pytest.mark.parametrize("auth", ["api_key", "Authorization in headers="])
@pytest.mark.parametrize("target", ["other port", "other host"])
def test_secret_headers_are_dropped_on_a_redirect_to_another_origin(server, other_server, auth, target):
    if target == "other port":
        location = other_server.url + "/chat/completions"
        server.script(ns.redirect(307, location))
        landed = other_server
    else:  # same port, but localhost instead of 127.0.0.1
        location = server.url.replace("127.0.0.1", "localhost") + "/chat/completions"

        def by_host(conn, request):
            if request.headers["host"].startswith("127.0.0.1"):
                return ns.redirect(307, location)(conn, request)
            return sv.reply(200, completion("from the other server"))(conn, request)

        server.script(by_host)
        landed = server
    headers = dict(SECRET_HEADERS, **(AUTH_HEADER if auth != "api_key" else {}))
    api_key = CANARY_KEY if auth == "api_key" else None
    with client(server.url, api_key=api_key, headers=headers) as c:
        assert c.chat("Hi").text == "from the other server"
    first, second = server.requests[0], landed.requests[-1]
    assert len(secret_values(first)) == len(SECRET_HEADERS) + 1  # all were sent to the origin
    assert second.headers["host"] != first.headers["host"]
    assert secret_values(second) == [], second.headers
    for name in list(SECRET_HEADERS) + ["Authorization"]:
        assert name.lower() not in second.headers, second.headers


@pytest.mark.parametrize("auth", ["api_key", "Authorization in headers="])
def test_secret_headers_are_kept_on_a_same_origin_redirect(server, auth):
    server.script(ns.routes({
        "/v1/chat/completions": ns.redirect(307, server.origin + "/v2/chat/completions"),
        "/v2/chat/completions": sv.reply(200, completion("moved")),
    }))
    headers = dict(SECRET_HEADERS, **(AUTH_HEADER if auth != "api_key" else {}))
    api_key = CANARY_KEY if auth == "api_key" else None
    with client(server.url, api_key=api_key, headers=headers) as c:
        assert c.chat("Hi").text == "moved"
    first, second = server.requests
    assert second.path == "/v2/chat/completions"
    assert secret_values(second) == secret_values(first) and len(secret_values(second)) == len(SECRET_HEADERS) + 1


# -- Redirects -------------------------------------------------------------------


@pytest.mark.parametrize("status", [307, 308])
def test_307_and_308_are_followed_with_the_body(server, status):
    server.script(ns.routes({
        "/v1/chat/completions": ns.redirect(status, server.origin + "/v2/chat/completions"),
        "/v2/chat/completions": sv.reply(200, completion("moved")),
    }))
    with client(server.url) as c:
        assert c.chat("Hi", temperature=0.5).text == "moved"
    first, second = server.requests
    assert second.method == "POST" and second.body == first.body
    assert second.json()["messages"] == [{"role": "user", "content": "Hi"}]


def test_a_short_redirect_chain_is_followed(server):
    server.script(ns.routes({
        "/v1/chat/completions": ns.redirect(307, server.origin + "/hop1/chat/completions"),
        "/hop1/chat/completions": ns.redirect(308, server.origin + "/v2/chat/completions"),
        "/v2/chat/completions": sv.reply(200, completion("moved twice")),
    }))
    with client(server.url) as c:
        assert c.chat("Hi").text == "moved twice"
    assert [r.method for r in server.requests] == ["POST"] * 3


def test_a_redirect_loop_is_one_clear_error(server, fast_retries):
    server.script(ns.redirect(307, server.origin + "/v1/chat/completions"))
    with client(server.url, max_retries=2) as c:
        error = failure(lambda: c.chat("Hi"))
    text = str(error).lower()
    assert "redirect" in text and ("loop" in text or "too many" in text), str(error)
    assert len(server.posts()) <= 6, "sent %d times" % len(server.posts())


def test_a_long_redirect_chain_stops_after_a_few_hops(server, fast_retries):
    def next_hop(conn, request):
        hop = int(request.path.split("/")[1][3:] or 0) if request.path.startswith("/hop") else 0
        return ns.redirect(307, "%s/hop%d/chat/completions" % (server.origin, hop + 1))(conn, request)

    server.script(next_hop)
    with client(server.url, max_retries=2) as c:
        error = failure(lambda: c.chat("Hi"))
    assert "redirect" in str(error).lower(), str(error)
    assert len(server.posts()) <= 6, "sent %d times" % len(server.posts())


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirect_that_would_drop_the_body_is_not_followed(server, status, fast_retries):
    moved = server.origin + "/api/v1"
    server.script(ns.routes({
        "/v1/chat/completions": ns.redirect(status, moved + "/chat/completions"),
        "/api/v1/chat/completions": sv.reply(200, completion("a GET was answered")),
    }))
    with client(server.url, max_retries=2) as c:
        error = failure(lambda: c.chat("Hi"))
    text = str(error)
    # The new location, as a base URL to use (not only as the URL that answered).
    assert re.search(re.escape(moved) + r"(?!/chat/completions)", text), text
    assert "base url" in text.lower(), text
    assert [(r.method, r.path) for r in server.requests] == [("POST", "/v1/chat/completions")]


@pytest.mark.parametrize("location", [
    "ftp://127.0.0.1/v1/chat/completions",
    "http://127.0.0.1:99999/v1/chat/completions",
    "http://127.0.0.1:-1/v1/chat/completions",
    "http://h:0x50/v1/chat/completions",
], ids=["other-scheme", "port-too-big", "negative-port", "hex-port"])
def test_a_redirect_to_a_url_that_cannot_be_used_blames_the_redirect(server, location):
    server.script(ns.redirect(307, location))
    with client(server.url) as c:
        error = failure(lambda: c.chat("Hi"))
    text = str(error)
    assert not isinstance(error, boc.ConfigurationError), text  # the caller's base URL is fine
    assert "redirect" in text.lower() or "location" in text.lower(), text
    assert location.split("/v1")[0] in text, text


# -- A base URL with a query -------------------------------------------------------

QUERY = "api-version=2024-10-21"


def outcome(call):
    try:
        return call()
    except boc.OpenAICompatError as exc:
        return exc


def read_stream(c):
    with c.stream("Hi") as s:
        return s.result.text


@pytest.mark.parametrize("suffix", ["", "/"])
def test_query_in_the_base_url_follows_every_path(server, suffix):
    url = server.origin + "/openai/deployments/d" + suffix + "?" + QUERY
    with client(url, headers={"api-key": "azure-secret-1111"}) as c:
        got = [outcome(lambda: c.chat("Hi").text), outcome(lambda: read_stream(c)), outcome(c.models)]
    assert [r.path for r in server.requests] == [
        "/openai/deployments/d/chat/completions?" + QUERY,
        "/openai/deployments/d/chat/completions?" + QUERY,
        "/openai/deployments/d/models?" + QUERY,
    ]
    assert got == ["OK", "OK", ["m", "other-model"]]


def test_query_is_kept_on_retries_and_the_model_lookup(server, fast_retries):
    url = server.origin + "/openai/deployments/d?" + QUERY
    server.script(sv.reply(503, {"error": {"message": "busy"}}), ns.openai())
    with client(url, max_retries=1) as c:
        answer = outcome(lambda: c.chat("Hi").text)
        error = outcome(lambda: c.chat("Hi", model="nope"))
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", "/openai/deployments/d/chat/completions?" + QUERY),
        ("POST", "/openai/deployments/d/chat/completions?" + QUERY),
        ("POST", "/openai/deployments/d/chat/completions?" + QUERY),
        ("GET", "/openai/deployments/d/models?" + QUERY),
    ]
    assert answer == "OK"
    assert isinstance(error, boc.UnknownModel)
    assert error.available == ["m", "other-model"]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:1/v1#section",
    "http://127.0.0.1:1/openai/deployments/d?" + QUERY + "#x",
])
def test_a_fragment_in_the_base_url_is_a_configuration_error(url):
    with pytest.raises(boc.ConfigurationError):
        boc.Client(url)


def test_close_from_another_thread_under_tls(certs):
    # Under TLS the reading thread waits inside the TLS object: close() must
    # wake it without tearing that object down under its feet.
    release = threading.Event()

    def one_delta_then_wait(conn, request):
        conn.sendall(sv.head(200, "text/event-stream", framing="chunked"))
        piece = sse(chunk("first"), done=False)
        conn.sendall(http_chunk(piece))
        release.wait(30)
        return False

    server = sv.Server(one_delta_then_wait, tls=certs.server_context())
    try:
        c = client(server.url, verify=certs.ca_path)
        stream = c.stream("Hi")
        reader = Reader(stream)
        assert reader.got_one.wait(5), "the first delta never arrived"
        stream.close()
        reader.join(5)
        assert not reader.is_alive(), "close() did not stop the reading thread"
        assert reader.errors == [] and reader.texts == ["first"]
        assert stream.result.text == "first"
    finally:
        release.set()
        server.close()


def test_a_host_name_that_starts_with_127_is_not_loopback(answering_proxy, monkeypatch):
    # Only addresses are loopback: "127.example.test" is a name, and goes
    # through the proxy like any other.
    set_proxy(monkeypatch, answering_proxy.origin)
    with client("http://127.example.test/v1") as c:
        assert c.chat("Hi").text == "via proxy"
    assert [r.path for r in answering_proxy.requests] == ["http://127.example.test/v1/chat/completions"]


def test_an_unusable_proxy_is_named(monkeypatch):
    # A socks:// proxy without PySocks (not a dependency): the proxy is named,
    # not the caller's base URL, and its credentials are not shown.
    set_proxy(monkeypatch, "socks5h://user:%s@127.0.0.1:%d" % (PROXY_SECRET, free_port()))
    with client("http://llm.test/v1") as c:
        error = failure(lambda: c.chat("Hi"))
    text = str(error)
    assert "proxy 127.0.0.1:" in text and "NO_PROXY" in text, text
    assert PROXY_SECRET not in text and PROXY_SECRET not in repr(error)


def test_a_key_in_the_base_url_query_is_a_secret(server):
    # Some gateways take the key as ?key=...; an error echoing it hides it.
    server.script(sv.reply(400, {"error": {"message": "bad request for key=%s" % "gw-key-5a9d3c7e"}}))
    with client(server.url + "?key=gw-key-5a9d3c7e") as c:
        error = failure(lambda: c.chat("Hi"))
    assert "gw-key-5a9d3c7e" not in str(error) + repr(error) + error.message, str(error)


def test_proxy_credentials_echoed_in_an_error_answer_never_show(monkeypatch):
    # A proxy (or the upstream behind it) answering an HTTP error that echoes
    # the proxy's URL and the Proxy-Authorization it got.
    def echo(conn, request):
        message = "upstream failed via %s; got %s" % (proxy_url, request.headers.get("proxy-authorization"))
        return sv.reply(502, {"error": {"message": message}})(conn, request)

    proxy = sv.Server(echo)
    proxy_url = "http://bob:%s@127.0.0.1:%d" % (PROXY_SECRET, proxy.port)
    try:
        set_proxy(monkeypatch, proxy_url)
        with client("http://llm.test/v1") as c:
            error = failure(lambda: c.chat("Hi"))
        basic = base64.b64encode(("bob:" + PROXY_SECRET).encode()).decode()
        shown = str(error) + repr(error) + error.message + str(error.body)
        assert isinstance(error, boc.ServerError)
        assert PROXY_SECRET not in shown and basic not in shown, shown
    finally:
        proxy.close()


# -- Issue 17: every spelling of a loopback address is loopback --------------------

LOOPBACK_SPELLINGS = [
    pytest.param("[0:0:0:0:0:0:0:1]", id="ipv6-loopback-written-out"),
    pytest.param("[0000:0000:0000:0000:0000:0000:0000:0001]", id="ipv6-loopback-with-zeros"),
    pytest.param("[::ffff:127.0.0.1]", id="ipv4-mapped-ipv6"),
    pytest.param("127.1", id="short-ipv4-127.1"),
    pytest.param("localhost.", id="localhost-with-the-root-dot"),
    pytest.param("LOCALHOST", id="localhost-in-capitals"),
    pytest.param("foo.localhost", id="a-name-under-localhost"),
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_never_proxied(server, answering_proxy, monkeypatch, host):
    # The answering proxy would say "via proxy"; a loopback URL goes direct:
    # to the local server, or nowhere (nothing may listen on ::1 here).
    set_proxy(monkeypatch, answering_proxy.origin)
    with client("http://%s:%d/v1" % (host, server.port)) as c:
        got = outcome(lambda: c.chat("Hi").text)
    assert answering_proxy.requests == [], [r.path for r in answering_proxy.requests]
    assert got == "OK" or isinstance(got, boc.ConnectionFailed), repr(got)


@pytest.mark.parametrize("host", [
    pytest.param("127.0.0.1.example.test", id="127.0.0.1-as-a-label"),
    pytest.param("127.1.test", id="127.1-as-a-label"),
    pytest.param("localhost.example.test", id="localhost-as-a-label"),
    pytest.param("notlocalhost", id="ends-in-localhost-without-a-dot"),
])
def test_names_that_only_look_loopback_go_through_the_proxy(answering_proxy, monkeypatch, host):
    set_proxy(monkeypatch, answering_proxy.origin)
    with client("http://%s/v1" % host) as c:
        assert c.chat("Hi").text == "via proxy"
    assert [r.path for r in answering_proxy.requests] == ["http://%s/v1/chat/completions" % host]


@pytest.mark.parametrize("url, loopback", [
    pytest.param("http://localhost:8080/v1", True, id="localhost"),
    pytest.param("http://127.0.0.1:8080/v1", True, id="127.0.0.1"),
    pytest.param("http://127.255.255.254/v1", True, id="127-slash-8"),
    pytest.param("http://[::1]:8080/v1", True, id="ipv6-short"),
    pytest.param("http://[0:0:0:0:0:0:0:1]:8080/v1", True, id="ipv6-written-out"),
    pytest.param("http://[::ffff:127.0.0.1]:8080/v1", True, id="ipv4-mapped-ipv6"),
    pytest.param("http://[::ffff:7f00:1]:8080/v1", True, id="ipv4-mapped-ipv6-in-hex"),
    pytest.param("http://127.1:8080/v1", True, id="127.1"),
    pytest.param("http://localhost.:8080/v1", True, id="localhost-root-dot"),
    pytest.param("http://foo.localhost:8080/v1", True, id="under-localhost"),
    pytest.param("http://foo.localhost.:8080/v1", True, id="under-localhost-root-dot"),
    pytest.param("http://127.0.0.1.example.test/v1", False, id="127-label"),
    pytest.param("http://127.x.test/v1", False, id="127.x.test"),
    pytest.param("http://localhost.example.test/v1", False, id="localhost-label"),
    pytest.param("http://[::2]:8080/v1", False, id="ipv6-not-loopback"),
    pytest.param("http://[::ffff:10.0.0.1]:8080/v1", False, id="ipv4-mapped-not-loopback"),
    pytest.param("http://128.0.0.1/v1", False, id="128.0.0.1"),
    pytest.param("http://api.test/v1", False, id="a-name"),
])
def test_is_loopback_table(url, loopback):
    assert boc._is_loopback(url) is loopback


def test_a_redirect_to_a_location_requests_cannot_parse_is_said_and_not_retried():
    server = sv.Server(sv.answer(status=307, headers=["Location: http://[::1/x"], ctype="text/plain"))
    try:
        with pytest.raises(boc.ConnectionFailed, match="redirected to 'http://\\[::1/x', which is not a valid") as info:
            boc.Client(server.url, model="m", max_retries=2).chat("Hi")
        assert info.value.retryable is False and len(server.requests) == 1
    finally:
        server.close()
