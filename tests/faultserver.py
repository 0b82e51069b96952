"""A small HTTP server on 127.0.0.1 that misbehaves on request.

Each test gives it one or more *scripts*: functions that get the connected
socket and the request, and write whatever bytes they like (a proper answer,
half an answer, nothing, garbage), sleeping and closing as they please. The
server records every request it saw, so tests can count retries.
"""
import json
import socket
import threading
import time


class Request:
    def __init__(self, method, path, headers, body):
        self.method, self.path, self.headers, self.body = method, path, headers, body

    def json(self):
        return json.loads(self.body)


class FaultServer:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d/v1" % self.port
        self.requests = []
        self.scripts = []  # used in turn; the last one repeats
        self.errors = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def script(self, *scripts):
        """Set what the server does for the next requests, in order."""
        self.scripts = list(scripts)
        self.requests = []

    def close(self):
        self._stop = True
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self._thread.join(5)
        self.sock.close()

    def _serve(self):
        while not self._stop:
            conn, _ = self.sock.accept()
            if self._stop:
                conn.close()
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            with conn:
                conn.settimeout(30)
                while True:  # keep-alive: several requests per connection
                    request = _read_request(conn)
                    if request is None:
                        return
                    self.requests.append(request)
                    index = min(len(self.requests), len(self.scripts)) - 1
                    keep = self.scripts[index](conn, request) if self.scripts else None
                    if not keep:
                        return
        except (OSError, ValueError) as exc:  # the client hung up: fine
            self.errors.append(exc)


def _read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        piece = conn.recv(65536)
        if not piece:
            break
        rest += piece
    return Request(method, path, headers, rest[:length])


# -- Script builders ---------------------------------------------------------


def head(status=200, ctype="application/json", length=None, chunked=False, extra=()):
    lines = ["HTTP/1.1 %d X" % status, "Content-Type: " + ctype]
    if length is not None:
        lines.append("Content-Length: %d" % length)
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    lines.extend(extra)
    if length is None and not chunked:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reply(status=200, body=b"", ctype="application/json", extra=()):
    """A complete answer with Content-Length; the connection stays open."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()

    def script(conn, request):
        conn.sendall(head(status, ctype, len(body), extra=extra) + body)
        return True

    return script


def stream(pieces, *, delay=0.0, chunked=True, ctype="text/event-stream", status=200, end=True, then=None):
    """Send ``pieces`` (bytes) one by one, ``delay`` apart.

    ``chunked=False`` makes a close-delimited body. ``end=False`` leaves a
    chunked body unfinished and closes the socket (a dropped connection).
    ``then`` is called after the pieces, e.g. to stall.
    """

    def script(conn, request):
        conn.sendall(head(status, ctype, chunked=chunked))
        for piece in pieces:
            if delay:
                time.sleep(delay)
            if chunked:
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                conn.sendall(piece)
        if then is not None:
            then()
        if chunked and end:
            conn.sendall(b"0\r\n\r\n")
            return True
        return False

    return script


def close_at_once(conn, request):
    return False


def stall(seconds):
    def script(conn, request):
        time.sleep(seconds)
        return False

    return script
