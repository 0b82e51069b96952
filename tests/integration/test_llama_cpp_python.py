"""llama-cpp-python's own server (python -m llama_cpp.server), and its quirks."""
import pytest

import bor_openai_compat as boc


@pytest.fixture
def client(llama_cpp_python_server):
    with boc.Client(llama_cpp_python_server.url, model="tiny-chat", max_retries=2) as c:
        yield c


@pytest.fixture
def requests_sent(client, monkeypatch):
    sent = []
    request = client.session.request

    def counting(*args, **kwargs):
        sent.append(args[1])
        return request(*args, **kwargs)

    monkeypatch.setattr(client.session, "request", counting)
    return sent


def test_chat_and_any_model_name_is_echoed(client):
    result = client.chat("Hello", model="no-such-model", max_tokens=8)
    assert result.text and result.finish_reason == "length" and result.usage["completion_tokens"] == 8
    assert result.model == "no-such-model"  # it serves its one model under any name


def test_stream(client):
    with client.stream("Hello", max_tokens=12) as stream:
        texts = [d.text for d in stream if d.text]
    assert len(texts) > 2 and "".join(texts) == stream.result.text
    assert stream.result.finish_reason == "length"


def test_models_lists_the_file(client, tiny_models):
    assert client.models() == [str(tiny_models / "tiny-chat.gguf")]


def test_malformed_request_is_a_500_but_not_retried(client, requests_sent):
    with pytest.raises(boc.BadRequest, match="validation error") as info:
        client.chat([{"role": "bogus", "content": "Hi"}], max_tokens=4)
    assert info.value.status_code == 500
    assert len(requests_sent) == 1


def test_image_parts_break_a_text_only_chat_template(client, requests_sent):
    # Its Jinja chat template adds the content list to a string: a 500 that
    # names no image, so it is a ServerError (and retried as one).
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    with pytest.raises(boc.ServerError, match="can only concatenate str"):
        client.chat("What is this?", images=[png], max_tokens=4)
    assert len(requests_sent) == 3


def test_wrong_path(llama_cpp_python_server):
    base = llama_cpp_python_server.url.rsplit("/v1", 1)[0]
    with pytest.raises(boc.EndpointNotFound, match="lacks /v1"):
        boc.Client(base, model="m").chat("Hi")
