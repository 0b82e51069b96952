"""The command line against the real servers."""
import json
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
    assert all(line.startswith("✓") for line in lines) and len(lines) == 8, out
    assert " says: context window " in lines[-1]


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
    # doctor read model_info first: the router lists only text as the model's input
    # (server-models.cpp, architecture.input_modalities), so no image is even sent.
    assert code == 1 and "✗ images are refused" in out
    assert "model 'tiny-chat' does not take images, as llama.cpp says" in out and "nothing was sent" in out


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


# -- The interactive chat against llama.cpp ----------------------------------


class Recorder:
    """A forwarding proxy in front of a real server that keeps the JSON it was sent."""

    def __init__(self, upstream):
        import http.client
        import http.server
        import threading
        import urllib.parse

        self.bodies = []
        bodies = self.bodies
        # Set `hold`, and the next answer stops after its first piece until
        # `resume` is set; `held` says when it stopped.
        self.hold, self.held, self.resume = threading.Event(), threading.Event(), threading.Event()
        recorder = self
        target = urllib.parse.urlsplit(upstream)

        class Forward(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # close-delimited answers: nothing to re-chunk

            def do_GET(self):
                self.forward()

            def do_POST(self):
                self.forward()

            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if body:
                    bodies.append(json.loads(body))
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type", "accept")}
                upstream.request(self.command, self.path, body or None, headers)
                answer = upstream.getresponse()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
                self.end_headers()
                try:
                    for piece in iter(lambda: answer.read1(65536), b""):
                        self.wfile.write(piece)
                        self.wfile.flush()
                        if recorder.hold.is_set() and b'"content":"' in piece:
                            recorder.hold.clear()
                            recorder.held.set()
                            recorder.resume.wait(30)
                except OSError:  # the client hung up (Ctrl-C)
                    pass
                upstream.close()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.url = "http://127.0.0.1:%d/v1" % self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.resume.set()
        self.server.shutdown()
        self.server.server_close()


def test_an_interactive_chat_with_llama_server(llama_server, tmp_path):
    from helpers import Terminal, asleep

    image = tmp_path / "red.png"
    image.write_bytes(boc._tiny_png())
    recorder = Recorder(llama_server.url)
    term = Terminal("chat", "--base-url", recorder.url, "--api-key", llama_server.key, "--model", "tiny-chat",
                    "--max-tokens", "16")

    def settled():
        """What showed until the program read its next line: the model's
        answers are random text, so a command's reply marks the place."""
        term.type("/model tiny-chat")
        before = term.expect("Model: tiny-chat\n")
        term.expect("> ")
        asleep(term.proc.pid)  # readline has the terminal
        return before

    try:
        for words in ("Hello", "How are you?"):
            term.type(words)
            settled()
        term.type("/image %s" % image)
        term.type("What is this?")
        refused = settled()
        recorder.hold.set()
        term.type("Tell me a story")
        term.expect("Tell me a story\n")
        assert recorder.held.wait(30), "no answer came"
        asleep(term.proc.pid)  # it printed what came and waits for more
        while term._read(0):
            pass
        partial, term.seen = term.output[term.seen:].decode(), len(term.output)
        term.ctrl_c()
        term.expect("> ")
        asleep(term.proc.pid)
        term.type("Go on")
        settled()
        term.type("/reset")
        term.type("Again")
        settled()
        term.ctrl_d()
        code = term.wait()
    finally:
        term.close()
        recorder.close()
    shown = term.output.decode("utf-8", "replace")
    assert code == 0 and "Traceback" not in shown, shown
    assert "error: " in refused and "image input is not supported" in refused, refused
    turns = [[m["role"] for m in body["messages"]] for body in recorder.bodies]
    assert turns[:4] == [
        ["user"],
        ["user", "assistant", "user"],
        ["user", "assistant", "user", "assistant", "user"],  # with the image, refused
        ["user", "assistant", "user", "assistant", "user"],  # the refused turn is not in it
    ]
    assert [p["type"] for p in recorder.bodies[2]["messages"][-1]["content"]] == ["text", "image_url"]
    story = recorder.bodies[3]["messages"]
    assert story[-1] == {"role": "user", "content": "Tell me a story"}
    # What was printed before Ctrl-C stays in the conversation.
    assert partial and recorder.bodies[4]["messages"] == story + [
        {"role": "assistant", "content": partial}, {"role": "user", "content": "Go on"}]
    assert recorder.bodies[-1]["messages"] == [{"role": "user", "content": "Again"}]
    assert all(body["stream"] is True for body in recorder.bodies)
