"""Canned answers for the benchmarks, served from a process of their own.

Run as ``python bench/server.py PORT``. Everything is built before the first
request, so the server costs the same for every client. Paths:

- ``/stream/N/v1/chat/completions``: N content chunks, each its own HTTP
  chunk, written as fast as the socket takes them.
- ``/big/BYTES/v1/chat/completions``: one ``data:`` event carrying BYTES of text.
- ``/slow/N/v1/chat/completions``: N events 100 ms apart in a close-delimited
  body (no chunked encoding); each event's text is the time it was sent.
- ``/chat/v1/chat/completions``: a small JSON answer, on a kept-alive connection.
"""
import json
import socket
import sys
import threading
import time

CHUNK = {
    "id": "chatcmpl-bench",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": "bench-model",
    "system_fingerprint": "fp_bench",
    "choices": [{"index": 0, "delta": {"content": " word"}, "logprobs": None, "finish_reason": None}],
}
FINISH = dict(CHUNK, choices=[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
CHAT = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "bench-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}


def event(obj):
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def http_chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


HEAD_SSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
_cache = {}


def stream_body(n):
    if ("stream", n) not in _cache:
        one = http_chunk(event(CHUNK))
        _cache["stream", n] = b"".join([one] * n) + http_chunk(event(FINISH)) + http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    return _cache["stream", n]


def big_body(size):
    if ("big", size) not in _cache:
        text = "x" * size
        one = event(dict(CHUNK, choices=[{"index": 0, "delta": {"content": text}, "finish_reason": None}]))
        tail = event(FINISH) + b"data: [DONE]\n\n"
        body = one + tail
        pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
        _cache["big", size] = b"".join(http_chunk(p) for p in pieces) + b"0\r\n\r\n"
    return _cache["big", size]


def read_request(conn, buf):
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None, b""
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    path = lines[0].split(b" ")[1].decode()
    length = 0
    for line in lines[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(rest) < length:
        rest += conn.recv(65536)
    return path, rest[length:]


def handle(conn):
    buf = b""
    with conn:
        while True:
            path, buf = read_request(conn, buf)
            if path is None:
                return
            parts = path.strip("/").split("/")
            if parts[0] == "stream":
                conn.sendall(HEAD_SSE + stream_body(int(parts[1])))
            elif parts[0] == "big":
                conn.sendall(HEAD_SSE + big_body(int(parts[1])))
            elif parts[0] == "slow":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
                for _ in range(int(parts[1])):
                    time.sleep(0.1)
                    sent = dict(CHUNK, choices=[{"index": 0, "delta": {"content": repr(time.time())}, "finish_reason": None}])
                    conn.sendall(event(sent))
                conn.sendall(event(FINISH) + b"data: [DONE]\n\n")
                return
            elif parts[0] == "chat" or parts[-1] == "completions":
                body = json.dumps(CHAT).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


def main(port):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    print("ready", flush=True)
    while True:
        conn, _ = sock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main(int(sys.argv[1]))
