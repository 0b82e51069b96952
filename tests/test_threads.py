"""One Client shared by a thread pool, against a keep-alive server on 127.0.0.1.

Each request carries a unique token that the server echoes, so a crossed
answer (one thread reading another's response) shows. The server counts the
TCP connections it accepted: a pool that is too small opens one per call and
urllib3 warns "Connection pool is full, discarding connection".
"""
import gc
import logging
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

import bor_openai_compat as boc
import netservers as ns
import server as sv
from helpers import open_fds

THREADS = 32
KINDS = ("chat", "stream", "err", "chat", "stream", "chat", "stream", "early")  # 1 in 8 leaves early


def one_call(c, kind, token):
    """Make one call of ``kind``; return what the caller saw, to compare with the token."""
    message = "%s:%s" % (kind, token)
    if kind == "chat":
        return c.chat(message).text == "echo " + token
    if kind == "stream":
        with c.stream(message) as s:
            return "".join(d.text or "" for d in s) == token and s.result.text == token
    if kind == "early":
        with c.stream(message) as s:
            return next(iter(s)).text == token  # and leave the rest unread
    try:
        c.chat(message)
    except boc.BadRequest as exc:
        return token in str(exc)
    return False


@pytest.fixture
def echo_server():
    s = sv.Server(ns.echo)
    yield s
    s.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
@pytest.mark.parametrize("calls, options", [(50, {}), (15, {"pool_size": 32})], ids=["default pool", "pool_size=32"])
def test_one_client_shared_by_32_threads(echo_server, caplog, calls, options):
    caplog.set_level(logging.WARNING, logger="urllib3")
    fds_before = open_fds()
    c = boc.Client(echo_server.url, model="m", timeout=10, **options)
    start = threading.Barrier(THREADS)

    def worker(n):
        start.wait()
        wrong = []
        for i in range(calls):
            kind = KINDS[(n + i) % len(KINDS)]
            token = "t%d-%d" % (n, i)
            try:
                ok = one_call(c, kind, token)
            except boc.OpenAICompatError as exc:
                ok = exc
            if ok is not True:
                wrong.append((kind, token, ok))
        return wrong

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(THREADS) as pool:
            wrong = [w for ws in pool.map(worker, range(THREADS)) for w in ws]
        c.close()
        gc.collect()  # an exception's traceback may hold a response in a cycle
        echo_server.wait_idle()  # the server's side of each connection is in this process too
    fds_after = open_fds()

    assert wrong == [], wrong[:5]
    assert len(echo_server.requests) == THREADS * calls
    full = [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage().lower()]
    assert full == [], "%d x %s" % (len(full), full[:1])
    pooled = [str(w.message) for w in caught if "pool" in str(w.message).lower() or w.category is ResourceWarning]
    assert pooled == [], pooled[:3]
    # A stream left early closes its connection (issue 10), so each one may cost
    # a new connection; everything else reuses the pool.
    early = sum(1 for n in range(THREADS) for i in range(calls) if KINDS[(n + i) % len(KINDS)] == "early")
    assert echo_server.accepts <= 40 + early, "%d connections for %d calls (%d left early)" % (
        echo_server.accepts, THREADS * calls, early)
    assert fds_after <= fds_before + 3, (fds_before, fds_after)
