"""Client.model_info(): what each kind of server says about a model, and the
errors that name the fix for that server.

Every fake answer below is modelled on the server's source or documentation,
as surveyed in /tmp/survey/servers.md (file and commit named above each one).
Only metadata paths may be read: model_info() never loads a model and never
sends a chat.
"""
import json
import threading
import time

import pytest
import requests
from responses import matchers

import bor_openai_compat as boc
import server as sv
from helpers import BASE, CANARY_KEY, URL, chunk, completion, endless, feed, peak_memory, sse

ROOT = "http://api.test"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}
FIELDS = ("server", "context_length", "max_context_length", "vision", "tools", "reasoning", "embeddings", "loaded")


def listing(*items, **top):
    return dict({"object": "list", "data": list(items)}, **top)


def fields(info):
    return {name: getattr(info, name) for name in FIELDS}


def expect(server=None, context_length=None, max_context_length=None, vision=None, tools=None, reasoning=None,
           embeddings=None, loaded=None):
    return dict(server=server, context_length=context_length, max_context_length=max_context_length,
                vision=vision, tools=tools, reasoning=reasoning, embeddings=embeddings, loaded=loaded)


def sent(mocked):
    """(method, url) of every request the client sent."""
    return [(call.request.method, call.request.url) for call in mocked.calls]


def assert_metadata_only(mocked):
    """model_info() sent no chat and loaded no model."""
    for method, url in sent(mocked):
        assert not url.split("?")[0].endswith(("/chat/completions", "/completions", "/models/load")), url
        assert method == "GET" or url.split("?")[0].endswith("/api/show"), (method, url)


# -- The fakes, one per kind of server -----------------------------------------


# Ollama: ollama/ollama@fb30760996871fa9460115c753afd2c60d4ab0f7
def ollama_models(mocked, *ids):
    # openai/openai.go:195-212, 450-470 (ToListCompletion): owned_by = the namespace, "library".
    mocked.get(BASE + "/models", json=listing(
        *[{"id": i, "object": "model", "created": 1700000000, "owned_by": "library"} for i in ids]))


def ollama_show(mocked, model, arch="llama", ctx=32768, capabilities=("completion", "vision", "tools"), **extra):
    # api/types.go:737-755 (ShowResponse), server/routes.go ~1566-1580 (model_info = GGUF KV map),
    # types/model/capability.go (capability names). POST /api/show {"model": id}.
    show = {"modelfile": "FROM x", "parameters": "", "template": "{{ .Prompt }}",
            "details": {"format": "gguf", "family": arch, "parameter_size": "7B", "quantization_level": "Q4_K_M"},
            "model_info": {"general.architecture": arch, "general.parameter_count": 7000000000,
                           arch + ".context_length": ctx, arch + ".embedding_length": 4096},
            "modified_at": "2025-01-01T00:00:00Z"}
    if capabilities is not None:
        show["capabilities"] = list(capabilities) if isinstance(capabilities, tuple) else capabilities
    show.update(extra)
    mocked.post(ROOT + "/api/show", json=show, match=[matchers.json_params_matcher({"model": model})])


def ollama_ps(mocked, *running):
    # api/types.go:817-844 (ProcessModelResponse), server/routes.go:2271-2303 (PsHandler);
    # context_length since v0.10.0 (commit 34088dbc).
    models = [{"name": name, "model": name, "size": 5000000000, "digest": "abc", "details": {"format": "gguf"},
               "expires_at": "2026-01-01T00:05:00Z", "size_vram": 5000000000, "context_length": ctx}
              for name, ctx in running]
    mocked.get(ROOT + "/api/ps", json={"models": models})


def ollama(mocked):
    ollama_models(mocked, "llava:7b")
    ollama_show(mocked, "llava:7b")
    ollama_ps(mocked, ("llava:7b", 8192))
    return "llava:7b"


def ollama_thinking_not_loaded(mocked):
    ollama_models(mocked, "qwen3:8b")
    ollama_show(mocked, "qwen3:8b", arch="qwen3", ctx=40960, capabilities=["completion", "tools", "thinking"])
    ollama_ps(mocked)  # nothing running
    return "qwen3:8b"


def ollama_embedding(mocked):
    ollama_models(mocked, "nomic-embed-text:latest")
    ollama_show(mocked, "nomic-embed-text:latest", arch="nomic-bert", ctx=2048, capabilities=["embedding"])
    ollama_ps(mocked, ("other:latest", 4096))
    return "nomic-embed-text:latest"


# llama.cpp b9553 (cbbe868c0), vendored in Telosnex/fllama@3b1351a957920bf2a0df3709cce1e3a7195c479e,
# tools/server/; every answer has "Server: llama.cpp" (server-http.cpp:115).
LLAMACPP = {"Server": "llama.cpp"}


def llamacpp_props(n_ctx=8192, vision=False, supports_tools=True, old=False):
    # server-context.cpp:4161-4210 (/props), common/jinja/caps.cpp:68-79 (chat_template_caps).
    # OLD = ggerganov/llama.cpp@c392e5094deaf2d1a7c18683214f007fad3fe42b examples/server/server.cpp:3788-3806.
    props = {"default_generation_settings": {"params": {"temperature": 0.8}, "n_ctx": n_ctx}, "total_slots": 4,
             "model_path": "/models/m.gguf", "chat_template": "{{ messages }}", "bos_token": "<s>",
             "eos_token": "</s>", "build_info": "b9553-cbbe868c0"}
    if not old:
        props.update({"model_alias": "m", "modalities": {"vision": vision, "audio": False}, "media_marker": "<__media__>",
                      "chat_template_caps": {"supports_tools": supports_tools, "supports_tool_calls": supports_tools,
                                             "supports_system_role": True}, "is_sleeping": False})
    return props


def llamacpp(mocked):
    # server-context.cpp:4471-4510, 4718-4736: /v1/models in single-model mode, with the
    # Ollama-compat "models" array beside "data".
    mocked.get(BASE + "/models", headers=LLAMACPP, json=listing(
        {"id": "qwen2.5-7b", "aliases": [], "tags": [], "object": "model", "created": 1700000000,
         "owned_by": "llamacpp", "meta": {"vocab_type": 2, "n_vocab": 152064, "n_ctx": 8192, "n_ctx_train": 32768,
                                          "n_embd": 3584, "n_params": 7615616512, "size": 4683071488}},
        models=[{"name": "qwen2.5-7b", "model": "qwen2.5-7b", "capabilities": ["completion", "multimodal"],
                 "details": {"format": "gguf"}}]))
    mocked.get(ROOT + "/props", headers=LLAMACPP, json=llamacpp_props(n_ctx=8192, vision=True))
    return "qwen2.5-7b"


def llamacpp_old(mocked):
    # OLD (Feb 2025), examples/server/server.cpp: meta without n_ctx; /props without
    # modalities or chat_template_caps.
    mocked.get(BASE + "/models", headers=LLAMACPP, json=listing(
        {"id": "m.gguf", "object": "model", "created": 1700000000, "owned_by": "llamacpp",
         "meta": {"vocab_type": 1, "n_vocab": 32000, "n_ctx_train": 4096, "n_embd": 4096, "n_params": 6738415616,
                  "size": 3825065984}}))
    mocked.get(ROOT + "/props", headers=LLAMACPP, json=llamacpp_props(n_ctx=2048, old=True))
    return "m.gguf"


def router_item(id, status, modalities=("text",), meta=None):
    # server-models.cpp:1225-1296 (router /v1/models): status.value, architecture.input_modalities;
    # meta is merged in only from a running child.
    item = {"id": id, "aliases": [], "tags": [], "object": "model", "owned_by": "llamacpp", "created": 1700000000,
            "status": {"value": status, "args": ["llama-server", "-m", id + ".gguf"]},
            "architecture": {"input_modalities": list(modalities), "output_modalities": ["text"]},
            "need_download": False}
    if meta:
        item["meta"] = meta
    return item


def router(mocked):
    mocked.get(BASE + "/models", headers=LLAMACPP, json=listing(
        router_item("gemma-3-4b", "loaded", ("text", "image"), {"n_ctx": 4096, "n_ctx_train": 131072}),
        router_item("qwen3-8b", "unloaded"),
        router_item("phi-4", "sleeping")))
    # server-models.cpp:1124-1154: /props?model=X proxied to the child; autoload=false does not load.
    mocked.get(ROOT + "/props", headers=LLAMACPP, json=llamacpp_props(n_ctx=4096, vision=True, supports_tools=False),
               match=[matchers.query_param_matcher({"model": "gemma-3-4b", "autoload": "false"})])
    # Not loaded: 400 "model is not loaded" (and without autoload=false it would LOAD it).
    mocked.get(ROOT + "/props", status=400, headers=LLAMACPP,
               json={"error": {"code": 400, "message": "model is not loaded", "type": "invalid_request_error"}})
    mocked.post(ROOT + "/models/load", json={"success": True})


def router_loaded(mocked):
    router(mocked)
    return "gemma-3-4b"


def router_unloaded(mocked):
    router(mocked)
    return "qwen3-8b"


def router_sleeping(mocked):
    router(mocked)
    return "phi-4"


# LM Studio (closed source): https://lmstudio.ai/docs/api/rest-api and lmstudio-ai/docs
# 1_developer/2_rest/endpoints.mdx (/api/v0/models); lmstudio-bug-tracker#1659 (/api/v1/models).
def lmstudio_models(mocked, *ids):
    # OpenAI-compat /v1/models: plain items (owned_by "organization_owner", unverified in the survey).
    mocked.get(BASE + "/models", json=listing(
        *[{"id": i, "object": "model", "owned_by": "organization_owner"} for i in ids]))
    # Not Ollama: a path LM Studio does not serve (the library's own note, Client._completion:
    # 200 {"error": "Unexpected endpoint or method. ..."}).
    mocked.post(ROOT + "/api/show", json={"error": "Unexpected endpoint or method. (POST /api/show)"})
    mocked.get(ROOT + "/api/ps", json={"error": "Unexpected endpoint or method. (GET /api/ps)"})


V0_ITEMS = [
    {"id": "qwen2-vl-7b-instruct", "object": "model", "type": "vlm", "publisher": "mlx-community", "arch": "qwen2_vl",
     "compatibility_type": "mlx", "quantization": "4bit", "state": "loaded", "max_context_length": 32768,
     "loaded_context_length": 8192, "capabilities": ["tool_use"]},
    {"id": "text-embedding-nomic-embed-text-v1.5", "object": "model", "type": "embeddings", "publisher": "nomic-ai",
     "arch": "nomic-bert", "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "not-loaded",
     "max_context_length": 2048},
    {"id": "llama-3.2-3b", "object": "model", "type": "llm", "publisher": "lmstudio-community", "arch": "llama",
     "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "not-loaded", "max_context_length": 131072,
     "capabilities": []},
]


def lmstudio_v0(model):
    def fake(mocked):
        lmstudio_models(mocked, *[item["id"] for item in V0_ITEMS])
        mocked.get(ROOT + "/api/v0/models", json={"object": "list", "data": V0_ITEMS})
        return model

    return fake


def lmstudio_v1(mocked):
    lmstudio_models(mocked, "google/gemma-3-4b")
    mocked.get(ROOT + "/api/v0/models", status=404, json={"error": "Unexpected endpoint or method."})
    # lmstudio-bug-tracker#1659: top-level "models", id in "key", loaded_instances[].config.context_length.
    mocked.get(ROOT + "/api/v1/models", json={"models": [
        {"type": "llm", "publisher": "google", "key": "google/gemma-3-4b", "display_name": "Gemma 3 4B",
         "architecture": "gemma3", "quantization": {"name": "4bit", "bits_per_weight": 4}, "size_bytes": 3034755901,
         "params_string": "4B", "loaded_instances": [
             {"id": "google/gemma-3-4b", "config": {"context_length": 4096, "eval_batch_size": 512,
                                                    "flash_attention": True}}],
         "max_context_length": 131072, "format": "mlx", "capabilities": {"vision": True, "trained_for_tool_use": False},
         "description": None, "variants": ["google/gemma-3-4b@4bit"], "selected_variant": "google/gemma-3-4b@4bit"}]})
    return "google/gemma-3-4b"


# vLLM: vllm/entrypoints/openai/engine/protocol.py @ 040a2cc2a6295ea9c313d86526ff90a103eacb3e (ModelCard).
def vllm(mocked):
    mocked.get(BASE + "/models", json=listing(
        {"id": "Qwen/Qwen2.5-7B-Instruct", "object": "model", "created": 1700000000, "owned_by": "vllm",
         "root": "Qwen/Qwen2.5-7B-Instruct", "parent": None, "max_model_len": 32768,
         "permission": [{"id": "modelperm-1", "object": "model_permission", "created": 1700000000,
                         "allow_sampling": True, "organization": "*", "group": None, "is_blocking": False}]}))
    return "Qwen/Qwen2.5-7B-Instruct"


# llama-cpp-python: abetlen/llama-cpp-python@3691546f1c9e0c1bf93323dff02230bd959cf562
# llama_cpp/server/app.py:529-546, types.py:271-280.
def llama_cpp_python(mocked):
    mocked.get(BASE + "/models", json=listing({"id": "llama-2-7b", "object": "model", "owned_by": "me",
                                              "permissions": []}))
    return "llama-2-7b"


# LiteLLM 1.110.2 (PyPI wheel): proxy/common_request_processing.py:2429-2460 (x-litellm-* headers),
# proxy_server.py:18494-18640 (/v1/model/info), types/utils.py ModelInfoBase.
def litellm(mocked, model_info=None):
    mocked.get(BASE + "/models", headers={"x-litellm-version": "1.110.2"}, json=listing(
        {"id": "my-llm", "object": "model", "created": 1677610602, "owned_by": "openai"},
        {"id": "my-embed", "object": "model", "created": 1677610602, "owned_by": "openai"}))
    mocked.get(BASE + "/model/info", json={"data": [
        {"model_name": "my-llm", "litellm_params": {"model": "hosted_vllm/qwen", "api_base": "http://vllm:8000/v1"},
         "model_info": model_info if model_info is not None else {
             "id": "d1", "db_model": False, "max_input_tokens": 32768, "max_output_tokens": 8192,
             "supports_vision": True, "supports_function_calling": True, "supports_reasoning": False, "mode": "chat"}},
        {"model_name": "my-embed", "litellm_params": {"model": "openai/text-embedding-3-small"},
         "model_info": {"id": "d2", "db_model": False, "max_tokens": 8191, "mode": "embedding"}}]})


def litellm_chat(mocked):
    litellm(mocked)
    return "my-llm"


def litellm_embed(mocked):
    litellm(mocked)
    return "my-embed"


# OpenRouter: https://openrouter.ai/docs/models (GET /api/v1/models).
def openrouter_item(id, parameters, inputs=("text", "image", "file"), outputs=("text",), ctx=1048576):
    return {"id": id, "canonical_slug": id + "-0506", "name": id, "created": 1746576000, "description": "...",
            "context_length": ctx,
            "architecture": {"input_modalities": inputs and list(inputs), "output_modalities": list(outputs),
                             "tokenizer": "Gemini", "instruct_type": None, "modality": "text+image->text"},
            "pricing": {"prompt": "0.00000125", "completion": "0.00001", "request": "0", "image": "0.00516"},
            "top_provider": {"context_length": ctx, "max_completion_tokens": 65536, "is_moderated": False},
            "per_request_limits": None, "supported_parameters": parameters}


def openrouter(model):
    def fake(mocked):
        mocked.get(BASE + "/models", json={"data": [
            openrouter_item("google/gemini-2.5-pro-preview",
                            ["tools", "tool_choice", "reasoning", "include_reasoning", "max_tokens", "temperature"]),
            openrouter_item("mistralai/mistral-7b-instruct", ["max_tokens", "temperature", "top_p"], inputs=["text"],
                            ctx=32768)]})
        return model

    return fake


# -- 1. What each server says ---------------------------------------------------

SERVERS = [
    pytest.param(ollama, expect("ollama", 8192, 32768, True, True, False, False, True),
                 ["/models", "/api/show", "/api/ps"], id="ollama-loaded"),
    pytest.param(ollama_thinking_not_loaded, expect("ollama", None, 40960, False, True, True, False, False),
                 ["/models", "/api/show", "/api/ps"], id="ollama-not-loaded"),
    pytest.param(ollama_embedding, expect("ollama", None, 2048, False, False, False, True, False),
                 ["/models", "/api/show", "/api/ps"], id="ollama-embedding"),
    pytest.param(llamacpp, expect("llama.cpp", 8192, 32768, True, True, None, None, True),
                 ["/models", "/props"], id="llama.cpp"),
    pytest.param(llamacpp_old, expect("llama.cpp", 2048, 4096, None, None, None, None, True),
                 ["/models", "/props"], id="llama.cpp-feb-2025"),
    pytest.param(router_loaded, expect("llama.cpp", 4096, 131072, True, False, None, None, True),
                 ["/models", "/props"], id="llama.cpp-router-loaded"),
    pytest.param(router_unloaded, expect("llama.cpp", None, None, False, None, None, None, False),
                 ["/models"], id="llama.cpp-router-unloaded"),
    pytest.param(router_sleeping, expect("llama.cpp", None, None, False, None, None, None, False),
                 ["/models"], id="llama.cpp-router-sleeping"),
    pytest.param(lmstudio_v0("qwen2-vl-7b-instruct"), expect("lmstudio", 8192, 32768, True, True, None, False, True),
                 ["/models", "/api/v0/models"], id="lmstudio-v0-vlm-loaded"),
    pytest.param(lmstudio_v0("text-embedding-nomic-embed-text-v1.5"),
                 expect("lmstudio", None, 2048, False, None, None, True, False),
                 ["/models", "/api/v0/models"], id="lmstudio-v0-embeddings"),
    pytest.param(lmstudio_v0("llama-3.2-3b"), expect("lmstudio", None, 131072, False, False, None, False, False),
                 ["/models", "/api/v0/models"], id="lmstudio-v0-llm-not-loaded"),
    pytest.param(lmstudio_v1, expect("lmstudio", 4096, 131072, True, False, None, False, True),
                 ["/models", "/api/v1/models"], id="lmstudio-v1"),
    pytest.param(vllm, expect("vllm", 32768, None, None, None, None, None, True), ["/models"], id="vllm"),
    pytest.param(llama_cpp_python, expect("llama-cpp-python", loaded=True), ["/models"], id="llama-cpp-python"),
    pytest.param(litellm_chat, expect("litellm", 32768, 32768, True, True, False, False, None),
                 ["/models", "/v1/model/info"], id="litellm"),
    pytest.param(litellm_embed, expect("litellm", 8191, 8191, None, None, None, True, None),
                 ["/models", "/v1/model/info"], id="litellm-embedding"),
    pytest.param(openrouter("google/gemini-2.5-pro-preview"),
                 expect("openrouter", 1048576, 1048576, True, True, True, False, None), ["/models"], id="openrouter"),
    pytest.param(openrouter("mistralai/mistral-7b-instruct"),
                 expect("openrouter", 32768, 32768, False, False, False, False, None), ["/models"],
                 id="openrouter-text-only"),
]


@pytest.mark.parametrize("fake, want, sources", SERVERS)
def test_what_each_server_says(mocked, client, fake, want, sources):
    model = fake(mocked)
    info = client.model_info(model)
    assert info.id == model
    assert fields(info) == want
    assert info.sources == sources
    assert set(info.raw) == set(sources)
    assert_metadata_only(mocked)


def test_ollama_show_is_asked_with_the_model_in_the_body(mocked, client):
    ollama(mocked)
    client.model_info("llava:7b")
    show = [call for call in mocked.calls if call.request.url == ROOT + "/api/show"]
    assert len(show) == 1 and json.loads(show[0].request.body) == {"model": "llava:7b"}


@pytest.mark.parametrize("model", ["qwen3-8b", "phi-4", "gemma-3-4b"])
def test_router_never_loads_a_model(mocked, client, model):
    router(mocked)
    client.model_info(model)
    props = [url for method, url in sent(mocked) if "/props" in url]
    if model == "gemma-3-4b":  # loaded: its own props, asked so as not to load it
        assert props == [ROOT + "/props?model=gemma-3-4b&autoload=false"]
    else:
        assert props == []
    assert_metadata_only(mocked)
    assert not any(call.request.method == "POST" for call in mocked.calls)


@pytest.mark.parametrize("fake", [vllm, llama_cpp_python], ids=["vllm", "llama-cpp-python"])
def test_servers_known_by_their_list_are_not_probed_further(mocked, client, fake):
    client.model_info(fake(mocked))
    assert sent(mocked) == [("GET", BASE + "/models")]


# -- 2. Partial and odd answers ---------------------------------------------------

ODD_NUMBERS = [
    pytest.param("8192", id="string"),
    pytest.param(1e30, id="1e30"),
    pytest.param(2 ** 63, id="2**63"),
    pytest.param(-1, id="negative"),
    pytest.param(0, id="zero"),
    pytest.param(True, id="bool"),
    pytest.param(8192.0, id="float"),
    pytest.param(None, id="null"),
    pytest.param([8192], id="list"),
]


@pytest.mark.parametrize("odd", ODD_NUMBERS)
def test_odd_numbers_say_nothing_llamacpp(mocked, client, odd):
    mocked.get(BASE + "/models", headers=LLAMACPP, json=listing(
        {"id": "m", "object": "model", "owned_by": "llamacpp", "meta": {"n_ctx": odd, "n_ctx_train": odd}}))
    props = llamacpp_props()
    props["default_generation_settings"]["n_ctx"] = odd
    mocked.get(ROOT + "/props", json=props)
    info = client.model_info("m")
    assert (info.context_length, info.max_context_length) == (None, None)
    assert info.server == "llama.cpp" and info.loaded is True


@pytest.mark.parametrize("odd", ODD_NUMBERS)
def test_odd_numbers_say_nothing_elsewhere(mocked, client, odd):
    ollama_models(mocked, "a:latest")
    ollama_show(mocked, "a:latest", ctx=odd)
    ollama_ps(mocked, ("a:latest", odd))
    info = client.model_info("a:latest")
    assert (info.server, info.loaded, info.context_length, info.max_context_length) == ("ollama", True, None, None)


@pytest.mark.parametrize("odd", ODD_NUMBERS)
def test_odd_numbers_say_nothing_vllm_litellm_openrouter(mocked, odd):
    c = boc.Client(BASE, model="x", max_retries=0)
    mocked.get(BASE + "/models", json=listing(
        {"id": "v", "object": "model", "owned_by": "vllm", "max_model_len": odd},
        dict(openrouter_item("o/r", ["tools"]), context_length=odd)))
    assert c.model_info("v").context_length is None
    info = c.model_info("o/r")
    assert (info.server, info.context_length, info.max_context_length) == ("openrouter", None, None)
    mocked.reset()
    litellm(mocked, model_info={"max_input_tokens": odd, "max_tokens": odd})
    info = c.model_info("my-llm")
    assert (info.server, info.context_length, info.max_context_length) == ("litellm", None, None)


@pytest.mark.parametrize("odd", ["yes", 1, "true", None, [True], {"value": True}])
def test_odd_flags_say_nothing(mocked, client, odd):
    mocked.get(BASE + "/models", headers=LLAMACPP, json=listing(
        {"id": "m", "object": "model", "owned_by": "llamacpp", "meta": {"n_ctx": 4096}}))
    props = llamacpp_props()
    props["modalities"]["vision"] = odd
    props["chat_template_caps"]["supports_tools"] = odd
    mocked.get(ROOT + "/props", json=props)
    info = client.model_info("m")
    assert (info.vision, info.tools, info.context_length) == (None, None, 8192)
    mocked.reset()
    litellm(mocked, model_info={"max_input_tokens": 1000, "supports_vision": odd, "supports_function_calling": odd,
                                "supports_reasoning": odd,
                                "mode": odd if not isinstance(odd, str) else None})  # any string is a mode
    info = client.model_info("my-llm", refresh=True)
    assert fields(info) == expect("litellm", 1000, 1000)


def test_lmstudio_v1_odd_capabilities_say_nothing(mocked, client):
    lmstudio_models(mocked, "g")
    mocked.get(ROOT + "/api/v0/models", status=404)
    mocked.get(ROOT + "/api/v1/models", json={"models": [
        {"type": "llm", "key": "g", "loaded_instances": [{"id": "g", "config": {"context_length": "4096"}}],
         "max_context_length": 1e30, "capabilities": {"vision": "yes", "trained_for_tool_use": 1}}]})
    info = client.model_info("g")
    assert fields(info) == expect("lmstudio", None, None, None, None, None, False, True)


CAPABILITY_LISTS = [
    # Ollama: capabilities is omitempty (api/types.go ShowResponse): no key says nothing.
    pytest.param(["completion"], (False, False, False, False), id="list-without-any"),
    pytest.param(["completion", "vision"], (True, False, False, False), id="vision-only"),
    pytest.param([], (False, False, False, False), id="empty-list"),
    pytest.param(None, (None, None, None, None), id="no-list"),
    pytest.param("vision", (None, None, None, None), id="a-string"),
    pytest.param(["vision", 3], (None, None, None, None), id="not-all-strings"),
]


@pytest.mark.parametrize("capabilities, want", CAPABILITY_LISTS)
def test_ollama_capability_lists(mocked, client, capabilities, want):
    ollama_models(mocked, "m:latest")
    if capabilities is None:
        ollama_show(mocked, "m:latest", capabilities=None)
    else:
        ollama_show(mocked, "m:latest", capabilities=capabilities)
    ollama_ps(mocked)
    info = client.model_info("m:latest")
    assert (info.vision, info.tools, info.reasoning, info.embeddings) == want


@pytest.mark.parametrize("parameters, want", [
    pytest.param(["tools"], (True, False), id="tools-only"),
    pytest.param(["temperature"], (False, False), id="neither"),
    pytest.param(None, (None, None), id="null-list"),
])
def test_openrouter_supported_parameters(mocked, client, parameters, want):
    mocked.get(BASE + "/models", json={"data": [openrouter_item("a/b", parameters, inputs=None)]})
    info = client.model_info("a/b")
    assert info.server == "openrouter"
    assert (info.tools, info.reasoning) == want
    assert info.vision is None  # no input_modalities list


# Each native path in turn answers something useless; model_info() still answers,
# with what /v1/models said.
USELESS = [
    pytest.param(dict(status=404, json={"error": "not found"}), id="404"),
    pytest.param(dict(status=404, body="404 page not found", content_type="text/plain"), id="404-text"),
    pytest.param(dict(status=200, body="<!doctype html><html><body>Web UI</body></html>",
                      content_type="text/html"), id="html"),
    pytest.param(dict(status=500, json={"error": {"message": "boom", "type": "server_error", "code": 500}}),
                 id="500"),
    pytest.param(dict(status=401, json={"error": {"message": "Unauthorized", "type": "auth_error"}}), id="401"),
    pytest.param(dict(status=200, body="{not json", content_type="application/json"), id="bad-json"),
    pytest.param(dict(status=200, json=[1, 2, 3]), id="a-list"),
    pytest.param(dict(status=200, json={}), id="empty-object"),
    pytest.param(dict(status=200, json={"data": "x", "models": {"m": 1}, "model_info": [],
                                        "default_generation_settings": [1]}), id="wrong-types"),
    pytest.param(dict(status=200, json={"data": 7, "models": 7}), id="numbers-for-lists"),
    pytest.param(dict(body=requests.exceptions.ConnectionError("reset")), id="connection-reset"),
]


def useless(mocked, method, url, answer):
    mocked.add(method, url, **answer)


@pytest.mark.parametrize("answer", USELESS)
def test_unknown_server_every_native_path_useless(mocked, client, answer):
    mocked.get(BASE + "/models", json=listing({"id": "m", "object": "model", "owned_by": "someone"}))
    for method, path in [("POST", "/api/show"), ("GET", "/api/ps"), ("GET", "/api/v0/models"),
                         ("GET", "/api/v1/models")]:
        useless(mocked, method, ROOT + path, answer)
    info = client.model_info("m")
    assert fields(info) == expect()
    assert info.sources == ["/models"]
    assert_metadata_only(mocked)


@pytest.mark.parametrize("answer", USELESS)
def test_llamacpp_props_useless(mocked, client, answer):
    mocked.get(BASE + "/models", headers=LLAMACPP, json=listing(
        {"id": "m", "object": "model", "owned_by": "llamacpp", "meta": {"n_ctx": 4096, "n_ctx_train": 32768}}))
    useless(mocked, "GET", ROOT + "/props", answer)
    info = client.model_info("m")
    assert fields(info) == expect("llama.cpp", 4096, 32768, loaded=True)
    # An answer with the key but nothing usable under it may be listed as read.
    assert info.sources in (["/models"], ["/models", "/props"])


@pytest.mark.parametrize("answer", USELESS)
def test_ollama_ps_useless(mocked, client, answer):
    ollama_models(mocked, "a:latest")
    ollama_show(mocked, "a:latest")
    useless(mocked, "GET", ROOT + "/api/ps", answer)
    info = client.model_info("a:latest")
    assert fields(info) == expect("ollama", None, 32768, True, True, False, False, None)
    assert info.sources == ["/models", "/api/show"]


@pytest.mark.parametrize("answer", USELESS)
def test_litellm_model_info_useless(mocked, client, answer):
    mocked.get(BASE + "/models", headers={"x-litellm-version": "1.110.2"},
               json=listing({"id": "my-llm", "object": "model", "owned_by": "openai"}))
    useless(mocked, "GET", BASE + "/model/info", answer)
    info = client.model_info("my-llm")
    assert fields(info) == expect("litellm")
    assert info.sources == ["/models"]


def test_litellm_model_info_without_this_model(mocked, client):
    mocked.get(BASE + "/models", headers={"x-litellm-version": "1.110.2"},
               json=listing({"id": "my-llm", "object": "model", "owned_by": "openai"}))
    mocked.get(BASE + "/model/info", json={"data": [{"model_name": "other", "litellm_params": {}, "model_info": {"max_input_tokens": 9}}]})
    info = client.model_info("my-llm")
    assert fields(info) == expect("litellm") and info.sources == ["/models"]


NOT_LOADED = [
    # LM Studio v0: state not-loaded, yet a loaded_context_length.
    pytest.param(lambda m: (lmstudio_models(m, "x"), m.get(ROOT + "/api/v0/models", json={"data": [
        {"id": "x", "type": "llm", "state": "not-loaded", "max_context_length": 32768,
         "loaded_context_length": 4096}]})), "lmstudio", id="lmstudio-v0"),
    # LM Studio v1: no loaded_instances.
    pytest.param(lambda m: (lmstudio_models(m, "x"), m.get(ROOT + "/api/v0/models", status=404),
                            m.get(ROOT + "/api/v1/models", json={"models": [
                                {"type": "llm", "key": "x", "loaded_instances": [], "max_context_length": 32768}]})),
                 "lmstudio", id="lmstudio-v1"),
    # llama.cpp router: unloaded, but a stale meta merged in.
    pytest.param(lambda m: (m.get(BASE + "/models", headers=LLAMACPP, json=listing(
        router_item("x", "unloaded", meta={"n_ctx": 4096, "n_ctx_train": 32768}))),), "llama.cpp", id="router"),
    # Ollama: not in /api/ps.
    pytest.param(lambda m: (ollama_models(m, "x"), ollama_show(m, "x"), ollama_ps(m, ("y", 4096))), "ollama",
                 id="ollama"),
]


@pytest.mark.parametrize("fake, server", NOT_LOADED)
def test_a_model_not_loaded_has_no_window(mocked, client, fake, server):
    fake(mocked)
    info = client.model_info("x")
    assert (info.server, info.loaded, info.context_length) == (server, False, None)
    assert info.max_context_length == 32768


# -- 3. Rules -----------------------------------------------------------------


def test_unknown_model(mocked, client):
    ollama_models(mocked, "llama3:latest", "qwen3:8b")
    with pytest.raises(boc.UnknownModel) as caught:
        client.model_info("llama")
    error = caught.value
    assert error.available == ["llama3:latest", "qwen3:8b"]
    assert error.suggestion == "llama3:latest"
    assert error.model == "llama"
    assert "llama3:latest" in str(error) and "Did you mean" in str(error)
    assert sent(mocked) == [("GET", BASE + "/models")]


def test_unknown_model_with_nothing_close(mocked, client):
    vllm(mocked)
    with pytest.raises(boc.UnknownModel) as caught:
        client.model_info("zzz")
    assert caught.value.available == ["Qwen/Qwen2.5-7B-Instruct"] and caught.value.suggestion is None


MODELS_REFUSED = [
    pytest.param(401, {"error": {"message": "Invalid API key", "type": "invalid_request_error",
                                 "code": "invalid_api_key"}}, boc.AuthenticationError, id="401"),
    pytest.param(403, {"error": "Forbidden"}, boc.AuthenticationError, id="403"),
    pytest.param(404, "<html><body>Not Found</body></html>", boc.EndpointNotFound, id="404-html"),
    # llama.cpp while loading (server-http.cpp:248-260).
    pytest.param(503, {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}},
                 boc.ServerError, id="503-llama.cpp-loading"),
    pytest.param(500, {"error": {"message": "model registry is not available", "type": "server_error"}},
                 boc.ServerError, id="500-mentions-model"),
    pytest.param(200, {"object": "list", "data": "none"}, boc.InvalidResponse, id="200-no-list"),
]


@pytest.mark.parametrize("status, body, cls", MODELS_REFUSED)
def test_models_refused_raises_what_models_raises(mocked, client, status, body, cls):
    if isinstance(body, str):
        mocked.get(BASE + "/models", status=status, body=body, content_type="text/html")
    else:
        mocked.get(BASE + "/models", status=status, json=body)
    with pytest.raises(boc.OpenAICompatError) as by_models:
        client.models()
    with pytest.raises(boc.OpenAICompatError) as by_info:
        client.model_info("test-model")
    assert type(by_models.value) is cls
    assert type(by_info.value) is cls
    assert str(by_info.value) == str(by_models.value)


def test_answer_is_kept_and_refresh_reads_again(mocked, client):
    model = ollama(mocked)
    first = client.model_info(model)
    count = len(mocked.calls)
    assert count == 3
    assert client.model_info(model) is first
    assert len(mocked.calls) == count
    again = client.model_info(model, refresh=True)
    assert len(mocked.calls) == 2 * count
    assert fields(again) == fields(first)
    assert client.model_info(model) is again


def test_the_default_model(mocked):
    vllm(mocked)
    with boc.Client(BASE, model="Qwen/Qwen2.5-7B-Instruct", max_retries=0) as c:
        assert c.model_info().context_length == 32768
    with boc.Client(BASE, max_retries=0) as c, pytest.raises(boc.ConfigurationError):
        c.model_info()


BASE_URLS = [
    pytest.param(BASE + "?api-version=1", BASE + "/models?api-version=1", ROOT + "/props?api-version=1",
                 id="query"),
    pytest.param(ROOT, ROOT + "/models", ROOT + "/props", id="no-v1"),
    pytest.param(ROOT + "/", ROOT + "/models", ROOT + "/props", id="no-v1-slash"),
    pytest.param(ROOT + "/llm/v1", ROOT + "/llm/v1/models", ROOT + "/llm/props", id="prefix"),
]


@pytest.mark.parametrize("base, models_url, props_url", BASE_URLS)
def test_native_paths_from_the_base_url(mocked, base, models_url, props_url):
    mocked.get(models_url, headers=LLAMACPP, json=listing(
        {"id": "m", "object": "model", "owned_by": "llamacpp", "meta": {"n_ctx": 4096}}))
    mocked.get(props_url, json=llamacpp_props(n_ctx=2048))
    with boc.Client(base, max_retries=0) as c:
        info = c.model_info("m")
    assert sent(mocked) == [("GET", models_url), ("GET", props_url)]
    assert info.context_length == 2048 and info.sources == ["/models", "/props"]


def test_query_kept_on_every_native_path(mocked):
    q = "?api-version=1"
    mocked.get(BASE + "/models" + q, headers=LLAMACPP, json=listing(
        router_item("g", "loaded", ("text", "image"), {"n_ctx": 4096})))
    mocked.get(ROOT + "/props", json=llamacpp_props(n_ctx=1024))
    with boc.Client(BASE + q, max_retries=0) as c:
        assert c.model_info("g").context_length == 1024
    assert sent(mocked)[-1] == ("GET", ROOT + "/props?api-version=1&model=g&autoload=false")
    mocked.reset()
    ollama_models_q = listing({"id": "o", "object": "model", "owned_by": "library"})
    mocked.get(BASE + "/models" + q, json=ollama_models_q)
    mocked.post(ROOT + "/api/show" + q, json={"model_info": {}, "capabilities": ["completion"]})
    mocked.get(ROOT + "/api/ps" + q, json={"models": []})
    with boc.Client(BASE + q, max_retries=0) as c:
        info = c.model_info("o")
    assert [url for _, url in sent(mocked)] == [BASE + "/models" + q, ROOT + "/api/show" + q, ROOT + "/api/ps" + q]
    assert info.server == "ollama"
    mocked.reset()
    mocked.get(BASE + "/models" + q, headers={"x-litellm-version": "1"}, json=listing({"id": "l"}))
    mocked.get(BASE + "/model/info" + q, json={"data": [{"model_name": "l", "litellm_params": {}, "model_info": {"max_tokens": 7}}]})
    with boc.Client(BASE + q, max_retries=0) as c:
        assert c.model_info("l").context_length == 7
    assert sent(mocked)[-1] == ("GET", BASE + "/model/info" + q)


def test_stream_timeout_bounds_a_stalled_native_path(fault_server):
    models = json.dumps(listing({"id": "m", "object": "model", "owned_by": "library"})).encode()
    fault_server.script(sv.reply(200, models), sv.stall(10))
    with boc.Client(fault_server.url, model="m", max_retries=0) as c:
        start = time.monotonic()
        with pytest.raises(boc.Timeout) as caught:
            c.model_info(stream_timeout=0.5)
        took = time.monotonic() - start
    assert "stream_timeout" in str(caught.value)
    assert took < 3.0
    assert [r.path for r in fault_server.requests][:2] == ["/v1/models", "/api/show"]


def test_timeout_bounds_each_native_path_and_reading_goes_on(fault_server):
    """A native path that stalls past ``timeout`` (between bytes), with time left
    to the call, says nothing; the next one is still read."""
    models = json.dumps(listing({"id": "m", "object": "model", "owned_by": "library"})).encode()
    show = json.dumps({"model_info": {"general.architecture": "llama", "llama.context_length": 4096},
                       "capabilities": ["completion"]}).encode()
    fault_server.script(sv.reply(200, models), sv.reply(200, show), sv.stall(10))
    with boc.Client(fault_server.url, model="m", max_retries=0) as c:
        start = time.monotonic()
        info = c.model_info(timeout=0.3, stream_timeout=5)
        took = time.monotonic() - start
    assert took < 3.0
    assert (info.server, info.max_context_length, info.loaded) == ("ollama", 4096, None)


def test_many_threads_get_the_same_answer(mocked, client):
    model = ollama(mocked)
    barrier = threading.Barrier(12)
    answers, errors = [], []

    def ask():
        barrier.wait()
        try:
            answers.append(client.model_info(model))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert len(answers) == 12
    want = expect("ollama", 8192, 32768, True, True, False, False, True)
    assert all(fields(a) == want and a.sources == ["/models", "/api/show", "/api/ps"] for a in answers)
    assert fields(client.model_info(model)) == want


# -- 4. Images after model_info -------------------------------------------------


def chat_answer(request):
    """A completion, or the same as a stream when the request asks for one."""
    if json.loads(request.body).get("stream"):
        return 200, {"Content-Type": "text/event-stream"}, sse(chunk("I see."), chunk(finish="stop"))
    return 200, {"Content-Type": "application/json"}, json.dumps(completion("I see."))

VISION = [
    pytest.param(router_unloaded, False, id="llama.cpp-router-text-only"),
    pytest.param(lmstudio_v0("llama-3.2-3b"), False, id="lmstudio-llm"),
    pytest.param(openrouter("mistralai/mistral-7b-instruct"), False, id="openrouter-text"),
    pytest.param(ollama_embedding, False, id="ollama-no-vision"),
    pytest.param(router_loaded, True, id="llama.cpp-router-vision"),
    pytest.param(ollama, True, id="ollama-vision"),
    pytest.param(vllm, None, id="vllm-unsaid"),
    pytest.param(llama_cpp_python, None, id="llama-cpp-python-unsaid"),
]


@pytest.mark.parametrize("fake, vision", VISION)
@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
def test_images_refused_before_sending_when_vision_false(mocked, client, fake, vision, streaming):
    model = fake(mocked)
    assert client.model_info(model).vision is vision
    mocked.add_callback("POST", URL, callback=chat_answer)
    before = len(mocked.calls)
    send = (lambda: client.stream("What is this?", model=model, images=[PNG]).result) if streaming else (
        lambda: client.chat("What is this?", model=model, images=[PNG]))
    if vision is False:
        with pytest.raises(boc.VisionNotSupported) as caught:
            send()
        assert model in str(caught.value) and "nothing was sent" in str(caught.value)
        assert len(mocked.calls) == before
    else:
        assert send().text == "I see."
        posts = [c for c in mocked.calls[before:] if c.request.method == "POST"]
        assert len(posts) == 1 and posts[0].request.url == URL
    # Without images the model is still used.
    assert client.chat("Hi", model=model).text == "I see."


def test_images_sent_when_model_info_never_asked(mocked, client):
    mocked.post(URL, json=completion("I see."))
    assert client.chat("What?", images=[PNG]).text == "I see."
    assert len(mocked.calls) == 1


# -- 5. Errors that name the fix ---------------------------------------------------

LLAMACPP_FIX = "-c/--ctx-size"
VLLM_FIX = "--max-model-len"
LCP_FIX = "--n_ctx"
LMSTUDIO_FIX = "LM Studio with a larger context length"
OLLAMA_FIX = "OLLAMA_CONTEXT_LENGTH"
GENERIC_FIX = "Shorten the prompt"


def err(message, **fields):
    return {"error": dict({"message": message}, **fields)}


CONTEXT = [
    # llama.cpp b9553 server-context.cpp:2679-2710, server-task.cpp:1874-1882: numbers also as fields.
    pytest.param(400, err("request (9412 tokens) exceeds the available context size (8192 tokens), try increasing it",
                          code=400, type="exceed_context_size_error", n_prompt_tokens=9412, n_ctx=8192),
                 LLAMACPP, 8192, 9412, LLAMACPP_FIX, id="llama.cpp"),
    # llama.cpp OLD (c392e509, server.cpp:2936-2970), context shift disabled.
    pytest.param(400, err("the request exceeds the available context size. try increasing the context size or "
                          "enable context shift", code=400, type="invalid_request_error"),
                 LLAMACPP, None, None, LLAMACPP_FIX, id="llama.cpp-feb-2025"),
    # vLLM engine/serving.py @ 00bd1493b3e82d6c13c68ee8a0e1c5a96707e190 _validate_input.
    pytest.param(400, err("This model's maximum context length is 4096 tokens. However, your request has 5000 input "
                          "tokens. Please reduce the length of the input messages.", type="BadRequestError",
                          param="input_tokens", code=400), {}, 4096, 5000, VLLM_FIX, id="vllm-input"),
    pytest.param(400, err("This model's maximum context length is 4096 tokens. However, your request has 93196 input "
                          "tokens. Please reduce the length of the input messages. (parameter=input_tokens, "
                          "value=93196)", type="BadRequestError", param="input_tokens", code=400),
                 {}, 4096, 93196, VLLM_FIX, id="vllm-input-with-context"),
    pytest.param(400, err("'max_tokens' or 'max_completion_tokens' is too large: 500. This model's maximum context "
                          "length is 4096 tokens and your request has 3700 input tokens (500 > 4096 - 3700).",
                          type="BadRequestError", param="max_tokens", code=400), {}, 4096, 4200, VLLM_FIX,
                 id="vllm-max-tokens"),
    # OpenAI (survey §8): legacy completion wording and the chat wording.
    pytest.param(400, err("This model's maximum context length is 4097 tokens. However, you requested 5000 tokens "
                          "(4000 in the messages, 1000 in the completion). Please reduce the length of the messages "
                          "or completion.", type="invalid_request_error", param="messages",
                          code="context_length_exceeded"), {}, 4097, 5000, GENERIC_FIX, id="openai-legacy"),
    pytest.param(400, err("This model's maximum context length is 8192 tokens. However, your messages resulted in "
                          "9000 tokens. Please reduce the length of the messages.", type="invalid_request_error",
                          param="messages", code="context_length_exceeded"), {}, 8192, 9000, GENERIC_FIX,
                 id="openai-messages"),
    pytest.param(400, err("This model's maximum context length is 8192 tokens. However, your messages resulted in "
                          "9000 tokens (8000 in the messages, 1000 in the functions). Please reduce the length of "
                          "the messages or functions.", type="invalid_request_error", param="messages",
                          code="context_length_exceeded"), {}, 8192, 9000, GENERIC_FIX, id="openai-functions"),
    # llama-cpp-python @ 3691546f llama_cpp/server/errors.py:48-82: max_tokens None → "None in the completion".
    pytest.param(400, err("This model's maximum context length is 2048 tokens. However, you requested 3000 tokens "
                          "(3000 in the messages, None in the completion). Please reduce the length of the messages "
                          "or completion.", type="invalid_request_error", param="messages",
                          code="context_length_exceeded"), {}, 2048, 3000, LCP_FIX, id="llama-cpp-python-server"),
    # llama-cpp-python llama.py:1344-1347, unmapped (errors.py: any other exception → 500).
    pytest.param(500, err("Requested tokens (3000) exceed context window of 2048", type="internal_server_error",
                          param=None, code=None), {}, 2048, 3000, LCP_FIX, id="llama-cpp-python-raw"),
    # LM Studio: lmstudio-bug-tracker #237, #546 (typo "when context the overflows") and page-assist#356.
    pytest.param(400, {"error": "Trying to keep the first 15857 tokens when context the overflows. However, the model "
                                "is loaded with context length of only 4096 tokens, which is not enough. Try to load "
                                "the model with a larger context length, or provide a shorter input."},
                 {}, 4096, 15857, LMSTUDIO_FIX, id="lmstudio"),
    pytest.param(400, {"error": "Trying to keep the first 9000 tokens when context overflows. However, the model is "
                                "loaded with context length of only 8192 tokens, which is not enough. Try to load the "
                                "model with a larger context length, or provide a shorter input."},
                 {}, 8192, 9000, LMSTUDIO_FIX, id="lmstudio-no-typo"),
    # OpenRouter (survey §7, third-party fixture).
    pytest.param(400, err("This endpoint's maximum context length is 200000 tokens. However, you requested about "
                          "250000 tokens (240000 of text input, 10000 in the output). Please reduce the length of "
                          "either one, or use the \"middle-out\" transform to compress your prompt automatically.",
                          code=400), {}, 200000, 250000, GENERIC_FIX, id="openrouter"),
    # Ollama runner v0.20.0 runner/ollamarunner/runner.go:130,151,911 and HEAD llm/llama_server.go:279-319,
    # through /v1 (openai/openai.go:21-30).
    pytest.param(400, err("the input length exceeds the context length", type="invalid_request_error", param=None,
                          code=None), {}, None, None, OLLAMA_FIX, id="ollama"),
    pytest.param(400, err("the prompt is longer than the context length currently available to the model; shorten "
                          "the prompt, adjust the context length in settings, or use a model with a longer context "
                          "length", type="invalid_request_error", param=None, code=None), {}, None, None, OLLAMA_FIX,
                 id="ollama-head"),
    # LiteLLM 1.110.2 exceptions.py:609-649, old body with type/param null and code "400"; the
    # upstream (vLLM) words it, so vLLM's fix.
    pytest.param(400, err("litellm.ContextWindowExceededError: litellm.BadRequestError: Hosted_vllmException - This "
                          "model's maximum context length is 4096 tokens. However, your request has 5000 input "
                          "tokens. Please reduce the length of the input messages.", type=None, param=None,
                          code="400"), {"x-litellm-version": "1.110.2"}, 4096, 5000, VLLM_FIX, id="litellm-vllm"),
    pytest.param(400, err("litellm.ContextWindowExceededError: litellm.BadRequestError: OpenAIException - This "
                          "model's maximum context length is 8192 tokens. However, your messages resulted in 9000 "
                          "tokens. Please reduce the length of the messages. LiteLLM Retried: 2 times, LiteLLM Max "
                          "Retries: 2", type="invalid_request_error", param=None, code="400"),
                 {"x-litellm-version": "1.110.2"}, 8192, 9000, GENERIC_FIX, id="litellm-openai"),
]


def server_message(body):
    error = body["error"]
    return error if isinstance(error, str) else error["message"]


@pytest.mark.parametrize("status, body, headers, limit, requested, fix", CONTEXT)
@pytest.mark.parametrize("as_500", [False, True], ids=["own-status", "as-500"])
def test_context_length_exceeded(mocked, fast_retries, status, body, headers, limit, requested, fix, as_500):
    mocked.post(URL, status=500 if as_500 else status, json=body, headers=headers)
    with boc.Client(BASE, model="m", max_retries=2) as c, pytest.raises(boc.ContextLengthExceeded) as caught:
        c.chat("a long prompt")
    error = caught.value
    assert (error.limit, error.requested) == (limit, requested)
    assert fix in str(error)
    assert server_message(body)[:40] in str(error)
    assert len(mocked.calls) == 1  # never retried


@pytest.mark.parametrize("status, body, headers, limit, requested, fix", CONTEXT)
def test_context_length_exceeded_in_a_stream(status, body, headers, limit, requested, fix):
    stream = feed([sse(chunk("Once upon"), chunk(" a time"), body, done=True)])
    with pytest.raises(boc.ContextLengthExceeded) as caught:
        for _ in stream:
            pass
    error = caught.value
    assert isinstance(error, boc.StreamInterrupted)
    assert error.partial is not None and error.partial.text == "Once upon a time"
    assert (error.limit, error.requested) == (limit, requested)
    assert fix in str(error)


@pytest.mark.parametrize("status, body, headers, limit, requested, fix", CONTEXT[:1] + CONTEXT[3:4])
def test_context_length_exceeded_as_the_first_event_of_a_stream(mocked, client, status, body, headers, limit,
                                                                requested, fix):
    # vLLM streaming errors: "data: {"error":{...}}" then "data: [DONE]" (engine/protocol.py, serving.py).
    mocked.post(URL, body=sse(body), content_type="text/event-stream", headers=headers)
    with pytest.raises(boc.ContextLengthExceeded) as caught:
        client.stream("a long prompt").result
    assert (caught.value.limit, caught.value.requested) == (limit, requested)
    assert fix in str(caught.value)
    assert len(mocked.calls) == 1


def test_llamacpp_numbers_come_from_the_fields(mocked, client):
    # server-task.cpp:1874-1882: n_prompt_tokens and n_ctx inside "error"; they win over the text.
    mocked.post(URL, status=400, headers=LLAMACPP, json=err(
        "request (1 tokens) exceeds the available context size (2 tokens), try increasing it", code=400,
        type="exceed_context_size_error", n_prompt_tokens=5000, n_ctx=4096))
    with pytest.raises(boc.ContextLengthExceeded) as caught:
        client.chat("long")
    assert (caught.value.limit, caught.value.requested) == (4096, 5000)
    assert LLAMACPP_FIX in str(caught.value)


def test_legacy_wording_names_the_fix_of_the_server_model_info_found(mocked, client):
    # The OpenAI legacy wording is the one llama-cpp-python imitates (errors.py:48-82); once
    # model_info() knows the server, the fix is its own.
    llama_cpp_python(mocked)
    client.model_info("llama-2-7b")
    mocked.post(URL, status=400, json=err(
        "This model's maximum context length is 2048 tokens. However, you requested 2300 tokens (2000 in the "
        "messages, 300 in the completion). Please reduce the length of the messages or completion.",
        type="invalid_request_error", param="messages", code="context_length_exceeded"))
    with pytest.raises(boc.ContextLengthExceeded) as caught:
        client.chat("long", model="llama-2-7b", max_tokens=300)
    assert (caught.value.limit, caught.value.requested) == (2048, 2300)
    assert LCP_FIX in str(caught.value)


def test_ollama_overflow_takes_the_window_model_info_found(mocked, client):
    model = ollama(mocked)
    client.model_info(model)
    mocked.post(URL, status=400, json=err("the input length exceeds the context length",
                                          type="invalid_request_error", param=None, code=None))
    with pytest.raises(boc.ContextLengthExceeded) as caught:
        client.chat("long", model=model)
    assert (caught.value.limit, caught.value.requested) == (8192, None)
    assert OLLAMA_FIX in str(caught.value) and "num_ctx" in str(caught.value)


TOOLS = [
    # vLLM (survey §5, "Tools refusal"; wording from third-party fixtures).
    pytest.param(400, err('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
                          type="BadRequestError", param=None, code=400), {}, "--enable-auto-tool-choice",
                 boc.BadRequest, id="vllm"),
    # Ollama fb307609 server/images.go:43-51,573, routes.go:211,3107-3110, via /v1.
    pytest.param(400, err("registry.ollama.ai/library/gemma2:2b does not support tools", type="invalid_request_error",
                          param=None, code=None), {}, "capabilities list tools", boc.BadRequest, id="ollama"),
    # llama.cpp b9553 server-common.cpp:919-930: std::runtime_error → 500 server_error.
    pytest.param(500, err("tools param requires --jinja flag", code=500, type="server_error"), LLAMACPP, "--jinja",
                 boc.ServerError, id="llama.cpp"),
    pytest.param(500, err("tool_choice param requires --jinja flag", code=500, type="server_error"), {}, "--jinja",
                 boc.ServerError, id="llama.cpp-tool-choice"),
    # OpenRouter (survey §7): pydantic-ai#2896, OpenManus#55, zed#36094.
    pytest.param(404, err("No endpoints found that support tool use. To learn more about provider routing, visit: "
                          "https://openrouter.ai/docs/provider-routing", code=404), {}, "OpenRouter",
                 boc.EndpointNotFound, id="openrouter"),
    pytest.param(404, err("No endpoints found that support tool use. To learn more about provider routing, visit: "
                          "https://openrouter.ai/docs/guides/routing/provider-selection", code=404), {},
                 "OpenRouter", boc.EndpointNotFound, id="openrouter-new-link"),
    pytest.param(404, err("No endpoints found that support the provided 'tool_choice' value. To learn more about "
                          "provider routing, visit: https://openrouter.ai/docs/provider-routing", code=404), {},
                 "OpenRouter", boc.EndpointNotFound, id="openrouter-tool-choice"),
]


@pytest.mark.parametrize("status, body, headers, fix, usual", TOOLS)
def test_tools_not_supported(mocked, fast_retries, status, body, headers, fix, usual):
    mocked.post(URL, status=status, json=body, headers=headers)
    with boc.Client(BASE, model="m", max_retries=2) as c, pytest.raises(boc.ToolsNotSupported) as caught:
        c.chat("Weather?", tools=[TOOL])
    assert fix in str(caught.value)
    assert server_message(body)[:30] in str(caught.value)
    assert len(mocked.calls) == 1  # not retried, the 500 neither


@pytest.mark.parametrize("status, body, headers, fix, usual", TOOLS)
def test_tools_wording_without_tools_is_the_usual_class(mocked, client, status, body, headers, fix, usual):
    mocked.post(URL, status=status, json=body, headers=headers)
    with pytest.raises(boc.APIError) as caught:
        client.chat("Hi")
    assert type(caught.value) is usual


IMAGES = [
    # Ollama fb307609 openai/openai.go:738-769 (decodeImageURL): 400 invalid_request_error.
    pytest.param("invalid image input", id="invalid-image-input"),
    pytest.param("image URLs are not currently supported, please use base64 encoded data instead", id="image-urls"),
]


@pytest.mark.parametrize("message", IMAGES)
def test_unsupported_image(mocked, client, message):
    mocked.post(URL, status=400, json=err(message, type="invalid_request_error", param=None, code=None))
    with pytest.raises(boc.UnsupportedImage) as caught:
        client.chat("What is this?", images=[PNG])
    assert message in str(caught.value) and "data: URL" in str(caught.value)
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("message", IMAGES)
def test_image_wording_without_images_is_a_bad_request(mocked, client, message):
    mocked.post(URL, status=400, json=err(message, type="invalid_request_error", param=None, code=None))
    with pytest.raises(boc.BadRequest) as caught:
        client.chat("Hi")
    assert type(caught.value) is boc.BadRequest


# -- Hostile native paths ------------------------------------------------------


def echo_key(request):
    """An Ollama /api/show that echoes the Authorization header in its answer."""
    key = request.headers.get("authorization", "")
    return json.dumps({"model_info": {"general.architecture": "llama", "llama.context_length": 4096,
                                      "general.echo": key}, "capabilities": ["completion"],
                       "license": "sent with " + key}).encode()


def test_a_key_echoed_by_a_native_path_stays_out_of_model_info(fault_server):
    models = json.dumps(listing({"id": "m", "object": "model", "owned_by": "library"})).encode()
    fault_server.script(sv.reply(200, models), sv.answer(echo_key), sv.reply(200, b'{"models": []}'))
    with boc.Client(fault_server.url, api_key=CANARY_KEY, model="m", max_retries=0) as c:
        info = c.model_info()
    assert info.server == "ollama" and info.max_context_length == 4096
    shown = repr(info) + json.dumps(info.raw) + repr(info.sources)
    assert CANARY_KEY not in shown and "***" in json.dumps(info.raw["/api/show"])


def test_a_native_path_that_sends_gigabytes_says_nothing_in_bounded_memory(fault_server):
    # /api/show answering an endless body: read up to max_event_bytes, then
    # dropped; the listing's answer still stands.
    models = json.dumps(listing({"id": "m", "object": "model", "owned_by": "library"})).encode()
    fault_server.script(sv.reply(200, models),
                        sv.answer(endless(b'{"model_info": {"pad": "' + b"x" * 65536, 4 << 30), framing="chunked"),
                        sv.reply(404, b"404 page not found", ctype="text/plain"))
    with boc.Client(fault_server.url, model="m", max_retries=0, max_event_bytes=1 << 20) as c, \
            peak_memory() as box:
        info = c.model_info(stream_timeout=20)
    assert info.server is None and info.sources == ["/models"]
    assert box["peak"] < 16 << 20
