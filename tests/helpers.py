"""Shared helpers for the tests: the one vocabulary of bodies, events and
framings servers send (tests/server.py sends them), a stream reader fed exact
byte chunks, and a way to time a call."""
import contextlib
import fcntl
import functools
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import tracemalloc
import zlib

import bor_openai_compat as boc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BASE = "http://api.test/v1"
URL = BASE + "/chat/completions"
CANARY_KEY = "sk-canary-7f3a9c21e4b8"


def completion(text="Hello!", *, model="test-model", finish="stop", usage=None, **message):
    """A non-stream chat completion body, as OpenAI sends it."""
    message = dict({"role": "assistant", "content": text}, **message)
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


# -- The vocabulary of answers ------------------------------------------------
#
# A chat chunk: chunk(). An SSE event: event(). A whole SSE body: sse() (of any
# events), text_stream() (of texts), events() (the same, one piece per event).
# HTTP/1.1 chunked framing: http_chunk(), chunked(). Content encodings:
# compress(). Big or odd bodies: endless(), trickle(), nested(), gzip_bomb().
# tests/server.py sends them.

FRAMINGS = ("chunked", "length", "close")
ENCODINGS = ("gzip", "deflate-zlib", "deflate-raw", "identity")
_WBITS = {"gzip": 31, "deflate-zlib": 15, "deflate-raw": -15}


def chunk(content=None, *, finish=None, **delta):
    """One stream chunk with a content delta."""
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def event(data):
    """One SSE event: a dict (sent as JSON) or a raw string as its data."""
    return ("data: %s\n\n" % (data if isinstance(data, str) else json.dumps(data))).encode()


DONE = b"data: [DONE]\n\n"


def sse(*events, done=True):
    """A whole SSE body of these events (dicts as JSON, or raw strings), then [DONE]."""
    return b"".join([event(data) for data in events] + ([DONE] if done else []))


def events(*texts, finish="stop", done=True):
    """A streamed text answer as separate pieces: one event per text, then finish, then [DONE]."""
    out = [event(chunk(t)) for t in texts]
    if finish:
        out.append(event(chunk(finish=finish)))
    if done:
        out.append(DONE)
    return out


def text_stream(*texts, finish="stop", done=True):
    """A streamed text answer as one body: ``b"".join(events(...))``."""
    return b"".join(events(*texts, finish=finish, done=done))


def http_chunk(data, size=None):
    """One HTTP/1.1 chunk; ``size`` (text) lies about its length if given."""
    return b"%s\r\n%s\r\n" % ((size or "%x" % len(data)).encode("latin-1"), data)


def chunked(pieces, end=True):
    """``pieces`` in chunked transfer coding, lazily; empty pieces are skipped."""
    for piece in pieces:
        if piece:
            yield http_chunk(piece)
    if end:
        yield b"0\r\n\r\n"


def compress(pieces, encoding):
    """``pieces`` as one body in a content ``encoding`` (a name in ENCODINGS), lazily.

    Each piece is flushed, so it decodes when it arrives, as a compressing
    proxy does for an event stream; the end of the body goes with the last.
    """
    if encoding in (None, "identity"):
        yield from pieces
        return
    z = zlib.compressobj(6, zlib.DEFLATED, _WBITS[encoding])
    last = None
    for piece in pieces:
        if last is not None:
            yield last
        last = z.compress(piece) + z.flush(zlib.Z_SYNC_FLUSH)
    yield (last or b"") + z.flush()


def endless(piece, total):
    """``piece`` over and over, ``total`` bytes in all, made as they are sent."""
    if isinstance(piece, str):
        piece = piece.encode()
    sent = 0
    while sent < total:
        yield piece
        sent += len(piece)


def trickle(data):
    """``data`` one byte at a time (with the server's ``delay=``)."""
    return (data[i:i + 1] for i in range(len(data)))


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


def free_port():
    """A port on 127.0.0.1 with nothing listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Response:
    url = "http://api.test/v1/chat/completions"
    closed = False

    def close(self):
        self.closed = True


def feed(chunks, client=None):
    """A ChatStream reading the given byte chunks, exactly as split."""
    client = client or boc.Client("http://api.test/v1", model="m")
    call = boc._Call(None, "m", stream=True)
    return boc.ChatStream(client, _Response(), call, chunks=iter(chunks))


def open_fds():
    """How many file descriptors this process has open (Linux)."""
    return len(os.listdir("/proc/self/fd"))


class Reader(threading.Thread):
    """Iterates a stream in a thread of its own, as a GUI's worker would."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.texts, self.errors = stream, [], []
        self.got_one = threading.Event()
        self.start()

    def run(self):
        try:
            for delta in self.stream:
                self.texts.append(delta.text)
                self.got_one.set()
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


def run(call):
    """Call, and return (exception or result, seconds taken)."""
    start = time.monotonic()
    try:
        outcome = call()
    except boc.OpenAICompatError as exc:
        outcome = exc
    return outcome, time.monotonic() - start


def consume(client, *args, **kwargs):
    """A call that streams "Hi" (or the given messages) to the end."""
    return lambda: client.stream(*(args or ("Hi",)), **kwargs).result


def visible(error, records=()):
    """Everything of an error that a user, a program or a log can see, as one text."""
    seen = [str(error), repr(error)]
    for name in ("message", "body", "code", "result", "partial", "available", "suggestion"):
        seen.append(repr(getattr(error, name, None)))
    partial = getattr(error, "partial", None)
    if partial is not None:
        seen += [partial.text, repr(partial.raw)]
    seen += [record.getMessage() for record in records]
    return "\n".join(seen)


def assert_hidden(secret, text):
    """Fail, showing where, if ``secret`` is in ``text``."""
    at = text.find(secret)
    assert at < 0, "the secret shows here: ...%s..." % text[max(0, at - 100):at + 60]


class TookTooLong(BaseException):
    """Raised into a call that runs past its wall-clock guard (not an Exception,
    so no ``except Exception`` in the library swallows it)."""


@contextlib.contextmanager
def bounded(cpu=2.0, wall=10.0):
    """Fail if the block uses more than ``cpu`` seconds of CPU; stop it after
    ``wall`` seconds, so a minutes-long regex fails in seconds (the regex
    engine checks for signals as it runs)."""

    def stop(signum, frame):
        raise TookTooLong("still running after %ss" % wall)

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, wall)
    start = time.process_time()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    used = time.process_time() - start
    assert used < cpu, "took %.1fs of CPU" % used


@contextlib.contextmanager
def peak_memory():
    """Trace allocations in the block; ``box["peak"]`` is the peak in bytes."""
    box = {}
    tracemalloc.start()
    try:
        yield box
    finally:
        box["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def asleep(pid, timeout=20):
    """Return once process ``pid`` sleeps: it waits for a key or for the server.

    Ctrl-C and Ctrl-D are typed then, as a person's would be: CPython sees a
    signal that lands while readline is still busy with the last key only at
    the next key (it checks for signals when select() is interrupted), and a
    Ctrl-D typed before readline takes the terminal is lost with the switch
    out of canonical mode. Linux shows the state in /proc; elsewhere this
    does not wait.
    """
    stat = "/proc/%d/stat" % pid
    deadline = time.monotonic() + timeout
    while os.path.exists(stat):
        with open(stat) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("S", "Z"):
            return
        assert time.monotonic() < deadline, "process %d never waited (state %s)" % (pid, state)
        time.sleep(0.001)  # polled: the condition decides, not the time


class Terminal:
    """The command line in a pseudo-terminal, as a user at a keyboard has it."""

    def __init__(self, *args, env=None):
        master, slave = pty.openpty()

        def child():
            # The pty becomes the controlling terminal, so that a typed Ctrl-C
            # is a SIGINT; and SIGINT is the default one whoever started pytest
            # (a shell's `&` would leave it ignored).
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        environ = dict(os.environ, PYTHONPATH=ROOT, TERM="dumb", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bor_openai_compat"] + list(args),
            stdin=slave, stdout=slave, stderr=slave, env=environ,
            start_new_session=True, preexec_fn=child, close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.output = b""  # all the terminal showed, "\r\n" as "\n"
        self.seen = 0  # how far expect() has matched

    def expect(self, text, timeout=20):
        """Wait until ``text`` shows after what was matched before; return what came in between."""
        want = text.encode() if isinstance(text, str) else text
        deadline = time.monotonic() + timeout
        while True:
            found = self.output.find(want, self.seen)
            if found >= 0:
                before = self.output[self.seen:found]
                self.seen = found + len(want)
                return before.decode("utf-8", "replace")
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError("%r did not show; the terminal has:\n%s"
                                     % (text, self.output.decode("utf-8", "replace")))

    def _read(self, timeout):
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the program ended and the terminal closed
            data = b""
        # The terminal turns each "\n" into "\r\n" (ONLCR); undo only that.
        self.output += data.replace(b"\r\n", b"\n")
        return bool(data)

    def type(self, line):
        os.write(self.master, line.encode() + b"\r")  # Enter sends CR, the tty makes it LF

    def ctrl_c(self):
        asleep(self.proc.pid)
        os.write(self.master, b"\x03")

    def ctrl_d(self):
        asleep(self.proc.pid)  # typed before readline has the terminal, EOF would be lost
        os.write(self.master, b"\x04")

    def wait(self, timeout=20):
        """The exit status, once the program ended; all it printed is in ``output``."""
        deadline = time.monotonic() + timeout
        while self._read(max(0.0, deadline - time.monotonic())):
            pass
        code = self.proc.wait(max(0.1, deadline - time.monotonic()))
        os.close(self.master)
        return code

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
