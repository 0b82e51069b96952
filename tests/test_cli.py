"""The command line: chat, models and doctor, in-process against mocks."""
import json
import os
import signal
import subprocess
import sys

import pytest

import bor_openai_compat as boc
import faultserver as fs
from helpers import BASE, URL, chunk, completion, free_port, sse, text_stream

MODELS = {"object": "list", "data": [{"id": "llama3:latest"}, {"id": "qwen2.5:7b"}]}


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", BASE)
    monkeypatch.setenv("OPENAI_MODEL", "llama3:latest")


def run(capsys, *argv):
    code = boc.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_chat_streams_to_stdout(mocked, env, capsys):
    mocked.post(URL, body=text_stream("Bon", "jour"), content_type="text/event-stream")
    code, out, err = run(capsys, "chat", "Say hello", "--max-tokens", "5", "--temperature", "0.5", "--system", "be brief")
    assert code == 0 and out == "Bonjour\n" and err == ""
    sent = json.loads(mocked.calls[0].request.body)
    assert sent["stream"] is True and sent["max_tokens"] == 5 and sent["temperature"] == 0.5
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Say hello"}]


def test_reasoning_goes_to_stderr(mocked, env, capsys):
    body = sse(chunk(reasoning_content="thinking..."), chunk("42"), chunk(finish="stop"))
    mocked.post(URL, body=body, content_type="text/event-stream")
    code, out, err = run(capsys, "chat", "?")
    assert code == 0 and out == "42\n" and err == "thinking..."


def test_chat_no_stream_and_json(mocked, env, capsys):
    mocked.post(URL, json=completion("whole"))
    code, out, _ = run(capsys, "chat", "--no-stream", "hi")
    assert code == 0 and out == "whole\n"
    assert "stream" not in json.loads(mocked.calls[0].request.body)
    code, out, _ = run(capsys, "chat", "--json", "hi")
    assert code == 0 and json.loads(out)["choices"][0]["message"]["content"] == "whole"


def test_chat_reads_stdin(mocked, env, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin"))
    mocked.post(URL, json=completion("ok"))
    run(capsys, "chat", "--no-stream", "-")
    assert json.loads(mocked.calls[0].request.body)["messages"][0]["content"] == "from stdin"


def test_chat_with_images(mocked, env, capsys, tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    mocked.post(URL, json=completion("a picture"))
    code, _, _ = run(capsys, "chat", "--no-stream", "--image", str(image), "--image", str(image), "what?")
    parts = json.loads(mocked.calls[0].request.body)["messages"][0]["content"]
    assert code == 0 and [p["type"] for p in parts] == ["text", "image_url", "image_url"]


def test_a_non_streaming_server_still_answers(mocked, env, capsys):
    mocked.post(URL, json=completion("all at once"))
    code, out, err = run(capsys, "chat", "hi")
    assert code == 0 and out == "all at once\n" and "does not stream the OpenAI way" in err


def test_models(mocked, env, capsys):
    mocked.get(BASE + "/models", json=MODELS)
    assert run(capsys, "models") == (0, "llama3:latest\nqwen2.5:7b\n", "")


@pytest.mark.parametrize(
    "status, body, code, words",
    [
        (401, {"error": "Unauthorized"}, 5, "wants an API key"),
        (404, {"error": {"message": "model 'llama3:latest' not found"}}, 6, "is not served"),
        (404, "404 page not found", 6, "does not exist"),
        (500, {"error": {"message": "boom"}}, 7, "The server failed"),
        (200, "<html>proxy</html>", 8, "not JSON"),
    ],
    ids=["auth", "model", "path", "server", "invalid"],
)
def test_errors_are_one_line_with_a_family_status(mocked, env, capsys, status, body, code, words):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    mocked.post(URL, status=status, **kwargs)
    mocked.get(BASE + "/models", json=MODELS)
    result, out, err = run(capsys, "chat", "--no-stream", "hi")
    assert result == code
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_configuration_error_and_refused(capsys, monkeypatch):
    code, _, err = run(capsys, "models")
    assert code == 2 and "no base URL" in err
    code, _, err = run(capsys, "models", "--base-url", "http://127.0.0.1:%d/v1" % free_port())
    assert code == 3 and "isn't running" in err


def test_debug_shows_the_traceback(mocked, env, capsys):
    mocked.post(URL, status=500, json={"error": {"message": "boom"}})
    code, _, err = run(capsys, "chat", "--no-stream", "--debug", "hi")
    assert code == 7 and "Traceback" in err and "error: The server failed" in err


# -- doctor ------------------------------------------------------------------


def test_doctor_healthy(mocked, env, capsys):
    mocked.get(BASE + "/models", json=MODELS)
    mocked.post(URL, json=completion("OK"))
    mocked.post(URL, body=text_stream("1", "2"), content_type="text/event-stream")
    code, out, _ = run(capsys, "doctor")
    lines = out.splitlines()
    assert code == 0 and all(line.startswith("✓") for line in lines), out
    assert len(lines) == 7
    assert "streaming works the OpenAI way" in lines[-1]


def test_doctor_missing_v1(mocked, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_MODEL", "m")
    mocked.get("http://api.test/models", status=404, body="404 page not found")
    mocked.get("http://api.test/v1/models", json=MODELS)
    code, out, _ = run(capsys, "doctor", "--base-url", "http://api.test")
    assert code == 1
    assert "✗ wrong path: http://api.test/models is not found but http://api.test/v1/models answers: add /v1 to the base URL" in out


def test_doctor_refused(capsys):
    code, out, _ = run(capsys, "doctor", "--base-url", "http://127.0.0.1:%d/v1" % free_port(), "--model", "m")
    assert code == 1 and "the local server isn't running or the base URL/port is wrong" in out


def test_doctor_unknown_model_names_the_closest(mocked, capsys):
    mocked.get(BASE + "/models", json=MODELS)
    mocked.post(URL, status=404, json={"error": {"message": "model 'llama3' not found"}})
    code, out, _ = run(capsys, "doctor", "--base-url", BASE, "--model", "llama3")
    assert code == 1
    assert "✗ model 'llama3' is not served here; did you mean 'llama3:latest'?" in out


def test_doctor_streaming_missing(mocked, env, capsys):
    mocked.get(BASE + "/models", json=MODELS)
    mocked.post(URL, json=completion("OK"))
    code, out, _ = run(capsys, "doctor")
    assert code == 1
    assert "✗ streaming: no." in out and "application/json instead of text/event-stream" in out


def test_doctor_vision(mocked, env, capsys):
    mocked.get(BASE + "/models", json=MODELS)
    mocked.post(URL, json=completion("OK"))
    mocked.post(URL, body=text_stream("1"), content_type="text/event-stream")
    mocked.post(URL, status=400, json={"error": {"message": "this model does not support image input"}})
    code, out, _ = run(capsys, "doctor", "--vision")
    assert code == 1 and "✗ images are refused" in out
    sent = json.loads(mocked.calls[-1].request.body)["messages"][0]["content"][1]["image_url"]["url"]
    assert sent.startswith("data:image/png;base64,")


def test_doctor_without_a_base_url_looks_at_local_ports(mocked, capsys, monkeypatch):
    monkeypatch.setattr(boc, "_LOCAL_SERVERS", (("Ollama", "http://localhost:11434/v1"), ("vLLM", "http://localhost:8000/v1")))
    mocked.get("http://127.0.0.1:8000/v1/models", json={"data": [{"id": "Qwen/Qwen2.5-7B"}]})
    code, out, _ = run(capsys, "doctor")
    assert code == 1
    assert "nothing at http://127.0.0.1:11434/v1 (Ollama)" in out
    assert "vLLM answers at http://127.0.0.1:8000/v1 (Qwen/Qwen2.5-7B)" in out
    assert "export OPENAI_BASE_URL=http://127.0.0.1:8000/v1" in out


# -- As a program ------------------------------------------------------------


def cli(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.Popen([sys.executable, "-m", "bor_openai_compat"] + list(args), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_python_dash_m(fault_server):
    fault_server.script(fs.stream([sse(chunk("hi "), done=False), sse(chunk("there"), chunk(finish="stop"))]))
    proc = cli("chat", "--base-url", fault_server.url, "--model", "m", "hello")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == b"hi there\n", err


def test_ctrl_c_keeps_the_output_and_exits_130(fault_server):
    fault_server.script(fs.stream([sse(chunk("word%d " % i), done=False) for i in range(100)], delay=0.1))
    proc = cli("chat", "--base-url", fault_server.url, "--model", "m", "hello")
    first = proc.stdout.read(6)  # "word0 "
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=10)
    assert first == b"word0 "
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert (first + rest).endswith(b"\n")
