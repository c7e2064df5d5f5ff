"""Where a model's files come from: a local directory, a short name, or a Hugging Face Hub id.

`resolve_model_dir` turns what the user typed into a local directory:

1. an existing directory -> itself;
2. a short name of a model shipped inside the package ("demo") -> its package directory;
3. anything else is a Hub repo id, fetched with `huggingface_hub.snapshot_download` into the
   standard Hub cache. Only the files a sentence-transformers FlauBERT model needs are fetched
   (`allow_patterns`), so a repo that also carries ONNX exports or a second copy of the weights
   costs nothing extra. A model already in the cache loads with no network, and `HF_HUB_OFFLINE=1`
   or `local_files_only=True` forbid the network altogether.

Failures are one line each, saying what to do: a name close to a short name ("Demo", "dmeo")
suggests it rather than going to the Hub; offline (`HF_HUB_OFFLINE=1`, `--offline`), or when the
Hub cannot be reached (checked with one short connection attempt, as huggingface_hub would
otherwise retry for ~25 s), only the cache is used, at once.

The download is done in two steps because which weights file to fetch depends on the repo:
first the small config and tokenizer files (they say where each module lives), then, for each
module that holds weights, `model.safetensors` (or its shards) and only when there is none,
`pytorch_model.bin`.
"""

from __future__ import annotations

import difflib
import os
import socket
import urllib.parse
from pathlib import Path

from flaubert_np.modules import read_modules

PACKAGE_DIR = Path(__file__).parent

# Models shipped inside the package, by short name.
SHORT_NAMES: dict[str, Path] = {"demo": PACKAGE_DIR / "models" / "demo"}

# The small files, at the root or in a module folder (e.g. the 2021 layout's `0_Transformer/`).
# `snapshot_download` matches with fnmatch, whose `*` also crosses `/`.
CONFIG_PATTERNS = [
    "modules.json",
    "config_sentence_transformers.json",
    "*sentence_*config.json",
    "config.json",
    "*/config.json",
    "tokenizer_config.json",
    "*/tokenizer_config.json",
    "special_tokens_map.json",
    "*/special_tokens_map.json",
    "vocab.json",
    "*/vocab.json",
    "merges.txt",
    "*/merges.txt",
]
SAFETENSORS_FILES = [
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
]
TORCH_BIN_FILES = ["pytorch_model.bin"]

# modules.json types (last dotted component) whose folder holds weights.
_WEIGHTED_MODULES = {"Transformer", "Dense"}
# Seconds to wait for the Hub's TCP handshake before deciding it cannot be reached.
CONNECT_TIMEOUT = 3.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                    "all_proxy")  # fmt: skip


def resolve_model_dir(
    name_or_path: str | Path,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    weights: bool = True,
) -> Path:
    """The local directory holding the model called `name_or_path` (downloading it if needed;
    only its config and tokenizer files with weights=False)."""
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
        raise ValueError(f"a model name or path must be a non-empty string, got {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"model path '{name_or_path}' is a file, not a model directory")
    name = str(name_or_path)
    if name in SHORT_NAMES:
        model_dir = SHORT_NAMES[name]
        if not (model_dir / "modules.json").is_file() and not (model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"the '{name}' model is not installed: {model_dir} holds no model files"
            )
        return model_dir
    if _looks_like_path(name):
        raise FileNotFoundError(f"model directory '{name}' does not exist")
    near = near_short_name(name)
    if near:
        raise FileNotFoundError(
            f"model '{name}' is not a local directory; did you mean '{near}' (the model shipped "
            "with flaubert-np)?"
        )
    return _download(name, revision, cache_dir, local_files_only, token, weights)


def near_short_name(name: str) -> str | None:
    """The short name `name` is most likely a typo of ("Demo", "dmeo", "demo2"), if any. Hub ids
    have an organisation ("org/name"), so only bare names are compared."""
    if "/" in name:
        return None
    matches = difflib.get_close_matches(name.lower(), SHORT_NAMES, n=1, cutoff=0.7)
    return matches[0] if matches else None


def network_problem() -> str | None:
    """Why the Hub cannot be used right now, in a few words, or None. Offline mode says so at
    once; otherwise one TCP connection to the endpoint, CONNECT_TIMEOUT at most (left to
    huggingface_hub behind a proxy)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "offline mode is on"
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    url = urllib.parse.urlsplit(constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        return f"the Hugging Face Hub cannot be reached ({host}: {why})"
    return None


def _looks_like_path(name: str) -> bool:
    # A Hub id is "name" or "org/name"; anything else can only be meant as a path.
    return name.startswith((".", "/", "~", "\\")) or name.count("/") > 1 or "\\" in name


def _download(
    repo_id: str,
    revision: str | None,
    cache_dir: str | Path | None,
    local_files_only: bool,
    token: str | bool | None,
    weights: bool = True,
) -> Path:
    import huggingface_hub

    problem = "offline mode is on" if local_files_only else network_problem()
    local_files_only = problem is not None  # the cache only, as huggingface_hub after retrying

    def fetch(patterns: list[str]) -> Path:
        try:
            folder = huggingface_hub.snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                token=token,
                allow_patterns=patterns,
            )
        except Exception as e:  # every huggingface_hub failure becomes one line
            raise OSError(_hub_error(e, repo_id, revision, cache_dir, problem)) from e
        return Path(folder)

    snapshot = fetch(CONFIG_PATTERNS)
    if not weights:
        return snapshot
    weight_dirs = weights_folders(snapshot)
    safetensors = [d + f for d in weight_dirs for f in SAFETENSORS_FILES]
    fetch(safetensors)
    missing = [d for d in weight_dirs if not _has_any(snapshot / d, SAFETENSORS_FILES)]
    if missing:
        fetch([d + f for d in missing for f in TORCH_BIN_FILES])
    return snapshot


def _hub_error(
    e: Exception,
    repo_id: str,
    revision: str | None,
    cache_dir: str | Path | None,
    problem: str | None,
) -> str:
    """huggingface_hub's exception as one short line that says what to do."""
    from huggingface_hub import constants, errors

    model = f"model '{repo_id}'" + (f" (revision '{revision}')" if revision else "")
    if problem is not None or isinstance(e, errors.LocalEntryNotFoundError):
        cache = cache_dir or constants.HF_HUB_CACHE
        why = problem or "the Hugging Face Hub cannot be reached"
        return (
            f"{model} is not a local directory nor in the Hugging Face cache ({cache}), and "
            f"{why}: download it once with the network on, or give a local directory"
        )
    if isinstance(e, errors.GatedRepoError):
        return (
            f"{model} is gated on the Hugging Face Hub: accept its conditions on its page, then "
            "set HF_TOKEN (or `hf auth login`)"
        )
    if isinstance(e, errors.RepositoryNotFoundError):
        return (
            f"{model} is not a local directory nor a model on the Hugging Face Hub (a private "
            "one needs HF_TOKEN)"
        )
    if isinstance(e, errors.RevisionNotFoundError):
        return f"{model}: no such revision on the Hugging Face Hub"
    reason = " ".join(str(e).split())[:200] or type(e).__name__
    return f"{model} could not be fetched from the Hugging Face Hub: {reason}"


def weights_folders(model_dir: Path) -> list[str]:
    """Folder prefixes ("" for the root, "2_Dense/", ...) of the modules that hold weights."""
    return [
        f"{folder}/" if folder else ""
        for kind, folder in read_modules(model_dir)
        if kind in _WEIGHTED_MODULES
    ]


def _has_any(folder: Path, patterns: list[str]) -> bool:
    return any(any(folder.glob(p)) for p in patterns)
