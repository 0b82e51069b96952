"""Benchmarks: bor_openai_compat against openai-python and a minimal baseline.

    python bench/run.py            # the full run (a few minutes)
    python bench/run.py --quick    # a small run, to check the harness
    python bench/run.py --batch    # only the batch workloads (issue 20)

A server process of its own (bench/server.py) sends canned bytes on
127.0.0.1, so the server costs the same for every client. The baseline is the
least a Python client can do with the same parts: requests, sseclient-py and
json.loads per event. CPU figures are the least of several runs taken in turns;
the others the median of several repetitions.

The batch workloads compare ``Client.batch()`` with the least a script can
do instead: a ``ThreadPoolExecutor`` of as many workers, each posting on one
shared ``requests.Session`` (given a pool of as many connections, so that it
does not reconnect) and decoding the JSON answer. With a llama-server at hand
(``$LLAMA_SERVER``, or the build cache of ``.ci/build-llama-server``) and the
``gguf`` package, they also run a batch against a real one with ``--parallel 4``.
"""
import argparse
import importlib.util
import json
import os
import platform
import py_compile
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import requests  # noqa: E402
import sseclient  # noqa: E402

import bor_openai_compat as boc  # noqa: E402

try:
    import openai
except ImportError:  # the table says so
    openai = None

MESSAGES = [{"role": "user", "content": "Hi"}]


# -- The three clients -------------------------------------------------------


def ours_stream(base):
    client = boc.Client(base, model="m", max_retries=0)
    n = 0
    with client.stream(MESSAGES) as stream:
        for delta in stream:
            if delta.text:
                n += 1
    client.close()
    return n


def openai_stream(base):
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0)
    n = 0
    for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            n += 1
    client.close()
    return n


def baseline_stream(base):
    n = 0
    with requests.Session() as session:
        response = session.post(base + "/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}, stream=True)
        for event in sseclient.SSEClient(response.iter_content(chunk_size=None)).events():
            if event.data != "[DONE]":
                chunk = json.loads(event.data)
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    n += 1
    return n


STREAMERS = {"bor_openai_compat": ours_stream, "openai": openai_stream, "baseline": baseline_stream}


def arrivals(kind, base):
    """Seconds from the server sending each event to the caller seeing it."""
    late = []
    if kind == "bor_openai_compat":
        for delta in boc.Client(base, model="m").stream(MESSAGES):
            if delta.text:
                late.append(time.time() - float(delta.text))
    elif kind == "openai":
        client = openai.OpenAI(base_url=base, api_key="unused")
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                late.append(time.time() - float(chunk.choices[0].delta.content))
    else:
        response = requests.post(base + "/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}, stream=True)
        for event in sseclient.SSEClient(response.iter_content(chunk_size=None)).events():
            if event.data.startswith("{"):
                content = json.loads(event.data)["choices"][0]["delta"].get("content")
                if content:
                    late.append(time.time() - float(content))
    return late


def round_trips(kind, base, n):
    if kind == "bor_openai_compat":
        client = boc.Client(base, model="m")
        call = lambda: client.chat(MESSAGES).text  # noqa: E731
    elif kind == "openai":
        client = openai.OpenAI(base_url=base, api_key="unused")
        call = lambda: client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content  # noqa: E731
    else:
        client = requests.Session()
        call = lambda: client.post(base + "/chat/completions", json={"model": "m", "messages": MESSAGES}).json()  # noqa: E731
    call()  # connect first: keep-alive is what is measured
    start = time.perf_counter()
    for _ in range(n):
        call()
    return n / (time.perf_counter() - start)


# -- Batches (issue 20) ------------------------------------------------------


def batch_ours(base, prompts, workers, output=None):
    client = boc.Client(base, model="m", max_retries=0)
    n = 0
    for item in client.batch(prompts, workers=workers, output=output, max_tokens=4):
        if item.error is not None:
            raise item.error
        n += 1
    client.close()
    return n


def batch_bare(base, prompts, workers):
    """The same requests from a bare thread pool: what a script writes by hand."""
    url = base + "/chat/completions"
    with requests.Session() as session, ThreadPoolExecutor(workers) as pool:
        # requests keeps 10 connections per host: with more threads it would
        # reconnect for every request past the tenth.
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(workers, 10))
        session.mount("http://", adapter)

        def one(prompt):
            response = session.post(url, json={"model": "m", "messages": [{"role": "user", "content": prompt}],
                                               "max_tokens": 4})
            response.raise_for_status()
            return response.json()["choices"][0]["message"]["content"]

        return sum(1 for _ in pool.map(one, prompts))


BATCHERS = {"bor_openai_compat": batch_ours, "baseline": batch_bare}


def wall_and_cpu(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def batch_figures(base, n, workers, reps):
    """(median wall seconds, least CPU seconds) of each client, taken in turns."""
    prompts = ["Item %d" % i for i in range(n)]
    walls, cpus = {k: [] for k in BATCHERS}, {k: [] for k in BATCHERS}
    for _ in range(reps):
        for kind, fn in BATCHERS.items():
            wall, cpu = wall_and_cpu(fn, base, prompts, workers)
            walls[kind].append(wall)
            cpus[kind].append(cpu)
    return {k: statistics.median(v) for k, v in walls.items()}, {k: min(v) for k, v in cpus.items()}


def start_llama(binary, model, parallel):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "--no-webui", "-c", str(256 * parallel),
         "-t", "1", "-np", str(parallel)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + 60
    while time.monotonic() < end and proc.poll() is None:
        try:
            if requests.get("http://127.0.0.1:%d/health" % port, timeout=2).status_code == 200:
                return proc, "http://127.0.0.1:%d/v1" % port
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("llama-server did not start")


def llama_parallel(n, reps, tokens):
    """Median wall seconds of a batch of ``n`` items at workers 1 and 4 against
    llama-server --parallel 4 serving a tiny model, or a reason why not."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    from binaries import llama_server_binary

    binary = llama_server_binary()
    if not binary:
        return "no llama-server (run .ci/build-llama-server or set LLAMA_SERVER)"
    try:
        from tinymodel import write_model
    except ImportError as exc:
        return "the tiny model needs %s (pip install '.[integration]')" % exc.name
    with tempfile.TemporaryDirectory() as tmp:
        model = write_model(os.path.join(tmp, "tiny.gguf"), seed=1)
        proc, base = start_llama(binary, model, 4)
        try:
            client = boc.Client(base, model="tiny", max_retries=0)
            prompts = ["Write item %d." % i for i in range(n)]

            def run(workers):
                start = time.perf_counter()
                for item in client.batch(prompts, workers=workers, max_tokens=tokens):
                    if item.error is not None:
                        raise item.error
                return time.perf_counter() - start

            run(4)  # warm up
            took = {1: [], 4: []}
            for _ in range(reps):
                for workers in took:
                    took[workers].append(run(workers))
            client.close()
            return {w: statistics.median(t) for w, t in took.items()}
        finally:
            proc.kill()
            proc.wait()


def batch_rows(root, row, quick):
    """The workloads of issue 20: batch() against an instant server, and a real one."""
    base = root + "/chat/v1"
    n = 300 if quick else 3000
    big = 1000 if quick else 10000
    reps = 2 if quick else 3
    batch_ours(base, ["warm up"] * 20, 4)
    batch_bare(base, ["warm up"] * 20, 4)
    for workers in (1, 4, 16):
        walls, cpus = batch_figures(base, n, workers, reps)
        rate = {k: n / t for k, t in walls.items()}
        per_item = {k: t / n * 1000 for k, t in cpus.items()}
        row("batch: %d items, workers %d" % (n, workers), "items/s", rate, "higher")
        row("batch: client CPU per item, workers %d" % workers, "ms CPU", per_item, "lower",
            "%.2f ms more than the bare loop (target: <= 1 ms in all)"
            % (per_item["bor_openai_compat"] - per_item["baseline"]))
    walls, cpus = batch_figures(base, big, 16, 1 if quick else 2)
    row("batch: %d items, workers 16, wall" % big, "s", walls, "lower",
        "%.2fx the bare loop's time (target: <= 1.5x)" % (walls["bor_openai_compat"] / walls["baseline"]))
    with tempfile.TemporaryDirectory() as tmp:
        prompts = ["Item %d" % i for i in range(big)]
        wall, cpu = wall_and_cpu(batch_ours, base, prompts, 16, os.path.join(tmp, "out.jsonl"))
    row("batch: %d items, workers 16, output file" % big, "s", {"bor_openai_compat": wall}, "lower",
        "each line synced; %.2fx the bare loop (no file); %.2f ms CPU per item"
        % (wall / walls["baseline"], cpu / big * 1000))

    items, tokens = (16, 128) if quick else (64, 128)
    took = llama_parallel(items, 1 if quick else 3, tokens)
    if isinstance(took, str):
        print("llama-server --parallel 4: skipped, %s" % took)
        return
    for workers in (1, 4):
        row("llama-server -np 4: %d items, workers %d" % (items, workers), "s",
            {"bor_openai_compat": took[workers]}, "lower",
            "%d tokens each; %.1f items/s" % (tokens, items / took[workers])
            + ("; %.2fx faster than workers 1" % (took[1] / took[4]) if workers == 4 else ""))


# -- Measuring ---------------------------------------------------------------


def median_of(reps, fn):
    return statistics.median(fn() for _ in range(reps))


def least_cpu(reps, fns):
    """The least CPU seconds of each of ``fns`` (a dict), run in turns.

    Taken in turns, so that a machine that slows down or speeds up over the
    run weighs on every client alike; the least, as ``timeit`` does, since
    anything above it is noise from elsewhere.
    """
    best = {}
    for _ in range(reps):
        for kind, fn in fns.items():
            best[kind] = min(best.get(kind, float("inf")), cpu_seconds(fn))
    return best


def cpu_seconds(fn, *args):
    start = time.process_time()
    fn(*args)
    return time.process_time() - start


def import_time(statement, reps):
    # As installed: compiled once (pip does this), so the run measures imports,
    # not the compiler; PYTHONDONTWRITEBYTECODE would otherwise prevent it.
    py_compile.compile(boc.__file__, cfile=importlib.util.cache_from_source(boc.__file__))
    env = dict(os.environ, PYTHONPATH=ROOT)

    def once():
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True, env=env)
        return time.perf_counter() - start

    return median_of(reps, once)


def image_body(path):
    client = boc.Client("http://127.0.0.1:1/v1", model="m")
    return client._call("What is in this picture?", None, [path], {}, False, None, None).body


def start_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "server.py"), str(port)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    return proc, "http://127.0.0.1:%d" % port


def clients():
    return [k for k in STREAMERS if k != "openai" or openai is not None]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run that checks the harness")
    parser.add_argument("--batch", action="store_true", help="only the batch workloads (issue 20)")
    args = parser.parse_args()
    rows = []

    def row(name, unit, values, better, note=""):
        rows.append((name, unit, values, better, note))

    print("Python %s on %s, %d cores; openai %s; %s"
          % (platform.python_version(), platform.machine(), os.cpu_count(),
             openai.__version__ if openai else "not installed", "quick run" if args.quick else "full run"))
    if not args.batch:
        single_rows(row, args.quick)
    server, root = start_server()
    try:
        # 7. Batches.
        batch_rows(root, row, args.quick)
    finally:
        server.kill()
    print_table(rows)


def single_rows(row, quick):
    """Workloads 1-6: one request at a time."""
    reps = 3 if quick else 7
    chunks = 2000 if quick else 20000
    sizes = (1, 2) if quick else (1, 10)
    trips = 50 if quick else 500
    image_mb = 2 if quick else 20

    # 1. Start-up.
    statements = {"bor_openai_compat": "import bor_openai_compat", "openai": "import openai",
                  "baseline": "import requests, sseclient"}
    startup = {k: import_time(statements[k], reps) * 1000 for k in clients()}
    row("start-up: fresh interpreter + import", "ms", startup, "lower", "baseline = import requests, sseclient")

    server, root = start_server()
    try:
        # 2. Stream throughput, per second of client CPU.
        base = root + "/stream/%d/v1" % chunks
        for kind in clients():
            STREAMERS[kind](base)  # warm up
        took = least_cpu(reps * 3, {k: (lambda k=k: STREAMERS[k](base)) for k in clients()})
        per_sec = {k: chunks / took[k] for k in clients()}
        row("stream: %d chunks, per s of client CPU" % chunks, "chunks/s", per_sec, "higher")

        # 3. One huge event.
        for mb in sizes:
            base = root + "/big/%d/v1" % (mb * 1024 * 1024)
            least = least_cpu(reps, {k: (lambda k=k: STREAMERS[k](base)) for k in clients()})
            took = {k: t * 1000 for k, t in least.items()}
            row("one %d MB event" % mb, "ms CPU", took, "lower", "%.1f ms/MB for us" % (took["bor_openai_compat"] / mb))

        # 4. Latency to the first token on a close-delimited stream.
        base = root + "/slow/5/v1"
        first = {k: median_of(min(reps, 3), lambda: arrivals(k, base)[0]) * 1000 for k in clients()}
        row("first token, close-delimited, 100 ms apart", "ms late", first, "lower", "target: < 50 ms")

        # 6. Small round trips on a kept-alive connection.
        base = root + "/chat/v1"
        rps = {k: median_of(reps, lambda: round_trips(k, base, trips)) for k in clients()}
        row("small chat round trips (keep-alive)", "req/s", rps, "higher")
    finally:
        server.kill()

    # 5. Image encoding: a file to a ready request body.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.png")
        size = image_mb * 1024 * 1024
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8))
        took = median_of(reps, lambda: _timed(image_body, path)) * 1000
        tracemalloc.start()
        body = image_body(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(body) > size * 4 // 3
        del body
    row("%d MB image file -> request body" % image_mb, "ms", {"bor_openai_compat": took}, "lower",
        "peak memory %.2fx the file (target < 3x)" % (peak / size))


def _timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def print_table(rows):
    kinds = ["bor_openai_compat", "openai", "baseline"]
    header = "%-44s %10s %10s %10s %-8s %9s %9s  %s" % ("workload", "ours", "openai", "baseline", "unit",
                                                       "vs openai", "vs base", "note")
    print(header)
    print("-" * len(header))
    for name, unit, values, better, note in rows:
        cells = ["%10s" % _fmt(values.get(k)) for k in kinds]
        ratios = []
        for other in ("openai", "baseline"):
            if other in values and values.get("bor_openai_compat"):
                ours, theirs = values["bor_openai_compat"], values[other]
                ratios.append("%8.2fx" % (ours / theirs if better == "higher" else theirs / ours))
            else:
                ratios.append("%9s" % "-")
        print("%-44s %s %-8s %s %s  %s" % (name, " ".join(cells), unit, ratios[0], ratios[1], note))
    print("\nRatios: how many times better we do (above 1 is better for us).")


def _fmt(value):
    if value is None:
        return "-"
    return "%.0f" % value if value >= 100 else "%.2f" % value


if __name__ == "__main__":
    main()
