"""A sentence-transformers model directory: its pipeline (modules.json) and what it was saved with.

`modules.json` lists the modules an input goes through, each with its folder:

    [{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
     {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
     {"idx": 2, "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]

Both generations of type names load: 2.x-4.x (`sentence_transformers.models.Pooling`) and 5.x-6.x
(`sentence_transformers.sentence_transformer.modules.pooling.Pooling`, ...). A repo without
`modules.json` is a plain transformers FlauBERT model followed by mean pooling, as
sentence-transformers reads it.

`token_type_ids`: transformers 4.x's FlaubertTokenizer returns all-zero token_type_ids,
sentence-transformers passes them on, and FlaubertModel adds the embedding of token id 0 at every
position; transformers 5 returns none. "auto" reproduces the version the model was saved with, so
a model keeps the numbers it was trained and scored with.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flaubert_np.files import ModelFileError, field, inside, read_json, read_json_object

SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
TOKEN_TYPE_IDS_SETTINGS = ("auto", "zeros", "none", True, False, None)


def _module_kind(type_name: str, source: Path) -> str:
    """'sentence_transformers.models.Pooling' (2.x-4.x) or '...modules.pooling.Pooling' (5+)."""
    kind = type_name.rsplit(".", 1)[-1]
    if not type_name.startswith("sentence_transformers.") or kind not in SUPPORTED_MODULES:
        raise ModelFileError(
            f"{source}: module type '{type_name}' is not supported "
            f"(flaubert-np runs {', '.join(SUPPORTED_MODULES)})"
        )
    return kind


def _module_path(entry: dict, source: Path) -> str:
    """A module's folder, relative to the model directory (and never outside it)."""
    path = field(entry, "path", str, source, "").rstrip("/")
    if Path(path).is_absolute() or ".." in Path(path).parts:
        raise ModelFileError(f"{source}: module path '{path}' leaves the model directory")
    return path


def read_modules(model_dir: Path) -> list[tuple[str, str | None]]:
    """A model's pipeline, from its modules.json: (kind, folder) pairs, checked to be Transformer,
    Pooling, then Dense/Normalize. Without modules.json, a plain transformers model, to which
    sentence-transformers adds mean pooling (folder None: its defaults)."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return [("Transformer", ""), ("Pooling", None)]
    entries = read_json(modules_file)
    if not isinstance(entries, list) or not all(isinstance(m, dict) for m in entries):
        raise ModelFileError(f"{modules_file}: expected a list of modules")
    modules: list[tuple[str, str | None]] = [
        (_module_kind(str(m.get("type")), modules_file), _module_path(m, modules_file))
        for m in entries
    ]
    for _, folder in modules:  # a module folder may not be a link out of the model folder
        inside(model_dir, folder or "", "module folder")
    kinds = [kind for kind, _ in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or {"Transformer", "Pooling"} & set(kinds[2:]):
        raise ModelFileError(
            f"{modules_file}: expected Transformer, Pooling, then Dense/Normalize modules; "
            f"got {', '.join(kinds) or 'none'}"
        )
    return modules


def module_dir(model_dir: Path, folder: str | None) -> Path:
    """A module's directory (the model directory itself for a module without a folder)."""
    return model_dir / (folder or "")


def transformer_dir(model_dir: Path) -> Path:
    """The folder of a model's FlauBERT encoder: the root, or its Transformer module's folder
    (the 2021 layout keeps it in `0_Transformer/`)."""
    return module_dir(model_dir, read_modules(model_dir)[0][1])


# ---------------------------------------------------------------------------------------------
# token_type_ids: which transformers generation to reproduce


def _major_version(version: Any, source: Path) -> int:
    match = re.match(r"\s*(\d+)\.", str(version))
    if not match:
        raise ModelFileError(f"{source}: cannot read the transformers version {version!r}")
    return int(match.group(1))


def saved_with_transformers(model_dir: Path, transformer_dir: Path) -> tuple[str, Path] | None:
    """The transformers version a model was saved with, and the file that says so."""
    st_config = model_dir / "config_sentence_transformers.json"
    if st_config.is_file():
        versions = field(read_json_object(st_config), "__version__", dict, st_config, {})
        version = versions.get("transformers")
        if version:
            return str(version), st_config
    hf_config = transformer_dir / "config.json"
    if hf_config.is_file():
        version = read_json_object(hf_config).get("transformers_version")
        if version:
            return str(version), hf_config
    return None


def resolve_token_type_ids(setting: str | bool | None, saved_with: tuple[str, Path] | None) -> str:
    """'zeros' (transformers 4.x: all-zero token_type_ids reach the model) or 'none' (5.x)."""
    if setting is True or setting == "zeros":
        return "zeros"
    if setting is False or setting is None or setting == "none":
        return "none"
    if setting != "auto":
        raise ValueError(
            f"token_type_ids must be 'auto', 'zeros' (or True) or 'none' (or False/None), "
            f"got {setting!r}"
        )
    if saved_with is None:  # every transformers release that predates the version field is 4.x-
        return "zeros"
    version, source = saved_with
    return "zeros" if _major_version(version, source) < 5 else "none"
