"""Benchmark flaubert-np against PyTorch (transformers), ONNX Runtime and sentence-transformers.

    python tools/bench.py                  # the README's table (about 15 minutes on 2 cores)
    python tools/bench.py --json out.json  # the table, and every figure in out.json
    python tools/bench.py --json           # JSON on stdout instead of the table
    python tools/bench.py --quick          # smoke run: few repeats, a corpus sample

On one machine, in one run, with the same thread count for everyone (--threads, default: all
cores), each measurement in a fresh subprocess:
  (a) model alone: tokens/s of the encoder's forward pass at fixed batch x seq shapes (1x16,
      32x32, 8x128; random ids, no padding): flaubert_np.FlaubertModel, transformers'
      FlaubertModel on torch, and the same model exported with torch.onnx in ONNX Runtime;
      and the ceiling: flaubert-np's matrix products alone, on the same shapes;
  (b) end to end: sentences/s of `SentenceEncoder.encode` against `SentenceTransformer.encode`
      on a French corpus (default: the 3,000 sentences of tests/data/stsb-fr/dev.csv), batch 32;
  (c) cold start: wall time and peak RSS of a fresh `python` that imports the library, loads
      the model and encodes one sentence.
Figures are medians over repeats, after warm-up; the outputs are compared too (max abs diff).

OpenBLAS, NumPy's BLAS, picks its kernels from the CPU, unless OPENBLAS_CORETYPE names a core
(and OPENBLAS_L2_SIZE a cache size). Every measurement runs once with the environment as it is
and once with both variables removed from the child's environment (if the environment sets
neither, the two are the same and run once); each child reports the kernel OpenBLAS picked.
torch (MKL) and ONNX Runtime (MLAS) do not read these variables, but run under both all the same.

The model: FlauBERT-base dimensions (768 dims, 12 layers, 12 heads, FFN 3072, 67,542 words),
random weights (transformers' init, seed 0), a lower-casing BPE tokenizer learned from the STS
sentences by tools/learn_bpe.py (15,000 merges), max_seq_length 128 and mean pooling, as
hugorosen/flaubert_base_uncased-xnli-sts. It is built once (transformers' save_pretrained,
SentenceTransformer.save, torch.onnx.export) into --workdir and reused. `--size tiny` builds a
2-layer, 32-dim model instead (for tests/test_bench.py).

Needs the `test` extras (torch, transformers, sentence-transformers); ONNX Runtime (the `bench`
extras) when installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flaubert_np import blas
from learn_bpe import SPECIAL_TOKENS, learn_bpe, read_sentences

ROOT = Path(__file__).resolve().parent.parent
STSB = ROOT / "tests" / "data" / "stsb-fr"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "flaubert-np-bench"  # --workdir's default

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
SHAPES = ((1, 16), (32, 32), (8, 128))  # (batch, seq) for the model alone
BATCH_SIZE = 32  # encode(): sentence-transformers' default
COLD_SENTENCE = "Un homme joue de la guitare."
FIRST_ID = len(SPECIAL_TOKENS)  # ids below are <s> </s> <pad> <unk> <special0..9>: word ids only

SIZES = {
    "base": {"emb_dim": 768, "n_layers": 12, "n_heads": 12, "n_words": 67_542, "merges": 15_000,
             "max_seq_length": 128},
    "tiny": {"emb_dim": 32, "n_layers": 2, "n_heads": 4, "n_words": 1_000, "merges": 300,
             "max_seq_length": 128},
}  # fmt: skip

MODEL_FRAMEWORKS = ("flaubert-np", "torch", "onnxruntime")
ENCODE_FRAMEWORKS = ("flaubert-np", "sentence-transformers")

# Cold start: a fresh interpreter imports, loads, encodes one sentence. It prints its own
# breakdown; the parent measures the wall time of the whole process and its peak RSS.
COLD_SCRIPTS = {
    "flaubert-np": """
import json, sys, time
t0 = time.perf_counter()
from flaubert_np import SentenceEncoder
t1 = time.perf_counter()
model = SentenceEncoder.from_pretrained(sys.argv[1])
t2 = time.perf_counter()
model.encode([sys.argv[2]])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "encode_s": t3 - t2}))
""",
    "sentence-transformers": """
import json, sys, time
t0 = time.perf_counter()
from sentence_transformers import SentenceTransformer
t1 = time.perf_counter()
model = SentenceTransformer(sys.argv[1], device="cpu")
t2 = time.perf_counter()
model.encode([sys.argv[2]])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "encode_s": t3 - t2}))
""",
}


# ------------------------------------------------------------------------------------------------
# Helpers shared by the parent and the children
# ------------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def read_corpus(path: Path) -> list[str]:
    """A .csv file: the first two columns of each row (STS pairs); any other file: each line.
    Blank ones left out."""
    sentences = [s for s in read_sentences([path]) if s.strip()]
    if not sentences:
        raise SystemExit(f"bench: no sentences in {path}")
    return sentences


def time_repeats(fn, repeats: int, min_seconds: float) -> list[float]:
    """Wall seconds of fn(), called at least `repeats` times and for at least min_seconds."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def model_inputs(batch: int, seq: int, n_ids: int):
    """The same random word ids for every framework, and a mask with no padding."""
    import numpy as np

    rng = np.random.default_rng(batch * 1000 + seq)
    ids = rng.integers(FIRST_ID, n_ids, size=(batch, seq), dtype=np.int64)
    return ids, np.ones_like(ids)


# ------------------------------------------------------------------------------------------------
# Children: each runs in its own process and writes its result as JSON to spec["out"]
# ------------------------------------------------------------------------------------------------


def child_build(spec: dict) -> dict:
    """Learn the tokenizer, make the random model, save it for transformers,
    sentence-transformers and ONNX Runtime."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    size = SIZES[spec["size"]]
    model_dir, vocab_dir = Path(spec["model_dir"]), Path(spec["workdir"]) / "bpe"
    sentences = read_corpus(STSB / "train.csv") + read_corpus(STSB / "dev.csv")
    if spec["size"] == "tiny":
        sentences = sentences[:300]
    learn_bpe(sentences, size["merges"], vocab_dir, lowercase=True)

    hf_dir = Path(spec["workdir"]) / "hf"
    tokenizer = transformers.FlaubertTokenizer(
        str(vocab_dir / "vocab.json"), str(vocab_dir / "merges.txt"), do_lowercase=True,
        model_max_length=512,
    )  # fmt: skip
    tokenizer.save_pretrained(str(hf_dir))
    n_words = max(size["n_words"], len(tokenizer))
    config = transformers.FlaubertConfig(
        vocab_size=n_words, emb_dim=size["emb_dim"], n_layers=size["n_layers"],
        n_heads=size["n_heads"], max_position_embeddings=512,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.FlaubertModel(config).eval()
    model.save_pretrained(str(hf_dir))

    transformer = Transformer(str(hf_dir), max_seq_length=size["max_seq_length"])
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(model_dir))

    # ONNX: the TorchScript exporter (dynamo=False) needs nothing beyond torch and onnx.
    ids = torch.randint(FIRST_ID, len(tokenizer), (2, 8))
    torch.onnx.export(
        model, (ids, torch.ones_like(ids)), str(model_dir / "model.onnx"), dynamo=False,
        input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
        dynamic_axes={name: {0: "batch", 1: "seq"}
                      for name in ("input_ids", "attention_mask", "last_hidden_state")},
        opset_version=17,
    )  # fmt: skip
    return {"n_words": n_words, "vocab": len(tokenizer), **{k: size[k] for k in size}}


def child_model(spec: dict) -> dict:
    """The encoder alone: forward passes at fixed shapes, timed after warm-up."""
    import numpy as np

    framework, model_dir = spec["framework"], spec["model_dir"]
    threads = spec["threads"]
    info: dict[str, Any] = {"openblas_core": blas.core()}
    if framework == "flaubert-np":
        import flaubert_np
        from flaubert_np import FlaubertModel

        model = FlaubertModel.from_pretrained(model_dir)
        info["version"] = flaubert_np.__version__

        def forward(ids, mask):
            return model(ids, attention_mask=mask).last_hidden_state
    elif framework == "torch":
        import torch
        import transformers

        torch.set_num_threads(threads)
        model = transformers.FlaubertModel.from_pretrained(model_dir).eval()
        info["version"] = torch.__version__
        info["blas"] = "MKL" if torch.backends.mkl.is_available() else "other"

        def forward(ids, mask):
            with torch.inference_mode():
                out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
            return out.last_hidden_state.numpy()
    elif framework == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            str(Path(model_dir) / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        info["version"] = ort.__version__

        def forward(ids, mask):
            return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    else:
        raise ValueError(f"unknown framework {framework!r}")

    shapes = {}
    for batch, seq in spec["shapes"]:
        ids, mask = model_inputs(batch, seq, spec["n_ids"])
        out = forward(ids, mask)  # warm-up (allocations, caches, lazy init)
        np.save(Path(spec["outputs"]) / f"model-{framework}-{batch}x{seq}.npy", out)
        for _ in range(spec["warmup"] - 1):
            forward(ids, mask)
        times = time_repeats(
            lambda ids=ids, mask=mask: forward(ids, mask), spec["repeats"], spec["min_seconds"]
        )
        shapes[f"{batch}x{seq}"] = {
            "tokens_per_s": batch * seq / statistics.median(times),
            "median_s": statistics.median(times), "best_s": min(times), "runs": len(times),
        }  # fmt: skip
        if framework == "flaubert-np":
            shapes[f"{batch}x{seq}"]["matmul_only"] = matmul_only(model, batch * seq, spec)
    return {**info, "shapes": shapes}


def matmul_only(model, tokens: int, spec: dict) -> dict:
    """The ceiling: the encoder's linear layers alone (q, k, v, out_lin, lin1, lin2 of every
    layer, the products fast.py makes, on BLAS's own threads), on `tokens` rows, with nothing
    else - no attention, GELU, norms or bias. A NumPy forward pass makes these products and
    more: none can be faster."""
    import numpy as np

    from flaubert_np.fast import matmul_

    x = np.random.default_rng(0).standard_normal((tokens, model.config.emb_dim), np.float32)
    hidden = np.empty((tokens, model.config.ffn_dim), np.float32)
    out = np.empty_like(x)

    def products():
        for layer in model.params.layers:
            att = layer.attention
            for lin in (att.q_lin, att.k_lin, att.v_lin, att.out_lin):
                matmul_(x, lin.weight, out)
            matmul_(x, layer.ffn.lin1.weight, hidden)
            matmul_(hidden, layer.ffn.lin2.weight, out)

    products()
    times = time_repeats(products, spec["repeats"], spec["min_seconds"] / 2)
    return {"tokens_per_s": tokens / statistics.median(times), "median_s": statistics.median(times)}


def child_encode(spec: dict) -> dict:
    """Sentences in, embeddings out, through the whole pipeline (tokenizer, model, pooling)."""
    import numpy as np

    framework, model_dir = spec["framework"], spec["model_dir"]
    sentences = read_corpus(Path(spec["corpus"]))[: spec["max_sentences"]]
    info: dict[str, Any] = {"openblas_core": blas.core()}
    if framework == "flaubert-np":
        from flaubert_np import SentenceEncoder

        model = SentenceEncoder.from_pretrained(model_dir)
        # The corpus as the model sees it (truncated to max_seq_length), for the table.
        lengths = [
            int(n)
            for i in range(0, len(sentences), 256)
            for n in model.tokenize(sentences[i : i + 256])["attention_mask"].sum(axis=1)
        ]
        info["tokens_per_sentence"] = sum(lengths) / len(lengths)
        info["max_tokens"] = max(lengths)

        def encode(texts):
            return model.encode(texts, batch_size=BATCH_SIZE)
    elif framework == "sentence-transformers":
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(spec["threads"])
        model = SentenceTransformer(model_dir, device="cpu")

        def encode(texts):
            return model.encode(texts, batch_size=BATCH_SIZE, show_progress_bar=False)
    else:
        raise ValueError(f"unknown framework {framework!r}")

    for _ in range(spec["warmup"]):
        encode(sentences[: 2 * BATCH_SIZE])
    embeddings = None

    def run():
        nonlocal embeddings
        embeddings = encode(sentences)

    times = time_repeats(run, spec["repeats"], 0.0)
    np.save(Path(spec["outputs"]) / f"encode-{framework}.npy", np.asarray(embeddings))
    return {
        **info, "sentences": len(sentences), "median_s": statistics.median(times),
        "best_s": min(times), "runs": len(times),
        "sentences_per_s": len(sentences) / statistics.median(times),
    }  # fmt: skip


CHILDREN = {"build": child_build, "model": child_model, "encode": child_encode}


def child_main(kind: str, spec_json: str) -> int:
    spec = json.loads(spec_json)
    result = CHILDREN[kind](spec)
    with open(spec["out"], "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


# ------------------------------------------------------------------------------------------------
# The parent: builds the model once, runs the children, gathers the table
# ------------------------------------------------------------------------------------------------


def child_env(threads: int, unset_openblas: bool) -> dict[str, str]:
    """The environment of every child: the thread count fixed for all libraries, no network."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONWARNINGS="ignore",
    )
    # Children import flaubert_np from this checkout, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if unset_openblas:
        for name in OPENBLAS_VARS:
            env.pop(name, None)
    return env


def run_child(kind: str, spec: dict, env: dict[str, str], workdir: Path) -> dict:
    """Run one measurement in a fresh interpreter; its result, or SystemExit with its stderr."""
    out = workdir / f"result-{os.getpid()}.json"
    spec = {**spec, "out": str(out)}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise SystemExit(f"bench: the {kind} child ({spec.get('framework', '')}) failed:\n{tail}")
    with open(out, encoding="utf-8") as f:
        result = json.load(f)
    out.unlink()
    return result


def cold_start(framework: str, model_dir: Path, env: dict[str, str], runs: int) -> dict:
    """Wall time and peak RSS of fresh processes that import, load and encode one sentence."""
    walls, peaks, breakdowns = [], [], []
    for _ in range(runs):
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-c", COLD_SCRIPTS[framework], str(model_dir), COLD_SENTENCE],
                env=env, stdout=out, stderr=err,
            )  # fmt: skip
            # wait4 gives this one child's resource usage: ru_maxrss is its peak RSS in KiB.
            _, status, usage = os.wait4(proc.pid, 0)
            walls.append(time.perf_counter() - start)
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            if proc.returncode != 0:
                raise SystemExit(f"bench: {framework} cold start failed:\n{err.read()[-3000:]}")
            peaks.append(usage.ru_maxrss / 1024)
            breakdowns.append(json.loads(out.read().strip().splitlines()[-1]))
    middle = walls.index(sorted(walls)[len(walls) // 2])  # the median run, with its breakdown
    return {
        "wall_s": statistics.median(walls), "walls_s": walls,
        "peak_rss_mib": statistics.median(peaks), "peaks_mib": peaks, **breakdowns[middle],
    }  # fmt: skip


def max_abs_diff(a: Path, b: Path) -> float | None:
    import numpy as np

    if not (a.exists() and b.exists()):
        return None
    x, y = np.load(a), np.load(b)
    if x.shape != y.shape:
        raise SystemExit(f"bench: {a.name} has shape {x.shape}, {b.name} {y.shape}")
    return float(np.abs(x.astype(np.float64) - y).max()) if x.size else 0.0


def build(args, model_dir: Path) -> dict:
    """Build the model into the work directory, unless a build of the same size is there."""
    done = model_dir / "bench-build.json"  # model_dir is per size: <workdir>/<size>/model
    if done.exists() and not args.rebuild:
        return json.loads(done.read_text(encoding="utf-8"))
    log(f"building the {args.size} model in {model_dir} (once; --rebuild to redo)")
    spec = {"size": args.size, "model_dir": str(model_dir), "workdir": str(model_dir.parent)}
    built = {
        "size": args.size,
        **run_child("build", spec, child_env(args.threads, False), model_dir.parent),
    }
    done.write_text(json.dumps(built), encoding="utf-8")
    return built


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def machine_info(threads: int) -> dict:
    import numpy as np

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "transformers", "sentence_transformers", "onnxruntime"):
        if importlib.util.find_spec(name) is not None:
            from importlib.metadata import version

            versions[name] = version(name.replace("_", "-"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "versions": versions,
        "environment": {name: os.environ.get(name) for name in OPENBLAS_VARS},
    }


def run_setting(args, name: str, unset: bool, model_dir: Path, built: dict, corpus: Path) -> dict:
    """Every measurement under one OpenBLAS setting."""
    env = child_env(args.threads, unset)
    outputs = Path(tempfile.mkdtemp(prefix="outputs-", dir=model_dir.parent))
    quick = args.quick
    base = {"model_dir": str(model_dir), "threads": args.threads, "outputs": str(outputs)}
    frameworks = [f for f in MODEL_FRAMEWORKS if f != "onnxruntime" or args.onnxruntime]

    model: dict[str, dict] = {}
    for framework in frameworks:
        log(f"[{name}] model alone: {framework}")
        model[framework] = run_child("model", {
            **base, "framework": framework, "shapes": SHAPES, "n_ids": built["vocab"],
            "warmup": 1 if quick else 3, "repeats": 2 if quick else 10,
            "min_seconds": 0.0 if quick else 3.0,
        }, env, model_dir.parent)  # fmt: skip

    encode: dict[str, dict] = {}
    for framework in ENCODE_FRAMEWORKS:
        log(f"[{name}] encode: {framework}")
        encode[framework] = run_child("encode", {
            **base, "framework": framework, "corpus": str(corpus),
            "max_sentences": args.max_sentences, "warmup": 1, "repeats": 1 if quick else 3,
        }, env, model_dir.parent)  # fmt: skip

    cold: dict[str, dict] = {}
    for framework in ENCODE_FRAMEWORKS:
        log(f"[{name}] cold start: {framework}")
        if not quick:  # a first, untimed run puts the files in the page cache for both
            cold_start(framework, model_dir, env, 1)
        cold[framework] = cold_start(framework, model_dir, env, 1 if quick else 5)

    diffs = {
        f"{b}x{s}": {fw: max_abs_diff(outputs / f"model-{fw}-{b}x{s}.npy",
                                      outputs / f"model-torch-{b}x{s}.npy")
                     for fw in frameworks if fw != "torch"}
        for b, s in SHAPES
    }  # fmt: skip
    encode_diff = max_abs_diff(
        outputs / "encode-flaubert-np.npy", outputs / "encode-sentence-transformers.npy"
    )
    for path in outputs.iterdir():
        path.unlink()
    outputs.rmdir()

    np_model = model["flaubert-np"]["shapes"]
    ratios = {}
    for b, s in SHAPES:
        key = f"{b}x{s}"
        for other in frameworks[1:]:
            ratios[f"model {key} vs {other}"] = (
                np_model[key]["tokens_per_s"] / model[other]["shapes"][key]["tokens_per_s"]
            )
    ratios["encode vs sentence-transformers"] = (
        encode["flaubert-np"]["sentences_per_s"]
        / encode["sentence-transformers"]["sentences_per_s"]
    )
    ratios["cold start speed-up vs sentence-transformers"] = (
        cold["sentence-transformers"]["wall_s"] / cold["flaubert-np"]["wall_s"]
    )
    ratios["peak RSS vs sentence-transformers"] = (
        cold["flaubert-np"]["peak_rss_mib"] / cold["sentence-transformers"]["peak_rss_mib"]
    )
    return {
        "name": name,
        "environment": {v: env.get(v) for v in OPENBLAS_VARS},
        "openblas_core": model["flaubert-np"]["openblas_core"],
        "model": model, "model_max_abs_diff_vs_torch": diffs,
        "encode": encode, "encode_max_abs_diff_vs_sentence_transformers": encode_diff,
        "cold_start": cold, "ratios": ratios,
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(report: dict) -> str:
    m, b = report["machine"], report["model"]
    c = report["corpus"]
    lines = [
        f"flaubert-np benchmark: {b['emb_dim']} dims, {b['n_layers']} layers, {b['n_heads']} "
        f"heads, FFN {4 * b['emb_dim']}, {b['n_words']:,} words, random weights",
        f"machine: {m['cpu']}, {m['cores']} cores; {m['threads']} threads for every library",
        "versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"corpus: {c['path']}: {c['sentences']:,} sentences, {c['tokens_per_sentence']:.1f} "
        f"tokens per sentence on average (max {c['max_tokens']}); batch_size {BATCH_SIZE}",
        f"load average (1 min): {_fmt(report['loadavg_start'], 2)} at the start, "
        f"{_fmt(report['loadavg_end'], 2)} at the end; figures are medians",
    ]
    for setting in report["settings"]:
        env = ", ".join(f"{k}={v}" for k, v in setting["environment"].items() if v) or "unset"
        lines += [
            "",
            f"== {setting['name']}: OpenBLAS variables {env} -> OpenBLAS kernel "
            f"{setting['openblas_core']} ==",
        ]
        model, ratios = setting["model"], setting["ratios"]
        others = [f for f in MODEL_FRAMEWORKS if f in model and f != "flaubert-np"]
        header = (
            f"{'model alone, tokens/s':24s}{'flaubert-np':>12s}"
            + "".join(f"{o:>13s}" for o in others)
            + "".join(f"{'x ' + o:>15s}" for o in others)
        )
        lines += [header + f"{'max|diff|':>11s}"]
        for b_, s in SHAPES:
            key = f"{b_}x{s}"
            speed = {fw: model[fw]["shapes"][key]["tokens_per_s"] for fw in model}
            row = f"{'  ' + key:24s}{_fmt(speed['flaubert-np']):>12s}"
            row += "".join(f"{_fmt(speed[o]):>13s}" for o in others)
            row += "".join(f"{_fmt(ratios[f'model {key} vs {o}'], 2):>15s}" for o in others)
            diffs = setting["model_max_abs_diff_vs_torch"][key].values()
            row += f"{max(d for d in diffs if d is not None):>11.1e}"
            lines.append(row)
        lines.append("matrix products alone (the ceiling: linear layers only, NumPy's BLAS):")
        for b_, s in SHAPES:
            key = f"{b_}x{s}"
            ceiling = model["flaubert-np"]["shapes"][key]["matmul_only"]["tokens_per_s"]
            reached = model["flaubert-np"]["shapes"][key]["tokens_per_s"] / ceiling
            lines.append(
                f"{'  ' + key:24s}{_fmt(ceiling):>12s}"
                + "".join(f"{'':>13s}" for o in others)
                + "".join(
                    f"{_fmt(ceiling / model[o]['shapes'][key]['tokens_per_s'], 2):>15s}"
                    for o in others
                )
                + f"   flaubert-np reaches {100 * reached:.0f}% of it"
            )
        enc, cold = setting["encode"], setting["cold_start"]
        st = "sentence-transformers"
        lines += [
            f"{'end to end':24s}{'flaubert-np':>12s}{st:>24s}{'ratio':>10s}",
            f"{'  encode, sentences/s':24s}{_fmt(enc['flaubert-np']['sentences_per_s'], 1):>12s}"
            f"{_fmt(enc[st]['sentences_per_s'], 1):>24s}"
            f"{_fmt(ratios['encode vs sentence-transformers'], 2):>10s}"
            f"   max|diff| {setting['encode_max_abs_diff_vs_sentence_transformers']:.1e}",
            f"{'  cold start, s':24s}{_fmt(cold['flaubert-np']['wall_s'], 2):>12s}"
            f"{_fmt(cold[st]['wall_s'], 2):>24s}"
            f"{_fmt(ratios['cold start speed-up vs sentence-transformers'], 2):>10s}"
            "   (speed-up)",
            f"{'  peak RSS, MiB':24s}{_fmt(cold['flaubert-np']['peak_rss_mib']):>12s}"
            f"{_fmt(cold[st]['peak_rss_mib']):>24s}"
            f"{_fmt(100 * ratios['peak RSS vs sentence-transformers']):>9s}%",
        ]
        for fw in ENCODE_FRAMEWORKS:
            c_ = cold[fw]
            rest = c_["wall_s"] - c_["import_s"] - c_["load_s"] - c_["encode_s"]
            lines.append(
                f"    {fw} cold start: import {c_['import_s']:.2f} s, load "
                f"{c_['load_s']:.2f} s, encode {c_['encode_s']:.2f} s, interpreter "
                f"start and exit {rest:.2f} s"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads for every library (default: all cores)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="where the model is built and kept (default: %(default)s)",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=STSB / "dev.csv",
        help="sentences to encode: STS .csv (first two columns) or a sentence a "
        "line (default: %(default)s)",
    )
    parser.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="base",
        help="model dimensions: FlauBERT base, or tiny for tests",
    )
    parser.add_argument(
        "--settings",
        choices=("both", "as-is", "unset"),
        default="both",
        help="OpenBLAS settings to run: the environment as it is, with "
        "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE removed, or both",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 256 sentences, 2 repeats of each shape, 1 of encode, one cold start each",
    )
    parser.add_argument(
        "--no-onnxruntime",
        dest="onnxruntime",
        action="store_false",
        help="leave ONNX Runtime out even if it is installed",
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the model")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the figures as JSON to PATH (alone: to stdout, no table)",
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if not args.corpus.is_file():
        parser.error(f"--corpus {args.corpus}: no such file")
    args.max_sentences = 256 if args.quick else None
    if args.onnxruntime and importlib.util.find_spec("onnxruntime") is None:
        log("onnxruntime is not installed: no ONNX Runtime column")
        args.onnxruntime = False

    start_load = loadavg()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dir = args.workdir / args.size / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    built = build(args, model_dir)

    as_is_differs = any(os.environ.get(v) for v in OPENBLAS_VARS)
    settings = []
    if args.settings in ("both", "as-is") and as_is_differs:
        settings.append(("environment as is", False))
    if args.settings in ("both", "unset") or not as_is_differs:
        settings.append(("OPENBLAS_CORETYPE unset", True))
    if not as_is_differs:
        log("neither OPENBLAS_CORETYPE nor OPENBLAS_L2_SIZE is set here: one setting only")
    results = [
        run_setting(args, name, unset, model_dir, built, args.corpus) for name, unset in settings
    ]

    encode_np = results[0]["encode"]["flaubert-np"]
    report = {
        "command": " ".join(["python tools/bench.py", *argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine_info(args.threads),
        "model": {k: built[k] for k in ("size", "emb_dim", "n_layers", "n_heads", "n_words",
                                        "vocab", "max_seq_length")},
        "corpus": {"path": _shown(args.corpus), "sentences": encode_np["sentences"],
                   "tokens_per_sentence": encode_np["tokens_per_sentence"],
                   "max_tokens": encode_np["max_tokens"]},
        "loadavg_start": start_load, "loadavg_end": loadavg(),
        "settings": results,
    }  # fmt: skip
    write_report(report, table(report), args.json)
    return 0


def write_report(report: dict, text: str, json_path: str | None) -> None:
    """The table on stdout, and the figures as JSON in json_path ("-": on stdout, no table)."""
    if json_path == "-":
        print(json.dumps(report, indent=2))
        return
    print(text)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
