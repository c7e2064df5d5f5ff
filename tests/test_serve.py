"""`flaubert-np serve`, started in a subprocess on a free port with the demo model, called over
HTTP as clients call it: the official `openai` client, plain HTTP for TEI's routes, raw sockets
for slow clients. Every embedding is compared with SentenceEncoder.encode (normalised).
"""

import base64
import http.client
import json
import os
import random
import re
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from conftest import read_sts_sentences

from flaubert_np.sentence import SentenceEncoder
from flaubert_np.similarity import cos_sim

TOL = 1e-5
START_TIMEOUT_S = 60
SENTENCES = read_sts_sentences("dev")[:64]
LONG_TEXT = " ".join(["Le chat dort sur le canapé du salon."] * 40)  # > 128 tokens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `flaubert-np serve` subprocess; its stderr (the log) kept in a file."""

    def __init__(self, tmp_path, *flags: str, env: dict | None = None):
        self.port = free_port()
        self.log_path = tmp_path / f"serve-{self.port}.log"
        self._log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "flaubert_np.cli", "serve", "--model", "demo",
               "--port", str(self.port), *flags]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.proc.poll() is None, self.log()
            try:
                if self.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text()

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method, path, body=None, headers=None, conn=None):
        """(status, parsed JSON or text, headers) of one request."""
        own = conn is None
        conn = conn or self.connection()
        try:
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
            kind = response.getheader("content-type", "")
            parsed = json.loads(raw) if kind.startswith("application/json") else raw.decode()
            return response.status, parsed, dict(response.getheaders())
        finally:
            if own:
                conn.close()

    def assert_healthy(self) -> None:
        assert self.proc.poll() is None, self.log()
        assert self.request("GET", "/health")[0] == 200

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._log.close()
        return code


@contextmanager
def running(tmp_path, *flags, env=None):
    server = Server(tmp_path, *flags, env=env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running(tmp_path_factory.mktemp("serve"), "--read-timeout", "1") as s:
        yield s


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder.from_pretrained("demo")


def expected(encoder, texts, normalize=True):
    return encoder.encode(texts, normalize_embeddings=normalize)


def in_threads(client, n_threads: int) -> None:
    """client(k) for k < n_threads, each in its own thread; any failure raised here (an assert
    in a thread would go unseen)."""
    errors: list = []

    def run(k: int) -> None:
        try:
            client(k)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def n_tokens(encoder, texts) -> int:
    return int(encoder.tokenize(texts)["attention_mask"].sum())


# ---------------------------------------------------------------------------------------------
# Routes


def test_openai_client_base64_and_float(server, encoder):
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="unused")
    texts = SENTENCES[:5]
    for fmt in ("base64", "float"):  # the client asks for base64 unless told otherwise
        kwargs = {} if fmt == "base64" else {"encoding_format": "float"}
        response = client.embeddings.create(model="whatever", input=texts, **kwargs)
        got = np.array([d.embedding for d in response.data], dtype=np.float32)
        assert [d.index for d in response.data] == list(range(len(texts)))
        assert np.abs(got - expected(encoder, texts)).max() <= TOL
        assert response.model == "demo"  # the served name, whatever was asked
        assert response.usage.prompt_tokens == n_tokens(encoder, texts)
        assert response.usage.total_tokens == response.usage.prompt_tokens
    assert "POST /v1/embeddings 200 inputs=5 tokens=" in server.log()


def test_openai_plain_http(server, encoder):
    text = SENTENCES[7]
    status, body, headers = server.request(
        "POST", "/v1/embeddings", {"input": text, "encoding_format": "base64", "dimensions": 128}
    )
    assert status == 200, body
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert np.abs(vector - expected(encoder, text)).max() <= TOL
    assert re.fullmatch(r"[0-9a-f]{16}", headers["x-request-id"])
    # past max_seq_length, OpenAI's route truncates, as sentence-transformers does
    status, body, _ = server.request("POST", "/v1/embeddings", {"input": [LONG_TEXT]})
    assert status == 200, body
    assert (
        np.abs(np.array(body["data"][0]["embedding"]) - expected(encoder, [LONG_TEXT])).max() <= TOL
    )
    assert body["usage"]["prompt_tokens"] == encoder.max_seq_length


def test_tei_embed(server, encoder):
    texts = SENTENCES[:3]
    status, body, _ = server.request("POST", "/embed", {"inputs": texts})
    assert status == 200, body
    assert np.abs(np.array(body) - expected(encoder, texts)).max() <= TOL
    status, body, _ = server.request("POST", "/embed", {"inputs": texts[0], "normalize": False})
    assert status == 200 and len(body) == 1
    assert np.abs(np.array(body[0]) - expected(encoder, texts[0], normalize=False)).max() <= TOL

    # TEI's default: no truncation, a long input is refused with its length
    full = len(encoder.tokenizer.encode(LONG_TEXT))
    status, body, _ = server.request("POST", "/embed", {"inputs": ["Court.", LONG_TEXT]})
    assert status == 413, body
    assert body["error_type"] == "Validation"
    assert f"'inputs[1]' has {full} tokens" in body["error"] and "at most 128" in body["error"]
    status, body, _ = server.request("POST", "/embed", {"inputs": LONG_TEXT, "truncate": True})
    assert status == 200, body
    assert np.abs(np.array(body[0]) - expected(encoder, LONG_TEXT)).max() <= TOL


def test_tei_similarity_and_tokenize(server, encoder):
    source, others = SENTENCES[0], SENTENCES[1:4]
    status, body, _ = server.request(
        "POST", "/similarity", {"inputs": {"source_sentence": source, "sentences": others}}
    )
    assert status == 200, body
    want = cos_sim(expected(encoder, [source]), expected(encoder, others))[0]
    assert np.abs(np.array(body) - want).max() <= TOL

    status, body, _ = server.request("POST", "/tokenize", {"inputs": ["  Le chat dort.", "Oui"]})
    assert status == 200, body
    for tokens, text in zip(body, ["Le chat dort.", "Oui"], strict=True):
        ids = encoder.tokenize([text])["input_ids"][0].tolist()
        assert [t["id"] for t in tokens] == ids
        assert [t["text"] for t in tokens] == encoder.tokenizer.convert_ids_to_tokens(ids)
        assert [t["special"] for t in tokens] == [True] + [False] * (len(ids) - 2) + [True]


def test_health_info_metrics(server, encoder):
    status, body, _ = server.request("GET", "/info")
    assert status == 200
    assert body["model_id"] == "demo" and body["dimension"] == encoder.embedding_dimension
    assert body["max_seq_length"] == encoder.max_seq_length and body["pooling"] == "mean"
    assert body["limits"]["max_client_batch_size"] == 2048
    assert body["limits"]["payload_limit"] == 2_000_000
    assert "api_key" not in body["limits"]

    server.request("POST", "/embed", {"inputs": "Une phrase."})
    status, text, headers = server.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    for name in ("requests_total", "request_duration_seconds", "batch_size", "batch_tokens",
                 "batch_requests", "forward_pass_seconds", "queue_depth", "inputs_total",
                 "tokens_total"):  # fmt: skip
        assert f"# TYPE flaubert_np_{name} " in text
    passes = re.search(r"flaubert_np_forward_pass_seconds_count (\d+)", text)
    seconds = re.search(r"flaubert_np_forward_pass_seconds_sum (\S+)", text)
    assert passes and int(passes[1]) >= 1 and seconds and float(seconds[1]) > 0
    assert re.search(r'flaubert_np_requests_total\{route="/embed",status="200"\} [1-9]', text)
    for line in text.splitlines():  # every sample line: name{labels} value
        assert line.startswith("#") or re.fullmatch(r"flaubert_np_\w+(\{[^}]*\})? [0-9.e+-]+",
                                                    line), line  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Bad requests: each answered with a JSON error, the server healthy after it

OPENAI_BAD = [
    ({"input": 3}, "'input' must be a string or a list of strings"),
    ({"input": ["ok", 3]}, "'input[1]' must be a string, got a number"),
    ({"input": ""}, "'input' is empty"),
    ({"input": ["ok", "   "]}, "'input[1]' is empty"),
    ({"input": []}, "'input' is an empty list"),
    ({"input": [1, 2, 3]}, "this model takes text"),
    ({"input": [[1, 2], [3]]}, "this model takes text"),
    ({"input": "x", "dimensions": 64}, "'dimensions' must be 128"),
    ({"input": "x", "encoding_format": "int8"}, "'encoding_format' must be 'float' or 'base64'"),
    ({"input": "x", "temperature": 1}, "unknown field 'temperature'"),
    ({"model": "demo"}, "missing field 'input'"),
    (["x"], "the body must be a JSON object"),
]


@pytest.mark.parametrize(("body", "message"), OPENAI_BAD)
def test_openai_bad_requests(server, body, message):
    status, answer, _ = server.request("POST", "/v1/embeddings", body)
    assert status == 400, answer
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert message in answer["error"]["message"]
    assert answer["error"]["type"] == "invalid_request_error"
    server.assert_healthy()


TEI_BAD = [
    ("/embed", {"inputs": None}, "'inputs' must be a string or a list of strings, got null"),
    ("/embed", {"inputs": ["a", {"b": 1}]}, "'inputs[1]' must be a string, got an object"),
    ("/embed", {"inputs": ""}, "'inputs' is empty"),
    ("/embed", {"inputs": "x", "normalize": "yes"}, "'normalize' must be true or false"),
    ("/embed", {"inputs": "x", "truncation_direction": "Left"}, "not supported"),
    ("/similarity", {"inputs": {"source_sentence": "a"}}, "'sentences'"),
    ("/similarity", {"inputs": {"source_sentence": "a", "sentences": []}}, "empty list"),
    ("/tokenize", {"text": "a"}, "unknown field 'text'"),
]


@pytest.mark.parametrize(("path", "body", "message"), TEI_BAD)
def test_tei_bad_requests(server, path, body, message):
    status, answer, _ = server.request("POST", path, body)
    assert status == 422, answer
    assert set(answer) == {"error", "error_type"} and answer["error_type"] == "Validation"
    assert message in answer["error"]
    server.assert_healthy()


def test_malformed_json_404_405(server):
    for path, shape in (("/v1/embeddings", "openai"), ("/embed", "tei")):
        status, answer, _ = server.request("POST", path, b'{"input": ["a"')
        assert status == 400, answer
        message = answer["error"]["message"] if shape == "openai" else answer["error"]
        assert message.startswith("the body is not valid JSON")
        status, answer, _ = server.request("POST", path, b"\xff\xfe")
        assert status == 400, answer
    status, answer, _ = server.request("POST", "/v1/nowhere", {"input": "a"})
    assert status == 404 and answer["error"]["code"] == "unknown_url"
    assert "no route POST /v1/nowhere" in answer["error"]["message"]
    status, answer, _ = server.request("GET", "/nowhere")
    assert status == 404 and answer["error_type"] == "NotFound"
    status, answer, _ = server.request("GET", "/embed")
    assert status == 405 and "use POST" in answer["error"]
    server.assert_healthy()


def test_413_payload_and_batch_size(server):
    # Content-Length over the limit: refused before the body is read (none is sent here)
    sock = raw_request(server.port, "/v1/embeddings", b"", 2_000_001)
    status, answer = read_response(sock)
    sock.close()
    assert status == 413, answer
    assert "the limit is 2000000 (--payload-limit)" in answer["error"]["message"]
    status, answer, _ = server.request("POST", "/v1/embeddings", {"input": ["a"] * 2049})
    assert status == 413, answer
    assert "has 2049 inputs; the limit is 2048" in answer["error"]["message"]
    status, answer, _ = server.request("POST", "/embed", {"inputs": ["a"] * 2049})
    assert status == 413 and answer["error_type"] == "Validation"
    server.assert_healthy()


def test_a_long_word_without_spaces_is_answered_as_encode_answers_it(server, encoder):
    """BPE is O(n log n): no limit on a word's length but the payload's. TEI's route refuses it
    for its token count (no truncate), OpenAI's truncates it, as encode does."""
    word = "".join(random.Random(0).choice(string.ascii_lowercase) for _ in range(20_000))
    status, answer, _ = server.request("POST", "/embed", {"inputs": word})
    assert status == 413 and "tokens; this model takes at most 128" in answer["error"], answer
    status, answer, _ = server.request("POST", "/v1/embeddings", {"input": word})
    assert status == 200, answer
    got = np.array(answer["data"][0]["embedding"], np.float32)
    assert np.abs(got - encoder.encode(word, normalize_embeddings=True)).max() <= 1e-5
    server.assert_healthy()


# ---------------------------------------------------------------------------------------------
# Load: concurrent clients, memory


def test_16_concurrent_clients_batched_and_exact(server, encoder):
    n_threads, per_thread = 16, 12
    barrier = threading.Barrier(n_threads)
    results: dict[int, list] = {}

    def client(k: int) -> None:
        conn = server.connection()  # keep-alive: one connection per client
        barrier.wait()
        got = []
        for j in range(per_thread):
            text = SENTENCES[(k * per_thread + j) % len(SENTENCES)]
            status, body, _ = server.request(
                "POST", "/v1/embeddings", {"input": text, "encoding_format": "float"}, conn=conn
            )
            assert status == 200, body
            got.append((text, body["data"][0]["embedding"]))
        results[k] = got
        conn.close()

    in_threads(client, n_threads)
    pairs = [pair for k in range(n_threads) for pair in results[k]]
    texts = [text for text, _ in pairs]
    got = np.array([vector for _, vector in pairs], dtype=np.float32)
    assert np.abs(got - expected(encoder, texts)).max() <= TOL

    _, text, _ = server.request("GET", "/metrics")
    passes = int(re.search(r"flaubert_np_batch_requests_count (\d+)", text).group(1))
    alone = int(re.search(r'flaubert_np_batch_requests_bucket\{le="1"\} (\d+)', text).group(1))
    assert passes > alone, "no forward pass joined two requests"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def send_many(server, n: int, n_threads: int = 8) -> None:
    """n single-sentence /embed requests from n_threads keep-alive clients."""

    def client(k: int) -> None:
        conn = server.connection()
        for i in range(k, n, n_threads):
            status, body, _ = server.request(
                "POST", "/embed", {"inputs": SENTENCES[i % 64]}, conn=conn
            )
            assert status == 200, body
        conn.close()

    in_threads(client, n_threads)


def test_memory_flat_over_5000_requests(server):
    send_many(server, 500)
    after_500 = rss_kib(server.proc.pid)
    send_many(server, 4500)
    after_5000 = rss_kib(server.proc.pid)
    assert after_5000 <= 1.10 * after_500, (after_500, after_5000)


# ---------------------------------------------------------------------------------------------
# Slow clients, the in-flight limit, the API key, SIGTERM


def raw_request(port: int, path: str, body: bytes, declared: int, extra: str = "") -> socket.socket:
    """A socket that sent a request's headers and `body`, maybe only part of what it declares."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"{extra}Content-Length: {declared}\r\n\r\n".encode() + body)  # fmt: skip
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    match = re.search(rb"content-length: (\d+)", data.split(b"\r\n\r\n", 1)[0], re.IGNORECASE)
    return int(match.group(1)) if match else 0


def test_slow_clients_are_cut(server):
    sock = raw_request(server.port, "/embed", b'{"inputs": "Le', declared=100)
    start = time.monotonic()
    status, body = read_response(sock)
    assert status == 408 and "more than 1 s to arrive" in body["error"]
    assert time.monotonic() - start < 10
    assert sock.recv(10) == b""  # and the connection is closed
    sock.close()

    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\n")  # headers that never end
    start = time.monotonic()
    assert sock.recv(10) == b""
    assert time.monotonic() - start < 10
    sock.close()
    server.assert_healthy()


def test_api_key_and_429(tmp_path):
    key = "s3cret-key"
    flags = ("--max-concurrent-requests", "1", "--read-timeout", "5")
    with running(tmp_path, *flags, env={"FLAUBERT_NP_API_KEY": key}) as server:
        auth = {"Authorization": f"Bearer {key}"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
            status, body, _ = server.request("POST", "/v1/embeddings", {"input": "a"}, headers)
            assert status == 401 and body["error"]["code"] == "invalid_api_key"
            status, body, _ = server.request("POST", "/embed", {"inputs": "a"}, headers)
            assert status == 401 and body["error_type"] == "Unauthorized"
        assert server.request("GET", "/metrics")[0] == 401
        assert server.request("GET", "/health")[0] == 200  # open, for load balancers
        status, body, _ = server.request("POST", "/embed", {"inputs": "a"}, auth)
        assert status == 200, body

        # one request in flight (its body half sent): the next one is refused at once
        held = raw_request(
            server.port, "/embed", b'{"inputs"', 17, f"Authorization: Bearer {key}\r\n"
        )
        time.sleep(0.3)
        status, body, headers = server.request("POST", "/v1/embeddings", {"input": "a"}, auth)
        assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
        assert "--max-concurrent-requests" in body["error"]["message"]
        assert headers["retry-after"] == "1"
        status, body, _ = server.request("POST", "/embed", {"inputs": "a"}, auth)
        assert status == 429 and body["error_type"] == "Overloaded"
        assert server.request("POST", "/embed", {"inputs": "a"})[0] == 401  # the key first
        assert server.request("GET", "/metrics", headers=auth)[0] == 200  # never refused
        held.sendall(b': "b"}' + b" " * 2)
        status, body = read_response(held)
        held.close()
        assert status == 200 and len(body[0]) == 128
        assert server.request("POST", "/embed", {"inputs": "a"}, auth)[0] == 200
        server.assert_healthy()


def test_sigterm_finishes_requests_in_flight(tmp_path, encoder):
    server = Server(tmp_path)
    bodies = [json.dumps({"inputs": text}).encode() for text in SENTENCES[:3]]
    held = [raw_request(server.port, "/embed", body[:5], declared=len(body)) for body in bodies]
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    for sock, body in zip(held, bodies, strict=True):  # the rest of each body, after SIGTERM
        sock.sendall(body[5:])
    for sock, text in zip(held, SENTENCES[:3], strict=True):
        status, answer = read_response(sock)
        sock.close()
        assert status == 200, answer
        assert np.abs(np.array(answer[0]) - expected(encoder, text)).max() <= TOL
    assert server.stop() == 0, server.log()
    assert "Shutting down" in server.log()


# ---------------------------------------------------------------------------------------------
# The command


def run_cli(*args: str, code: str = "") -> subprocess.CompletedProcess:
    script = f"import sys\n{code}\nfrom flaubert_np.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_serve_without_the_extra_says_what_to_install():
    result = run_cli("serve", code="sys.modules['uvicorn'] = None")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert 'pip install "flaubert-np[serve]"' in result.stderr


def test_bad_flags_fail_in_one_line():
    cases = (
        (["--max-batch-tokens", "0"], "--max-batch-tokens must be at least 1"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--read-timeout", "0"], "--read-timeout must be positive"),
    )
    for flags, message in cases:
        result = run_cli("serve", *flags)
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_importing_flaubert_np_loads_no_server():
    modules = "{'uvicorn', 'starlette'}"
    code = f"import sys, flaubert_np, flaubert_np.cli; print(sorted({modules} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_a_taken_port_is_one_error_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("serve", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 1, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("flaubert-np: error: could not serve on 127.0.0.1:")
    assert "address already in use" in result.stderr  # uvicorn's log says why
