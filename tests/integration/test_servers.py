"""The client against real servers: llama.cpp's llama-server and the LiteLLM proxy."""
import signal
import time

import pytest

import bor_openai_compat as boc
from helpers import free_port

SERVED = {"llama": ["tiny-chat", "tiny-code"], "litellm": ["mock-gpt", "mock-llama"]}


@pytest.fixture(params=["llama", "litellm"])
def server(request):
    name = request.param
    real = request.getfixturevalue("llama_server" if name == "llama" else "litellm_server")
    real.kind = name
    real.model = SERVED[name][0]
    return real


@pytest.fixture
def client(server):
    with boc.Client(server.url, api_key=server.key, model=server.model, max_retries=0) as c:
        yield c


def test_chat_returns_text_finish_reason_and_usage(client):
    result = client.chat("Say something.", max_tokens=16)
    assert result.text
    assert result.finish_reason in ("stop", "length")
    assert result.usage["total_tokens"] > 0
    assert result.model


def test_stream_deltas_join_to_the_result(client):
    with client.stream("Say something.", max_tokens=24, stream_options={"include_usage": True}) as stream:
        texts = [d.text for d in stream if d.text]
    assert len(texts) > 2
    assert "".join(texts) == stream.result.text
    assert stream.result.finish_reason in ("stop", "length")
    assert stream.result.usage["completion_tokens"] > 0


def test_models_lists_what_is_served(client, server):
    assert sorted(client.models()) == sorted(SERVED[server.kind])


def test_unknown_model(client, server):
    with pytest.raises(boc.UnknownModel) as info:
        client.chat("Hi", model=server.model + "-typo", max_tokens=4)
    error = info.value
    assert sorted(error.available) == sorted(SERVED[server.kind])
    assert error.suggestion == server.model
    assert "Did you mean %r?" % server.model in str(error)
    assert error.status_code == 400


def test_wrong_path_says_how_to_fix_the_base_url(server):
    base = server.url.rsplit("/v1", 1)[0] + "/api"
    client = boc.Client(base, api_key=server.key, model=server.model, max_retries=0)
    with pytest.raises(boc.EndpointNotFound) as info:
        client.chat("Hi", max_tokens=4)
    assert "/api/chat/completions does not exist" in str(info.value)
    assert "base URL" in str(info.value)


def test_refused_port_fails_at_once():
    client = boc.Client("http://127.0.0.1:%d/v1" % free_port(), model="m")
    start = time.monotonic()
    with pytest.raises(boc.ConnectionRefused, match="isn't running"):
        client.chat("Hi")
    assert time.monotonic() - start < 1


# -- llama-server only -------------------------------------------------------


def test_llama_wrong_key(llama_server):
    client = boc.Client(llama_server.url, api_key="sk-wrong", model="tiny-chat", max_retries=0)
    with pytest.raises(boc.AuthenticationError, match="rejected the API key.*Invalid API Key"):
        client.chat("Hi", max_tokens=4)


def test_llama_missing_key(llama_server):
    client = boc.Client(llama_server.url, model="tiny-chat", max_retries=0)
    with pytest.raises(boc.AuthenticationError, match="wants an API key"):
        client.chat("Hi", max_tokens=4)


def test_llama_image_to_a_text_model(llama_server):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    client = boc.Client(llama_server.url, api_key=llama_server.key, model="tiny-chat", max_retries=2)
    start = time.monotonic()
    with pytest.raises(boc.VisionNotSupported, match="does not accept images.*image input is not supported"):
        client.chat("What is this?", images=[png], max_tokens=4)
    assert time.monotonic() - start < 5  # a 500, but not retried


def test_llama_deltas_arrive_while_the_server_generates(llama_server):
    client = boc.Client(llama_server.url, api_key=llama_server.key, model="tiny-code")
    start = time.monotonic()
    arrivals = []
    timings = None
    with client.stream("Write a lot.", max_tokens=1500, stream_options={"include_usage": True}) as stream:
        for delta in stream:
            if delta.text:
                arrivals.append(time.monotonic() - start)
            timings = delta.raw.get("timings") or timings
    assert len(arrivals) > 100
    # llama-server reports how long it generated; the deltas reached us over
    # most of that time, not in one lump at the end.
    generating = timings["predicted_ms"] / 1000
    assert arrivals[-1] - arrivals[0] > 0.5 * generating, (arrivals[:3], arrivals[-1], generating)


def test_llama_killed_mid_stream_keeps_the_partial_text(single_llama):
    client = boc.Client(single_llama.url, model="tiny-chat", max_retries=0)
    received = []
    with pytest.raises(boc.StreamInterrupted) as info:
        with client.stream("Write a lot.", max_tokens=3000) as stream:
            for delta in stream:
                received.append(delta.text)
                if len(received) == 3:
                    # Freeze the server at once, then kill it: the stream is cut.
                    single_llama.proc.send_signal(signal.SIGSTOP)
                    single_llama.proc.kill()
    partial = info.value.partial
    assert partial.text == "".join(received)
    assert len(partial.text) >= 2
    assert partial.finish_reason is None


# -- LiteLLM only ------------------------------------------------------------


def test_litellm_wrong_key_without_database(litellm_server):
    client = boc.Client(litellm_server.url, api_key="sk-wrong", model="mock-gpt", max_retries=0)
    with pytest.raises(boc.AuthenticationError) as info:
        client.chat("Hi")
    assert "No connected db." in str(info.value)
    assert "API key" in str(info.value)
    assert "sk-wrong" not in str(info.value)
