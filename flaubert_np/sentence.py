"""SentenceEncoder: a sentence-transformers FlauBERT model, run in NumPy.

A sentence-transformers model directory is a pipeline listed in `modules.json`:

    Transformer (FlauBERT: tokens -> token embeddings [batch, seq, dim])
    -> Pooling  (token embeddings -> one vector per sentence [batch, dim'])
    -> Dense*   (optional linear layers + activation)
    -> Normalize (optional L2 normalisation)

Both generations of the layout load: sentence-transformers 2.x-4.x (`sentence_transformers.models.
Transformer`, pooling booleans, `max_seq_length` in `sentence_bert_config.json`, files possibly in
`0_Transformer/`) and 5.x-6.x (`sentence_transformers.base.modules.transformer.Transformer`,
`"pooling_mode": "mean"`, max length in `tokenizer_config.json`). A repo without `modules.json` is
read as a plain transformers FlauBERT model followed by mean pooling, as sentence-transformers does.

`encode` mirrors `SentenceTransformer.encode`: sentences sorted by decreasing length (`-len(text)`)
into batches, stripped (and lower-cased when `do_lower_case`), tokenized with padding and
truncation="longest_first" at `max_seq_length`, and returned in input order. One difference, for
speed only: consecutive batches of short sentences share a forward pass (TOKENS_PER_PASS).

`token_type_ids` (see the README): transformers 4.x's FlaubertTokenizer returns all-zero
token_type_ids, sentence-transformers passes them on, and FlaubertModel adds the embedding of
token id 0 at every position; transformers 5 returns none. "auto" reproduces the version the model
was saved with, so a model keeps the numbers it was trained and scored with.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flaubert_np import hub
from flaubert_np.files import ModelFileError, field, inside, read_json, read_json_object
from flaubert_np.model import FlaubertModel
from flaubert_np.pooling import PoolingConfig, normalize, pool
from flaubert_np.tokenizer import FlaubertTokenizer
from flaubert_np.weights import read_safetensors, to_float32

# Config files older sentence-transformers Transformer modules used besides the current name.
SBERT_CONFIG_NAMES = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)
# encode(): consecutive batches share one forward pass up to this many real tokens. FlauBERT base,
# 2 cores: 1,250 tokens/s in passes of one 32-sentence batch of STS sentences (~400 tokens),
# 1,490 in passes of ~2,000 tokens; beyond, no further gain.
TOKENS_PER_PASS = 2048
SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
TOKEN_TYPE_IDS_SETTINGS = ("auto", "zeros", "none", True, False, None)


def _module_kind(type_name: str) -> str:
    """'sentence_transformers.models.Pooling' (2.x-4.x) or '...modules.pooling.Pooling' (5+)."""
    kind = type_name.rsplit(".", 1)[-1]
    if not type_name.startswith("sentence_transformers.") or kind not in SUPPORTED_MODULES:
        raise ModelFileError(
            f"modules.json: module type '{type_name}' is not supported "
            f"(flaubert-np runs {', '.join(SUPPORTED_MODULES)})"
        )
    return kind


def _module_path(entry: dict) -> str:
    """A module's folder, relative to the model directory (and never outside it)."""
    path = field(entry, "path", str, "modules.json", "")
    if Path(path).is_absolute() or ".." in Path(path).parts:
        raise ModelFileError(f"modules.json: module path '{path}' leaves the model directory")
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
    modules = [(_module_kind(str(m.get("type"))), _module_path(m)) for m in entries]
    for _, folder in modules:  # a module folder may not be a link out of the model folder
        inside(model_dir, folder, "module folder")
    kinds = [kind for kind, _ in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or {"Transformer", "Pooling"} & set(kinds[2:]):
        raise ModelFileError(
            f"{modules_file}: expected Transformer, Pooling, then Dense/Normalize modules; "
            f"got {', '.join(kinds) or 'none'}"
        )
    return modules


def transformer_dir(model_dir: Path) -> Path:
    """The folder of a model's FlauBERT encoder: the root, or its Transformer module's folder
    (the 2021 layout keeps it in `0_Transformer/`)."""
    return model_dir / read_modules(model_dir)[0][1]


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


# ---------------------------------------------------------------------------------------------
# Dense and Normalize: the small modules after pooling

_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Tanh": np.tanh,
    "Identity": lambda x: x,
}


@dataclass
class Dense:
    """sentence-transformers' Dense: activation(x @ weight.T + bias) (+ x, with use_residual)."""

    weight: np.ndarray  # [out, in]
    bias: np.ndarray | None  # [out]
    activation: str  # a key of _ACTIVATIONS
    residual: np.ndarray | None = None  # [out, in], when use_residual and in != out
    use_residual: bool = False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # [batch, in] -> [batch, out]
        out = x @ self.weight.T
        if self.bias is not None:
            out = out + self.bias
        out = _ACTIVATIONS[self.activation](out)
        if self.use_residual:
            out = out + (x if self.residual is None else x @ self.residual.T)
        return out.astype(np.float32, copy=False)

    @classmethod
    def from_dir(cls, folder: Path) -> Dense:
        config_file = folder / "config.json"
        config = read_json_object(config_file)
        activation = field(
            config, "activation_function", str, config_file, "torch.nn.modules.activation.Tanh"
        )
        name = activation.rsplit(".", 1)[-1]
        if not activation.startswith("torch.") or name not in _ACTIVATIONS:
            raise ValueError(
                f"{config_file}: Dense activation '{activation}' is not supported "
                f"(flaubert-np runs {', '.join(_ACTIVATIONS)})"
            )
        for key in ("module_input_name", "module_output_name"):
            if config.get(key, "sentence_embedding") not in (None, "sentence_embedding"):
                raise ValueError(f"{config_file}: Dense {key} {config[key]!r} is not supported")
        n_in, n_out = (field(config, k, int, config_file) for k in ("in_features", "out_features"))
        if n_in is None or n_out is None:
            raise ModelFileError(f"{config_file}: in_features and out_features are required")
        has_bias = field(config, "bias", bool, config_file, True)
        use_residual = field(config, "use_residual", bool, config_file, False)
        tensors = _load_module_weights(folder)
        expected = {"linear.weight": (n_out, n_in)}
        if has_bias:
            expected["linear.bias"] = (n_out,)
        if use_residual and n_in != n_out:
            expected["residual.weight"] = (n_out, n_in)
        for key, shape in expected.items():
            if key not in tensors:
                raise ValueError(f"{folder}: Dense weights have no tensor '{key}'")
            if tensors[key].shape != shape:
                raise ValueError(
                    f"{folder}: Dense tensor '{key}' has shape {tensors[key].shape}, "
                    f"expected {shape} from {config_file.name}"
                )
        return cls(
            weight=tensors["linear.weight"],
            bias=tensors.get("linear.bias") if has_bias else None,
            activation=name,
            residual=tensors.get("residual.weight") if use_residual else None,
            use_residual=use_residual,
        )

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]


def _load_module_weights(folder: Path) -> dict[str, np.ndarray]:
    """A small module's tensors, from model.safetensors or (without torch) pytorch_model.bin."""
    if (folder / "model.safetensors").is_file():
        path = folder / "model.safetensors"
        return {
            name: to_float32(code, array, f"{path}: tensor '{name}'")
            for name, (code, array) in read_safetensors(path).items()
        }
    elif (folder / "pytorch_model.bin").is_file():
        from flaubert_np.torch_bin import load_torch_bin

        tensors = load_torch_bin(folder / "pytorch_model.bin")
    else:
        raise FileNotFoundError(f"{folder}: no model.safetensors or pytorch_model.bin")
    return {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}


def _normalize(x: np.ndarray) -> np.ndarray:
    # [batch, dim] -> [batch, dim]
    return normalize(x).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# The encoder


class SentenceEncoder:
    """Sentence embeddings from a sentence-transformers FlauBERT model, in NumPy."""

    def __init__(
        self,
        model: FlaubertModel,
        tokenizer: FlaubertTokenizer,
        pooling: PoolingConfig,
        heads: Sequence[Callable[[np.ndarray], np.ndarray]] = (),
        max_seq_length: int | None = None,
        do_lower_case: bool = False,
        token_type_ids: str = "none",
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        similarity_fn_name: str = "cosine",
        embedding_dimension: int | None = None,
        saved_with: tuple[str, Path] | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.heads = list(heads)  # Dense / Normalize, applied in order after pooling
        self.max_seq_length = max_seq_length
        self.do_lower_case = do_lower_case
        if token_type_ids not in ("zeros", "none"):
            raise ValueError(f"token_type_ids must be 'zeros' or 'none', got {token_type_ids!r}")
        self.token_type_ids = token_type_ids
        self.saved_with = saved_with  # (transformers version, the file that says so) or None
        self.prompts = dict(prompts or {})
        self.default_prompt_name = default_prompt_name
        self.similarity_fn_name = similarity_fn_name
        self.embedding_dimension = embedding_dimension or pooling.output_dimension

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        token_type_ids: str | bool | None = "auto",
    ) -> SentenceEncoder:
        """Load a local directory, a short name ("demo") or a Hugging Face Hub id.

        `token_type_ids`: "auto" (the behaviour of the transformers version the model was saved
        with), "zeros"/True (transformers 4.x) or "none"/False/None (transformers 5).
        """
        if token_type_ids not in TOKEN_TYPE_IDS_SETTINGS:  # fail before any download
            resolve_token_type_ids(token_type_ids, None)
        model_dir = hub.resolve_model_dir(
            name_or_path, revision, cache_dir, local_files_only, token
        )
        return cls._from_dir(model_dir, token_type_ids)

    @classmethod
    def _from_dir(cls, model_dir: Path, token_type_ids: str | bool | None) -> SentenceEncoder:
        modules = read_modules(model_dir)
        encoder_dir = model_dir / modules[0][1]
        model = FlaubertModel.from_pretrained(encoder_dir)
        tokenizer = FlaubertTokenizer.from_pretrained(encoder_dir)
        sbert_files = [encoder_dir / n for n in SBERT_CONFIG_NAMES]
        sbert_file = next((f for f in sbert_files if f.is_file()), None)
        sbert: dict[str, Any] = read_json_object(sbert_file) if sbert_file else {}
        field(sbert, "max_seq_length", int, sbert_file or encoder_dir)
        field(sbert, "do_lower_case", bool, sbert_file or encoder_dir)
        max_seq_length = _max_seq_length(sbert, tokenizer, model)

        pooling_path = modules[1][1]
        if pooling_path is None:
            pooling = PoolingConfig(embedding_dimension=model.config.emb_dim)
        else:
            pooling = PoolingConfig.from_file(model_dir / pooling_path / "config.json")
        if pooling.embedding_dimension != model.config.emb_dim:
            raise ModelFileError(
                f"{model_dir / pooling_path}: pooling embedding_dimension "
                f"{pooling.embedding_dimension} != the model's emb_dim {model.config.emb_dim}"
            )

        heads: list[Callable[[np.ndarray], np.ndarray]] = []
        dim = pooling.output_dimension
        for kind, path in modules[2:]:
            if kind == "Normalize":
                heads.append(_normalize)
                continue
            dense = Dense.from_dir(model_dir / path)
            if dense.weight.shape[1] != dim:
                raise ModelFileError(
                    f"{model_dir / path}: Dense in_features {dense.weight.shape[1]} != the "
                    f"{dim}-d embeddings it receives"
                )
            heads.append(dense)
            dim = dense.out_features

        st_config_file = model_dir / "config_sentence_transformers.json"
        st_config = read_json_object(st_config_file) if st_config_file.is_file() else {}
        field(st_config, "prompts", dict, st_config_file)
        field(st_config, "default_prompt_name", str, st_config_file)
        field(st_config, "similarity_fn_name", str, st_config_file)
        saved_with = saved_with_transformers(model_dir, encoder_dir)
        encoder = cls(
            model,
            tokenizer,
            pooling,
            heads,
            max_seq_length=max_seq_length,
            do_lower_case=bool(sbert.get("do_lower_case", False)),
            token_type_ids=resolve_token_type_ids(token_type_ids, saved_with),
            prompts=st_config.get("prompts") or {},
            default_prompt_name=st_config.get("default_prompt_name"),
            similarity_fn_name=st_config.get("similarity_fn_name") or "cosine",
            embedding_dimension=dim,
            saved_with=saved_with,
        )
        return encoder

    # -- encoding -----------------------------------------------------------------------------

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Model inputs for one batch, as sentence-transformers' Transformer.tokenize."""
        texts = [t.strip() for t in texts]
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        features = self.tokenizer(
            texts,
            padding=True,
            truncation="longest_first",
            max_length=self.max_seq_length,
            return_tensors="np",
        )
        if self.token_type_ids == "zeros":
            # transformers 4.x: one segment, zeros everywhere, padding included
            features["token_type_ids"] = np.zeros_like(features["input_ids"])
        return features

    def _token_embeddings(self, features: dict[str, np.ndarray]) -> np.ndarray:
        # -> [batch, seq, dim]
        output = self.model(
            features["input_ids"],
            attention_mask=features["attention_mask"],
            token_type_ids=features.get("token_type_ids"),
        )
        return output.last_hidden_state

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: str = "sentence_embedding",
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Embed one sentence (-> [dim]) or a list of sentences (-> [n, dim], float32).

        output_value="token_embeddings" gives one [n_tokens, emb_dim] array per sentence.
        `prompt` (or the name of one of the model's `prompts`) is prepended to every sentence.
        Sentences are tokenized `batch_size` at a time, as sentence-transformers does; short
        batches then share a forward pass, up to TOKENS_PER_PASS real tokens (the fast forward
        removes padding, so this changes no embedding beyond float32 rounding).
        """
        if output_value not in ("sentence_embedding", "token_embeddings"):
            raise ValueError(
                f"output_value must be 'sentence_embedding' or 'token_embeddings', "
                f"got {output_value!r}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"sentences[{i}] is {type(text).__name__}, not str: {text!r}")
        prompt, prompt_length = self._prompt(prompt, prompt_name)
        if prompt:
            texts = [prompt + text for text in texts]

        # longest first, as sentence-transformers (np.argsort's default kind, for the same ties)
        order = np.argsort([-len(text) for text in texts])
        results: list[np.ndarray] = []
        progress = _Progress(len(texts)) if show_progress_bar else None
        batches = (self.tokenize([texts[i] for i in order[start : start + batch_size]])
                   for start in range(0, len(texts), batch_size))  # fmt: skip
        for features in _passes(batches, TOKENS_PER_PASS, self.tokenizer.pad_token_id):
            token_embeddings = self._token_embeddings(features)
            mask = features["attention_mask"]
            if output_value == "token_embeddings":
                results.extend(_trim(token_embeddings, mask))
            else:
                if prompt_length and not self.pooling.include_prompt:
                    mask = mask.copy()
                    mask[:, :prompt_length] = 0
                embeddings = pool(token_embeddings, mask, self.pooling.pooling_modes)
                for head in self.heads:
                    embeddings = head(embeddings)
                if normalize_embeddings:
                    embeddings = _normalize(embeddings)
                results.extend(embeddings.astype(np.float32, copy=False))
            if progress:
                progress.update(len(results))
        if progress:
            progress.close()

        results = [results[i] for i in np.argsort(order)]
        if single:
            return results[0]
        if output_value == "token_embeddings" or not convert_to_numpy:
            return results
        if not results:
            return np.zeros((0, self.embedding_dimension), dtype=np.float32)
        return np.stack(results)

    def _prompt(self, prompt: str | None, prompt_name: str | None) -> tuple[str | None, int]:
        """The prompt to prepend and its length in tokens (without the final </s>)."""
        if prompt is None and prompt_name is not None:
            if prompt_name not in self.prompts:
                raise ValueError(
                    f"prompt_name {prompt_name!r} is not one of the model's prompts "
                    f"{sorted(self.prompts)}"
                )
            prompt = self.prompts[prompt_name]
        elif prompt is None and self.default_prompt_name is not None:
            prompt = self.prompts.get(self.default_prompt_name)
        if not prompt:
            return None, 0
        return prompt, self.tokenize([prompt])["input_ids"].shape[-1] - 1

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Score matrix [len(a), len(b)] with the model's similarity function (cosine default)."""
        # [n, dim], [m, dim] -> [n, m]
        a = np.atleast_2d(np.asarray(a, dtype=np.float32))
        b = np.atleast_2d(np.asarray(b, dtype=np.float32))
        if self.similarity_fn_name == "cosine":
            from flaubert_np.similarity import cos_sim

            return cos_sim(a, b)
        if self.similarity_fn_name == "dot":
            return a @ b.T
        if self.similarity_fn_name == "euclidean":
            return -np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
        if self.similarity_fn_name == "manhattan":
            return -np.abs(a[:, None, :] - b[None, :, :]).sum(axis=-1)
        raise ValueError(f"unknown similarity function {self.similarity_fn_name!r}")

    def __repr__(self) -> str:
        return (
            f"SentenceEncoder(max_seq_length={self.max_seq_length}, "
            f"pooling={'+'.join(self.pooling.pooling_modes)}, heads={len(self.heads)}, "
            f"dim={self.embedding_dimension}, token_type_ids={self.token_type_ids!r})"
        )


def _max_seq_length(sbert: dict, tokenizer: FlaubertTokenizer, model: FlaubertModel) -> int | None:
    """Where sentence-transformers finds it: sentence_bert_config.json (2.x-4.x), else the
    tokenizer's model_max_length (5+), capped at the model's max_position_embeddings."""
    if sbert.get("max_seq_length") is not None:
        return int(sbert["max_seq_length"])
    limit = model.config.max_position_embeddings
    tokenizer_max = getattr(tokenizer, "model_max_length", None)
    if tokenizer_max is None:
        return limit
    return int(min(tokenizer_max, limit)) if limit and limit > 0 else int(tokenizer_max)


def _passes(batches: Iterable[dict[str, np.ndarray]], max_tokens: int,
            pad_id: int | None) -> Iterator[dict[str, np.ndarray]]:
    """Consecutive batches joined into one forward pass while their real tokens add up to at
    most max_tokens (a larger batch goes alone, as it is). Padding is removed in the forward,
    so joining batches changes no embedding beyond float32 rounding; it saves the fixed cost of
    a pass, and each matrix product gets more rows."""
    group: list[dict[str, np.ndarray]] = []
    tokens = 0
    for features in batches:
        n = int(np.count_nonzero(features["attention_mask"]))
        if group and tokens + n > max_tokens:
            yield _join(group, pad_id)
            group, tokens = [], 0
        group.append(features)
        tokens += n
    if group:
        yield _join(group, pad_id)


def _join(batches: list[dict[str, np.ndarray]], pad_id: int | None) -> dict[str, np.ndarray]:
    """Tokenizer outputs stacked along the batch axis, padded (right) to the longest."""
    # k x {name: [batch_i, seq_i]} -> {name: [sum of batch_i, max seq_i]}
    if len(batches) == 1:
        return batches[0]
    seq = max(b["input_ids"].shape[1] for b in batches)
    fill = {"input_ids": 0 if pad_id is None else pad_id}  # the rest (masks, types): 0
    return {name: np.concatenate([np.pad(b[name], ((0, 0), (0, seq - b[name].shape[1])),
                                         constant_values=fill.get(name, 0)) for b in batches])
            for name in batches[0]}  # fmt: skip


def _trim(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
    """Each sentence's token embeddings up to its last real token."""
    # [batch, seq, dim], [batch, seq] -> batch x [n_tokens, dim]
    real = attention_mask != 0
    seq = attention_mask.shape[1]
    last = np.where(real.any(axis=1), seq - 1 - np.argmax(real[:, ::-1], axis=1), 0)
    return [emb[: n + 1] for emb, n in zip(token_embeddings, last, strict=True)]


class _Progress:
    """A plain-text progress bar on stderr: `Encoding [#####.....] 500/1000`."""

    WIDTH = 30

    def __init__(self, total: int):
        self.total = total

    def update(self, done: int) -> None:
        filled = self.WIDTH * done // max(self.total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        sys.stderr.write(f"\rEncoding [{bar}] {done}/{self.total}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()
