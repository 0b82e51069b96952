"""Batches at scale, against real servers: a LiteLLM proxy spreading one model
name over two llama-servers, and a llama-server with four slots.

Whether a batch was sent once is read on the servers' side too: llama-server's
``/metrics`` (started with ``--metrics``) counts the tokens it generated
(``llamacpp:tokens_predicted_total``, a Prometheus counter), which must add up to the ``completion_tokens`` of the answers the batch got. Timing
is no test here: ``python bench/run.py --batch`` measures workers 1 against 4.
"""
import collections
import json
import re
import time

import pytest
import requests

import bor_openai_compat as boc

ITEMS = 300


def batch_input(prefix, n=ITEMS):
    """Lines of the OpenAI Batch input format, short answers."""
    return [
        {"custom_id": "%s-%03d" % (prefix, i), "method": "POST", "url": "/v1/chat/completions",
         "body": {"messages": [{"role": "user", "content": "Item %d." % i}], "max_tokens": 2 + i % 3}}
        for i in range(n)
    ]


def output_lines(path):
    """The output file's records, each line parsed (a torn line fails here)."""
    with open(path, "rb") as f:
        data = f.read()
    assert not data or data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def assert_each_once(records, ids):
    counts = collections.Counter(record["custom_id"] for record in records)
    assert sorted(counts) == sorted(ids)
    assert max(counts.values()) == 1, [i for i, n in counts.items() if n > 1][:5]
    failed = [r for r in records if r["error"] is not None or r["response"]["status_code"] != 200]
    assert not failed, failed[:2]


def metrics(server):
    """llama-server's Prometheus counters, by name without the llamacpp: prefix."""
    text = requests.get(server.url.rsplit("/v1", 1)[0] + "/metrics", timeout=5).text
    return {name: float(value) for name, value in re.findall(r"^llamacpp:(\w+) (\S+)$", text, re.M)}


def generated(servers):
    """Tokens each server generated so far, once none is busy and the counts
    stand still (a request the proxy forwards after the client left lands late)."""
    last = None
    end = time.monotonic() + 10
    while time.monotonic() < end:
        now = [metrics(s) for s in servers]
        counts = [m["tokens_predicted_total"] for m in now]
        if counts == last and not any(m["requests_processing"] for m in now):
            return counts
        last = counts
        time.sleep(0.3)
    pytest.fail("the llama-servers did not settle: %s" % last, pytrace=False)


def completion_tokens(items):
    return sum(item.result.usage["completion_tokens"] for item in items)


@pytest.fixture
def proxy_client(litellm_two_llamas):
    with boc.Client(litellm_two_llamas.url, api_key=litellm_two_llamas.key, model="tiny", max_retries=0) as c:
        yield c


def test_through_the_proxy_every_item_once_and_both_backends_serve(proxy_client, two_llamas, tmp_path):
    items = batch_input("spread")
    before = generated(two_llamas)
    out = list(proxy_client.batch(items, workers=8, output=tmp_path / "out.jsonl"))
    after = generated(two_llamas)

    assert [item.custom_id for item in out] == [i["custom_id"] for i in items]  # input order
    assert [item.error for item in out if item.error is not None] == []
    assert all(item.result.text and item.attempts == 1 for item in out)
    assert_each_once(output_lines(tmp_path / "out.jsonl"), [i["custom_id"] for i in items])
    served = [a - b for a, b in zip(after, before)]
    assert all(n > 0 for n in served), "one backend served nothing: %s" % served
    assert sum(served) == completion_tokens(out)  # nothing was generated twice, nothing was lost


def test_through_the_proxy_an_interrupted_batch_resumes(proxy_client, two_llamas, tmp_path):
    items = batch_input("resume")
    ids = [i["custom_id"] for i in items]
    path = tmp_path / "out.jsonl"

    first = proxy_client.batch(items, workers=8, output=path)
    for n, item in enumerate(first, 1):
        assert item.error is None
        if n == ITEMS // 2:
            break
    first.close()  # as a dropped loop does; the items in flight are cancelled
    kept = [r["custom_id"] for r in output_lines(path)]
    assert ITEMS // 2 <= len(kept) < ITEMS
    assert_each_once(output_lines(path), kept)
    before = generated(two_llamas)

    again = list(proxy_client.batch(iter(items), workers=8, output=path))  # a generator this time
    after = generated(two_llamas)
    assert [item.custom_id for item in again] == ids
    assert [item.error for item in again if item.error is not None] == []
    assert [item.custom_id for item in again if item.attempts == 0] == [i for i in ids if i in set(kept)]
    resent = [item for item in again if item.attempts > 0]
    assert len(resent) == ITEMS - len(kept)
    assert_each_once(output_lines(path), ids)
    assert sum(after) - sum(before) == completion_tokens(resent)  # only the missing items were sent


@pytest.mark.parametrize("workers", [4, 1], ids=["workers-4", "workers-1"])
def test_parallel_slots_same_batch_at_any_workers(llama_parallel4, workers, tmp_path):
    items = batch_input("np4-w%d" % workers, 200)
    before = generated([llama_parallel4])
    with boc.Client(llama_parallel4.url, model="tiny", max_retries=0) as client:
        out = list(client.batch(items, workers=workers, output=tmp_path / "out.jsonl"))
    after = generated([llama_parallel4])
    assert [item.custom_id for item in out] == [i["custom_id"] for i in items]
    assert [item.error for item in out if item.error is not None] == []
    assert all(item.result.text for item in out)
    assert_each_once(output_lines(tmp_path / "out.jsonl"), [i["custom_id"] for i in items])
    assert after[0] - before[0] == completion_tokens(out)
