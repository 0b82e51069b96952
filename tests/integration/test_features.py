"""Issue 14 against real servers: think tags, JSON answers, embeddings, log probabilities.

The tiny models answer gibberish, so a grammar makes them write ``<think>``
tags; their vocabulary is bytes, so the tags arrive one character per token,
cut at every place a stream can cut them.
"""
import re

import jsonschema
import pytest

import bor_openai_compat as boc

THINKING = r'root ::= "<think>" [a-z ]{3,12} "</think>" [a-z]{2,8}'
SCHEMA = {
    "title": "check",
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}


@pytest.fixture
def llama(llama_server):
    with boc.Client(llama_server.url, api_key=llama_server.key, model="tiny-chat", max_retries=0) as c:
        yield c


@pytest.fixture
def lcp(llama_cpp_python_server):
    with boc.Client(llama_cpp_python_server.url, model="tiny-chat", max_retries=0) as c:
        yield c


def check_split(result):
    assert re.fullmatch(r"[a-z]{2,8}", result.text), result.text
    assert re.fullmatch(r"[a-z ]{3,12}", result.reasoning), result.reasoning


# -- Reasoning inside the content ---------------------------------------------


@pytest.mark.parametrize("server", ["llama", "lcp"])
def test_think_tags_split_a_whole_answer(request, server):
    client = request.getfixturevalue(server)
    result = client.chat("Hi", grammar=THINKING, max_tokens=40)
    check_split(result)
    raw = result.raw["choices"][0]["message"]["content"]
    assert raw.startswith("<think>") and "</think>" in raw
    assert client.chat("Hi", grammar=THINKING, max_tokens=40, think_tags=False).text.startswith("<think>")


@pytest.mark.parametrize("server", ["llama", "lcp"])
def test_think_tags_split_a_stream_token_by_token(request, server):
    client = request.getfixturevalue(server)
    with client.stream("Hi", grammar=THINKING, max_tokens=40) as stream:
        deltas = list(stream)
    check_split(stream.result)
    assert "".join(d.text for d in deltas) == stream.result.text
    assert "".join(d.reasoning for d in deltas) == stream.result.reasoning
    assert not any("<" in d.text + d.reasoning or ">" in d.text + d.reasoning for d in deltas)


# -- JSON answers --------------------------------------------------------------


def test_llama_cpp_python_takes_a_schema_down_the_ladder(lcp):
    # llama_cpp/llama_types.py: response_format.type is Literal["text", "json_object"]:
    # json_schema is a 500 validation error, json_object + "schema" a grammar.
    result = lcp.chat("Hi", schema=SCHEMA, max_tokens=48)
    assert result.schema_mode == "json_object"
    jsonschema.validate(result.parsed, SCHEMA)
    # Learned: the next call asks with json_object at once.
    assert lcp._json_modes[lcp.model] == "json_object"
    assert lcp.chat("Hi", schema=SCHEMA, max_tokens=48).schema_mode == "json_object"


def test_llama_cpp_python_enforces_a_json_object_schema(lcp):
    result = lcp.chat("Hi", response_format={"type": "json_object", "schema": SCHEMA}, max_tokens=48)
    jsonschema.validate(result.json(), SCHEMA)


def test_llama_cpp_enforces_the_schema_with_a_plain_tokenizer(llama_plain_server):
    with boc.Client(llama_plain_server.url, model="tiny-plain", max_retries=0) as client:
        result = client.chat("Hi", schema=SCHEMA, max_tokens=48)
        assert result.schema_mode == "json_schema"
        jsonschema.validate(result.parsed, SCHEMA)
        with client.stream("Hi", schema=SCHEMA, max_tokens=48) as stream:
            jsonschema.validate(stream.result.parsed, SCHEMA)
            assert stream.result.schema_mode == "json_schema"


def test_litellm_takes_a_schema_and_answers_prose(litellm_server):
    # A mocked LiteLLM deployment accepts response_format and answers its fixed
    # text: the client asks again once, and says the server ignored the schema.
    with boc.Client(litellm_server.url, api_key=litellm_server.key, model="mock-gpt", max_retries=0) as client:
        with pytest.raises(boc.InvalidJSON, match="not JSON") as info:
            client.chat("Hi", schema=SCHEMA)
    error = info.value
    assert error.attempts == ["Hello from the LiteLLM mock, streamed in pieces."] * 2
    assert error.partial.schema_mode == "json_schema"
    assert any("ignored the schema" in warning for warning in error.partial.warnings)


@pytest.mark.parametrize(
    "response_format",
    [None, {"type": "json_object"}],
    ids=["schema", "json_object"],
)
def test_llama_cpp_cannot_start_the_grammar_after_a_space_prefix(llama, response_format):
    # The grammar begins with the generation prompt "<|im_start|>assistant\n";
    # llama.cpp feeds it that prompt's tokens, and this tokenizer adds a "▁"
    # after <|im_start|>. The grammar refuses it; llama.cpp rethrows the error
    # as a bare std::exception, hence the words of the message.
    if response_format is None:
        # schema=: both response_format rungs are refused so, and the ladder
        # asks with the schema in the prompt, which this random model ignores
        # until max_tokens cuts it: a cut answer is not asked for again.
        with pytest.raises(boc.InvalidJSON, match="cut at max_tokens") as info:
            llama.chat("Hi", max_tokens=32, schema=SCHEMA)
        assert info.value.partial.schema_mode == "prompt" and len(info.value.attempts) == 1
        return
    with pytest.raises(boc.BadRequest) as info:
        llama.chat("Hi", max_tokens=32, response_format=response_format)
    assert info.value.status_code == 400
    assert "Failed to initialize samplers" in info.value.message


# -- Embeddings ----------------------------------------------------------------


def test_llama_cpp_embeddings(llama_embedding_server):
    with boc.Client(llama_embedding_server.url, model="tiny-chat", max_retries=0) as client:
        vectors = client.embed(["hello", "world", "hello"])
        assert len(vectors) == 3 and all(len(v) == 64 for v in vectors)
        assert vectors[0] == vectors[2] != vectors[1]
        assert client.embed(["world", "hello"]) == [vectors[1], vectors[0]]
        assert client.embed("hello", encoding_format="base64")[0] == pytest.approx(vectors[0], abs=1e-6)


def test_llama_cpp_without_embeddings(llama):
    with pytest.raises(boc.EndpointNotFound, match="--embeddings"):
        llama.embed("hello")


def test_llama_cpp_python_without_embeddings(lcp):
    with pytest.raises(boc.EndpointNotFound, match="--embeddings"):
        lcp.embed("hello")


def test_litellm_mocked_embeddings(litellm_embedding_server):
    server = litellm_embedding_server
    with boc.Client(server.url, api_key=server.key, model="mock-embed", max_retries=0) as client:
        assert client.embed("hello") == [[0.25, -0.5, 1.0]]
        # Its mock answers one vector whatever the inputs: said, not hidden.
        with pytest.raises(boc.InvalidResponse, match="without 2 embeddings"):
            client.embed(["hello", "world"])
        with pytest.raises(boc.UnknownModel) as info:
            client.embed("hello", model="mock-embedd")
        assert info.value.suggestion == "mock-embed"


# -- Log probabilities ---------------------------------------------------------


def test_llama_cpp_logprobs(llama):
    result = llama.chat("Hi", logprobs=True, top_logprobs=2, max_tokens=6)
    assert len(result.logprobs) == result.usage["completion_tokens"] == 6
    assert "".join(e["token"] for e in result.logprobs) == result.text
    with llama.stream("Hi", logprobs=True, max_tokens=6) as stream:
        assert "".join(e["token"] for e in stream.result.logprobs) == stream.result.text
    assert llama.chat("Hi", max_tokens=6).logprobs is None


def test_llama_cpp_python_logprobs(lcp):
    result = lcp.chat("Hi", logprobs=True, top_logprobs=2, max_tokens=6)
    assert len(result.logprobs) == 6
    assert "".join(e["token"] for e in result.logprobs) == result.text
    # Its streams carry no logprobs.
    with lcp.stream("Hi", logprobs=True, max_tokens=6) as stream:
        assert stream.result.logprobs is None
