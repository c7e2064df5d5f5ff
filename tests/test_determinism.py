"""The bits of an embedding depend on the batch alone: not on the BLAS thread count, nor on the
number of `--workers` processes (fast.py's rule: runs and parts cut by the batch, single-threaded
BLAS).

Each setting runs in a fresh process, as a user would run it (OPENBLAS_NUM_THREADS is read when
NumPy loads). The demo model only: NumPy, no oracle. The OpenBLAS kernel stays what the machine
picks (OPENBLAS_CORETYPE is never set here; docs/forward.md says how it was checked by hand).
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(sys.executable).parent / "flaubert-np"
DEV = Path(__file__).parent / "data" / "stsb-fr" / "dev.csv"

# One process, through the fast forward: a batch of 64 sentences (several runs), a batch of 6
# (fewer than PARTS_TOKENS tokens: one run, in parts), one long sentence (in parts); and the 64
# through SentenceEncoder.encode.
FORWARD = """
import sys
import numpy as np
from flaubert_np import SentenceEncoder
from flaubert_np import fast

encoder = SentenceEncoder.from_pretrained("demo")
sentences = [line.rstrip("\\n") for line in open(sys.argv[1], encoding="utf-8")]
features = encoder.tokenize(sentences)
assert len(fast.split(features["attention_mask"].sum(axis=1))) >= 2
batch = encoder.model(features["input_ids"], features["attention_mask"]).last_hidden_state
few = encoder.tokenize(sentences[:6])
lengths = few["attention_mask"].sum(axis=1)
assert len(fast.split(lengths)) == 1
assert len(fast.parts(encoder.model.config, int(lengths.sum()), fast.PARTS)) == 2
few = encoder.model(few["input_ids"], few["attention_mask"]).last_hidden_state
one = encoder.tokenize([" ".join(sentences[:8])])["input_ids"]
assert len(fast.parts(encoder.model.config, one.shape[1], fast.PARTS)) == 2
one = encoder.model(one).last_hidden_state
np.savez(sys.argv[2], batch=batch, few=few, one=one, encoded=encoder.encode(sentences))
"""


@pytest.fixture(scope="module")
def sentences(tmp_path_factory) -> Path:
    with open(DEV, encoding="utf-8", newline="") as f:
        texts = [row[0] for row in csv.reader(f)][:64]
    path = tmp_path_factory.mktemp("determinism") / "sentences.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def _env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return {**env, "OPENBLAS_NUM_THREADS": str(threads)}


def test_the_same_bits_on_1_to_4_blas_threads(sentences, tmp_path):
    results = []
    for threads in (1, 2, 3, 4):
        out = tmp_path / f"threads-{threads}.npz"
        subprocess.run([sys.executable, "-c", FORWARD, str(sentences), str(out)],
                       env=_env(threads), check=True)  # fmt: skip
        results.append(np.load(out))
    first = results[0]
    for other in results[1:]:
        for key in ("batch", "few", "one", "encoded"):
            assert first[key].tobytes() == other[key].tobytes(), key


def test_the_same_file_with_1_to_3_workers(sentences, tmp_path):
    outputs = []
    for workers in (1, 2, 3):
        out = tmp_path / f"workers-{workers}.npy"
        subprocess.run(
            [str(SCRIPT), "encode", "-i", str(sentences), "-o", str(out), "--workers",
             str(workers), "--chunk-lines", "20", "--no-progress"],
            env=_env(2), check=True, capture_output=True,
        )  # fmt: skip
        outputs.append(out.read_bytes())
    assert np.load(tmp_path / "workers-1.npy").shape == (64, 128)
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]
