"""Where a model's files come from: a local directory, a short name, or a Hugging Face Hub id.

`resolve_model_dir` turns what the user typed into a local directory:

1. an existing directory -> itself;
2. a short name of a model shipped inside the package ("demo") -> its package directory;
3. anything else is a Hub repo id, fetched with `huggingface_hub.snapshot_download` into the
   standard Hub cache. Only the files a sentence-transformers FlauBERT model needs are fetched
   (`allow_patterns`), so a repo that also carries ONNX exports or a second copy of the weights
   costs nothing extra. A model already in the cache loads with no network, and `HF_HUB_OFFLINE=1`
   or `local_files_only=True` forbid the network altogether.

The download is done in two steps because which weights file to fetch depends on the repo:
first the small config and tokenizer files (they say where each module lives), then, for each
module that holds weights, `model.safetensors` (or its shards) and only when there is none,
`pytorch_model.bin`.
"""

from __future__ import annotations

from pathlib import Path

from flaubert_np.files import ModelFileError, read_json

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


def resolve_model_dir(
    name_or_path: str | Path,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """The local directory holding the model called `name_or_path` (downloading it if needed)."""
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
    return _download(name, revision, cache_dir, local_files_only, token)


def _looks_like_path(name: str) -> bool:
    # A Hub id is "name" or "org/name"; anything else can only be meant as a path.
    return name.startswith((".", "/", "~", "\\")) or name.count("/") > 1 or "\\" in name


def _download(
    repo_id: str,
    revision: str | None,
    cache_dir: str | Path | None,
    local_files_only: bool,
    token: str | bool | None,
) -> Path:
    import huggingface_hub

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
        except Exception as e:  # every huggingface_hub failure becomes the same one-line error
            reason = " ".join(str(e).split()) or type(e).__name__
            raise OSError(
                f"model '{repo_id}' is not a local directory and could not be fetched from the "
                f"Hugging Face Hub (offline?): {reason}"
            ) from e
        return Path(folder)

    snapshot = fetch(CONFIG_PATTERNS)
    weight_dirs = weights_folders(snapshot)
    safetensors = [d + f for d in weight_dirs for f in SAFETENSORS_FILES]
    fetch(safetensors)
    missing = [d for d in weight_dirs if not _has_any(snapshot / d, SAFETENSORS_FILES)]
    if missing:
        fetch([d + f for d in missing for f in TORCH_BIN_FILES])
    return snapshot


def weights_folders(model_dir: Path) -> list[str]:
    """Folder prefixes ("" for the root, "2_Dense/", ...) of the modules that hold weights."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():  # a plain transformers model: weights at the root
        return [""]
    modules = read_json(modules_file)
    try:
        folders = [
            m.get("path", "").strip("/")
            for m in modules
            if str(m.get("type", "")).rsplit(".", 1)[-1] in _WEIGHTED_MODULES
        ]
    except (AttributeError, TypeError) as e:
        raise ModelFileError(f"{modules_file}: not a valid modules.json ({e})") from e
    return [f"{folder}/" if folder else "" for folder in folders]


def _has_any(folder: Path, patterns: list[str]) -> bool:
    return any(any(folder.glob(p)) for p in patterns)
