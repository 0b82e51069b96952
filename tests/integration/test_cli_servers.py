"""The command line against the real servers."""
import os
import shutil
import subprocess
import sys

import pytest

import bor_openai_compat as boc
from helpers import free_port


@pytest.fixture(params=["llama", "litellm"])
def server(request):
    name = request.param
    real = request.getfixturevalue("llama_server" if name == "llama" else "litellm_server")
    real.model = "tiny-chat" if name == "llama" else "mock-gpt"
    return real


def run(capsys, *argv):
    code = boc.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_doctor_on_a_healthy_server(server, capsys):
    code, out, err = run(capsys, "doctor", "--base-url", server.url, "--api-key", server.key, "--model", server.model)
    lines = out.splitlines()
    assert code == 0, out + err
    assert all(line.startswith("✓") for line in lines) and len(lines) == 7, out


def test_doctor_refused_port(capsys):
    code, out, _ = run(capsys, "doctor", "--base-url", "http://127.0.0.1:%d/v1" % free_port(), "--model", "m")
    assert code == 1 and "✗ nothing answers" in out and "isn't running" in out


def test_doctor_wrong_path(server, capsys):
    base = server.url.rsplit("/v1", 1)[0] + "/api"
    code, out, _ = run(capsys, "doctor", "--base-url", base, "--api-key", server.key, "--model", server.model)
    assert code == 1
    assert "✗ wrong path: %s/models is not found but %s/models answers" % (base, server.url) in out


def test_doctor_unknown_model(server, capsys):
    code, out, _ = run(capsys, "doctor", "--base-url", server.url, "--api-key", server.key, "--model", server.model + "x")
    assert code == 1
    assert "✗ model %r is not served here; did you mean %r?" % (server.model + "x", server.model) in out


def test_doctor_vision_on_a_text_model(llama_server, capsys):
    code, out, _ = run(capsys, "doctor", "--base-url", llama_server.url, "--api-key", llama_server.key,
                       "--model", "tiny-chat", "--vision")
    assert code == 1 and "✗ images are refused" in out and "image input is not supported" in out


def test_chat_and_models(server, capsys):
    code, out, _ = run(capsys, "chat", "--base-url", server.url, "--api-key", server.key, "--model", server.model,
                       "--max-tokens", "12", "Hello")
    assert code == 0 and len(out.strip()) > 0
    code, out, _ = run(capsys, "models", "--base-url", server.url, "--api-key", server.key)
    assert code == 0 and server.model in out.split()


def test_console_script(llama_server):
    exe = shutil.which("bor-openai-compat") or shutil.which("bor-openai-compat", path=os.path.dirname(sys.executable))
    if not exe:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but the console script is not installed", pytrace=False)
        pytest.skip("the package is not installed (pip install -e .)")
    proc = subprocess.run([exe, "models", "--base-url", llama_server.url, "--api-key", llama_server.key],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.split() == [b"tiny-chat", b"tiny-code"], proc.stderr
