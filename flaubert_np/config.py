"""FlauBERT hyper-parameters, read from a model's config.json the way transformers 5 reads them.

Field names and defaults are those of transformers' `FlaubertConfig`. Two transformers habits
matter when one config.json spells the same setting twice (see `_SOURCES`):

- `hidden_size`, `num_attention_heads`, `num_hidden_layers` and `n_words` are aliases that
  transformers applies after its own fields, so they win over `emb_dim`, `n_heads`, `n_layers`
  and `vocab_size`.
- `pad_index`, `bos_index` and `eos_index` are routed to `pad_token_id`, `bos_token_id` and
  `eos_token_id`, which transformers sets later (to the file's value or to their defaults 2, 0,
  1): the `*_token_id` keys always win, and a `pad_index` given alone is ignored. flaubert-np
  does the same, and warns when that throws a different value away.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from flaubert_np.files import ModelFileError, read_json

CONFIG_NAME = "config.json"


class ConfigError(ModelFileError):
    """A config.json that flaubert-np cannot run; the message names the file and the key."""


# field -> the config.json keys that set it, lowest priority first (the last one present wins).
_SOURCES: dict[str, tuple[str, ...]] = {
    "n_words": ("vocab_size", "n_words"),
    "emb_dim": ("emb_dim", "hidden_size"),
    "n_layers": ("n_layers", "num_hidden_layers"),
    "n_heads": ("n_heads", "num_attention_heads"),
    "pad_index": ("pad_token_id",),
    "bos_index": ("bos_token_id",),
    "eos_index": ("eos_token_id",),
}
# Keys that transformers reads and then overrides with the `*_token_id` ones above.
_SHADOWED = {"pad_index": "pad_token_id", "bos_index": "bos_token_id", "eos_index": "eos_token_id"}

_INT_FIELDS = (
    "n_words", "emb_dim", "n_layers", "n_heads", "n_langs", "max_position_embeddings",
    "pad_index", "unk_index", "mask_index",
)  # fmt: skip
# Upper limits, checked before anything is built from the config: each far above every FlauBERT
# (flaubert-large: 24 layers, emb_dim 1024, 16 heads, 68,729 words, 512 positions) and far
# below what would exhaust memory before the weights are compared with it.
LIMITS = {
    "n_layers": 256,
    "emb_dim": 16384,
    "n_heads": 1024,
    "n_words": 1 << 22,
    "n_langs": 1024,
    "max_position_embeddings": 16384,
}
_BOOL_FIELDS = (
    "pre_norm", "gelu_activation", "sinusoidal_embeddings", "causal", "asm", "use_lang_emb",
    "is_encoder",
)  # fmt: skip


@dataclass
class FlaubertConfig:
    """The hyper-parameters of a FlauBERT encoder (transformers' names and defaults)."""

    emb_dim: int = 2048
    n_layers: int = 12
    n_heads: int = 16
    n_words: int = 30145  # transformers' vocab_size
    pad_index: int = 2  # transformers' pad_token_id
    max_position_embeddings: int = 512
    pre_norm: bool = False
    layerdrop: float = 0.0
    dropout: float = 0.1
    attention_dropout: float = 0.1
    gelu_activation: bool = True
    sinusoidal_embeddings: bool = False
    causal: bool = False
    asm: bool = False
    n_langs: int = 1
    use_lang_emb: bool = True
    embed_init_std: float = 2048**-0.5
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02
    bos_index: int = 0  # transformers' bos_token_id
    eos_index: int | list[int] = 1  # transformers' eos_token_id
    unk_index: int = 3
    mask_index: int = 5
    is_encoder: bool = True
    summary_type: str = "first"
    summary_use_proj: bool = True
    summary_activation: str | None = None
    summary_proj_to_labels: bool = True
    summary_first_dropout: float = 0.1
    start_n_top: int = 5
    end_n_top: int = 5
    mask_token_id: int = 0
    lang_id: int = 0
    tie_word_embeddings: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # every other config.json key, as read

    @property
    def vocab_size(self) -> int:
        return self.n_words

    @property
    def hidden_size(self) -> int:
        return self.emb_dim

    @property
    def ffn_dim(self) -> int:
        """Width of the feed-forward layer: FlauBERT fixes it at 4 * emb_dim."""
        return 4 * self.emb_dim

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> FlaubertConfig:
        """Read `model_dir/config.json`."""
        path = Path(model_dir) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (a FlauBERT model needs a config.json)")
        return cls.from_dict(read_json(path, error=ConfigError), source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = CONFIG_NAME) -> FlaubertConfig:
        """Build a config from config.json's contents; `source` names the file in errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, found {type(data).__name__}")
        model_type = data.get("model_type", "flaubert")
        if model_type != "flaubert":
            raise ConfigError(f"{source}: model_type is {model_type!r}, not 'flaubert'")

        known = {f.name for f in fields(cls)} - {"extra"}
        values: dict[str, Any] = {}
        for name in known:
            keys = _SOURCES.get(name, (name,))
            present = [k for k in keys if k in data]
            if present:
                values[name] = data[present[-1]]
        used = {k for name in known for k in _SOURCES.get(name, (name,))} | set(_SHADOWED)
        extra = {k: v for k, v in data.items() if k not in used and k != "model_type"}

        for old, new in _SHADOWED.items():
            resolved = values.get(old, getattr(cls, old))
            if old in data and data[old] != resolved:
                warnings.warn(
                    f"{source}: {old}={data[old]!r} is ignored, as transformers ignores it: "
                    f"{new} decides ({resolved!r})",
                    stacklevel=2,
                )
        config = cls(**values, extra=extra)
        config.validate(source)
        return config

    def validate(self, source: str = CONFIG_NAME) -> None:
        """Raise ConfigError for values flaubert-np cannot run."""
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if value is None and name == "pad_index":
                raise ConfigError(
                    f"{source}: pad_token_id is null; FlauBERT needs a padding index "
                    "(transformers' FlaubertModel fails on it too)"
                )
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{source}: {name} must be an integer, found {value!r}")
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"{source}: {name} must be true or false, found {getattr(self, name)!r}"
                )
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ConfigError(f"{source}: layer_norm_eps must be a positive number, found {eps!r}")
        for name in (
            "emb_dim",
            "n_layers",
            "n_heads",
            "n_words",
            "n_langs",
            "max_position_embeddings",
        ):
            if not 1 <= getattr(self, name) <= LIMITS[name]:
                raise ConfigError(
                    f"{source}: {name} must be between 1 and {LIMITS[name]}, found "
                    f"{getattr(self, name)}"
                )
        if self.emb_dim % self.n_heads:
            raise ConfigError(
                f"{source}: emb_dim={self.emb_dim} is not a multiple of n_heads={self.n_heads}"
            )
        if not 0 <= self.pad_index < self.n_words:
            raise ConfigError(
                f"{source}: pad_index={self.pad_index} is outside the vocabulary "
                f"(n_words={self.n_words})"
            )
        if not self.is_encoder:
            raise ConfigError(
                f"{source}: is_encoder is false: FlauBERT decoders are not supported "
                "(transformers' FlaubertModel refuses them too)"
            )
        if self.asm:
            raise ConfigError(f"{source}: asm (adaptive softmax) is not supported")
