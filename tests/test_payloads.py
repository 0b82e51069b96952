"""Building payloads and what the client sends on the wire."""
import json

import pytest

import bor_openai_compat as boc
from helpers import BASE, CANARY_KEY, URL, completion


def test_string_becomes_one_user_message():
    assert boc.build_chat_payload("Hi", model="m") == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
    }


def test_params_pass_through_untouched():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    payload = boc.build_chat_payload(
        "Hi", model="m", stream=True, temperature=0.2, max_tokens=5, tools=tools, top_k=3
    )
    assert payload["stream"] is True
    assert payload["temperature"] == 0.2 and payload["max_tokens"] == 5 and payload["top_k"] == 3
    assert payload["tools"] is tools


def test_images_go_to_the_last_user_message_without_changing_the_input():
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "what is this?"},
    ]
    before = json.dumps(messages)
    payload = boc.build_chat_payload(messages, model="m", images=["https://example.com/a.png"])
    assert json.dumps(messages) == before
    last = payload["messages"][3]["content"]
    assert last == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    assert payload["messages"][1] == {"role": "user", "content": "first"}


def test_images_need_a_user_message():
    with pytest.raises(ValueError, match="user message"):
        boc.build_chat_payload([{"role": "system", "content": "x"}], model="m", images=[b"\x89PNG\r\n\x1a\n"])


@pytest.mark.parametrize("bad", [42, [{"content": "no role"}], ["just a string"]], ids=["int", "no-role", "str-item"])
def test_bad_messages_are_a_type_error(bad):
    with pytest.raises(TypeError, match="message"):
        boc.build_chat_payload(bad, model="m")


def test_chat_sends_json_with_bearer_key_and_user_agent(mocked, client):
    mocked.post(URL, json=completion())
    client.chat("Hi", temperature=0)
    request = mocked.calls[0].request
    assert json.loads(request.body) == {
        "model": "test-model",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0,
    }
    assert request.headers["Authorization"] == "Bearer " + CANARY_KEY
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("bor-openai-compat/")


def test_reserved_options_stay_out_of_the_payload(mocked, client):
    mocked.post(URL, json=completion())
    client.chat("Hi", timeout=3, model="other")
    body = json.loads(mocked.calls[0].request.body)
    assert "timeout" not in body and body["model"] == "other"


def test_no_key_sends_no_authorization(mocked):
    mocked.post(URL, json=completion())
    boc.Client(BASE, model="m").chat("Hi")
    assert "Authorization" not in mocked.calls[0].request.headers


def test_settings_come_from_the_environment(mocked, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", BASE + "/")
    monkeypatch.setenv("OPENAI_API_KEY", " from-env\n")
    monkeypatch.setenv("OPENAI_MODEL", "env-model")
    mocked.post(URL, json=completion())
    client = boc.Client()
    assert client.base_url == BASE and client.model == "env-model"
    client.chat("Hi")
    assert mocked.calls[0].request.headers["Authorization"] == "Bearer from-env"


def test_extra_headers_are_sent(mocked):
    mocked.post(URL, json=completion())
    boc.Client(BASE, model="m", headers={"X-Title": "demo"}).chat("Hi")
    assert mocked.calls[0].request.headers["X-Title"] == "demo"


@pytest.mark.parametrize(
    "given, expected",
    [
        ("http://h:1/v1", "http://h:1/v1"),
        ("http://h:1/v1/", "http://h:1/v1"),
        ("http://h:1/v1/chat/completions", "http://h:1/v1"),
        ("http://h:1/v1/chat/completions/", "http://h:1/v1"),
        ("  https://h/api/v1  ", "https://h/api/v1"),
    ],
)
def test_base_url_is_trimmed(given, expected):
    assert boc.Client(given).base_url == expected


def test_no_base_url_says_how_to_set_one():
    with pytest.raises(boc.ConfigurationError) as info:
        boc.Client()
    message = str(info.value)
    assert "OPENAI_BASE_URL" in message
    for url in ("http://localhost:11434/v1", "http://localhost:1234/v1", "http://localhost:8080/v1", "http://localhost:8000/v1"):
        assert url in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("url", ["localhost:11434/v1", "ftp://h/v1", "ws://h:1/v1"])
def test_other_schemes_are_refused(url):
    with pytest.raises(boc.ConfigurationError, match="http:// or https://"):
        boc.Client(url)


def test_missing_model_is_a_configuration_error(client):
    client.model = None
    with pytest.raises(boc.ConfigurationError, match="OPENAI_MODEL"):
        client.chat("Hi")


def test_key_with_a_line_break_inside_is_refused_without_showing_it():
    with pytest.raises(boc.ConfigurationError) as info:
        boc.Client(BASE, api_key="sk-abc\ndef")
    assert "sk-abc" not in str(info.value)


def test_repr_hides_the_key_and_url_password():
    client = boc.Client("http://user:pw@h:1/v1", api_key=CANARY_KEY, model="m")
    text = repr(client)
    assert CANARY_KEY not in text and "pw" not in text
    assert "api_key=***" in text and "h:1/v1" in text


def test_own_session_is_closed_a_callers_is_not():
    import requests

    mine = requests.Session()
    closed = []
    mine.close = lambda: closed.append("caller")
    with boc.Client(BASE, session=mine):
        pass
    assert closed == []
    client = boc.Client(BASE)
    client.session.close = lambda: closed.append("own")
    client.close()
    assert closed == ["own"]


def test_chat_result_fields_and_str(mocked, client):
    mocked.post(URL, json=completion("Bonjour", usage={"total_tokens": 9}))
    result = client.chat("Hi")
    assert str(result) == "Bonjour" and result.text == "Bonjour"
    assert result.finish_reason == "stop" and result.usage == {"total_tokens": 9}
    assert result.model == "test-model" and result.raw["id"] == "chatcmpl-1"
    assert result.message == {"role": "assistant", "content": "Bonjour"}


def test_models_lists_ids(mocked, client):
    mocked.get(BASE + "/models", json={"object": "list", "data": [{"id": "a"}, {"id": "b", "created": 1}]})
    assert client.models() == ["a", "b"]
