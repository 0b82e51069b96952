"""The terminal: a conversation in a pseudo-terminal, and what a server may print on it.

The command line runs as a real program whose stdin, stdout and stderr are a
pseudo-terminal (the stdlib ``pty`` module), so that readline, Ctrl-C typed
as ``\\x03`` and the terminal checks are the ones a user gets. The server is
the scriptable local one from ``server.py``.
"""
import json
import os
import re
import socket
import struct
import sys
import threading

import pytest

import server as sv
from helpers import Terminal, chunk, sse

ESC_OSC_CR = "\x1b]0;pwned\x07\x1b]52;c;ZWNobyBoaQ==\x07\x1b[2K\rforged\x9b31m"
ESC_SHOWN = r"\x1b]0;pwned\x07\x1b]52;c;ZWNobyBoaQ==\x07\x1b[2K\rforged\x9b31m"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")


@pytest.fixture
def terminal(fault_server):
    started = []

    def start(*args, env=None):
        term = Terminal("chat", "--base-url", fault_server.url, "--model", "m", *args, env=env)
        started.append(term)
        return term

    yield start
    for term in started:
        term.close()


def answer(*texts, reasoning=None):
    pieces = [sse(chunk(reasoning_content=reasoning), done=False)] if reasoning else []
    pieces += [sse(chunk(text), done=False) for text in texts]
    return sv.stream(pieces + [sse(chunk(finish="stop"))])


def numbered(conn, request):
    """Answers "answer N" to the N-th user message of the conversation."""
    users = [m for m in request.json()["messages"] if m["role"] == "user"]
    return answer("answer %d" % len(users))(conn, request)


def held(first, release, arrived=None):
    """Streams ``first``, then holds the connection until ``release`` is set."""

    def then():
        if arrived is not None:
            arrived.set()
        release.wait(30)

    return sv.stream([sse(chunk(first), done=False)], then=then, end=False)


def sent(server):
    return [request.json() for request in server.requests if request.method == "POST"]


# -- A conversation ----------------------------------------------------------


def test_a_conversation_carries_the_growing_history(terminal, fault_server):
    fault_server.script(numbered)
    term = terminal()
    assert "Chatting with m at %s" % fault_server.url in term.expect("> ")
    for n, words in enumerate(["one", "two", "three"], 1):
        term.type(words)
        assert "answer %d\n" % n in term.expect("> ")
    term.type("/exit")
    assert term.wait() == 0
    history = [[(m["role"], m["content"]) for m in body["messages"]] for body in sent(fault_server)]
    assert history == [
        [("user", "one")],
        [("user", "one"), ("assistant", "answer 1"), ("user", "two")],
        [("user", "one"), ("assistant", "answer 1"), ("user", "two"), ("assistant", "answer 2"), ("user", "three")],
    ]
    assert all(body["stream"] is True and body["model"] == "m" for body in sent(fault_server))


def test_ctrl_c_stops_the_answer_and_the_session_goes_on(terminal, fault_server):
    release = threading.Event()
    fault_server.script(held("Once upon a time", release), answer("and so on"))
    term = terminal()
    term.expect("> ")
    term.type("a story")
    term.expect("Once upon a time")
    term.ctrl_c()
    after = term.expect("> ")
    release.set()
    assert "Traceback" not in after and "KeyboardInterrupt" not in after
    term.type("go on")
    assert "and so on\n" in term.expect("> ")
    term.ctrl_d()
    assert term.wait() == 0
    # What was printed stays in the conversation.
    assert sent(fault_server)[1]["messages"] == [
        {"role": "user", "content": "a story"},
        {"role": "assistant", "content": "Once upon a time"},
        {"role": "user", "content": "go on"},
    ]


def test_ctrl_c_at_the_prompt_drops_the_line(terminal, fault_server):
    fault_server.script(numbered)
    term = terminal()
    term.expect("> ")
    os.write(term.master, b"half a thought")
    term.expect("half a thought")
    term.ctrl_c()
    term.expect("> ")
    term.type("whole")
    assert "answer 1" in term.expect("> ")
    term.type("/quit")
    assert term.wait() == 0
    assert [body["messages"] for body in sent(fault_server)] == [[{"role": "user", "content": "whole"}]]


def test_reset_system_model_and_the_commands(terminal, fault_server):
    fault_server.script(numbered)
    term = terminal()
    term.expect("> ")
    term.type("/help")
    help_text = term.expect("> ")
    for command in ("/system", "/image", "/model", "/reset", "/exit", "/help"):
        assert command in help_text
    term.type("hello")
    term.expect("answer 1")
    term.expect("> ")
    term.type("/system Be brief.")
    term.expect("> ")
    term.type("/model other")
    assert "Model: other" in term.expect("> ")
    term.type("/reset")
    term.expect("> ")
    term.type("/nope")
    assert "/nope is not a command; /help lists them." in term.expect("> ")
    term.type("//etc/hosts is a path")
    assert "answer 1" in term.expect("> ")
    term.ctrl_d()
    assert term.wait() == 0
    first, second = sent(fault_server)
    assert first["messages"] == [{"role": "user", "content": "hello"}] and first["model"] == "m"
    assert second["model"] == "other"
    assert second["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "/etc/hosts is a path"},
    ]


def test_an_image_goes_with_the_next_message_and_stays_in_the_history(terminal, fault_server, tmp_path):
    image = tmp_path / "red dot.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    fault_server.script(numbered)
    term = terminal()
    term.expect("> ")
    term.type("/image %s" % (tmp_path / "missing.png"))
    assert "error: " in term.expect("> ")
    term.type("/image %s" % image)
    assert "is attached to your next message" in term.expect("> ")
    term.type("what is this?")
    term.expect("answer 1")
    term.expect("> ")
    term.type("and now?")
    term.expect("answer 2")
    term.expect("> ")
    term.ctrl_d()
    assert term.wait() == 0
    first, second = sent(fault_server)
    parts = first["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"] and parts[0]["text"] == "what is this?"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert second["messages"][0]["content"] == parts  # the image stays in the conversation
    assert second["messages"][2] == {"role": "user", "content": "and now?"}


def test_a_failed_turn_says_one_line_and_is_rolled_back(terminal, fault_server):
    refusal = {"error": {"message": "no thanks" + ESC_OSC_CR + "\nsecond line"}}
    fault_server.script(answer("fine"), sv.reply(400, refusal), answer("still here"))
    term = terminal()
    term.expect("> ")
    term.type("one")
    term.expect("fine")
    term.expect("> ")
    term.type("two")
    error = term.expect("> ")
    term.type("three")
    assert "still here" in term.expect("> ")
    term.ctrl_d()
    assert term.wait() == 0
    error_line = [line for line in error.splitlines() if line.startswith("error: ")]
    assert len(error_line) == 1 and "no thanks" + ESC_SHOWN + r"\nsecond line" in error_line[0]
    assert "\x1b]" not in error and "\x9b" not in error
    assert [m["content"] for m in sent(fault_server)[2]["messages"]] == ["one", "fine", "three"]


def test_the_server_going_away_ends_the_session(fault_server):
    server = sv.Server()
    try:
        # Close-delimited answers, so that no kept-alive connection outlives the server.
        server.script(sv.stream([sse(chunk("hi"), chunk(finish="stop"))], framing="close"))
        term = Terminal("chat", "--base-url", server.url, "--model", "m")
        term.expect("> ")
        term.type("hello")
        term.expect("hi")
        term.expect("> ")
        server.close()
        term.type("are you there?")
        code = term.wait()
        shown = term.output.decode("utf-8", "replace")
        assert code == 3, shown
        assert "error: " in shown and "The session ends." in shown and "Traceback" not in shown
    finally:
        term.close()


def test_reasoning_is_dimmed_and_the_answer_starts_below_it(terminal, fault_server):
    fault_server.script(answer("42", reasoning="let me think"))
    term = terminal()
    term.expect("> ")
    term.type("?")
    shown = term.expect("> ")
    assert "\x1b[2mlet me think\x1b[0m\n42\n" in shown


def test_the_first_prompt_can_be_given(terminal, fault_server):
    fault_server.script(numbered)
    term = terminal("-i", "first words")
    assert "answer 1" in term.expect("> ")
    term.ctrl_d()
    assert term.wait() == 0
    assert sent(fault_server)[0]["messages"] == [{"role": "user", "content": "first words"}]


# -- Output a server cannot forge --------------------------------------------


def test_an_answer_and_its_reasoning_show_their_control_characters(terminal, fault_server):
    fault_server.script(answer("line one\nline two\r\n", ESC_OSC_CR, " end\r", reasoning="think" + ESC_OSC_CR))
    term = terminal("hi")
    code = term.wait()
    shown = term.output.decode("utf-8")
    assert code == 0, shown
    assert "line one\nline two\n" in shown  # newlines are newlines, a CRLF too
    assert ESC_SHOWN + " end\\r\n" in shown
    assert "think" + ESC_SHOWN in shown
    assert not re.search("[\r\x07\x9b]|\x1b[^\\[]|\x1b\\[[^02]", shown), shown  # only our own dimming


def test_models_and_doctor_lines_cannot_be_forged(fault_server):
    models = {"data": [{"id": "good\r\x1b[2K✓ forged"}, {"id": "m"}]}
    fault_server.script(sv.reply(200, models))
    term = Terminal("models", "--base-url", fault_server.url)
    assert term.wait() == 0
    assert term.output.decode() == "good\\r\\x1b[2K✓ forged\nm\n"

    refusal = {"error": {"message": "bad\n✓ the model is fine\x1b[1A\x1b[2K"}}
    fault_server.script(sv.reply(200, models), sv.reply(400, refusal))
    term = Terminal("doctor", "--base-url", fault_server.url, "--model", "m")
    assert term.wait() == 1
    lines = term.output.decode().splitlines()
    assert lines[-1] == "✗ a short chat failed: %s" % lines[-1].split(": ", 1)[1]
    assert "bad\\n✓ the model is fine\\x1b[1A\\x1b[2K" in lines[-1]
    assert all(line.startswith(("✓", "✗")) for line in lines), lines


def test_json_is_as_it_was(terminal, fault_server):
    fault_server.script(sv.reply(200, {"choices": [{"message": {"role": "assistant", "content": "a\x1b]0;x\x07"}}]}))
    term = terminal("--json", "hi")
    assert term.wait() == 0
    assert json.loads(term.output.decode())["choices"][0]["message"]["content"] == "a\x1b]0;x\x07"


# -- Issue 17: one dropped answer does not end the conversation ---------------



def _reset(conn):
    """Close with a TCP reset (RST), as a crashing server or a proxy's timeout does."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def dropped_mid_answer(how):
    """Two deltas of an answer, then the connection goes away."""
    pieces = [sse(chunk("Once upon "), done=False), sse(chunk("a time"), done=False)]
    if how == "reset":
        def script(conn, request):
            sv.stream(pieces, end=False)(conn, request)
            _reset(conn)
            return False

        return script
    return sv.stream(pieces, end=False)  # a chunked body left unfinished, then closed


@pytest.mark.parametrize("how", ["closed", "reset"])
def test_a_connection_dropped_mid_answer_does_not_end_the_session(terminal, fault_server, how):
    fault_server.script(dropped_mid_answer(how), answer("and so on"))
    term = terminal()
    term.expect("> ")
    term.type("a story")
    shown = term.expect("> ")  # the prompt comes back
    assert "Once upon a time" in shown, shown
    assert "error: " in shown and "The session ends." not in shown, shown
    assert "Traceback" not in shown, shown
    term.type("go on")
    assert "and so on\n" in term.expect("> ")
    term.ctrl_d()
    assert term.wait() == 0, term.output.decode("utf-8", "replace")
    assert sent(fault_server)[-1]["messages"][-1] == {"role": "user", "content": "go on"}


def test_a_rejected_key_ends_the_session(terminal, fault_server):
    fault_server.script(sv.reply(401, {"error": {"message": "Incorrect API key provided",
                                                 "type": "invalid_request_error", "code": "invalid_api_key"}}))
    term = terminal()
    term.expect("> ")
    term.type("hello")
    code = term.wait()
    shown = term.output.decode("utf-8", "replace")
    assert code == 5, shown
    assert "Incorrect API key provided" in shown and "The session ends." in shown, shown
    assert "Traceback" not in shown
