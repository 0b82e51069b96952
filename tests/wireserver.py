"""A local HTTP/1.1 server for wire-level tests, and a stream feeder.

:class:`WireServer` answers each request with a *handler* the test sets
(``handler(conn, request) -> keep_alive``) and counts what a test about the
wire needs: TCP connections accepted, requests, connections the client closed.
:func:`send` writes an answer in the framing (``chunked``, ``length``,
``close``) and content encoding (``gzip``, ``deflate-zlib``, ``deflate-raw``,
``identity``) a test asks for; compressed pieces are flushed one by one, as a
compressing proxy does for an event stream, so each decodes on arrival.

:func:`feed` hands byte chunks straight to a ChatStream, exactly as split.
"""
import json
import select
import socket
import threading
import time
import zlib

from faultserver import Request


FRAMINGS = ("chunked", "length", "close")
ENCODINGS = ("gzip", "deflate-zlib", "deflate-raw", "identity")

_WBITS = {"gzip": 31, "deflate-zlib": 15, "deflate-raw": -15}
_HEADER = {"gzip": "gzip", "deflate-zlib": "deflate", "deflate-raw": "deflate"}


class WireServer:
    """An HTTP/1.1 server on 127.0.0.1 with keep-alive, one thread per connection."""

    def __init__(self, handler=None):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d/v1" % self.port
        self.handler = handler
        self.accepts = 0  # TCP connections accepted
        self.requests = []
        self.closed_by_client = 0  # connections on which the client hung up
        self.errors = []
        self.release = threading.Event()  # handlers that wait, wait for this
        self._active = 0
        self._conns = set()
        self._lock = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self):
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
        self.wait_idle(5)

    def wait_idle(self, timeout=5.0):
        """Wait until every connection's handler has finished; True if they have."""
        with self._lock:
            return self._lock.wait_for(lambda: self._active == 0, timeout)

    def client_hung_up(self):
        with self._lock:
            self.closed_by_client += 1

    def _serve(self):
        while not self._stop:
            conn, _ = self.sock.accept()
            if self._stop:
                conn.close()
                return
            with self._lock:
                self.accepts += 1
                self._active += 1
                self._conns.add(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            with conn:
                conn.settimeout(30)
                reader = _Reader(conn)
                while True:  # keep-alive: several requests per connection
                    request = reader.request()
                    if request is None:
                        if not self._stop:
                            self.client_hung_up()
                        return
                    with self._lock:
                        self.requests.append(request)
                    if not self.handler(conn, request):
                        return
        except (OSError, ValueError) as exc:  # the client went away: fine
            self.errors.append(exc)
        finally:
            with self._lock:
                self._active -= 1
                self._conns.discard(conn)
                self._lock.notify_all()


class _Reader:
    def __init__(self, conn):
        self.conn, self.buffer = conn, b""

    def request(self):
        while b"\r\n\r\n" not in self.buffer:
            piece = self.conn.recv(65536)
            if not piece:
                return None
            self.buffer += piece
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
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


# -- Writing answers ---------------------------------------------------------


def encode(pieces, encoding):
    """Compress ``pieces`` as one body, flushed after each piece; return the new pieces."""
    if encoding == "identity":
        return list(pieces)
    compressor = zlib.compressobj(6, zlib.DEFLATED, _WBITS[encoding])
    out = [compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH) for piece in pieces]
    out[-1] += compressor.flush()
    return out


def head(status, *, framing, length=None, ctype="application/json", encoding="identity", extra=(), reason=None):
    """The status line and headers of an answer in the given framing."""
    lines = ["HTTP/1.1 %d %s" % (status, reason or "X")]
    if ctype:
        lines.append("Content-Type: " + ctype)
    if encoding != "identity":
        lines.append("Content-Encoding: " + _HEADER[encoding])
    if framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
    elif framing == "length":
        lines.append("Content-Length: %d" % length)
    else:
        lines.append("Connection: close")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk_frame(piece):
    return b"%x\r\n%s\r\n" % (len(piece), piece)


def send(conn, status, pieces, *, framing, ctype="application/json", encoding="identity", extra=()):
    """Write a whole answer whose body is ``pieces`` (bytes, or a JSON value).

    Returns whether the connection may be kept open (not for ``close``).
    """
    if not isinstance(pieces, (list, tuple)):
        pieces = [pieces if isinstance(pieces, bytes) else json.dumps(pieces).encode()]
    pieces = [p for p in encode(pieces, encoding) if p] or [b""]
    length = sum(len(p) for p in pieces)
    conn.sendall(head(status, framing=framing, length=length, ctype=ctype, encoding=encoding, extra=extra))
    for piece in pieces:
        if framing == "chunked":
            if piece:
                conn.sendall(chunk_frame(piece))
        else:
            conn.sendall(piece)
    if framing == "chunked":
        conn.sendall(b"0\r\n\r\n")
    return framing != "close"
