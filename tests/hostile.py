"""Hostile answers for the fault server, written byte by byte.

``answer()`` builds a FaultServer script that sends any status line, any
headers and any body, in any framing (Content-Length, chunked with chunk
sizes of our choosing, close-delimited), compressed or not, all at once or
trickled. A body may be an iterable generated lazily (``endless()``), so a
test can send gigabytes without ever holding them; the count bounds it, so
the server stops even if the client never does. A body may also be a
function of the request, to echo what the client sent.
"""
import functools
import json
import time
import zlib


def answer(body=b"", *, status=200, reason="X", status_line=None, headers=(), ctype="application/json",
           framing="length", encoding=None, declare=None, delay=0.0, keep=True):
    """A script that answers with exactly these bytes.

    :param body: bytes, str, a dict (sent as JSON), an iterable of bytes
        (sent piece by piece, lazily), or a function of the Request giving any
        of these (to echo the request back).
    :param status_line: the whole first line, instead of ``HTTP/1.1 <status> <reason>``.
    :param headers: extra header lines, as written (``"Name: value"``), or a
        function of the Request giving them.
    :param ctype: the Content-Type, or None for none.
    :param framing: ``"length"`` (Content-Length of the whole body),
        ``"chunked"`` (one HTTP chunk per piece), ``"close"`` (the body ends
        when the connection does) or ``"raw"`` (pieces go out as they are:
        write the framing yourself, e.g. with ``chunk()``).
    :param encoding: ``"gzip"``, ``"deflate"`` (zlib) or ``"raw-deflate"``:
        the body is compressed (piece by piece, each piece decodable at once)
        and Content-Encoding is sent. ``declare`` overrides the header value.
    :param delay: seconds before each piece (a trickle).
    :param keep: keep the connection open afterwards (length/chunked only).
    """

    def script(conn, request):
        pieces = _pieces(body(request) if callable(body) else body)
        if encoding:
            pieces = compress(pieces, encoding)
        lines = [status_line or "HTTP/1.1 %d %s" % (status, reason)]
        if ctype is not None:
            lines.append("Content-Type: " + ctype)
        if encoding or declare:
            lines.append("Content-Encoding: " + (declare or ("deflate" if "deflate" in encoding else encoding)))
        if framing == "length":
            pieces = list(pieces)
            lines.append("Content-Length: %d" % sum(len(p) for p in pieces))
        elif framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
            pieces = _chunked(pieces)
        elif framing == "close":
            lines.append("Connection: close")
        lines.extend(headers(request) if callable(headers) else headers)
        head = "\r\n".join(lines).encode("latin-1", "replace") + b"\r\n\r\n"
        conn.sendall(head)
        for piece in pieces:
            if delay:
                time.sleep(delay)
            conn.sendall(piece)
        return keep and framing in ("length", "chunked")

    return script


def chunk(data, size=None):
    """One HTTP chunk; ``size`` (text) lies about its length if given."""
    return b"%s\r\n%s\r\n" % ((size or "%x" % len(data)).encode("latin-1"), data)


def endless(piece, total):
    """``piece`` over and over, ``total`` bytes in all, made as they are sent."""
    if isinstance(piece, str):
        piece = piece.encode()
    sent = 0
    while sent < total:
        yield piece
        sent += len(piece)


def trickle(data):
    """``data`` one byte at a time (combine with ``delay=``)."""
    return (data[i:i + 1] for i in range(len(data)))


def compress(pieces, encoding):
    """Compress lazily; each piece is flushed so it decodes when it arrives."""
    wbits = {"gzip": 31, "deflate": 15, "raw-deflate": -15}[encoding]
    z = zlib.compressobj(6, zlib.DEFLATED, wbits)
    for piece in pieces:
        yield z.compress(piece) + z.flush(zlib.Z_SYNC_FLUSH)
    yield z.flush()


@functools.lru_cache(maxsize=None)
def gzip_bomb(inflated, unit=8 << 20):
    """A gzip body of about ``inflated`` zero bytes, ~1000x smaller.

    gzip members may follow each other and decode as one body, so one small
    member of ``unit`` zeros is repeated: quick to make, however large.
    """
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = z.compress(bytes(unit)) + z.flush()
    return member * (inflated // unit)


def nested(depth, inner="1"):
    """JSON text nested ``depth`` arrays deep."""
    return "[" * depth + inner + "]" * depth


def _pieces(body):
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        return [bytes(body)] if body else []
    return (p.encode("utf-8") if isinstance(p, str) else p for p in body)


def _chunked(pieces):
    for piece in pieces:
        if piece:
            yield chunk(piece)
    yield b"0\r\n\r\n"

