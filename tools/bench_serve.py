"""Benchmark `flaubert-np serve` against the server users write by hand: Starlette +
`SentenceTransformer.encode` per request.

    python tools/bench_serve.py                     # FlauBERT-base size (docs/serving.md's table)
    python tools/bench_serve.py --json out.json     # the table, and every figure in out.json
    python tools/bench_serve.py --size tiny --quick # smoke run (tests/test_bench_serve.py)

The same load generator (threads of this process, each a keep-alive HTTP connection sending its
next request as soon as the last is answered) runs against each server in turn, on the same
OpenAI-shaped route (POST /v1/embeddings, floats), with French STS sentences:
  - 1 client sending one sentence per request,
  - 16 concurrent clients sending one sentence per request,
  - 4 clients sending 32 sentences per request.
Requests/s, sentences/s, and the p50 and p99 latency of each, then the ratios. One in-process
`SentenceEncoder.encode` of a sentence (p50) is the 1-client yardstick.

The hand-made server is what FastAPI's tutorial gives for a `def` route: the body is read on the
event loop, then the sync function runs in the threadpool, calling `SentenceTransformer.encode`
for its request alone. It is written with Starlette (FastAPI is Starlette plus validation, and is
not a dependency here) on uvicorn; `run_in_threadpool` is what FastAPI does for `def` routes.

The model is the one tools/bench.py builds (FlauBERT-base dimensions, random weights, a BPE
learned from the STS sentences; --size tiny: 2 layers, 32 dims), in the same --workdir. Needs
the `test` extras (torch, sentence-transformers) and the `serve` extra.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import bench  # the model build, the corpus, the children's environment

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = (("1 client", 1, 1), ("16 clients", 16, 1), ("4 clients x 32", 4, 32))
START_TIMEOUT_S = 300
SERVERS = ("flaubert-np", "hand-made")


# ---------------------------------------------------------------------------------------------
# The hand-made server (run as a child: bench_serve.py --hand-made MODEL_DIR PORT THREADS)


def hand_made_server(model_dir: str, port: int, threads: int) -> None:
    import torch
    import uvicorn
    from sentence_transformers import SentenceTransformer
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device="cpu")

    def embed(texts: list[str]) -> list[list[float]]:  # FastAPI's `def` route body
        return model.encode(texts, normalize_embeddings=True, show_progress_bar=False).tolist()

    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        vectors = await run_in_threadpool(embed, texts)
        return JSONResponse(
            {
                "object": "list",
                "model": "hand-made",
                "data": [
                    {"object": "embedding", "index": i, "embedding": v}
                    for i, v in enumerate(vectors)
                ],
            }
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"]),
                            Route("/health", health)])  # fmt: skip
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# ---------------------------------------------------------------------------------------------
# Starting a server, and the load generator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(conn: http.client.HTTPConnection, texts: list[str]) -> list[list[float]]:
    body = json.dumps({"input": texts, "model": "m", "encoding_format": "float"}).encode()
    conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise SystemExit(f"bench_serve: HTTP {response.status}: {data[:300]!r}")
    return [d["embedding"] for d in json.loads(data)["data"]]


def start(server: str, model_dir: Path, threads: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if server == "flaubert-np":
        cmd = [sys.executable, "-m", "flaubert_np.cli", "serve", "--model", str(model_dir),
               "--port", str(port), "--log-level", "warning"]  # fmt: skip
    else:
        cmd = [sys.executable, __file__, "--hand-made", str(model_dir), str(port), str(threads)]
    proc = subprocess.Popen(cmd, env=child_env(threads))
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"bench_serve: the {server} server exited ({proc.returncode})")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"bench_serve: the {server} server did not start")
        time.sleep(0.2)


def load(port: int, clients: int, per_request: int, sentences: list[str], seconds: float,
         at_start: Callable[[], object] = lambda: None) -> dict:  # fmt: skip
    """`clients` threads, each on its own keep-alive connection, for `seconds`; `at_start`
    called once every client is connected and warmed up (no request in flight), just before
    they start."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    ready, go = threading.Barrier(clients + 1), threading.Event()

    def client(k: int) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            post(conn, sentences[:per_request])  # connect and warm up
            ready.wait()
            go.wait()
            i = k * 997
            while time.perf_counter() < stop_at:
                texts = [sentences[(i + j) % len(sentences)] for j in range(per_request)]
                t = time.perf_counter()
                post(conn, texts)
                latencies[k].append(time.perf_counter() - t)
                i += per_request
            conn.close()
        except BaseException as e:  # reported below: a failing client must not go unseen
            errors.append(e)
            ready.abort()

    stop_at = 0.0  # until at_start has run, a client released by an error stops at once
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    begin = time.perf_counter()
    try:
        ready.wait()
        at_start()
        begin = time.perf_counter()
        stop_at = begin + seconds
    except threading.BrokenBarrierError:  # a client failed: its error is reported below
        pass
    finally:
        go.set()
        for t in threads:
            t.join()
    if errors:
        raise SystemExit(f"bench_serve: a client failed: {errors[0]!r}")
    wall = time.perf_counter() - begin
    every = sorted(x for per_client in latencies for x in per_client)
    return {
        "requests": len(every), "wall_s": wall, "requests_per_s": len(every) / wall,
        "sentences_per_s": len(every) * per_request / wall,
        "p50_ms": 1000 * every[len(every) // 2],
        "p99_ms": 1000 * every[min(len(every) - 1, int(0.99 * len(every)))],
    }  # fmt: skip


def child_env(threads: int) -> dict[str, str]:
    """The servers' environment: tools/bench.py's (thread counts, offline), OpenBLAS's kernel
    left to its own choice (OPENBLAS_CORETYPE unset, as the issue's targets are stated)."""
    return bench.child_env(threads, unset_openblas=True)


def in_process(model_dir: str, repeats: int) -> dict:
    """The yardsticks, in process (run in a child, with the servers' environment:
    bench_serve.py --encode MODEL_DIR REPEATS): one SentenceEncoder.encode of one sentence,
    median; and the sentences/s of encode calls of 16 sentences each, what 16 clients would get
    if every forward pass held a sentence from each of them and serving cost nothing."""
    from flaubert_np import SentenceEncoder

    sentences = bench.read_corpus(bench.STSB / "dev.csv")
    encoder = SentenceEncoder.from_pretrained(model_dir)
    encoder.encode(sentences[:32])
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        encoder.encode(sentences[i % len(sentences)], normalize_embeddings=True)
        times.append(time.perf_counter() - t)
    start, done = time.perf_counter(), 0
    while done < 16 * max(2, repeats // 8):  # sentences from all over the corpus, as the clients'
        batch = [sentences[(k * 997 + done // 16) % len(sentences)] for k in range(16)]
        encoder.encode(batch, normalize_embeddings=True)
        done += 16
    return {"encode_one_sentence_p50_ms": 1000 * statistics.median(times),
            "encode_16_per_call_sentences_per_s": done / (time.perf_counter() - start)}  # fmt: skip


def scenario(server: str, port: int, clients: int, per_request: int, sentences: list[str],
             seconds: float) -> dict:  # fmt: skip
    """One scenario's figures; for flaubert-np also, from its /metrics, how full its forward
    passes were and how busy the model was (read with no request in flight, before and after)."""
    if server != "flaubert-np":
        return load(port, clients, per_request, sentences, seconds)
    start: list[tuple[float, float, float]] = []
    figures = load(port, clients, per_request, sentences, seconds,
                   lambda: start.append(passes(port)))  # fmt: skip
    count, held, busy = (b - a for a, b in zip(start[0], passes(port), strict=True))
    return figures | {"passes": int(count), "requests_per_pass": held / max(count, 1),
                      "model_busy": busy / figures["wall_s"]}  # fmt: skip


def in_process_child(model_dir: Path, repeats: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--encode", str(model_dir), str(repeats)]
    out = subprocess.run(cmd, env=child_env(threads), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench_serve: the encode child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def passes(port: int) -> tuple[float, float, float]:
    """From flaubert-np's /metrics: forward passes so far, the requests they held, their
    seconds."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    value = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
             if line and not line.startswith("#")}  # fmt: skip
    return (value["flaubert_np_batch_requests_count"], value["flaubert_np_batch_requests_sum"],
            value["flaubert_np_forward_pass_seconds_sum"])  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The run


def run(args) -> dict:
    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dir = args.workdir / args.size / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    built = bench.build(argparse.Namespace(size=args.size, rebuild=False, threads=args.threads),
                        model_dir)  # fmt: skip
    sentences = bench.read_corpus(bench.STSB / "dev.csv")
    seconds = 3.0 if args.quick else args.seconds
    report: dict = {
        "command": " ".join(["python tools/bench_serve.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": bench.machine_info(args.threads),
        "model": {k: built[k] for k in ("size", "emb_dim", "n_layers", "n_heads")},
        "seconds_per_scenario": seconds, "loadavg_start": bench.loadavg(),
        **in_process_child(model_dir, 20 if args.quick else 200, args.threads),
        "servers": {},
    }  # fmt: skip
    probe = sentences[:8]
    answers = {}
    for server in SERVERS:
        bench.log(f"{server} server: starting")
        proc, port = start(server, model_dir, args.threads)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            answers[server] = post(conn, probe)
            conn.close()
            report["servers"][server] = {}
            for name, clients, per_request in SCENARIOS:
                bench.log(f"{server} server: {name}, {per_request} sentence(s) per request")
                figures = scenario(server, port, clients, per_request, sentences, seconds)
                report["servers"][server][name] = figures
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    import numpy as np

    a, b = (np.array(answers[s], dtype=np.float64) for s in SERVERS)
    report["max_abs_diff"] = float(np.abs(a - b).max())
    report["loadavg_end"] = bench.loadavg()
    ours, theirs = (report["servers"][s] for s in SERVERS)
    report["ratios"] = {
        "16 clients requests/s vs hand-made": ours["16 clients"]["requests_per_s"]
        / theirs["16 clients"]["requests_per_s"],
        "16 clients p99 vs hand-made": ours["16 clients"]["p99_ms"]
        / theirs["16 clients"]["p99_ms"],
        "1 client p50 vs in-process encode": ours["1 client"]["p50_ms"]
        / report["encode_one_sentence_p50_ms"],
        "32-sentence requests sentences/s vs hand-made": ours["4 clients x 32"]["sentences_per_s"]
        / theirs["4 clients x 32"]["sentences_per_s"],
    }
    return report


def table(report: dict) -> str:
    m = report["model"]
    lines = [
        f"{report['command']}  ({report['date']}, {report['machine'].get('cpu', '')}, "
        f"{report['machine']['threads']} threads, load {report['loadavg_start']})",
        f"model: {m['size']} ({m['n_layers']} layers, {m['emb_dim']} dims); "
        f"{report['seconds_per_scenario']:g} s per scenario; in-process encode of one sentence: "
        f"p50 {report['encode_one_sentence_p50_ms']:.1f} ms; of 16 sentences per call: "
        f"{report['encode_16_per_call_sentences_per_s']:.1f} sentences/s",
        "",
        "| scenario | server | requests/s | sentences/s | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, _, _ in SCENARIOS:
        for server in SERVERS:
            r = report["servers"][server][name]
            lines.append(
                f"| {name} | {server} | {r['requests_per_s']:.1f} | "
                f"{r['sentences_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
            )
    lines.append("")
    for name, _, _ in SCENARIOS:
        r = report["servers"]["flaubert-np"][name]
        lines.append(f"flaubert-np, {name}: {r['passes']} forward passes, "
                     f"{r['requests_per_pass']:.1f} requests each on average, "
                     f"model busy {100 * r['model_busy']:.0f}% of the time")  # fmt: skip
    lines.append("")
    lines += [f"{k}: {v:.2f}x" for k, v in report["ratios"].items()]
    lines.append(f"max abs diff between the servers' embeddings: {report['max_abs_diff']:.1e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--hand-made"]:
        hand_made_server(argv[1], int(argv[2]), int(argv[3]))
        return 0
    if argv[:1] == ["--encode"]:
        print(json.dumps(in_process(argv[1], int(argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size",
        choices=sorted(bench.SIZES),
        default="base",
        help="model dimensions: FlauBERT base (default), or tiny for tests",
    )
    parser.add_argument("--workdir", type=Path, default=bench.DEFAULT_WORKDIR,
                        help="where tools/bench.py builds and keeps the model "
                             "(default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads for both servers' math libraries (default: all cores)",
    )
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="load per scenario and server (default: 30)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s per scenario")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the figures as JSON to PATH (alone: to stdout, no table)",
    )
    args = parser.parse_args(argv)
    if args.threads < 1 or args.seconds <= 0:
        parser.error("--threads and --seconds must be positive")
    report = run(args)
    bench.write_report(report, table(report), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
