"""Hostile model files (issue 16): each attack, built by tools/hostile_files.py, is refused with a
one-line ModelFileError naming the file; nothing runs; memory stays bounded; a fuzzer finds
nothing else. The loads run in child processes whose address space is capped, so that a blow-up
fails the test instead of the machine."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import hostile_files
from flaubert_np.sentence import SentenceEncoder
from flaubert_np.torch_bin import load_torch_bin

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "hostile_files.py"
PYTHONPATH = os.pathsep.join((str(ROOT), str(TOOL.parent)))  # the children import both
LIMIT_MB = 1024  # a bare child (numpy, flaubert_np, the demo model) peaks near 200 MB
FUZZ_MUTATIONS = 3000  # each of a .bin and a .safetensors: 6,000 cases
CASE_NAMES = [name for name, *_ in hostile_files.CASES]


def _child(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, str(TOOL), *args, "--limit-mb", str(LIMIT_MB)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Every case built, then loaded in one memory-capped child: ({name: case}, {name: result})."""
    root = tmp_path_factory.mktemp("hostile")
    built = _child("build", str(root))
    assert built.returncode == 0, built.stderr
    checked = _child("check", str(root))
    lines = [json.loads(line) for line in checked.stdout.splitlines()]
    started = [line["start"] for line in lines if "start" in line]
    results = {line["name"]: line for line in lines if "start" not in line}
    # A crash (segfault, killed by the limit) leaves a case started and never finished.
    assert checked.returncode == 0 and started == list(results), (started[-1:], checked.stderr)
    cases = {case["name"]: case for case in json.loads((root / "cases.json").read_text())}
    return root, cases, results


@pytest.mark.parametrize("name", CASE_NAMES)
def test_refused_with_one_line_naming_the_file(hostile, name):
    _, cases, results = hostile
    case, result = cases[name], results[name]
    assert result["outcome"] == "ModelFileError", result
    message = result["message"]
    assert "\n" not in message
    assert message.startswith(str(Path(case["dir"]) / case["file"])), message
    assert re.search(case["match"], message), message
    assert not result["executed"]


def test_no_payload_ran(hostile):
    root, _, _ = hostile
    assert not list(root.rglob(hostile_files.MARKER))


@pytest.mark.parametrize(
    "name", ["pickle: os.system by GLOBAL + REDUCE", "pickle: builtins.eval", "pickle: INST"]
)
def test_the_payloads_are_live(hostile, tmp_path, name):
    """Unpickled plainly, the payloads do run: the marker check above can fail."""
    _, cases, _ = hostile
    with zipfile.ZipFile(Path(cases[name]["dir"]) / "pytorch_model.bin") as z:
        (tmp_path / "data.pkl").write_bytes(z.read("archive/data.pkl"))
    code = "import pickle; pickle.loads(open('data.pkl', 'rb').read())"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, check=False)
    assert (tmp_path / hostile_files.MARKER).exists()


def test_the_memory_limit_is_real():
    """The cap the checks run under does stop a 2 GiB allocation."""
    code = (
        "import hostile_files as h; "
        f"h.limit_memory({LIMIT_MB}); import numpy as np\n"
        "try:\n    np.ones(2**31, np.uint8)\nexcept MemoryError:\n    print('MemoryError')"
    )
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "MemoryError", out.stderr


@pytest.mark.parametrize(
    ("name", "file"),
    [("pickle: 200,000-deep tuple as a dict key", "pytorch_model.bin"),
     ("config: n_layers 10**9", "config.json"),
     ("vocab.json: not UTF-8", "vocab.json")],
)  # fmt: skip
def test_cli_prints_the_error_in_one_line(hostile, name, file):
    _, cases, _ = hostile
    folder = Path(cases[name]["dir"])
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "flaubert_np.cli", "encode", "--model", str(folder), "x"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith(f"flaubert-np: error: {folder / file}: ")
    assert out.stderr.count("\n") == 1


def test_the_generators_bin_loads_as_the_safetensors_file(tmp_path):
    """The legitimate .bin the hostile cases start from: read exactly, and the model built from
    it embeds exactly as the one built from model.safetensors."""
    tensors = hostile_files.demo_tensors()
    folder = tmp_path / "demo-bin"
    hostile_files.shutil.copytree(hostile_files.DEMO, folder)
    (folder / "model.safetensors").unlink()
    hostile_files.state_dict_bin(folder / "pytorch_model.bin", tensors)
    loaded = load_torch_bin(folder / "pytorch_model.bin")
    assert list(loaded) == list(tensors)
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array, err_msg=name)
    sentences = ["Le chat dort.", "Il pleut sur Paris depuis ce matin."]
    want = SentenceEncoder.from_pretrained(hostile_files.DEMO).encode(sentences)
    got = SentenceEncoder.from_pretrained(folder).encode(sentences)
    np.testing.assert_array_equal(got, want)


@pytest.mark.oracle
def test_the_generators_bin_is_what_torch_reads(tmp_path):
    import torch

    tensors = hostile_files.demo_tensors()
    hostile_files.state_dict_bin(tmp_path / "pytorch_model.bin", tensors)
    theirs = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    assert list(theirs) == list(tensors)
    for name, array in tensors.items():
        np.testing.assert_array_equal(theirs[name].numpy(), array, err_msg=name)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    out = _child("fuzz", str(root), str(FUZZ_MUTATIONS), "16")
    assert out.returncode == 0, out.stderr
    return root, json.loads(out.stdout)


def test_fuzzed_files_load_correctly_or_fail_cleanly(fuzzed):
    """Random byte edits of a .bin (anywhere) and a .safetensors (its length and JSON header):
    every one a ModelFileError or a correct load (safetensors: what the safetensors library
    reads, when it reads it), never another exception, a crash or a blow-up."""
    _, report = fuzzed
    assert report["bad"] == [], report
    outcomes = report["outcomes"]
    assert sum(outcomes.values()) == 2 * FUZZ_MUTATIONS
    for suffix in (".bin", ".safetensors"):  # both paths were exercised
        assert outcomes[f"{suffix} ModelFileError"] > 0 and outcomes[f"{suffix} loaded"] > 0


@pytest.mark.oracle
def test_fuzzed_bins_that_load_are_what_torch_reads(fuzzed):
    """The mutated .bin files flaubert-np loaded, read by torch.load(weights_only=True) too: where
    torch reads one (it refuses some we read, e.g. a storage whose bytes no longer match the CRC,
    which we map without checking), both read the same names and the same bits."""
    import torch

    root, _ = fuzzed
    compared = 0
    for path in sorted((root / "loaded").glob("*.bin")):
        ours = load_torch_bin(path)
        try:
            theirs = torch.load(path, weights_only=True)
        except Exception:
            continue
        assert list(ours) == list(theirs), path
        for name, tensor in theirs.items():
            want = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
            assert ours[name].dtype == want.dtype and ours[name].shape == want.shape, (path, name)
            assert ours[name].tobytes() == want.tobytes(), (path, name)
        compared += 1
    assert compared > 10
