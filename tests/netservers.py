"""What the network tests add to the one server (tests/server.py): TLS
certificates, an OpenAI-like answer, redirects and a forward proxy.

All listen on 127.0.0.1 only, as :class:`server.Server` scripts:

* :class:`Certs` is a throwaway CA from ``trustme`` and a certificate for
  127.0.0.1 (``Server(..., tls=certs.server_context())``);
* :func:`openai` answers like an OpenAI-compatible server (models, chat,
  stream), optionally echoing a token so crossed answers show;
* :func:`routes` picks a script by path, :func:`redirect` sends a 3xx;
* :func:`proxy` is a forward proxy that answers absolute-form requests itself,
  or fails the way real proxies do (407, hanging up).
"""
import ssl

import trustme

import server as sv
from helpers import chunk, completion, sse

MODELS = {"object": "list", "data": [{"id": "m"}, {"id": "other-model"}]}


class Certs:
    """A throwaway CA and a certificate for 127.0.0.1 and localhost."""

    def __init__(self, directory):
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = str(directory / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_path)
        other = trustme.CA()  # a bundle that does not trust our server
        self.other_ca_path = str(directory / "other-ca.pem")
        other.cert_pem.write_to_path(self.other_ca_path)

    def server_context(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.cert.configure_cert(context)
        return context


# -- Scripts -----------------------------------------------------------------


def _path(request):
    """The path of a request without its query, also for absolute-form targets."""
    target = request.path
    if "://" in target:
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    return target.partition("?")[0]


def _last_message(request):
    try:
        messages = request.json()["messages"]
        return messages[-1]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def openai(text="OK"):
    """Answer like an OpenAI-compatible server: GET .../models, chat, stream.

    ``text=None`` echoes the last user message, so that a test can tell whose
    answer arrived. A model other than those in MODELS is answered with a 404
    ``model_not_found``.
    """

    def script(conn, request):
        if _path(request).endswith("/models"):
            return sv.reply(200, MODELS)(conn, request)
        try:
            body = request.json()
        except ValueError:
            return sv.reply(400, {"error": {"message": "no JSON body"}})(conn, request)
        if body.get("model") not in [m["id"] for m in MODELS["data"]]:
            error = {"error": {"message": "The model `%s` does not exist" % body.get("model"),
                               "type": "invalid_request_error", "code": "model_not_found"}}
            return sv.reply(404, error)(conn, request)
        answer = _last_message(request) if text is None else text
        if body.get("stream"):
            return sv.stream([sse(chunk(answer), chunk(finish="stop"))])(conn, request)
        return sv.reply(200, completion(answer))(conn, request)

    return script


def echo(conn, request):
    """The thread-pool server: the user message says what to do and carries a token.

    ``chat:<token>`` -> a completion ``echo <token>``; ``stream:<token>`` -> the
    token in two deltas; ``err:<token>`` -> 400 with the token in the message;
    ``early:<token>`` -> the token, then many more events (the client leaves early).
    """
    kind, _, token = _last_message(request).partition(":")
    if kind == "chat":
        return sv.reply(200, completion("echo " + token))(conn, request)
    if kind == "stream":
        half = len(token) // 2
        return sv.stream([sse(chunk(token[:half]), done=False), sse(chunk(token[half:]), chunk(finish="stop"))])(
            conn, request
        )
    if kind == "early":
        filler = sse(*[chunk(" more") for _ in range(50)], chunk(finish="stop"))
        return sv.stream([sse(chunk(token), done=False), filler])(conn, request)
    error = {"error": {"message": "bad request " + token, "type": "invalid_request_error"}}
    return sv.reply(400, error)(conn, request)


def routes(table, default=None):
    """Pick a script by the request's path (without the query); 404 otherwise."""
    default = default or sv.reply(404, {"error": {"message": "no route"}})

    def script(conn, request):
        return table.get(_path(request), default)(conn, request)

    return script


def redirect(status, location):
    """A 3xx answer to ``location``; the connection stays open."""

    def script(conn, request):
        conn.sendall(sv.head(status, "text/plain", 0, headers=("Location: " + location,)))
        return True

    return script


# -- A forward proxy ---------------------------------------------------------


def proxy(mode="answer", text="via proxy"):
    """A forward proxy script.

    ``answer``: absolute-form requests (``POST http://llm.test/v1/...``) are
    answered by the proxy itself, as if the upstream had answered ``text``.
    ``407``: every request, CONNECT included, gets 407 Proxy Authentication
    Required. ``drop``: the proxy hangs up without a word.
    """
    upstream = openai(text)

    def script(conn, request):
        if mode == "drop":
            return False
        if mode == "407":
            body = b"<html><body><h1>407 Proxy Authentication Required</h1></body></html>"
            conn.sendall(
                sv.head(407, "text/html", len(body), headers=('Proxy-Authenticate: Basic realm="corp"',)) + body
            )
            return True
        if request.method == "CONNECT":
            conn.sendall(sv.head(501, "text/plain", 0))  # no tunnels here
            return False
        return upstream(conn, request)

    return script
