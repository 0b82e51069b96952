"""The one local HTTP/1.1 server of the tests, and the scripts it answers with.

:class:`Server` listens on 127.0.0.1 (plain HTTP, or TLS with ``tls=``), keeps
connections alive, one thread per connection, and answers each request with a
*script*: ``script(conn, request) -> keep_alive``, a function that writes
whatever bytes it likes to the socket (a proper answer, half an answer,
nothing, garbage), sleeping and closing as it pleases. It records every
request (so tests can count retries) and counts what a test about the wire
needs: connections accepted, connections still served, connections the
client hung up on.

Scripts are made by :func:`answer` (any status line, headers, body, framing
and content encoding, at once or trickled), or its shortcuts :func:`reply`
(a whole answer with a Content-Length) and :func:`stream` (an event stream,
one HTTP chunk per piece). A script that writes by hand uses :func:`head` and
:func:`send`. Bodies, events and framings come from :mod:`helpers`.

TLS certificates, proxies and redirects are in :mod:`netservers`.
"""
import json
import select
import socket
import threading
import time

from helpers import chunked, compress

ENCODING_HEADER = {"gzip": "gzip", "deflate-zlib": "deflate", "deflate-raw": "deflate"}


class Request:
    def __init__(self, method, path, headers, body):
        self.method, self.path, self.headers, self.body = method, path, headers, body

    def json(self):
        return json.loads(self.body)


class Server:
    """An HTTP/1.1 server on 127.0.0.1 that answers with the scripts it is given.

    :param scripts: as for :meth:`script`.
    :param tls: an ``ssl.SSLContext`` for the server side, or None for plain
        HTTP. A TLS ClientHello sent to a plain server gets a plain-text 400,
        as real servers (uvicorn, nginx, http.server) answer it.
    """

    def __init__(self, *scripts, tls=None):
        self.tls = tls
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.origin = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self.url = self.origin + "/v1"
        self.scripts = list(scripts)  # used in turn; the last one repeats
        self.requests = []
        self.accepts = 0  # TCP connections accepted (= TLS handshakes tried)
        self.active = 0  # connections still being served
        self.closed_by_client = 0  # connections on which the client hung up
        self.errors = []
        self.tls_errors = []
        self.release = threading.Event()  # scripts that wait, wait for this
        self._conns = set()
        self._lock = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def script(self, *scripts):
        """Set what the server does for the next requests, in order (the last one repeats)."""
        self.scripts = list(scripts)
        self.requests = []

    def posts(self):
        return [r for r in self.requests if r.method == "POST"]

    def wait_idle(self, timeout=5.0):
        """Wait until every connection's script has finished; True if they have."""
        with self._lock:
            return self._lock.wait_for(lambda: self.active == 0, timeout)

    def client_hung_up(self):
        with self._lock:
            self.closed_by_client += 1

    def close(self, wait=5.0):
        self._stop = True
        self.release.set()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self._thread.join(5)
        self.sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # a connection the client keeps in its pool
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.wait_idle(wait)

    def _serve(self):
        while not self._stop:
            conn, _ = self.sock.accept()
            if self._stop:
                conn.close()
                return
            with self._lock:
                self.accepts += 1
                self.active += 1
                self._conns.add(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        raw = conn
        try:
            with conn:
                conn.settimeout(30)
                if self.tls is not None:
                    wrapped = self._wrap(raw)
                    if wrapped is None:
                        return
                    conn = wrapped
                elif conn.recv(1, socket.MSG_PEEK) == b"\x16":
                    body = b"Bad Request: this is a plain HTTP server"
                    conn.sendall(head(400, "text/plain", len(body), headers=["Connection: close"]) + body)
                    return
                reader = _Reader(conn)
                while True:  # keep-alive: several requests per connection
                    request = reader.request()
                    if request is None:
                        if not self._stop:
                            self.client_hung_up()
                        return
                    with self._lock:
                        self.requests.append(request)
                        index = min(len(self.requests), len(self.scripts)) - 1
                    if index < 0 or not self.scripts[index](conn, request):
                        return
        except (OSError, ValueError) as exc:  # the client went away: fine
            self.errors.append(exc)
        finally:
            if conn is not raw:
                conn.close()
            with self._lock:
                self.active -= 1
                self._conns.discard(conn)
                self._conns.discard(raw)
                self._lock.notify_all()

    def _wrap(self, conn):
        conn.settimeout(10)
        try:
            wrapped = self.tls.wrap_socket(conn, server_side=True)
        except OSError as exc:  # ssl.SSLError is an OSError
            self.tls_errors.append(exc)
            return None
        wrapped.settimeout(30)
        with self._lock:
            self._conns.discard(conn)
            self._conns.add(wrapped)
        return wrapped


class _Reader:
    """Requests from one connection; bytes past a request wait for the next."""

    def __init__(self, conn):
        self.conn, self.buffer = conn, b""

    def request(self):
        while b"\r\n\r\n" not in self.buffer:
            piece = self.conn.recv(65536)
            if not piece:
                return None
            self.buffer += piece
        top, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", 0))
        while len(rest) < length:
            piece = self.conn.recv(65536)
            if not piece:
                return None
            rest += piece
        self.buffer = rest[length:]
        return Request(method, path, headers, rest[:length])


# -- Writing answers ---------------------------------------------------------


def head(status=200, ctype="application/json", length=None, *, framing=None, encoding=None, declare=None,
         headers=(), reason="X", status_line=None):
    """The status line and headers of an answer, as bytes.

    :param framing: ``"length"`` (Content-Length: ``length``), ``"chunked"``,
        ``"close"`` (Connection: close) or ``"raw"`` (no framing header: write
        your own in ``headers``). By default ``"length"`` if a length is given,
        else ``"close"``.
    :param encoding: a name in :data:`helpers.ENCODINGS`; its Content-Encoding
        is sent. ``declare`` sends this Content-Encoding instead (a lie, if the
        body is not so encoded).
    """
    if framing is None:
        framing = "close" if length is None else "length"
    lines = [status_line or "HTTP/1.1 %d %s" % (status, reason)]
    if ctype is not None:
        lines.append("Content-Type: " + ctype)
    if declare or encoding not in (None, "identity"):
        lines.append("Content-Encoding: " + (declare or ENCODING_HEADER[encoding]))
    if framing == "length":
        lines.append("Content-Length: %d" % length)
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
    elif framing == "close":
        lines.append("Connection: close")
    lines.extend(headers)
    return "\r\n".join(lines).encode("latin-1", "replace") + b"\r\n\r\n"


def send(conn, body=b"", *, status=200, ctype="application/json", framing="length", encoding=None, declare=None,
         headers=(), reason="X", status_line=None, delay=0.0, then=None, end=True):
    """Write an answer whose body is ``body``; return whether the connection may be kept.

    :param body: bytes, str, a dict or list (sent as JSON), or an iterable of
        pieces (bytes or str, sent one by one, lazily: one HTTP chunk each
        when chunked, each flushed by the compressor when encoded).
    :param delay: seconds before each piece (a trickle).
    :param then: called after the pieces, before the end of a chunked body
        (e.g. to stall).
    :param end: ``False`` leaves a chunked body unfinished and closes the
        connection (a dropped connection).
    """
    pieces = _pieces(body)
    if encoding not in (None, "identity"):
        pieces = compress(pieces, encoding)
    length = None
    if framing == "length":
        pieces = [p for p in pieces if p]
        length = sum(len(p) for p in pieces)
    elif framing == "chunked":
        pieces = chunked(pieces, end=False)
    out = head(status, ctype, length, framing=framing, encoding=encoding, declare=declare, headers=headers,
               reason=reason, status_line=status_line)
    if delay:
        conn.sendall(out)
        out = b""
    for piece in pieces:
        if delay:
            time.sleep(delay)
        conn.sendall(out + piece)  # the head goes with the first piece
        out = b""
    if out:
        conn.sendall(out)
    if then is not None:
        then()
    if framing == "chunked" and end:
        conn.sendall(b"0\r\n\r\n")
    return framing in ("length", "chunked") and end


def answer(body=b"", *, keep=True, **options):
    """A script that answers with exactly these bytes (see :func:`send` and :func:`head`).

    ``body`` and ``headers`` may also be functions of the Request, to echo
    what the client sent. ``keep=False`` closes the connection afterwards.
    """

    def script(conn, request):
        kwargs = dict(options)
        if callable(kwargs.get("headers")):
            kwargs["headers"] = kwargs["headers"](request)
        kept = send(conn, body(request) if callable(body) else body, **kwargs)
        return keep and kept

    return script


def reply(status=200, body=b"", ctype="application/json", headers=()):
    """A complete answer with a Content-Length; the connection stays open."""
    return answer(body, status=status, ctype=ctype, headers=headers)


def stream(pieces, *, ctype="text/event-stream", framing="chunked", **options):
    """An event stream: ``pieces`` one HTTP chunk each (``framing="close"``: close-delimited)."""
    return answer(pieces, ctype=ctype, framing=framing, **options)


def close_at_once(conn, request):
    return False


def stall(seconds):
    """A script that sends nothing for ``seconds``, then hangs up."""

    def script(conn, request):
        time.sleep(seconds)
        return False

    return script


def wait_closed(conn, timeout, release=None):
    """Wait until the client closes ``conn`` (True), or ``timeout``/``release`` (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not (release is not None and release.is_set()):
        readable, _, _ = select.select([conn], [], [], 0.02)
        if readable:
            try:
                if not conn.recv(65536):
                    return True
            except OSError:
                return True
    return False


def _pieces(body):
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        return [bytes(body)] if body else []
    return (p.encode("utf-8") if isinstance(p, str) else p for p in body)
