"""Real OpenAI-compatible servers, started once per test session on 127.0.0.1.

llama.cpp's ``llama-server`` (built by ``.ci/build-llama-server``, found
through ``$LLAMA_SERVER`` or the build cache) serves two tiny models written
by ``tinymodel.py``; llama-cpp-python's own server serves one of them; the
LiteLLM proxy serves mocked models. When a server is
missing its tests skip, except under ``CI=true``, where that is a failure.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests

from binaries import llama_server_binary
from helpers import free_port

LLAMA_KEY = "sk-llama-test-key"
LITELLM_KEY = "sk-litellm-master-key"
IN_CI = os.environ.get("CI", "").lower() == "true"

LITELLM_CONFIG = """\
model_list:
  - model_name: mock-gpt
    litellm_params:
      model: openai/mock-gpt
      api_key: unused
      mock_response: "Hello from the LiteLLM mock, streamed in pieces."
  - model_name: mock-llama
    litellm_params:
      model: openai/mock-llama
      api_key: unused
      mock_response: "Another mocked answer."
general_settings:
  master_key: %s
""" % LITELLM_KEY


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def missing(what):
    if IN_CI:
        pytest.fail("CI=true but %s; .ci/run should have installed it" % what, pytrace=False)
    pytest.skip(what)


class Server:
    """A server process and what the tests need to talk to it."""

    def __init__(self, name, args, url, key, log_path, env=None, cwd=None):
        self.name, self.url, self.key, self.log_path = name, url, key, log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=cwd)

    def wait_ready(self, path, deadline):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            try:
                r = requests.get(self.url + path, headers={"Authorization": "Bearer " + self.key}, timeout=2)
                if r.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        with open(self.log_path, "rb") as f:
            tail = f.read()[-3000:].decode("utf-8", "replace")
        pytest.fail("%s did not answer within %ss (exit code %s). Its log:\n%s"
                    % (self.name, deadline, self.proc.returncode, tail), pytrace=False)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    try:
        from tinymodel import write_model
    except ImportError as exc:
        missing("the model writer needs %s (pip install '.[integration]')" % exc.name)
    folder = tmp_path_factory.mktemp("models")
    write_model(folder / "tiny-chat.gguf", seed=1)
    write_model(folder / "tiny-code.gguf", seed=2)
    return folder


@pytest.fixture(scope="session")
def llama_server(tiny_models, tmp_path_factory):
    binary = llama_server_binary()
    if not binary:
        missing("llama-server is not built (run .ci/build-llama-server)")
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    server = Server(
        "llama-server",
        [binary, "--models-dir", str(tiny_models), "--api-key", LLAMA_KEY, "--host", "127.0.0.1",
         "--port", str(port), "--no-webui", "-c", "2048", "-t", "1", "-np", "2"],
        "http://127.0.0.1:%d/v1" % port, LLAMA_KEY, log,
    )
    yield server.wait_ready("/models", 60)
    server.stop()


def _one_model_llama(name, model, folder, *options, context=4096, parallel=1):
    """A llama-server serving one model file, with ``options`` of its own."""
    binary = llama_server_binary()
    if not binary:
        missing("llama-server is not built (run .ci/build-llama-server)")
    port = free_port()
    return Server(
        name,
        [binary, "-m", str(model), *options, "--host", "127.0.0.1", "--port", str(port),
         "--no-webui", "-c", str(context), "-t", "1", "-np", str(parallel)],
        "http://127.0.0.1:%d/v1" % port, "", folder / "server.log",
    )


@pytest.fixture
def single_llama(tiny_models, tmp_path):
    """A llama-server of this test's own, serving one model, to be killed."""
    server = _one_model_llama("llama-server (single model)", tiny_models / "tiny-chat.gguf", tmp_path)
    yield server.wait_ready("/models", 60)
    server.stop()


def _llama_cpp_python(name, model, folder, n_ctx):
    """llama-cpp-python's own server (python -m llama_cpp.server), no key."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        missing("llama-cpp-python's server is not installed (%s)" % exc)
    port = free_port()
    return Server(
        name,
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)],
        "http://127.0.0.1:%d/v1" % port, "", folder / "server.log",
    )


@pytest.fixture(scope="session")
def llama_cpp_python_server(tiny_models, tmp_path_factory):
    server = _llama_cpp_python("llama-cpp-python server", tiny_models / "tiny-chat.gguf",
                               tmp_path_factory.mktemp("llama-cpp-python"), 512)
    yield server.wait_ready("/models", 60)
    server.stop()


def _litellm(tmp_path_factory, name, config):
    exe = shutil.which("litellm") or shutil.which("litellm", path=os.path.dirname(sys.executable))
    if not exe:
        missing("the LiteLLM proxy is not installed (pip install '.[integration]')")
    folder = tmp_path_factory.mktemp("litellm")
    (folder / "config.yaml").write_text(config)
    port = free_port()
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    return Server(
        name,
        [exe, "--config", str(folder / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)],
        "http://127.0.0.1:%d/v1" % port, LITELLM_KEY, folder / "server.log", env=env, cwd=str(folder),
    )


@pytest.fixture(scope="session")
def litellm_server(tmp_path_factory):
    server = _litellm(tmp_path_factory, "LiteLLM proxy", LITELLM_CONFIG)
    yield server.wait_ready("/models", 120)
    server.stop()


LITELLM_EMBED_CONFIG = """\
model_list:
  - model_name: mock-embed
    litellm_params:
      model: openai/mock-embed
      api_key: unused
      mock_response: [0.25, -0.5, 1.0]
general_settings:
  master_key: %s
""" % LITELLM_KEY


@pytest.fixture(scope="session")
def litellm_embedding_server(tmp_path_factory):
    """The LiteLLM proxy serving a mocked embedding model (a proxy of its own,
    so that the chat tests' model list stays as it is)."""
    server = _litellm(tmp_path_factory, "LiteLLM proxy (embeddings)", LITELLM_EMBED_CONFIG)
    yield server.wait_ready("/models", 120)
    server.stop()


@pytest.fixture(scope="session")
def llama_embedding_server(tiny_models, tmp_path_factory):
    """llama-server with embeddings on (the OpenAI route refuses pooling 'none')."""
    server = _one_model_llama(
        "llama-server (embeddings)", tiny_models / "tiny-chat.gguf", tmp_path_factory.mktemp("llama-embed"),
        "--embeddings", "--pooling", "mean", context=512,
    )
    yield server.wait_ready("/models", 60)
    server.stop()


@pytest.fixture(scope="session")
def llama_plain_server(tmp_path_factory):
    """llama-server with a tiny model whose tokenizer adds no leading space.

    llama.cpp prefills a response_format grammar with the tokens of the
    template's generation prompt; the usual tiny model's tokenizer puts a "▁"
    after <|im_start|>, which that grammar does not allow.
    """
    if not llama_server_binary():
        missing("llama-server is not built (run .ci/build-llama-server)")
    try:
        from tinymodel import write_model
    except ImportError as exc:
        missing("the model writer needs %s (pip install '.[integration]')" % exc.name)
    folder = tmp_path_factory.mktemp("llama-plain")
    write_model(folder / "tiny-plain.gguf", seed=1, space_prefix=False)
    server = _one_model_llama("llama-server (no space prefix)", folder / "tiny-plain.gguf", folder, context=2048)
    yield server.wait_ready("/models", 60)
    server.stop()


# -- Small windows and configured models (test_model_info.py) ----------------


@pytest.fixture(scope="module")
def llama_small_window(tiny_models, tmp_path_factory):
    """llama-server with -c 512 shared by two slots: a window of 256 per request."""
    server = _one_model_llama(
        "llama-server (small window)", tiny_models / "tiny-chat.gguf", tmp_path_factory.mktemp("llama-small"),
        context=512, parallel=2,
    )
    server.model = str(tiny_models / "tiny-chat.gguf")  # its id in /v1/models: the path
    yield server.wait_ready("/models", 60)
    server.stop()


def _llama_router(name, tiny_models, folder, *options):
    binary = llama_server_binary()
    if not binary:
        missing("llama-server is not built (run .ci/build-llama-server)")
    port = free_port()
    return Server(
        name,
        [binary, "--models-dir", str(tiny_models), *options, "--api-key", LLAMA_KEY, "--host", "127.0.0.1",
         "--port", str(port), "--no-webui", "-c", "256", "-t", "1", "-np", "1"],
        "http://127.0.0.1:%d/v1" % port, LLAMA_KEY, folder / "server.log",
    )


@pytest.fixture(scope="module")
def llama_router(tiny_models, tmp_path_factory):
    """llama-server in router mode of this module's own, loading a model on first use."""
    server = _llama_router("llama-server (router)", tiny_models, tmp_path_factory.mktemp("llama-router"))
    yield server.wait_ready("/models", 60)
    server.stop()


@pytest.fixture(scope="module")
def llama_router_manual(tiny_models, tmp_path_factory):
    """llama-server in router mode that loads a model only when POST /models/load asks."""
    server = _llama_router(
        "llama-server (router, no autoload)", tiny_models, tmp_path_factory.mktemp("llama-manual"),
        "--no-models-autoload",
    )
    yield server.wait_ready("/models", 60)
    server.stop()


@pytest.fixture(scope="module")
def llama_cpp_python_small(tiny_models, tmp_path_factory):
    """llama-cpp-python's server with a window of 256 tokens."""
    server = _llama_cpp_python("llama-cpp-python server (n_ctx 256)", tiny_models / "tiny-chat.gguf",
                               tmp_path_factory.mktemp("llama-cpp-python-small"), 256)
    server.model = str(tiny_models / "tiny-chat.gguf")
    yield server.wait_ready("/models", 60)
    server.stop()


LITELLM_MODEL_INFO_CONFIG = """\
model_list:
  - model_name: mock-vision
    litellm_params:
      model: openai/mock-vision
      api_key: unused
      mock_response: "A mocked look at the picture."
    model_info:
      max_input_tokens: 32768
      max_output_tokens: 4096
      supports_vision: true
      supports_function_calling: true
  - model_name: mock-plain
    litellm_params:
      model: openai/mock-plain
      api_key: unused
      mock_response: "A mocked answer."
    model_info:
      max_input_tokens: 8192
      supports_vision: false
      supports_function_calling: false
  - model_name: mock-bare
    litellm_params:
      model: openai/mock-bare
      api_key: unused
      mock_response: "Nothing configured."
general_settings:
  master_key: %s
""" % LITELLM_KEY


@pytest.fixture(scope="module")
def litellm_model_info_server(tmp_path_factory):
    """The LiteLLM proxy with model_info: blocks in its config (a proxy of its
    own, so that the chat tests' model list stays as it is)."""
    server = _litellm(tmp_path_factory, "LiteLLM proxy (model_info)", LITELLM_MODEL_INFO_CONFIG)
    yield server.wait_ready("/models", 120)
    server.stop()


# -- Batches at scale (test_batch_servers.py) ---------------------------------

LITELLM_TWO_LLAMAS_CONFIG = """\
model_list:
  - model_name: tiny
    litellm_params:
      model: openai/tiny-chat.gguf
      api_base: %s
      api_key: unused
  - model_name: tiny
    litellm_params:
      model: openai/tiny-chat.gguf
      api_base: %s
      api_key: unused
router_settings:
  routing_strategy: simple-shuffle
general_settings:
  master_key: %s
"""


@pytest.fixture(scope="module")
def two_llamas(tiny_models, tmp_path_factory):
    """Two llama-servers serving the same model, two slots each, with /metrics."""
    servers = [
        _one_model_llama("llama-server (backend %d)" % n, tiny_models / "tiny-chat.gguf",
                         tmp_path_factory.mktemp("llama-backend"), "--metrics", context=1024, parallel=2)
        for n in (1, 2)
    ]
    try:
        yield [server.wait_ready("/models", 60) for server in servers]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def litellm_two_llamas(two_llamas, tmp_path_factory):
    """The LiteLLM proxy routing the one model name "tiny" to both of two_llamas."""
    config = LITELLM_TWO_LLAMAS_CONFIG % (two_llamas[0].url, two_llamas[1].url, LITELLM_KEY)
    server = _litellm(tmp_path_factory, "LiteLLM proxy (two llama-servers)", config)
    yield server.wait_ready("/models", 120)
    server.stop()


@pytest.fixture(scope="module")
def llama_parallel4(tiny_models, tmp_path_factory):
    """A llama-server with four slots (--parallel 4), with /metrics."""
    server = _one_model_llama(
        "llama-server (--parallel 4)", tiny_models / "tiny-chat.gguf", tmp_path_factory.mktemp("llama-np4"),
        "--metrics", context=1024, parallel=4,
    )
    yield server.wait_ready("/models", 60)
    server.stop()
