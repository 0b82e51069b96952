"""The command line: chat, models and doctor, in-process against mocks."""
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import bor_openai_compat as boc
import server as sv
from helpers import BASE, URL, asleep, chunk, completion, free_port, http_chunk, sse, text_stream

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
    assert len(lines) == 8
    assert "streaming works the OpenAI way" in lines[-2]
    assert lines[-1] == "✓ the server says: context window - (now/most), vision -, tools -, reasoning -, loaded -"


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


# -- Output a server cannot forge, and no tracebacks ---------------------------


def test_an_error_stays_on_one_line_with_its_control_characters_shown(mocked, env, capsys):
    mocked.post(URL, status=400, json={"error": {"message": "no\x1b]0;pwned\x07\r\nfake: line\x1b[2K"}})
    code, out, err = run(capsys, "chat", "--no-stream", "hi")
    assert code == 7 and out == ""
    assert err.count("\n") == 1 and "\x1b" not in err and "\r" not in err
    assert "no\\x1b]0;pwned\\x07\\nfake: line\\x1b[2K" in err


def test_model_ids_stay_one_per_line(mocked, env, capsys):
    mocked.get(BASE + "/models", json={"data": [{"id": "a\nb\x1b[1A"}, {"id": "c"}]})
    assert run(capsys, "models") == (0, "a\\nb\\x1b[1A\nc\n", "")


def test_a_file_or_a_pipe_gets_the_answer_as_sent(mocked, env, capsys):
    mocked.post(URL, body=text_stream("a\x1b[31mred\r\n", "\tend"), content_type="text/event-stream")
    code, out, _ = run(capsys, "chat", "hi")
    assert code == 0 and out == "a\x1b[31mred\r\n\tend\n"


def test_without_a_prompt_or_a_terminal_the_prompt_is_stdin(mocked, env, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("piped in"))
    mocked.post(URL, json=completion("ok"))
    assert run(capsys, "chat", "--no-stream")[:2] == (0, "ok\n")
    assert json.loads(mocked.calls[0].request.body)["messages"] == [{"role": "user", "content": "piped in"}]


def test_json_needs_a_prompt(env, capsys):
    with pytest.raises(SystemExit) as exit:
        boc.main(["chat", "-i", "--json"])
    assert exit.value.code == 2 and "--json and --schema print one response" in capsys.readouterr().err


def test_schema_prints_the_validated_json(mocked, env, capsys, tmp_path):
    schema = tmp_path / "city.json"
    schema.write_text(json.dumps({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}))
    mocked.post(URL, json=completion("Sure:\n```json\n{\"name\": \"Köln\"}\n```"))
    code, out, err = run(capsys, "chat", "--schema", str(schema), "A city?")
    assert code == 0 and json.loads(out) == {"name": "Köln"}
    sent = json.loads(mocked.calls[0].request.body)
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["name"]


@pytest.mark.parametrize("content, words", [
    (None, "No such file"), ("{broken", "Expecting property name"), ("[1]", "holds a JSON list"),
], ids=["missing", "not-json", "not-an-object"])
def test_schema_file_problems_exit_2(env, capsys, tmp_path, content, words):
    path = tmp_path / "schema.json"
    if content is not None:
        path.write_text(content)
    code, _, err = run(capsys, "chat", "--schema", str(path), "Hi")
    assert code == 2 and words in err


def test_schema_that_never_validates_exits_8(mocked, env, capsys, tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object", "required": ["name"]}')
    mocked.post(URL, json=completion("I do not know."))
    code, out, err = run(capsys, "chat", "--schema", str(schema), "A city?")
    assert code == 8 and out == "" and "not JSON" in err and mocked.calls.__len__() == 2


def keyed(body, key="sk-right"):
    """A callback that answers ``body`` to the right key and 401 to anything else."""

    def callback(request):
        if request.headers.get("Authorization") != "Bearer " + key:
            return 401, {}, json.dumps({"error": {"message": "Invalid API key"}})
        if json.loads(request.body or "{}").get("stream"):
            return 200, {"Content-Type": "text/event-stream"}, text_stream("1", "2")
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    return callback


@pytest.mark.parametrize(
    "models_need_key, chat_needs_key, said",
    [
        (True, True, "the API key is accepted (the server refuses requests without it)"),
        (False, True, "the API key is accepted (the server refuses requests without it)"),
        (False, False, "the server asked for no key (it answers without one; the key set was not checked)"),
    ],
    ids=["models-refused-without", "chat-refused-without", "no-key-needed"],
)
def test_doctor_says_the_key_is_accepted_only_when_it_was_checked(mocked, env, capsys, monkeypatch,
                                                                  models_need_key, chat_needs_key, said):
    import responses

    def maybe_keyed(body, needed):
        check = keyed(body)
        if needed:
            return check
        return lambda request: check(_with_key(request))

    monkeypatch.setenv("OPENAI_API_KEY", "sk-right")
    mocked.add_callback(responses.GET, BASE + "/models", callback=maybe_keyed(MODELS, models_need_key))
    mocked.add_callback(responses.POST, URL, callback=maybe_keyed(completion("OK"), chat_needs_key))
    code, out, _ = run(capsys, "doctor")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 8, out
    assert lines[3] == "✓ " + said


def _with_key(request):
    request.headers["Authorization"] = "Bearer sk-right"
    return request


def test_doctor_without_a_key_says_none_was_asked_for(mocked, env, capsys):
    mocked.get(BASE + "/models", json=MODELS)
    mocked.post(URL, json=completion("OK"))
    mocked.post(URL, body=text_stream("1", "2"), content_type="text/event-stream")
    _, out, _ = run(capsys, "doctor")
    assert "✓ the server asked for no key\n" in out
    assert not any("Authorization" in call.request.headers for call in mocked.calls)


# -- As a program ------------------------------------------------------------


def default_sigint():
    # Whoever started pytest (a shell's `&` ignores SIGINT in its children),
    # the program gets the SIGINT a user's terminal would send it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args, env=None, **kwargs):
    environ = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "bor_openai_compat"] + list(args), env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint, **kwargs)


def held(pieces, release, arrived=None, after=None):
    """Stream ``pieces`` (with none, not even the headers), then hold the
    connection until ``release`` is set; then send ``after`` and end the body,
    or without ``after`` close the connection."""

    def send(conn, piece):
        conn.sendall(http_chunk(piece))

    def script(conn, request):
        if pieces:
            conn.sendall(sv.head(200, "text/event-stream", framing="chunked"))
            for piece in pieces:
                send(conn, piece)
        if arrived is not None:
            arrived.set()
        release.wait(30)
        if after is None:
            return False
        for piece in after:
            send(conn, piece)
        conn.sendall(b"0\r\n\r\n")
        return True

    return script


@pytest.fixture
def release():
    """An event that lets a held answer go on; set when the test ends, whatever happened."""
    event = threading.Event()
    yield event
    event.set()


def test_python_dash_m(fault_server):
    fault_server.script(sv.stream([sse(chunk("hi "), done=False), sse(chunk("there"), chunk(finish="stop"))]))
    proc = cli("chat", "--base-url", fault_server.url, "--model", "m", "hello")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == b"hi there\n", err


def test_ctrl_c_keeps_the_output_and_exits_130(fault_server, release):
    fault_server.script(held([sse(chunk("word0 "), done=False)], release))
    proc = cli("chat", "--base-url", fault_server.url, "--model", "m", "hello")
    first = proc.stdout.read(6)
    asleep(proc.pid)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=10)
    assert first == b"word0 "
    assert proc.returncode == 130, err
    assert err == b""
    assert (first + rest) == b"word0 \n"


@pytest.mark.parametrize(
    "argv, method",
    [
        (["chat", "hello"], "POST"),
        (["chat", "--no-stream", "hello"], "POST"),
        (["chat", "--json", "hello"], "POST"),
        (["models"], "GET"),
        (["doctor"], "GET"),
    ],
    ids=["before-the-first-token", "no-stream", "json", "models", "doctor"],
)
def test_ctrl_c_anywhere_exits_130_without_a_traceback(fault_server, release, argv, method):
    arrived = threading.Event()
    fault_server.script(held([], release, arrived))
    proc = cli(*argv[:1], "--base-url", fault_server.url, "--model", "m", *argv[1:])
    assert arrived.wait(30), "the request never came"
    asleep(proc.pid)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    assert fault_server.requests[0].method == method


def test_debug_shows_the_traceback_of_ctrl_c(fault_server, release):
    arrived = threading.Event()
    fault_server.script(held([], release, arrived))
    proc = cli("models", "--debug", "--base-url", fault_server.url)
    assert arrived.wait(30)
    asleep(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130 and b"Traceback" in err and b"KeyboardInterrupt" in err


def test_a_closed_pipe_ends_quietly(fault_server, release):
    """`chat ... | head -c 5`: the reader leaves while the answer still comes."""
    rest = [sse(chunk("and more"), chunk(finish="stop"))]
    fault_server.script(held([sse(chunk("hello world "), done=False)], release, after=rest))
    proc = cli("chat", "--base-url", fault_server.url, "--model", "m", "hello")
    assert proc.stdout.read(5) == b"hello"
    proc.stdout.close()
    release.set()  # "and more" now goes into the closed pipe
    err = proc.stderr.read()
    proc.wait(10)
    assert err == b"" and proc.returncode == 141


@pytest.mark.parametrize("encoding, expected", [("ascii", b"caf? ? ??\n"), ("cp1252", b"caf\xe9 \x96 ??\n")])
def test_output_that_cannot_encode_a_character_replaces_it(fault_server, encoding, expected):
    fault_server.script(sv.stream([sse(chunk("café – 日本"), chunk(finish="stop"))]))
    proc = cli("chat", "--base-url", fault_server.url, "--model", "m", "hi", env={"PYTHONIOENCODING": encoding})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == expected, err


@pytest.mark.parametrize("command", [["models"], ["doctor", "--model", "m"]], ids=["models", "doctor"])
def test_stream_timeout_bounds_doctor_and_models(fault_server, capsys, command):
    # A server that accepts and never answers: the command gives up at
    # --stream-timeout instead of waiting for --timeout.
    fault_server.script(*[sv.stall(30)] * 8)
    start = time.monotonic()
    code = boc.main(command + ["--base-url", fault_server.url, "--timeout", "60", "--stream-timeout", "0.5"])
    out, err = capsys.readouterr()
    assert code in (1, 4), out + err
    assert "stream_timeout=0.5s" in out + err
    assert time.monotonic() - start < 10


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_json_on_a_terminal_shows_c1_and_bidi_controls_escaped(mocked, env, monkeypatch):
    text = "a\x9b31m b\u202e c\x9d0;title\x07"
    mocked.post(URL, json=completion(text))
    screen = _Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    assert boc.main(["chat", "--json", "hi"]) == 0
    shown = screen.getvalue()
    assert not any(ch in shown for ch in "\x9b\u202e\x9d\x07"), repr(shown)
    assert json.loads(shown)["choices"][0]["message"]["content"] == text  # still the JSON sent


def test_an_image_path_with_a_nul_is_one_line(mocked, env, capsys):
    code, out, err = run(capsys, "chat", "--image", "a\x00b.png", "hi")
    assert code == 2 and "cannot read the image" in err and "Traceback" not in err


def test_closed_stdin_or_stdout_end_without_a_traceback(mocked, env, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)
    code, out, err = run(capsys, "chat", "-")
    assert code == 2 and "no prompt" in err
    mocked.get(BASE + "/models", json={"data": [{"id": "m"}]})
    monkeypatch.setattr(sys, "stdout", None)
    assert boc.main(["models"]) == 0


def test_doctor_on_a_model_served_but_not_listed_passes_with_a_note(mocked, env, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_MODEL", "mistral")  # a gateway may route names it does not list
    mocked.get(BASE + "/models", json=MODELS)
    mocked.post(URL, json=completion("OK"))
    mocked.post(URL, body=text_stream("1"), content_type="text/event-stream")
    code, out, _ = run(capsys, "doctor")
    assert code == 0, out
    assert out.splitlines()[-1] == "! the server lists nothing about 'mistral' (it is not in GET /models)"


def test_doctor_says_the_window_is_a_small_default(mocked, env, capsys):
    # Ollama with its 4096 default for a model trained for 131072
    # (ollama/ollama@fb307609: /api/ps context_length, /api/show model_info).
    mocked.get(BASE + "/models", json={"object": "list", "data": [
        {"id": "llama3:latest", "object": "model", "created": 1, "owned_by": "library"}]})
    mocked.post(URL, json=completion("OK"))
    mocked.post(URL, body=text_stream("1"), content_type="text/event-stream")
    mocked.post("http://api.test/api/show", json={
        "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
        "capabilities": ["completion", "tools"]})
    mocked.get("http://api.test/api/ps", json={"models": [{"name": "llama3:latest", "context_length": 4096}]})
    code, out, _ = run(capsys, "doctor")
    lines = out.splitlines()
    assert code == 0, out
    assert lines[-2] == ("✓ ollama says: context window 4096/131072 (now/most), vision no, tools yes, "
                         "reasoning no, loaded yes")
    assert lines[-1].startswith("! the window is 4096 tokens, a server default far below the 131072")
    assert "OLLAMA_CONTEXT_LENGTH" in lines[-1]


def test_models_long_loads_nothing(mocked, env, capsys):
    mocked.get(BASE + "/models", json={"object": "list", "data": [
        {"id": "llama3:latest", "owned_by": "library"}, {"id": "llava:7b", "owned_by": "library"}]})
    mocked.post("http://api.test/api/show", json={
        "model_info": {"general.architecture": "llama", "llama.context_length": 8192}, "capabilities": ["completion"]})
    mocked.get("http://api.test/api/ps", json={"models": [{"name": "llama3:latest", "context_length": 2048}]})
    code, out, _ = run(capsys, "models", "--long")
    assert code == 0
    assert out.splitlines() == [
        "MODEL          CONTEXT         VISION  TOOLS  LOADED",
        "llama3:latest  2048/8192       no      no     yes",
        "llava:7b       -/8192          no      no     no",
    ]
    assert {c.request.method for c in mocked.calls} == {"GET", "POST"}
    assert not [c for c in mocked.calls if "chat" in c.request.url or "load" in c.request.url]


def test_models_long_writes_out_what_a_terminal_would_act_on(mocked, env, capsys):
    # A model id a server chose: an OSC title sequence and a screen clear
    # show as text, on one line, wherever the output goes.
    mocked.get(BASE + "/models", json={"object": "list", "data": [{"id": "evil\x1b]0;pwned\x07\x1b[2Jname"}]})
    code, out, _ = run(capsys, "models", "--long")
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b]0;pwned\\x07\\x1b[2Jname" in out.splitlines()[1]
