"""Attacks on this round's promises (model_info, warnings, JSON answers,
batches, the wire): each test is one confirmed break, written as the
behaviour the README promises. See the report on branch ``attack``.
"""
import json
import logging
import threading
import time

import pytest
import requests
import responses

import bor_openai_compat as boc
import server as sv
from helpers import BASE, URL, completion

ROOT = "http://api.test"
SCHEMA = {
    "title": "city",
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"],
}
GOOD = '{"name": "Berlin", "population": 3850809}'


def ollama_show(arch="llama", ctx=131072, capabilities=("completion", "tools")):
    # ollama api/types.go ShowResponse; POST /api/show {"model": name} resolves a name without a tag.
    return {"modelfile": "FROM x", "parameters": "", "template": "{{ .Prompt }}",
            "details": {"format": "gguf", "family": arch},
            "model_info": {"general.architecture": arch, arch + ".context_length": ctx},
            "capabilities": list(capabilities)}


# -- Know your model -----------------------------------------------------------
#
# README: Client("http://localhost:11434/v1", model="llama3.2") is the first
# example; its model_info() example shows ModelInfo('llama3.2:latest', server='ollama', ...)
# and doctor prints "ollama says: ..." for --model llama3.2. Ollama lists the
# model as "llama3.2:latest" in /v1/models and /api/ps, and serves "llama3.2"
# (chat, /api/show) as that same model.


def ollama_tagged(mocked):
    mocked.get(BASE + "/models", json={"object": "list", "data": [
        {"id": "llama3.2:latest", "object": "model", "created": 1700000000, "owned_by": "library"}]})
    mocked.post(ROOT + "/api/show", json=ollama_show())
    mocked.get(ROOT + "/api/ps", json={"models": [
        {"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 1, "context_length": 4096}]})


def test_model_info_of_an_ollama_name_without_its_tag(mocked):
    ollama_tagged(mocked)
    info = boc.Client(BASE, model="llama3.2", max_retries=0).model_info()
    assert info.server == "ollama"
    assert (info.context_length, info.max_context_length, info.loaded) == (4096, 131072, True)


def test_doctor_reads_the_model_of_the_readme_example(mocked, capsys):
    ollama_tagged(mocked)
    mocked.post(BASE + "/chat/completions", json=completion("OK", model="llama3.2"))
    mocked.post(BASE + "/chat/completions", body=b'data: {"choices":[{"delta":{"content":"1"},"finish_reason":"stop"}]}'
                b"\n\ndata: [DONE]\n\n", content_type="text/event-stream")
    boc.main(["doctor", "--base-url", BASE, "--model", "llama3.2"])
    out = capsys.readouterr().out
    assert "ollama says: context window 4096/131072" in out, out


def test_models_long_does_not_repeat_the_same_probes_per_model(fault_server):
    # A server of no known kind listing 20 models: every native probe fails the
    # same way for each; `models --long` sends 4 failing probes per model (a list
    # of 100,000 models would be 400,000 requests).
    ids = ["model-%d" % i for i in range(20)]

    def script(conn, request):
        if request.path.startswith("/v1/models"):
            return sv.send(conn, {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})
        return sv.send(conn, {"error": {"message": "not found"}}, status=404)

    fault_server.script(script)
    assert boc.main(["models", "--long", "--base-url", fault_server.url]) == 0
    assert len(fault_server.requests) <= 1 + 4 + len(ids), len(fault_server.requests)


# -- JSON answers: the ladder ----------------------------------------------------
#
# README: "A rung is left only when the server refuses it in words — a
# BadRequest naming response_format, json_schema or json_object, or
# llama-cpp-python's 500 validation error".


def test_a_refusal_about_a_tool_schema_does_not_move_down_the_ladder(mocked):
    # OpenAI's words for a broken tool schema: it names no response_format.
    body = {"error": {"message": "Invalid schema for function 'get_weather': In context=('properties', 'city'), "
                                 "schema must have a 'type' key.", "type": "invalid_request_error",
                      "param": "tools[0].function.parameters", "code": "invalid_function_parameters"}}
    mocked.post(URL, status=400, json=body)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    client = boc.Client(BASE, model="m", max_retries=0)
    with pytest.raises(boc.BadRequest, match="Invalid schema for function"):
        client.chat("Weather?", schema=SCHEMA, tools=tools)
    assert len(mocked.calls) == 1, [json.loads(c.request.body).get("response_format") for c in mocked.calls]


def test_a_strict_mode_refusal_of_one_schema_is_not_learned_for_the_model(mocked):
    # OpenAI's strict structured outputs need "additionalProperties": false on
    # every object; the README's own example schema lacks it, and the client
    # always sends "strict": true. OpenAI answers 400 naming response_format,
    # and takes the same json_schema with strict false.
    def answer(request):
        sent = json.loads(request.body)
        fmt = sent.get("response_format") or {}
        if fmt.get("type") == "json_schema" and fmt["json_schema"].get("strict") and \
                fmt["json_schema"]["schema"].get("additionalProperties") is not False:
            return 400, {}, json.dumps({"error": {
                "message": "Invalid schema for response_format 'city': In context=(), 'additionalProperties' is "
                           "required to be supplied and to be false.", "type": "invalid_request_error",
                "param": "response_format", "code": None}})
        return 200, {}, json.dumps(completion(GOOD))

    mocked.add_callback(responses.POST, URL, callback=answer)
    client = boc.Client(BASE, model="gpt-4o-mini", max_retries=0)
    first = client.chat("The largest city in Germany?", schema=SCHEMA)
    assert first.parsed == json.loads(GOOD)
    # A strict-ready schema, later, on the same model: still asked as json_schema.
    strict = dict(SCHEMA, additionalProperties=False)
    second = client.chat("The largest city in France?", schema=strict)
    assert second.schema_mode == "json_schema", (first.schema_mode, second.schema_mode)


# -- Warnings ---------------------------------------------------------------------
#
# README: "ChatResult.warnings ... lists, in sentences, what is wrong with an
# answer that looks fine; each is also logged once at WARNING."


def test_the_ignored_schema_warning_is_logged(mocked, caplog):
    caplog.set_level(logging.WARNING, logger="bor_openai_compat")
    texts = iter(["Berlin has about 3.8 million people.", GOOD])
    mocked.add_callback(responses.POST, URL, callback=lambda r: (200, {}, json.dumps(completion(next(texts)))))
    result = boc.Client(BASE, model="m", max_retries=0).chat("A city?", schema=SCHEMA)
    assert any("ignored the schema" in w for w in result.warnings)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ignored the schema" in m for m in logged), logged


# -- Batches ------------------------------------------------------------------------


def test_batch_output_in_a_folder_that_does_not_exist_is_a_configuration_error(mocked, tmp_path):
    mocked.post(URL, json=completion("Paris"))
    client = boc.Client(BASE, model="m", max_retries=0)
    with pytest.raises(boc.ConfigurationError):
        list(client.batch(["Capital of France?"], output=str(tmp_path / "missing" / "out.jsonl")))


def test_batch_command_with_an_output_it_cannot_write_says_so_in_one_line(mocked, tmp_path, capsys):
    mocked.post(URL, json=completion("Paris"))
    source = tmp_path / "in.jsonl"
    source.write_text('"Capital of France?"\n')
    code = boc.main(["batch", str(source), "-o", str(tmp_path / "missing" / "out.jsonl"),
                     "--base-url", BASE, "--model", "m"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: "), err


def test_batch_command_never_truncates_its_input_given_as_the_output(mocked, tmp_path, capsys):
    # `batch requests.jsonl -o requests.jsonl`: the input's lines have custom_ids,
    # so they pass for output lines, and the last one (no final newline, as
    # "\n".join writes) is dropped as "torn".
    mocked.post(URL, json=completion("Paris"))
    source = tmp_path / "requests.jsonl"
    lines = [json.dumps({"custom_id": "q%d" % i, "method": "POST", "url": "/v1/chat/completions",
                         "body": {"messages": [{"role": "user", "content": "Capital %d?" % i}]}}) for i in range(3)]
    source.write_text("\n".join(lines))
    before = source.read_bytes()
    code = boc.main(["batch", str(source), "-o", str(source), "--base-url", BASE, "--model", "m"])
    assert source.read_bytes() == before, "the input file was changed"
    assert code == 2, capsys.readouterr()


def test_batch_command_a_line_with_nan_is_refused_alone(mocked, tmp_path, capsys):
    # NaN is not JSON (Python's json reads it): the line is refused with its
    # number; the others run ("A line that is none of these is reported with
    # its number and not sent").
    mocked.post(URL, json=completion("ok"))
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "one"}\n{"prompt": "two", "temperature": NaN}\n{"prompt": "three"}\n')
    code = boc.main(["batch", str(source), "-o", str(tmp_path / "out.jsonl"), "--workers", "1",
                     "--base-url", BASE, "--model", "m"])
    err = capsys.readouterr().err
    sent = [json.loads(c.request.body)["messages"][0]["content"] for c in mocked.calls]
    assert sent == ["one", "three"] and code == 9 and "line 2" in err, (sent, code, err)


def test_two_runs_on_one_output_at_once_do_each_item_once(tmp_path):
    # "resumable, each item done once": two runs of the same batch on the same
    # output (a second terminal, a cron job that overlaps) each send every item,
    # and the file ends with every custom_id twice, which no rerun can read.
    posts = []
    lock = threading.Lock()

    def answer(request):
        with lock:
            posts.append(json.loads(request.body)["messages"][0]["content"])
        time.sleep(0.05)
        return 200, {}, json.dumps(completion("ok"))

    items = ["question %d" % i for i in range(8)]
    output = str(tmp_path / "out.jsonl")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.add_callback(responses.POST, URL, callback=answer)
        client = boc.Client(BASE, model="m", max_retries=0)
        errors = []

        def run():
            try:
                list(client.batch(items, workers=2, output=output))
            except boc.OpenAICompatError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(posts) == len(items), "%d requests for %d items" % (len(posts), len(items))
        list(client.batch(items, output=output))  # a rerun reads the file back


def test_ctrl_c_while_the_input_is_read_cancels_the_requests_in_flight_at_once(fault_server, tmp_path):
    # "Ctrl-C (or leaving the loop): no new item starts, the requests in flight
    # are cancelled (their sockets shut) at once". Ctrl-C lands in the main
    # thread, which is the one reading the caller's generator. Requests that
    # had been submitted but were not connected yet when cancel() ran are not
    # cancelled: the call waits for their whole answers (here 2 s; a local
    # model's generation can take minutes).
    def slow(conn, request):
        time.sleep(2)
        return sv.send(conn, completion("ok"))

    fault_server.script(slow)

    def prompts():
        yield "one"
        yield "two"
        raise KeyboardInterrupt

    client = boc.Client(fault_server.url, model="m", max_retries=0)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        list(client.batch(prompts(), workers=2, output=str(tmp_path / "out.jsonl")))
    assert time.monotonic() - start < 1.0, "Ctrl-C waited %.1fs for the requests in flight" % (
        time.monotonic() - start)


# -- The wire ---------------------------------------------------------------------


def test_a_callers_session_keeps_its_own_response_hooks(mocked):
    # requests merges a request's hooks over the session's: the per-request
    # hooks= of the client replace the caller's session hooks (logging,
    # metrics, raise_for_status), which then never run.
    seen = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, **kwargs: seen.append(response.status_code))
    mocked.post(URL, json=completion("Hi"))
    boc.Client(BASE, model="m", session=session, max_retries=0).chat("Hi")
    assert seen == [200]


def test_a_chat_the_server_worked_on_is_not_sent_again_with_max_retries_0(fault_server):
    # The second request on a kept-alive connection: the server reads it, works
    # on it for 300 ms (a chat is generated), then its worker dies and the
    # connection closes. That is no idle connection closed under a new request,
    # and max_retries=0 asks for no second try: the chat must not be sent twice.
    def worked_then_died(conn, request):
        time.sleep(0.3)
        return False

    fault_server.script(sv.reply(200, completion("first")), worked_then_died, sv.reply(200, completion("again")))
    client = boc.Client(fault_server.url, model="m", max_retries=0)
    assert client.chat("one").text == "first"
    with pytest.raises(boc.ConnectionFailed):
        client.chat("two")
    assert len(fault_server.posts()) == 2, [r.json()["messages"][0]["content"] for r in fault_server.posts()]
