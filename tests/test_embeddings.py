"""client.embed(): vectors in input order, base64 decoded, errors mapped."""
import base64
import json
import struct

import pytest

import bor_openai_compat as boc
from helpers import BASE

EMBED_URL = BASE + "/embeddings"


def answer(*vectors, order=None):
    order = order if order is not None else range(len(vectors))
    return {
        "object": "list",
        "model": "test-model",
        "data": [{"object": "embedding", "index": i, "embedding": vectors[i]} for i in order],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


def test_one_string_gives_one_vector(mocked, client):
    mocked.post(EMBED_URL, json=answer([0.5, -1.0]))
    assert client.embed("hello") == [[0.5, -1.0]]
    assert json.loads(mocked.calls[0].request.body) == {"model": "test-model", "input": ["hello"]}


def test_vectors_follow_the_inputs_whatever_order_they_come_in(mocked, client):
    mocked.post(EMBED_URL, json=answer([0.0], [1.0], [2.0], order=[2, 0, 1]))
    assert client.embed(["a", "b", "c"], model="embedder", dimensions=1) == [[0.0], [1.0], [2.0]]
    sent = json.loads(mocked.calls[0].request.body)
    assert sent == {"model": "embedder", "input": ["a", "b", "c"], "dimensions": 1}


def test_base64_vectors_are_decoded(mocked, client):
    values = [0.25, -3.5, 1e-3]
    encoded = base64.b64encode(struct.pack("<3f", *values)).decode()
    mocked.post(EMBED_URL, json=answer(encoded))
    vector = client.embed("x", encoding_format="base64")[0]
    assert vector == pytest.approx(values)
    assert json.loads(mocked.calls[0].request.body)["encoding_format"] == "base64"


def test_no_inputs_no_request(mocked, client):
    assert client.embed([]) == []
    assert not mocked.calls


def test_inputs_must_be_text(client):
    with pytest.raises(TypeError, match="strings"):
        client.embed([1, 2])


def test_a_model_is_needed():
    with pytest.raises(boc.ConfigurationError, match="no model"):
        boc.Client(BASE).embed("x")


@pytest.mark.parametrize(
    "body",
    [{"data": []}, {"data": [{"index": 0}]}, {"data": [{"index": 0, "embedding": 5}]}, {"object": "list"}, [1]],
    ids=["too-few", "no-embedding", "not-a-vector", "no-data", "not-an-object"],
)
def test_answers_of_the_wrong_shape(mocked, client, body):
    mocked.post(EMBED_URL, json=body)
    with pytest.raises(boc.InvalidResponse, match="embedding"):
        client.embed("x")


def test_unknown_model_lists_the_served_ones(mocked, client):
    mocked.post(EMBED_URL, status=404, json={"error": {"message": "model \"nomic\" not found, try pulling it first"}})
    mocked.get(BASE + "/models", json={"data": [{"id": "nomic-embed-text:latest"}]})
    with pytest.raises(boc.UnknownModel) as info:
        client.embed("x", model="nomic")
    assert info.value.suggestion == "nomic-embed-text:latest"
    assert "nomic-embed-text:latest" in str(info.value)


@pytest.mark.parametrize(
    "status, body",
    [
        pytest.param(501, {"error": {"code": 501, "type": "not_supported_error", "message":
                                     "This server does not support embeddings. Start it with `--embeddings`"}},
                     id="llama.cpp-without-embeddings"),
        pytest.param(500, {"error": {"message": "Llama model must be created with embedding=True to call this method",
                                     "type": "internal_server_error"}}, id="llama-cpp-python-without-embedding"),
        pytest.param(404, {"error": {"message": "Not Found"}}, id="no-route"),
        pytest.param(400, {"object": "error", "message": "The model does not support Embeddings API",
                           "type": "BadRequestError", "code": 400}, id="vllm-generative-model"),
    ],
)
def test_no_embeddings_here(mocked, client, status, body):
    mocked.post(EMBED_URL, status=status, json=body)
    with pytest.raises(boc.EndpointNotFound) as info:
        client.embed("x")
    assert "--embeddings" in str(info.value)
    assert info.value.message in str(info.value)
    assert info.value.status_code == status
    assert len(mocked.calls) == 1  # not retried


def test_pooling_none_says_which_pooling(mocked, client):
    mocked.post(EMBED_URL, status=400, json={"error": {"code": 400, "type": "invalid_request_error", "message":
                "Pooling type 'none' is not OAI compatible. Please use a different pooling type"}})
    with pytest.raises(boc.BadRequest, match="--pooling mean"):
        client.embed("x")


def test_error_in_a_200_body(mocked, client):
    mocked.post(EMBED_URL, json={"error": {"message": "Invalid model name passed in model=x"}})
    mocked.get(BASE + "/models", json={"data": []})
    with pytest.raises(boc.UnknownModel):
        client.embed("x", model="x")


@pytest.mark.parametrize("data", [
    [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}],
    [{"index": 0, "embedding": [1.0]}, {"index": 5, "embedding": [2.0]}],
    [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": ["x"]}],
], ids=["index-twice", "index-out-of-range", "not-numbers"])
def test_embeddings_of_a_broken_shape_are_invalid(mocked, data):
    mocked.post(BASE + "/embeddings", json={"object": "list", "data": data})
    with pytest.raises(boc.InvalidResponse):
        boc.Client(BASE, model="m").embed(["a", "b"])


# -- Issue 17: junk in base64, NaN and infinities, indexes on only some items --------


def _b64(*values):
    return base64.b64encode(struct.pack("<%df" % len(values), *values)).decode()


@pytest.mark.parametrize("vector", [
    pytest.param(_b64(0.25, -3.5, 1.0)[:8] + "!!" + _b64(0.25, -3.5, 1.0)[8:], id="bangs-inside"),
    pytest.param("$" + _b64(0.25, -3.5, 1.0), id="a-dollar-first"),
    pytest.param("AAAAAA!!AAAAAAAAAA", id="AAAA!!AAAA"),  # 16 base64 characters and two junk ones
])
def test_base64_with_junk_characters_is_invalid(mocked, client, vector):
    mocked.post(EMBED_URL, json=answer(vector))
    with pytest.raises(boc.InvalidResponse, match="embedding") as info:
        client.embed("x", encoding_format="base64")
    assert "base64" in str(info.value), str(info.value)


@pytest.mark.parametrize("body", [
    pytest.param('{"data": [{"index": 0, "embedding": [0.5, NaN]}]}', id="NaN"),
    pytest.param('{"data": [{"index": 0, "embedding": [Infinity, 0.5]}]}', id="Infinity"),
    pytest.param('{"data": [{"index": 0, "embedding": [0.5, -Infinity]}]}', id="-Infinity"),
    pytest.param('{"data": [{"index": 0, "embedding": [1e999, 0.5]}]}', id="overflowing-number"),
    pytest.param(json.dumps({"data": [{"index": 0, "embedding": _b64(0.5, float("nan"))}]}), id="base64-NaN"),
    pytest.param(json.dumps({"data": [{"index": 0, "embedding": _b64(float("inf"), 0.5)}]}), id="base64-Infinity"),
])
def test_a_vector_with_nan_or_an_infinity_is_invalid(mocked, client, body):
    mocked.post(EMBED_URL, body=body, content_type="application/json")
    with pytest.raises(boc.InvalidResponse, match="embedding"):
        client.embed("x")


def test_indexes_on_only_some_items_are_invalid(mocked, client):
    data = [{"index": 1, "embedding": [1.0]}, {"embedding": [0.0]}]
    mocked.post(EMBED_URL, json={"object": "list", "data": data})
    with pytest.raises(boc.InvalidResponse, match="index"):
        client.embed(["a", "b"])


def test_a_number_too_big_for_a_float_is_invalid(mocked):
    import responses

    mocked.add(responses.POST, BASE + "/embeddings",
               body='{"data": [{"index": 0, "embedding": [1, %s]}]}' % ("9" * 400), content_type="application/json")
    with pytest.raises(boc.InvalidResponse, match="unexpected shape"):
        boc.Client(BASE, model="m").embed("x")
