"""Batches (issue 20): Client.batch() and the `batch` command.

In input order while answers come out of order; read lazily; every item once
in the output file, resumable after a crash or Ctrl-C; errors that fail every
item stop the batch, the others are recorded for their item; a 429 pauses the
whole pool. `responses` where a fake answer is enough; tests/server.py where
sockets, timing or hang-ups matter; real subprocesses for SIGKILL and SIGINT.
"""
import io
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

import bor_openai_compat as boc
import server as sv
from helpers import BASE, CANARY_KEY, ROOT, URL, asleep, completion, free_port

EMBED_URL = BASE + "/embeddings"


# -- Fakes -------------------------------------------------------------------


def prompt_of(body):
    """What identifies a request: a chat's last message, or the inputs of an embeddings call."""
    if "input" in body:
        inputs = body["input"]
        return "|".join(inputs) if isinstance(inputs, list) else inputs
    messages = body["messages"]
    return messages if isinstance(messages, str) else messages[-1]["content"]


def vectors(inputs):
    inputs = inputs if isinstance(inputs, list) else [inputs]
    return [[float(len(text)), float(i)] for i, text in enumerate(inputs)]


def answer_for(path, body):
    """The echo: a chat answer "echo: <last message>", or an embedding [len, index] per input."""
    if path.endswith("/embeddings"):
        data = [{"object": "embedding", "index": i, "embedding": v}
                for i, v in enumerate(vectors(body.get("input", "")))]
        return {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": 1}}
    return completion("echo: " + prompt_of(body), model=body.get("model", "?"))


def echo_callback(sent):
    """A `responses` callback that echoes, and keeps each request body in ``sent``."""
    lock = threading.Lock()

    def callback(request):
        body = json.loads(request.body)
        with lock:
            sent.append(body)
        return 200, {}, json.dumps(answer_for(request.url, body))

    return callback


class Fake:
    """tests/server.py answering batches: each chat gets an echo of its last
    message, each embeddings call a vector per input. ``rules`` maps a prompt
    to another script; ``delay(prompt)`` gives seconds to wait before an echo.
    It records each POST's arrival time and prompt, the order answers went
    out, and how many held connections the client hung up on."""

    def __init__(self, server):
        self.server = server
        self.rules = {}
        self.delay = lambda prompt: 0.0
        self.posts = []  # (time.monotonic() at arrival, prompt)
        self.finished = []  # prompts in the order their echoes went out
        self.hung_up = 0
        self.release = threading.Event()
        self.lock = threading.Lock()
        server.script(self.script)

    def script(self, conn, request):
        if request.method == "GET":
            return sv.reply(200, {"object": "list", "data": [{"id": "m"}]})(conn, request)
        body = request.json()
        prompt = prompt_of(body)
        with self.lock:
            self.posts.append((time.monotonic(), prompt))
        rule = self.rules.get(prompt)
        if rule is not None:
            return rule(conn, request)
        return self.echo(conn, request)

    def echo(self, conn, request):
        body = request.json()
        prompt = prompt_of(body)
        seconds = self.delay(prompt)
        if seconds:
            time.sleep(seconds)
        with self.lock:
            self.finished.append(prompt)
        return sv.reply(200, answer_for(request.path, body))(conn, request)

    def hold(self, conn, request):
        """A rule: send nothing until the client hangs up (counted) or the test ends."""
        if sv.wait_closed(conn, 15, self.release):
            with self.lock:
                self.hung_up += 1
        return False

    def once(self, rule):
        """A rule that applies to the first request only; later ones get the echo."""
        used = []

        def script(conn, request):
            if used:
                return self.echo(conn, request)
            used.append(1)
            return rule(conn, request)

        return script

    def prompts(self):
        with self.lock:
            return [prompt for _, prompt in self.posts]

    def wait_posts(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.posts) < count:
            assert time.monotonic() < deadline, "only %d requests came: %s" % (len(self.posts), self.prompts())
            time.sleep(0.005)


@pytest.fixture
def fake(fault_server):
    f = Fake(fault_server)
    yield f
    f.release.set()


@pytest.fixture
def connect(fake):
    """Clients of the fake, closed when the test ends."""
    clients = []

    def make(**kwargs):
        kwargs.setdefault("max_retries", 0)
        client = boc.Client(fake.server.url, model="m", **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def lines_of(path):
    """The records of an output file; every line must be whole JSON ending in a newline."""
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n"), "a half-written line: %r" % data[-80:]
    return [json.loads(line) for line in data.splitlines()]


def by_id(path):
    records = lines_of(path)
    ids = [r["custom_id"] for r in records]
    assert len(ids) == len(set(ids)), "a custom_id twice: %s" % sorted(i for i in ids if ids.count(i) > 1)
    return {r["custom_id"]: r for r in records}


def text_of(record):
    return record["response"]["body"]["choices"][0]["message"]["content"]


def batch_threads():
    return [t for t in threading.enumerate() if t.name.startswith("bor-batch") and t.is_alive()]


def no_batch_threads_within(seconds):
    deadline = time.monotonic() + seconds
    while batch_threads():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# -- Order and the fields of a BatchItem -------------------------------------


def test_results_come_in_input_order_while_answers_finish_out_of_order(fake, connect):
    slow = {"p0": 0.3, "p1": 0.2, "p2": 0.1}
    fake.delay = lambda prompt: slow.get(prompt, 0.0)
    prompts = ["p%d" % i for i in range(8)]
    items = list(connect().batch(prompts, workers=4))
    assert fake.finished != prompts and fake.finished.index("p3") < fake.finished.index("p0")
    assert [item.index for item in items] == list(range(8))
    assert [item.custom_id for item in items] == ["item-%d" % i for i in range(8)]
    assert [item.result.text for item in items] == ["echo: " + p for p in prompts]
    assert all(isinstance(item.result, boc.ChatResult) and item.error is None for item in items)
    assert all(item.attempts == 1 for item in items)
    assert items[0].elapsed >= 0.3 and items[7].elapsed < 0.3


def test_given_custom_ids_are_kept_and_defaults_follow_the_position(client, mocked):
    sent = []
    mocked.add_callback("POST", URL, callback=echo_callback(sent))
    items = [
        "a",
        {"custom_id": "mine", "method": "POST", "url": "/v1/chat/completions",
         "body": {"messages": [{"role": "user", "content": "b"}]}},
        {"custom_id": "also-mine", "prompt": "c"},
        [{"role": "user", "content": "d"}],
    ]
    got = list(client.batch(items, workers=2))
    assert [(i.index, i.custom_id) for i in got] == [(0, "item-0"), (1, "mine"), (2, "also-mine"), (3, "item-3")]
    assert repr(got[1]) == "BatchItem(1, 'mine', ok)"


def test_an_error_and_its_attempts(make_client, fault_server):
    bad = sv.reply(400, {"error": {"message": "temperature must be at most 2", "type": "invalid_request_error"}})
    down = sv.reply(503, {"error": {"message": "overloaded"}})

    def script(conn, request):
        prompt = prompt_of(request.json())
        return {"bad": bad, "down": down}.get(prompt, sv.reply(200, completion("ok")))(conn, request)

    fault_server.script(script)
    with make_client(max_retries=2) as client:
        ok, refused, failed = list(client.batch(["fine", "bad", "down"], workers=1))
    assert ok.error is None and ok.result.text == "ok" and ok.attempts == 1
    assert isinstance(refused.error, boc.BadRequest) and refused.result is None and refused.attempts == 1
    assert "temperature must be at most 2" in str(refused.error)
    assert isinstance(failed.error, boc.ServerError) and failed.result is None and failed.attempts == 3
    assert repr(refused) == "BatchItem(1, 'item-1', error=BadRequest)"


def test_a_worker_freed_while_the_caller_was_busy_is_used_at_once(fake, connect):
    """workers=2: p1 finishes while the caller still handles p0, and p2 is held.
    When the caller asks for the next item, p1 is taken off and its slot must
    take p3 before the batch waits; not stay empty until p2 ends."""
    seen = {}

    def held_until_p3(conn, request):
        deadline = time.monotonic() + 1.5
        while "p3" not in fake.prompts() and time.monotonic() < deadline:
            time.sleep(0.005)
        seen["p3 while p2 was held"] = "p3" in fake.prompts()
        return fake.echo(conn, request)

    has_p0 = threading.Event()

    def after_the_caller_has_p0(conn, request):
        has_p0.wait(5)
        return fake.echo(conn, request)

    fake.rules["p1"] = after_the_caller_has_p0
    fake.rules["p2"] = held_until_p3
    fake.delay = lambda prompt: 0.2 if prompt == "p0" else 0.0  # p2 starts in p0's slot
    for item in connect().batch(["p%d" % i for i in range(6)], workers=2):
        assert item.error is None
        if item.index == 0:
            has_p0.set()
            time.sleep(0.5)  # the caller is busy; p1 finishes meanwhile
    assert seen == {"p3 while p2 was held": True}


# -- Laziness ----------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_the_input_is_read_at_most_the_bound_ahead_of_what_was_yielded(fake, connect, workers):
    bound = workers * 4 + workers
    fake.delay = lambda prompt: 0.2 if prompt == "p0" else 0.0  # the first holds everything back
    yielded, ahead = [0], []

    def guarded(count):
        for i in range(count):
            ahead.append(i + 1 - yielded[0])
            if i + 1 - yielded[0] > bound:
                raise AssertionError("item %d read with only %d yielded" % (i, yielded[0]))
            yield "p%d" % i

    for item in connect().batch(guarded(60), workers=workers):
        assert item.error is None
        yielded[0] += 1
    assert yielded[0] == 60
    assert max(ahead) >= workers  # it did read ahead: the workers were kept busy


def test_ten_million_items_are_not_read_whole(client, mocked):
    sent = []
    mocked.add_callback("POST", URL, callback=echo_callback(sent))
    read = [0]

    def huge():
        for i in range(10_000_000):
            read[0] += 1
            yield "p%d" % i

    got = []
    started = time.monotonic()
    for item in client.batch(huge(), workers=4):
        got.append(item.result.text)
        if len(got) == 5:
            break
    assert got == ["echo: p%d" % i for i in range(5)]
    assert read[0] <= 5 + 4 * 4 + 4
    assert len(sent) <= read[0]
    assert no_batch_threads_within(1.0), batch_threads()
    assert time.monotonic() - started < 5


def test_leaving_the_loop_early_stops_the_batch_cleanly(fake, connect, tmp_path):
    out = tmp_path / "out.jsonl"
    fake.delay = lambda prompt: 0.05
    read = [0]

    def endless():
        for i in itertools.count():
            read[0] += 1
            yield "p%d" % i

    batch = connect().batch(endless(), workers=4, output=out)
    first = [next(batch) for _ in range(3)]
    batch.close()
    assert [item.custom_id for item in first] == ["item-0", "item-1", "item-2"]
    assert no_batch_threads_within(1.0), batch_threads()
    was_read = read[0]
    assert was_read <= 3 + 4 * 4 + 4
    time.sleep(0.2)
    assert read[0] == was_read  # nothing is read, so nothing starts, after the caller left
    assert len(fake.posts) <= was_read
    done = by_id(out)
    assert {"item-0", "item-1", "item-2"} <= set(done)
    assert set(done) <= {"item-%d" % i for i in range(was_read)}
    assert all(r["error"] is None for r in done.values())  # nothing cancelled was recorded as failed


# -- Input kinds -------------------------------------------------------------


def test_every_kind_of_item_and_who_decides_the_model(client, mocked):
    sent = []
    mocked.add_callback("POST", URL, callback=echo_callback(sent))
    mocked.add_callback("POST", EMBED_URL, callback=echo_callback(sent))
    items = [
        "a prompt",
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a list"}],
        {"custom_id": "chat", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "body-model", "messages": [{"role": "user", "content": "batch chat"}],
                  "temperature": 0.1}},
        {"custom_id": "emb", "method": "POST", "url": "/v1/embeddings", "body": {"input": ["x", "yy"]}},
        {"custom_id": "emb-no-v1", "method": "POST", "url": "/embeddings", "body": {"input": "zzz"}},
        {"messages": [{"role": "user", "content": "a messages dict"}], "max_tokens": 3},
        {"prompt": "a prompt dict", "custom_id": "p"},
    ]
    got = list(client.batch(items, workers=1, model="arg-model", temperature=0.5, max_tokens=7))
    assert [i.error for i in got] == [None] * 7
    sent_by = {prompt_of(body): body for body in sent}
    assert sent_by["a prompt"]["messages"] == [{"role": "user", "content": "a prompt"}]
    assert sent_by["a prompt"]["model"] == "arg-model"
    assert sent_by["a prompt"]["temperature"] == 0.5 and sent_by["a prompt"]["max_tokens"] == 7
    assert sent_by["a list"]["messages"][0] == {"role": "system", "content": "be brief"}
    chat = sent_by["batch chat"]
    assert chat["model"] == "body-model"  # the body wins over model=
    assert chat["temperature"] == 0.1 and chat["max_tokens"] == 7  # params fill in only what it lacks
    assert "stream" not in chat
    assert sent_by["x|yy"]["model"] == "arg-model" and sent_by["x|yy"]["input"] == ["x", "yy"]
    assert sent_by["a messages dict"]["max_tokens"] == 3
    assert sent_by["a prompt dict"]["messages"] == [{"role": "user", "content": "a prompt dict"}]
    assert "custom_id" not in sent_by["a prompt dict"] and "prompt" not in sent_by["a prompt dict"]
    assert got[2].result.text == "echo: batch chat"
    assert got[3].result == [[1.0, 0.0], [2.0, 1.0]]
    assert got[4].result == [[3.0, 0.0]]
    assert isinstance(got[6].result, boc.ChatResult) and got[6].custom_id == "p"


def test_without_model_the_client_default_is_sent(client, mocked):
    sent = []
    mocked.add_callback("POST", URL, callback=echo_callback(sent))
    mocked.add_callback("POST", EMBED_URL, callback=echo_callback(sent))
    list(client.batch(["hi", {"custom_id": "e", "url": "/v1/embeddings", "body": {"input": "v"}}]))
    assert [body["model"] for body in sent] == ["test-model", "test-model"]


def chat_item(**fields):
    item = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": "hi"}]}}
    item.update(fields)
    return item


@pytest.mark.parametrize(
    "item, words",
    [
        (chat_item(url="/v1/completions"), "/v1/completions"),
        (chat_item(url="/v1/responses"), "/v1/responses"),
        (chat_item(method="GET"), "GET"),
        ({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions"}, "no body"),
        (chat_item(body=["not", "an", "object"]), "no body"),
        (chat_item(body={"messages": [{"role": "user", "content": "hi"}], "stream": True}), "stream"),
        (chat_item(body={"model": "m"}), "no messages"),
        (42, "not a prompt"),
        ({"text": "neither messages nor prompt"}, "not a prompt"),
        ([{"content": "a message without a role"}], "role"),
        (["not a message dict"], "message"),
        ({"custom_id": "e", "url": "/v1/embeddings", "body": {"model": "m"}}, "input"),
        ({"custom_id": "e", "url": "/v1/embeddings", "body": {"input": "x", "dimensions": float("nan")}}, "NaN"),
    ],
    ids=["completions-url", "responses-url", "GET", "no-body", "body-not-object", "stream-true",
         "no-messages", "a-number", "unknown-dict", "message-without-role", "message-not-a-dict",
         "embeddings-without-input", "embeddings-NaN"],
)
def test_a_bad_item_is_a_configuration_error_and_nothing_is_sent(client, mocked, item, words):
    mocked.add_callback("POST", URL, callback=echo_callback([]))
    mocked.add_callback("POST", EMBED_URL, callback=echo_callback([]))
    with pytest.raises(boc.ConfigurationError) as caught:
        list(client.batch([item]))
    assert words in str(caught.value)
    assert len(mocked.calls) == 0


def test_workers_must_be_at_least_one(client):
    with pytest.raises(boc.ConfigurationError, match="workers"):
        client.batch(["hi"], workers=0)


def test_an_output_file_that_cannot_be_created_is_a_configuration_error(client, mocked, tmp_path):
    mocked.add_callback("POST", URL, callback=echo_callback([]))
    out = tmp_path / "no such folder" / "out.jsonl"
    with pytest.raises(boc.ConfigurationError, match="no such folder"):
        list(client.batch(["hi"], output=out))
    assert len(mocked.calls) == 0


@pytest.mark.parametrize("option", ["stream", "schema", "images"])
def test_options_a_batch_cannot_do_are_refused(client, option):
    with pytest.raises(boc.ConfigurationError, match=option):
        client.batch(["hi"], **{option: True})


# -- Duplicates --------------------------------------------------------------


@pytest.mark.parametrize(
    "items, twice",
    [
        ([{"custom_id": "a", "prompt": "1"}, {"custom_id": "b", "prompt": "2"}, {"custom_id": "a", "prompt": "3"}],
         "a"),
        (["first", {"custom_id": "item-0", "prompt": "given the default of another"}], "item-0"),
    ],
    ids=["given-twice", "given-equals-a-default"],
)
def test_a_duplicate_in_a_list_is_refused_before_anything_is_sent(client, mocked, items, twice):
    mocked.add_callback("POST", URL, callback=echo_callback([]))
    with pytest.raises(boc.ConfigurationError) as caught:
        list(client.batch(items, workers=4))
    assert repr(twice) in str(caught.value)
    assert len(mocked.calls) == 0


def test_a_duplicate_in_a_generator_is_refused_when_read_and_what_came_before_is_saved(fake, connect, tmp_path):
    out = tmp_path / "out.jsonl"

    def items():
        for i in range(3):
            yield {"custom_id": "c%d" % i, "prompt": "p%d" % i}
        yield {"custom_id": "c1", "prompt": "again"}
        yield {"custom_id": "c9", "prompt": "never"}

    with pytest.raises(boc.ConfigurationError) as caught:
        list(connect().batch(items(), workers=4, output=out))
    assert "'c1'" in str(caught.value)
    # Read within the look-ahead (4 x workers items), the duplicate is refused
    # before anything is sent.
    assert fake.prompts() == []


def test_a_duplicate_past_the_look_ahead_lets_the_items_before_it_finish(fake, connect, tmp_path):
    out = tmp_path / "out.jsonl"

    def items():
        for i in range(12):
            yield {"custom_id": "c%d" % i, "prompt": "p%d" % i}
        yield {"custom_id": "c1", "prompt": "again"}

    with pytest.raises(boc.ConfigurationError, match="'c1'"):
        list(connect().batch(items(), workers=1, output=out))
    sent = fake.prompts()
    assert "again" not in sent and sent == ["p%d" % i for i in range(len(sent))] and len(sent) >= 8
    assert {cid: text_of(r) for cid, r in by_id(out).items()} == {"c%d" % i: "echo: p%d" % i for i in range(len(sent))}


def test_a_duplicate_in_the_output_file_is_refused(client, mocked, tmp_path):
    out = tmp_path / "out.jsonl"
    record = {"id": "batch_req_1", "custom_id": "a", "error": None,
              "response": {"status_code": 200, "request_id": None, "body": completion("x")}}
    out.write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n")
    mocked.add_callback("POST", URL, callback=echo_callback([]))
    with pytest.raises(boc.ConfigurationError, match="'a'"):
        list(client.batch([{"custom_id": "b", "prompt": "hi"}], output=out))
    assert len(mocked.calls) == 0


# -- The output file ---------------------------------------------------------

BAD_REQUEST = {"error": {"message": "max_tokens is too large", "type": "invalid_request_error"}}
CONTEXT = {"error": {"message": "This model's maximum context length is 4096 tokens. However, your messages "
                                "resulted in 5000 tokens.", "code": "context_length_exceeded",
                     "type": "invalid_request_error"}}


def test_each_item_is_one_line_in_the_openai_batch_output_format(fake, connect, tmp_path):
    out = tmp_path / "out.jsonl"
    fake.rules.update({
        "bad": sv.reply(400, BAD_REQUEST),
        "boom": sv.reply(500, {"error": {"message": "kaboom"}}),
        "slow": fake.hold,
        "garbage": sv.reply(200, "<html>a proxy's page</html>", ctype="text/html"),
    })
    items = ["ok", "bad", "boom", "slow", "garbage",
             {"custom_id": "emb", "method": "POST", "url": "/v1/embeddings", "body": {"input": ["abc"]}}]
    got = list(connect(timeout=0.3).batch(items, workers=3, output=out))
    assert [type(i.error).__name__ for i in got] == ["NoneType", "BadRequest", "ServerError", "Timeout",
                                                    "InvalidResponse", "NoneType"]
    with open(out, "rb") as f:
        raw = f.read().split(b"\n")
    assert raw[-1] == b"" and len(raw) == 7  # one line each, each ended
    records = by_id(out)
    assert set(records) == {"item-0", "item-1", "item-2", "item-3", "item-4", "emb"}
    for record in records.values():
        assert set(record) == {"id", "custom_id", "response", "error"}
        assert isinstance(record["id"], str) and record["id"]
    assert len({r["id"] for r in records.values()}) == 6
    ok = records["item-0"]
    assert ok["error"] is None and set(ok["response"]) == {"status_code", "request_id", "body"}
    assert ok["response"]["status_code"] == 200 and text_of(ok) == "echo: ok"
    assert records["emb"]["response"]["body"]["data"][0]["embedding"] == [3.0, 0.0]
    for cid, status, body in [("item-1", 400, BAD_REQUEST), ("item-2", 500, {"error": {"message": "kaboom"}})]:
        assert records[cid]["error"] is None  # an HTTP error answer goes in `response`
        assert records[cid]["response"]["status_code"] == status and records[cid]["response"]["body"] == body
    for cid, code in [("item-3", "Timeout"), ("item-4", "InvalidResponse")]:
        assert records[cid]["response"] is None  # no answer: `error`
        assert records[cid]["error"]["code"] == code and records[cid]["error"]["message"]
    assert "proxy's page" in records["item-4"]["error"]["message"]


# -- Resume ------------------------------------------------------------------


def test_a_rerun_sends_nothing_for_done_items_and_reads_them_back(fake, connect, tmp_path):
    out = tmp_path / "out.jsonl"
    fake.rules.update({"bad": sv.reply(400, BAD_REQUEST), "long": sv.reply(400, CONTEXT), "slow": fake.hold,
                       "boom": sv.reply(500, {"error": {"message": "kaboom"}}),
                       "garbage": sv.reply(200, "not json at all", ctype="application/json")})
    items = ["r0", {"custom_id": "r1", "prompt": "r1"}, "bad", "long", "slow", "boom", "garbage",
             {"custom_id": "emb", "method": "POST", "url": "/v1/embeddings", "body": {"input": ["a", "bb"]}}]
    first = list(connect(timeout=0.3).batch(items, workers=4, output=out))
    before = out.read_bytes()
    sent = len(fake.posts)
    again = list(connect(timeout=0.3).batch(items, workers=4, output=out))
    assert len(fake.posts) == sent  # nothing sent again
    assert out.read_bytes() == before
    assert [(i.index, i.custom_id) for i in again] == [(i.index, i.custom_id) for i in first]
    assert [i.attempts for i in again] == [0] * len(items)
    for old, new in zip(first, again):
        if old.error is None:
            assert type(new.result) is type(old.result) and new.error is None
        else:
            assert type(new.error) is type(old.error) and new.result is None
    assert again[0].result.text == "echo: r0" and again[1].result.text == "echo: r1"
    assert again[0].result.raw == first[0].result.raw
    assert again[7].result == first[7].result == [[1.0, 0.0], [2.0, 1.0]]
    assert [type(i.error).__name__ for i in again[2:7]] == ["BadRequest", "ContextLengthExceeded", "Timeout",
                                                           "ServerError", "InvalidResponse"]
    assert "max_tokens is too large" in str(again[2].error)


def test_a_recorded_error_reads_back_as_the_class_it_was(fake, connect, tmp_path):
    """A refusal that only the call's tools explain is ToolsNotSupported when it
    happens; read back from the file by a rerun, it is still that."""
    out = tmp_path / "out.jsonl"
    fake.rules["t"] = sv.reply(400, {"error": {"message": "this model does not support tools",
                                               "type": "invalid_request_error"}})
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
    items = [{"custom_id": "t", "method": "POST", "url": "/v1/chat/completions",
              "body": {"messages": [{"role": "user", "content": "t"}], "tools": tools}}]
    first = list(connect().batch(items, output=out))
    assert type(first[0].error) is boc.ToolsNotSupported
    fake.posts.clear()
    again = list(connect().batch(items, output=out))
    assert fake.posts == []
    assert type(again[0].error) is boc.ToolsNotSupported


def test_a_torn_last_line_is_dropped_and_its_item_redone(fake, connect, tmp_path):
    out = tmp_path / "out.jsonl"
    items = ["p%d" % i for i in range(6)]
    list(connect().batch(items, workers=2, output=out))
    lines = out.read_bytes().splitlines(keepends=True)
    torn = json.loads(lines[-1])["custom_id"]
    out.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # died while writing it
    fake.posts.clear()
    got = list(connect().batch(items, workers=2, output=out))
    assert fake.prompts() == [items[int(torn.split("-")[1])]]
    assert [i.result.text for i in got] == ["echo: " + p for p in items]
    assert set(by_id(out)) == {"item-%d" % i for i in range(6)}


def test_error_records_are_kept_unless_retry_errors(fake, connect, tmp_path, monkeypatch):
    out = tmp_path / "out.jsonl"
    fake.rules.update({"bad": fake.once(sv.reply(400, BAD_REQUEST)), "slow": fake.once(fake.hold)})
    items = ["ok0", "bad", "ok1", "slow", "ok2"]
    list(connect(timeout=0.3).batch(items, workers=2, output=out))
    fake.posts.clear()
    kept = list(connect(timeout=0.3).batch(items, workers=2, output=out))
    assert fake.posts == []
    assert [type(i.error).__name__ for i in kept] == ["NoneType", "BadRequest", "NoneType", "Timeout", "NoneType"]
    good_lines = [line for line in out.read_bytes().splitlines(keepends=True)
                  if json.loads(line)["custom_id"] in ("item-0", "item-2", "item-4")]

    # The rewrite: a complete, synced temporary file swapped in by os.replace.
    synced, swaps = set(), []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.add(os.readlink("/proc/self/fd/%d" % fd))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        with open(src, "rb") as f:
            swaps.append((os.fspath(src), os.fspath(dst), f.read(), os.path.abspath(src) in synced))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)

    # While a failed item is sent again, its old line is no longer in the file.
    seen_twice = []

    def check_then_echo(conn, request):
        cid = {"bad": "item-1", "slow": "item-3"}[prompt_of(request.json())]
        if cid in {json.loads(line)["custom_id"] for line in out.read_bytes().splitlines()}:
            seen_twice.append(cid)
        return fake.echo(conn, request)

    fake.rules.update({"bad": check_then_echo, "slow": check_then_echo})
    fake.posts.clear()
    retried = list(connect(timeout=0.3).batch(items, workers=2, output=out, retry_errors=True))
    assert sorted(fake.prompts()) == ["bad", "slow"]
    assert seen_twice == []
    assert [i.error for i in retried] == [None] * 5 and retried[1].result.text == "echo: bad"
    assert [i.attempts for i in retried] == [0, 1, 0, 1, 0]
    assert len(swaps) == 1
    src, dst, content, was_synced = swaps[0]
    assert dst == os.fspath(out) and os.path.dirname(os.path.abspath(src)) == str(tmp_path)
    assert sorted(content.splitlines(keepends=True)) == sorted(good_lines)  # complete before the swap
    assert was_synced
    assert not os.path.exists(src)
    assert {cid: r["error"] is None and r["response"]["status_code"] for cid, r in by_id(out).items()} == {
        "item-%d" % i: 200 for i in range(5)}


def test_a_corrupt_middle_line_is_refused(client, mocked, tmp_path):
    out = tmp_path / "out.jsonl"
    record = {"id": "batch_req_1", "custom_id": "a", "error": None,
              "response": {"status_code": 200, "request_id": None, "body": completion("x")}}
    data = json.dumps(record) + "\n" + "{this is not" + "\n" + json.dumps(dict(record, custom_id="b")) + "\n"
    out.write_text(data)
    mocked.add_callback("POST", URL, callback=echo_callback([]))
    with pytest.raises(boc.ConfigurationError, match="line 2"):
        list(client.batch(["x", "y"], output=out))
    assert len(mocked.calls) == 0
    assert out.read_text() == data


# -- Errors that stop the batch, errors that are recorded --------------------


def config_item(prompt):
    return {"custom_id": "item-1", "method": "POST", "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": prompt}], "temperature": float("nan")}}


@pytest.mark.parametrize(
    "script, error, words",
    [
        (sv.reply(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                  "code": "invalid_api_key"}}), boc.AuthenticationError, "Incorrect API key"),
        (sv.reply(404, {"error": {"message": "model 'x' not found"}}), boc.UnknownModel, "model 'x' not found"),
        (sv.reply(404, "404 page not found", ctype="text/plain"), boc.EndpointNotFound, "404"),
        (None, boc.ConfigurationError, "NaN"),
    ],
    ids=["401", "unknown-model", "wrong-path", "configuration"],
)
def test_an_error_that_would_fail_every_item_stops_the_batch(fake, connect, tmp_path, script, error, words):
    out = tmp_path / "out.jsonl"
    prompts = ["p%d" % i for i in range(12)]
    items = list(prompts)
    if script is None:
        items[1] = config_item("p1")
    else:
        fake.rules["p1"] = script
    fake.delay = lambda prompt: 0.3  # items 0, 2 and 3 are in flight when item 1 fails
    started = time.monotonic()
    with pytest.raises(error) as caught:
        for _ in connect().batch(items, workers=4, output=out):
            pass
    assert words in str(caught.value)
    sent = set(fake.prompts())
    if script is None:
        # An item's own configuration error is found as it is read, within
        # the look-ahead: before anything is sent.
        assert sent == set()
        assert not out.exists() or by_id(out) == {}
        return
    assert sent <= {"p0", "p1", "p2", "p3"}  # no new item started after it
    assert "p0" in sent
    saved = by_id(out)
    assert "item-1" not in saved  # not recorded: a rerun sends it
    assert {"p" + cid.split("-")[1] for cid in saved} == sent - {"p1"}  # those in flight finished and were saved
    assert all(r["error"] is None and r["response"]["status_code"] == 200 for r in saved.values())
    assert time.monotonic() - started >= 0.3
    assert no_batch_threads_within(1.0)

    fake.rules.clear()
    fake.delay = lambda prompt: 0.0
    fake.posts.clear()
    rerun = list(connect().batch(prompts, workers=4, output=out))
    assert sorted(fake.prompts()) == sorted(set(prompts) - (sent - {"p1"}))
    assert [i.result.text for i in rerun] == ["echo: " + p for p in prompts]
    assert set(by_id(out)) == {"item-%d" % i for i in range(12)}


def test_a_refused_connection_stops_the_batch_and_records_nothing(fake, connect, tmp_path):
    out = tmp_path / "out.jsonl"
    prompts = ["p%d" % i for i in range(6)]
    with boc.Client("http://127.0.0.1:%d/v1" % free_port(), model="m") as client:
        with pytest.raises(boc.ConnectionRefused):
            list(client.batch(prompts, workers=4, output=out))
    assert not out.exists() or lines_of(out) == []
    assert no_batch_threads_within(1.0)
    got = list(connect().batch(prompts, workers=4, output=out))
    assert sorted(fake.prompts()) == prompts
    assert [i.result.text for i in got] == ["echo: " + p for p in prompts]
    assert set(by_id(out)) == {"item-%d" % i for i in range(6)}


@pytest.mark.parametrize(
    "rule, error, attempts, in_response",
    [
        (lambda fake: sv.reply(400, BAD_REQUEST), boc.BadRequest, 1, 400),
        (lambda fake: sv.reply(400, CONTEXT), boc.ContextLengthExceeded, 1, 400),
        (lambda fake: sv.reply(200, "<html>a login page</html>", ctype="text/html"), boc.InvalidResponse, 1, None),
        (lambda fake: sv.reply(500, {"error": {"message": "kaboom"}}), boc.ServerError, 2, 500),
        (lambda fake: sv.reply(429, {"error": {"message": "slow down"}}), boc.RateLimited, 2, 429),
        (lambda fake: fake.hold, boc.Timeout, 1, None),
    ],
    ids=["BadRequest", "ContextLengthExceeded", "InvalidResponse", "ServerError-after-retries",
         "RateLimited-after-retries", "Timeout"],
)
def test_any_other_error_is_recorded_for_its_item_and_the_batch_goes_on(fake, connect, tmp_path, fast_retries,
                                                                        rule, error, attempts, in_response):
    out = tmp_path / "out.jsonl"
    fake.rules["p2"] = rule(fake)
    prompts = ["p%d" % i for i in range(8)]
    got = list(connect(timeout=0.3, max_retries=1).batch(prompts, workers=2, output=out))
    assert isinstance(got[2].error, error) and got[2].result is None and got[2].attempts == attempts
    assert [i.result.text for i in got if i.index != 2] == ["echo: " + p for p in prompts if p != "p2"]
    records = by_id(out)
    assert set(records) == {"item-%d" % i for i in range(8)}
    record = records["item-2"]
    if in_response:
        assert record["response"]["status_code"] == in_response and record["error"] is None
    else:
        assert record["response"] is None and record["error"]["code"] == error.__name__


# -- A 429 pauses the whole pool ---------------------------------------------


def test_a_429_with_retry_after_pauses_every_worker(fake, connect):
    client = connect(max_retries=2)
    moments = {}

    def limited(conn, request):
        kept = sv.reply(429, {"error": {"message": "rate limited"}}, headers=["Retry-After: 1"])(conn, request)
        moments["429"] = time.monotonic()
        return kept

    def held_until_paused(conn, request):
        # Answered once the client has taken in the 429: the three workers
        # come free while the pause is on.
        deadline = time.monotonic() + 2
        while not client._paused_until and time.monotonic() < deadline:
            time.sleep(0.002)
        moments.setdefault("paused", client._paused_until)
        moments["released"] = time.monotonic()
        return fake.echo(conn, request)

    fake.rules["p0"] = fake.once(limited)
    for prompt in ("p1", "p2", "p3"):
        fake.rules[prompt] = held_until_paused
    prompts = ["p%d" % i for i in range(10)]
    got = list(client.batch(prompts, workers=4))
    assert [i.result.text for i in got] == ["echo: " + p for p in prompts]
    assert got[0].attempts == 2
    assert moments["paused"], "the client never paused after the 429"
    opens = moments["429"] + 1.0  # the fake's Retry-After deadline
    early = [(round(t - moments["429"], 3), p) for t, p in fake.posts if moments["released"] <= t < opens]
    assert early == [], "requests sent during the Retry-After second"
    later = [t for t, p in fake.posts[4:]]
    assert len(later) == 7 and min(later) >= opens


def test_a_429_pauses_the_pool_also_when_its_item_is_not_retried(fake, connect):
    """max_retries=0: the item that got the 429 fails at once, but the others
    still honour its Retry-After instead of running into the same 429."""
    client = connect(max_retries=0)
    moments = {}

    def limited(conn, request):
        kept = sv.reply(429, {"error": {"message": "rate limited"}}, headers=["Retry-After: 1"])(conn, request)
        moments["429"] = time.monotonic()
        return kept

    fake.rules["p0"] = limited
    fake.delay = lambda prompt: 0.1 if prompt in ("p1", "p2", "p3") else 0.0
    prompts = ["p%d" % i for i in range(8)]
    got = list(client.batch(prompts, workers=4))
    assert isinstance(got[0].error, boc.RateLimited)
    assert [i.error for i in got[1:]] == [None] * 7
    # Requests that left before the client read the 429 (p1-p3 were in flight)
    # arrive within a few ms of it: counted from 50 ms on.
    early = [(round(t - moments["429"], 3), p) for t, p in fake.posts
             if moments["429"] + 0.05 < t < moments["429"] + 1.0]
    assert early == [], "requests sent during the Retry-After second"


# -- Ctrl-C ------------------------------------------------------------------


def ctrl_c_fixture(fake, count=8):
    """p0 answers at once; the others are held until the client hangs up."""
    for i in range(1, count):
        fake.rules["p%d" % i] = fake.hold
    return ["p%d" % i for i in range(count)]


def wait_hung_up(fake, count, seconds):
    deadline = time.monotonic() + seconds
    while fake.hung_up < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return fake.hung_up


def check_rerun(fake, connect, prompts, out, done):
    fake.rules.clear()
    fake.posts.clear()
    got = list(connect().batch(prompts, workers=4, output=out))
    assert sorted(fake.prompts()) == sorted(set(prompts) - done)
    assert [i.result.text for i in got] == ["echo: " + p for p in prompts]
    assert set(by_id(out)) == {"item-%d" % i for i in range(len(prompts))}


def test_ctrl_c_in_the_loop_cancels_the_items_in_flight(fake, connect, tmp_path):
    out = tmp_path / "out.jsonl"
    prompts = ctrl_c_fixture(fake)
    got = []
    with pytest.raises(KeyboardInterrupt):
        for item in connect().batch(prompts, workers=4, output=out):
            got.append(item)
            fake.wait_posts(4)  # p0, and at least three held
            time.sleep(0.05)
            interrupted = time.monotonic()
            raise KeyboardInterrupt
    assert [i.custom_id for i in got] == ["item-0"]
    assert no_batch_threads_within(1.0 - (time.monotonic() - interrupted)), batch_threads()
    held = len(fake.posts) - 1
    assert held in (3, 4)
    assert wait_hung_up(fake, held, 1.0 - (time.monotonic() - interrupted)) == held
    time.sleep(0.1)
    assert len(fake.posts) == held + 1  # no new item started
    assert set(by_id(out)) == {"item-0"}
    check_rerun(fake, connect, prompts, out, {"p0"})


def test_ctrl_c_while_waiting_inside_the_batch(fake, connect, tmp_path):
    """A real SIGINT, landing while the main thread waits for the workers."""
    out = tmp_path / "out.jsonl"
    prompts = ctrl_c_fixture(fake)
    moments = {}

    def press_ctrl_c():
        fake.wait_posts(4)
        time.sleep(0.1)
        moments["sent"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    got = []
    try:
        presser = threading.Thread(target=press_ctrl_c, daemon=True)
        presser.start()
        with pytest.raises(KeyboardInterrupt):
            for item in connect().batch(prompts, workers=4, output=out):
                got.append(item)
        presser.join(5)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [i.custom_id for i in got] == ["item-0"]
    left = 1.0 - (time.monotonic() - moments["sent"])
    assert no_batch_threads_within(left), batch_threads()
    held = len(fake.posts) - 1
    assert held in (3, 4)
    assert wait_hung_up(fake, held, 1.0 - (time.monotonic() - moments["sent"])) == held
    assert set(by_id(out)) == {"item-0"}
    check_rerun(fake, connect, prompts, out, {"p0"})


# -- The command line, in-process -------------------------------------------


def run(capsys, *argv):
    code = boc.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def summary(err):
    lines = [line for line in err.splitlines() if " done, " in line]
    assert len(lines) == 1, err
    return lines[0]


def write_lines(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


MIXED = [
    {"custom_id": "batch-chat", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "m", "messages": [{"role": "user", "content": "one"}]}},
    {"custom_id": "batch-emb", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m", "input": ["two"]}},
    {"messages": [{"role": "user", "content": "three"}]},
    {"prompt": "four", "custom_id": "mine"},
    json.dumps("five"),
    "",
    {"prompt": "seven"},
]


def test_cli_runs_every_kind_of_line(mocked, capsys, tmp_path):
    sent = []
    mocked.add_callback("POST", URL, callback=echo_callback(sent))
    mocked.add_callback("POST", EMBED_URL, callback=echo_callback(sent))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, MIXED)
    code, stdout, err = run(capsys, "batch", str(source), "-o", str(out), "--base-url", BASE, "--model", "m")
    assert code == 0, err
    assert stdout == ""
    assert summary(err).startswith("6/6 done, 0 failed")
    records = by_id(out)
    assert set(records) == {"batch-chat", "batch-emb", "line-3", "mine", "line-5", "line-7"}
    assert {cid: text_of(r) for cid, r in records.items() if cid != "batch-emb"} == {
        "batch-chat": "echo: one", "line-3": "echo: three", "mine": "echo: four", "line-5": "echo: five",
        "line-7": "echo: seven"}
    assert records["batch-emb"]["response"]["body"]["data"][0]["embedding"] == [3.0, 0.0]
    assert len(sent) == 6

    code, _, err = run(capsys, "batch", str(source), "-o", str(out), "--base-url", BASE, "--model", "m")
    assert code == 0 and len(sent) == 6  # a rerun sends nothing
    assert "6/6 done, 0 failed (6 from an earlier run)" in summary(err)


@pytest.mark.parametrize(
    "line, words",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "list"),
        ("42", "int"),
        (json.dumps({"custom_id": "g", "method": "GET", "url": "/v1/chat/completions", "body": {}}), "GET"),
        (json.dumps({"custom_id": "c", "url": "/v1/completions", "body": {"prompt": "x"}}), "/v1/completions"),
        (json.dumps({"prompt": "x", "stream": True}), "stream"),
        (json.dumps({"text": "neither"}), "not a prompt"),
        (json.dumps({"messages": [{"content": "no role"}]}), "role"),
        ('{"prompt": "x", "temperature": NaN}', "NaN"),
    ],
    ids=["not-json", "a-list", "a-number", "GET", "completions-url", "stream", "unknown-object",
         "message-without-role", "NaN"],
)
def test_cli_reports_a_bad_line_with_its_number_and_goes_on(mocked, capsys, tmp_path, line, words):
    sent = []
    mocked.add_callback("POST", URL, callback=echo_callback(sent))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(json.dumps("first") + "\n" + line + "\n" + json.dumps("third") + "\n")
    code, _, err = run(capsys, "batch", str(source), "-o", str(out), "--base-url", BASE, "--model", "m")
    assert code == 9, err
    reported = [l for l in err.splitlines() if l.startswith("line 2: ")]
    assert len(reported) == 1 and words in reported[0] and "not sent" in reported[0], err
    assert sorted(prompt_of(body) for body in sent) == ["first", "third"]
    assert set(by_id(out)) == {"line-1", "line-3"}
    assert "1 bad line" in summary(err)


def test_cli_exits_9_when_an_item_failed(mocked, capsys, tmp_path):
    def callback(request):
        body = json.loads(request.body)
        if prompt_of(body) == "bad":
            return 400, {}, json.dumps(BAD_REQUEST)
        return 200, {}, json.dumps(answer_for(request.url, body))

    mocked.add_callback("POST", URL, callback=callback)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, [json.dumps("ok"), json.dumps("bad"), json.dumps("ok too")])
    code, _, err = run(capsys, "batch", str(source), "-o", str(out), "--base-url", BASE, "--model", "m")
    assert code == 9
    assert summary(err).startswith("3/3 done, 1 failed")
    assert by_id(out)["line-2"]["response"]["status_code"] == 400


def test_cli_stopped_by_a_refused_connection_exits_3_with_the_summary(capsys, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, [json.dumps("a"), json.dumps("b")])
    url = "http://127.0.0.1:%d/v1" % free_port()
    code, stdout, err = run(capsys, "batch", str(source), "-o", str(out), "--base-url", url, "--model", "m")
    assert code == 3
    assert stdout == ""
    assert summary(err).startswith("0/2 done")
    assert "error: " in err and "refused" in err.lower()
    assert not out.exists() or out.read_bytes() == b""


def test_cli_stopped_by_a_bad_key_exits_5(mocked, capsys, tmp_path):
    mocked.post(URL, status=401, json={"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, [json.dumps("a"), json.dumps("b")])
    code, _, err = run(capsys, "batch", str(source), "-o", str(out), "--base-url", BASE, "--model", "m")
    assert code == 5 and "Incorrect API key" in err
    summary(err)


def test_cli_output_in_a_missing_folder_is_one_line_and_status_2(mocked, capsys, tmp_path):
    mocked.add_callback("POST", URL, callback=echo_callback([]))
    source = tmp_path / "in.jsonl"
    write_lines(source, [json.dumps("a")])
    out = tmp_path / "no such folder" / "out.jsonl"
    code, _, err = run(capsys, "batch", str(source), "-o", str(out), "--base-url", BASE, "--model", "m")
    assert code == 2 and "error: " in err and "no such folder" in err
    assert len(mocked.calls) == 0


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_cli_shows_progress_on_a_terminal(mocked, tmp_path, monkeypatch, capsys):
    mocked.add_callback("POST", URL, callback=echo_callback([]))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, [json.dumps("a"), json.dumps("b"), json.dumps("c")])
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    code = boc.main(["batch", str(source), "-o", str(out), "--base-url", BASE, "--model", "m"])
    shown = screen.getvalue()
    assert code == 0
    assert "\r\x1b[K1/3 done, 0 failed" in shown
    assert shown.endswith("\n") and shown.rsplit("\r\x1b[K", 1)[1].startswith("3/3 done, 0 failed")


def test_cli_reads_stdin(mocked, capsys, tmp_path, monkeypatch):
    sent = []
    mocked.add_callback("POST", URL, callback=echo_callback(sent))
    data = (json.dumps({"prompt": "from stdin", "custom_id": "s"}) + "\n" + json.dumps("two") + "\n").encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, "batch", "-", "-o", str(out), "--base-url", BASE, "--model", "m")
    assert code == 0, err
    assert summary(err).startswith("2 done, 0 failed")
    assert {cid: text_of(r) for cid, r in by_id(out).items()} == {"s": "echo: from stdin", "line-2": "echo: two"}


def test_cli_refuses_a_custom_id_twice_before_sending_anything(mocked, capsys, tmp_path):
    mocked.add_callback("POST", URL, callback=echo_callback([]))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, [{"prompt": "a", "custom_id": "x"}, {"prompt": "b"}, {"prompt": "c", "custom_id": "x"}])
    code, _, err = run(capsys, "batch", str(source), "-o", str(out), "--base-url", BASE, "--model", "m")
    assert code == 2
    assert "line 3" in err and "'x'" in err
    assert len(mocked.calls) == 0
    assert not out.exists() or out.read_bytes() == b""


def test_cli_retry_errors(mocked, capsys, tmp_path):
    failing = [True]

    def callback(request):
        body = json.loads(request.body)
        if prompt_of(body) == "flaky" and failing[0]:
            return 400, {}, json.dumps(BAD_REQUEST)
        return 200, {}, json.dumps(answer_for(request.url, body))

    mocked.add_callback("POST", URL, callback=callback)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, [json.dumps("ok"), json.dumps("flaky")])
    argv = ["batch", str(source), "-o", str(out), "--base-url", BASE, "--model", "m"]
    assert run(capsys, *argv)[0] == 9
    failing[0] = False
    assert run(capsys, *argv)[0] == 9 and len(mocked.calls) == 2  # kept as an error
    code, _, err = run(capsys, *(argv + ["--retry-errors"]))
    assert code == 0, err
    assert len(mocked.calls) == 3
    assert text_of(by_id(out)["line-2"]) == "echo: flaky"


# -- The command line as a program: SIGKILL and SIGINT -----------------------


def default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args):
    environ = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "bor_openai_compat", "batch"] + list(args), env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)


def complete_lines(path):
    """The records of the whole lines of ``path`` (a torn last one left out), and whether one was torn."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], False
    whole = data.rfind(b"\n") + 1
    return [json.loads(line) for line in data[:whole].splitlines()], whole < len(data)


def crash_input(path, count):
    """Lines of every kind; returns custom_id -> the prompt it carries."""
    expected, lines = {}, []
    for i in range(count):
        prompt = "prompt number %d" % i
        kind = i % 4
        if kind == 0:
            lines.append({"custom_id": "c%d" % i, "method": "POST", "url": "/v1/chat/completions",
                          "body": {"messages": [{"role": "user", "content": prompt}]}})
            expected["c%d" % i] = prompt
        elif kind == 1:
            lines.append({"prompt": prompt, "custom_id": "p%d" % i})
            expected["p%d" % i] = prompt
        elif kind == 2:
            lines.append({"messages": [{"role": "user", "content": prompt}]})
            expected["line-%d" % (i + 1)] = prompt
        else:
            lines.append(json.dumps(prompt))
            expected["line-%d" % (i + 1)] = prompt
    write_lines(path, lines)
    return expected


def test_sigkill_at_random_moments_then_reruns_do_every_item_exactly_once(fake, tmp_path):
    rng = random.Random(2020)
    fake.delay = lambda prompt: random.Random(prompt).uniform(0, 0.008)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    expected = crash_input(source, 300)
    argv = [str(source), "-o", str(out), "--workers", "4", "--base-url", fake.server.url, "--model", "m"]
    kills = 0
    for _ in range(rng.randint(3, 5)):
        before, _ = complete_lines(out)
        done_before = {r["custom_id"] for r in before}
        fake.posts.clear()
        proc = start_cli(*argv)
        target = len(before) + rng.randint(3, 40)
        deadline = time.monotonic() + 15
        while proc.poll() is None and len(complete_lines(out)[0]) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.01))
        if proc.poll() is not None:
            break
        proc.kill()
        proc.communicate(timeout=10)
        kills += 1
        records, _ = complete_lines(out)
        ids = [r["custom_id"] for r in records]
        assert len(ids) == len(set(ids)), "a custom_id twice after a SIGKILL"
        resent = {prompt for prompt in fake.prompts() if prompt in {expected[cid] for cid in done_before}}
        assert not resent, "done items sent again: %s" % sorted(resent)[:5]
    assert kills >= 3
    for _ in range(3):
        proc = start_cli(*argv)
        _, err = proc.communicate(timeout=30)
        if proc.returncode == 0:
            break
    assert proc.returncode == 0, err
    records = by_id(out)
    assert set(records) == set(expected)
    for cid, record in records.items():
        assert record["error"] is None and text_of(record) == "echo: " + expected[cid]


def test_sigint_exits_130_with_nothing_half_written_and_a_rerun_completes(fake, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, [json.dumps("q%d" % i) for i in range(40)])
    for i in range(20, 40):
        fake.rules["q%d" % i] = fake.hold
    argv = [str(source), "-o", str(out), "--workers", "4", "--base-url", fake.server.url, "--model", "m"]
    proc = start_cli(*argv)
    deadline = time.monotonic() + 10
    while len(complete_lines(out)[0]) < 20:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    fake.wait_posts(21)  # 20 answered, and held ones
    time.sleep(0.05)
    asleep(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert b"20/40 done" in err  # the summary, always
    assert out.read_bytes().endswith(b"\n")
    assert set(by_id(out)) == {"line-%d" % i for i in range(1, 21)}
    fake.rules.clear()
    fake.posts.clear()
    proc = start_cli(*argv)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert sorted(fake.prompts()) == sorted("q%d" % i for i in range(20, 40))
    assert {cid: text_of(r) for cid, r in by_id(out).items()} == {
        "line-%d" % (i + 1): "echo: q%d" % i for i in range(40)}


# -- Review findings: hostile items and files ----------------------------------


@pytest.mark.parametrize("item, words", [
    ({"custom_id": 5, "prompt": "five"}, "custom_id is a non-empty string"),
    ({"custom_id": "", "prompt": "empty"}, "custom_id is a non-empty string"),
    ({"custom_id": "x", "url": ["/v1/chat/completions"], "body": {}}, "a batch sends POST"),
    ({"prompt": "z", "think_tags": "maybe"}, "think_tags must be"),
], ids=["int-custom-id", "empty-custom-id", "url-a-list", "think-tags"])
def test_an_item_that_cannot_be_sent_is_refused_before_anything_is_sent(fake, connect, item, words):
    with pytest.raises(boc.ConfigurationError, match=words):
        list(connect().batch(["a", item, "b"]))
    assert fake.prompts() == []


def test_tools_that_are_no_list_go_to_the_server_as_they_are(fake, connect):
    # The client does not judge a payload value it does not use; the server does.
    [item] = list(connect().batch([{"prompt": "z", "tools": 5}]))
    assert item.error is None and fake.prompts() == ["z"]


def test_the_command_line_refuses_a_line_with_a_number_for_custom_id(fake, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text('{"custom_id": 5, "prompt": "five"}\n"six"\n')
    code = boc.main(["batch", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", fake.server.url,
                     "--model", "m"])
    err = capsys.readouterr().err
    assert code == 9 and "line 1: " in err and "custom_id is a non-empty string" in err
    assert fake.prompts() == ["six"]


@pytest.mark.parametrize("line", [
    '{"custom_id": "a", "response": {"status_code": "500", "body": null}, "error": null}',
    '{"custom_id": "a", "response": null, "error": "boom"}',
    '{"custom_id": "a", "response": {"status_code": 200, "body": {}}, "error": {"code": "x"}}',
], ids=["status-a-string", "error-a-string", "both"])
def test_an_output_line_of_another_shape_is_refused(fake, connect, tmp_path, line):
    out = tmp_path / "out.jsonl"
    out.write_text(line + "\n")
    with pytest.raises(boc.ConfigurationError, match="line 1 of .* is not a line of a batch output"):
        list(connect().batch(["a"], output=out))
    assert out.read_text() == line + "\n" and fake.prompts() == []


def test_an_output_that_cannot_be_written_stops_the_batch_with_our_error(fake, connect, tmp_path, monkeypatch):
    real_fsync = os.fsync

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(boc.os, "fsync", full)
    with pytest.raises(boc.ConfigurationError, match="cannot write the output file .*No space left"):
        list(connect().batch(["a", "b"], output=tmp_path / "out.jsonl"))
    monkeypatch.setattr(boc.os, "fsync", real_fsync)


def test_an_error_that_echoes_the_key_is_recorded_without_it(tmp_path, mocked):
    # A server that quotes the Authorization header in its 400: the output
    # file keeps the answer, not the key.

    def refuse(request):
        return 400, {}, json.dumps({"error": {"message": "bad request from " + request.headers["Authorization"]}})

    mocked.add_callback("POST", URL, callback=refuse)
    out = tmp_path / "out.jsonl"
    [item] = list(boc.Client(BASE, api_key=CANARY_KEY, model="m", max_retries=0).batch(["a"], output=out))
    assert isinstance(item.error, boc.BadRequest)
    text = out.read_text()
    assert CANARY_KEY not in text and "bad request from Bearer ***" in text
