"""Shared helpers for the tests: canned bodies in the shapes servers send,
a stream reader fed exact byte chunks, and a way to time a call."""
import contextlib
import fcntl
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


def sse(*events, done=True):
    """Encode dicts (as JSON) or raw strings as SSE events."""
    out = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        out.append("data: %s\n\n" % data)
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def text_stream(*texts, finish="stop", done=True):
    return sse(*[chunk(t) for t in texts], chunk(finish=finish), done=done)


def free_port():
    """A port on 127.0.0.1 with nothing listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def events(*texts, finish="stop", done=True):
    """SSE events as separate pieces: one per text, then finish, then [DONE]."""
    out = [sse(chunk(t), done=False) for t in texts]
    if finish:
        out.append(sse(chunk(finish=finish), done=False))
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


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
