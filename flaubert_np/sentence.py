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
The modules after the encoder live beside this file, as in sentence-transformers: modules.py
(reading modules.json), pooling.py, dense.py and normalize.py.

`encode` mirrors `SentenceTransformer.encode`: sentences sorted by decreasing length (`-len(text)`)
into batches, stripped (and lower-cased when `do_lower_case`), tokenized with padding and
truncation="longest_first" at `max_seq_length`, and returned in input order. One difference, for
speed only: consecutive batches of short sentences share a forward pass (TOKENS_PER_PASS).

`token_type_ids`: "auto" reproduces the transformers version the model was saved with (4.x: all
zeros reach the model; 5: none), see modules.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from flaubert_np import hub
from flaubert_np.dense import Dense
from flaubert_np.files import ModelFileError, field, read_json_object
from flaubert_np.model import FlaubertModel
from flaubert_np.modules import (
    TOKEN_TYPE_IDS_SETTINGS,
    module_dir,
    read_modules,
    resolve_token_type_ids,
    saved_with_transformers,
)
from flaubert_np.normalize import Normalize
from flaubert_np.pooling import PoolingConfig, pool
from flaubert_np.progress import Progress
from flaubert_np.tokenizer import FlaubertTokenizer

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
# encode_document's prompt: the first of these the model has, as sentence-transformers.
DOCUMENT_PROMPTS = ("document", "passage", "corpus")
# encode(): consecutive batches share one forward pass up to this many real tokens: a 32-sentence
# batch of short sentences is too small a pass to keep the cores busy; beyond ~2,000 tokens, no
# further gain (docs/performance.md).
TOKENS_PER_PASS = 2048


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
        truncate_dim: int | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.heads = list(heads)  # Dense / Normalize, applied in order after pooling
        self._max_seq_length = max_seq_length  # as the model files say; the setter checks yours
        self.do_lower_case = do_lower_case
        if token_type_ids not in ("zeros", "none"):
            raise ValueError(f"token_type_ids must be 'zeros' or 'none', got {token_type_ids!r}")
        self.token_type_ids = token_type_ids
        self.saved_with = saved_with  # (transformers version, the file that says so) or None
        self.prompts = dict(prompts or {})
        self.default_prompt_name = default_prompt_name
        self.similarity_fn_name = similarity_fn_name
        self.embedding_dimension = embedding_dimension or pooling.output_dimension
        self.truncate_dim = _check_truncate_dim(truncate_dim)  # encode() keeps the first dims

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        token_type_ids: str | bool | None = "auto",
        truncate_dim: int | None = None,
    ) -> SentenceEncoder:
        """Load a local directory, a short name ("demo") or a Hugging Face Hub id.

        `token_type_ids`: "auto" (the behaviour of the transformers version the model was saved
        with), "zeros"/True (transformers 4.x) or "none"/False/None (transformers 5).
        `truncate_dim`: keep only the first dimensions of every embedding (Matryoshka models).
        """
        if token_type_ids not in TOKEN_TYPE_IDS_SETTINGS:  # fail before any download
            resolve_token_type_ids(token_type_ids, None)
        _check_truncate_dim(truncate_dim)
        model_dir = hub.resolve_model_dir(
            name_or_path, revision, cache_dir, local_files_only, token
        )
        encoder = cls._from_dir(model_dir, token_type_ids)
        encoder.truncate_dim = truncate_dim
        return encoder

    @classmethod
    def _from_dir(cls, model_dir: Path, token_type_ids: str | bool | None) -> SentenceEncoder:
        modules = read_modules(model_dir)
        encoder_dir = module_dir(model_dir, modules[0][1])
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
                f"{module_dir(model_dir, pooling_path)}: pooling embedding_dimension "
                f"{pooling.embedding_dimension} != the model's emb_dim {model.config.emb_dim}"
            )

        heads: list[Callable[[np.ndarray], np.ndarray]] = []
        dim = pooling.output_dimension
        for kind, path in modules[2:]:
            if kind == "Normalize":
                heads.append(Normalize())
                continue
            folder = module_dir(model_dir, path)
            dense = Dense.from_dir(folder)
            if dense.weight.shape[1] != dim:
                raise ModelFileError(
                    f"{folder}: Dense in_features {dense.weight.shape[1]} != the "
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
        precision: str = "float32",
        truncate_dim: int | None = None,
        convert_to_tensor: bool = False,
        device: str | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Embed one sentence (-> [dim]) or a list of sentences (-> [n, dim], float32).

        output_value="token_embeddings" gives one [n_tokens, emb_dim] array per sentence.
        `prompt` (or the name of one of the model's `prompts`) is prepended to every sentence.
        `truncate_dim` (default: the encoder's) keeps the first dimensions, before normalising;
        `precision` ("int8", "uint8", "binary", "ubinary") quantizes the result as
        `quantize_embeddings` does, with ranges from these embeddings.
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
        _check_numpy_only(convert_to_tensor, device)
        from flaubert_np.quantization import PRECISIONS, quantize_embeddings

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        truncate_dim = _check_truncate_dim(truncate_dim) or self.truncate_dim
        single = isinstance(sentences, str)
        texts: list[str] = [sentences] if isinstance(sentences, str) else list(sentences)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"sentences[{i}] is {type(text).__name__}, not str: {text!r}")
        prompt, prompt_length = self._prompt(prompt, prompt_name)
        if prompt:
            texts = [prompt + text for text in texts]

        # longest first, as sentence-transformers (np.argsort's default kind, for the same ties)
        order = np.argsort([-len(text) for text in texts])
        results: list[np.ndarray] = []
        batches = (self.tokenize([texts[i] for i in order[start : start + batch_size]])
                   for start in range(0, len(texts), batch_size))  # fmt: skip
        with Progress(len(texts), "Encoding", " texts", enabled=bool(show_progress_bar)) as bar:
            for features in _passes(batches, TOKENS_PER_PASS, self.tokenizer.pad_token_id):
                token_embeddings = self._token_embeddings(features)
                mask = features["attention_mask"]
                if output_value == "token_embeddings":
                    results.extend(_trim(token_embeddings, mask))
                else:
                    embeddings = self._pool(token_embeddings, mask, prompt_length)
                    embeddings = embeddings[:, :truncate_dim]  # [batch, truncate_dim]
                    if normalize_embeddings:
                        embeddings = Normalize()(embeddings)
                    results.extend(embeddings.astype(np.float32, copy=False))
                bar.update_to(len(results))

        results = [results[i] for i in np.argsort(order)]
        if results and precision != "float32":  # ranges from all the embeddings at once
            quantized = quantize_embeddings(
                results if output_value == "token_embeddings" else np.stack(results), precision
            )
            results = list(quantized)
        if single:
            return results[0]
        if output_value == "token_embeddings" or not convert_to_numpy:
            return results
        if not results:  # [0, dim], in the dtype and width of the precision
            empty = np.zeros((0, self.get_embedding_dimension()), dtype=np.float32)
            return quantize_embeddings(empty, precision)
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

    # -- sentence-transformers' other calls (docs/sentence-transformers.md) ------------------

    def encode_query(
        self,
        sentences: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        **kwargs: Any,
    ) -> np.ndarray | list[np.ndarray]:
        """encode() with the model's "query" prompt, when it has one and no other is given."""
        if prompt_name is None and prompt is None and "query" in self.prompts:
            prompt_name = "query"
        return self.encode(sentences, prompt_name=prompt_name, prompt=prompt, **kwargs)

    def encode_document(
        self,
        sentences: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        **kwargs: Any,
    ) -> np.ndarray | list[np.ndarray]:
        """encode() with the model's "document" (else "passage", else "corpus") prompt, when it
        has one and no other is given."""
        if prompt_name is None and prompt is None:
            prompt_name = next((n for n in DOCUMENT_PROMPTS if n in self.prompts), None)
        return self.encode(sentences, prompt_name=prompt_name, prompt=prompt, **kwargs)

    def similarity_pairwise(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Scores [n] of a[i] with b[i], with the model's similarity function."""
        from flaubert_np.similarity import PAIRWISE_FUNCTIONS

        if self.similarity_fn_name not in PAIRWISE_FUNCTIONS:
            raise ValueError(f"unknown similarity function {self.similarity_fn_name!r}")
        return PAIRWISE_FUNCTIONS[self.similarity_fn_name](a, b)

    def get_embedding_dimension(self) -> int:
        """The size of encode()'s embeddings (truncate_dim included)."""
        return min(self.embedding_dimension, self.truncate_dim or self.embedding_dimension)

    get_sentence_embedding_dimension = get_embedding_dimension  # sentence-transformers' old name

    @contextmanager
    def truncate_embeddings(self, truncate_dim: int | None) -> Iterator[None]:
        """Within `with encoder.truncate_embeddings(64):`, encode() keeps 64 dimensions."""
        saved, self.truncate_dim = self.truncate_dim, _check_truncate_dim(truncate_dim)
        try:
            yield
        finally:
            self.truncate_dim = saved

    def get_max_seq_length(self) -> int | None:
        return self.max_seq_length

    def set_pooling_include_prompt(self, include_prompt: bool) -> None:
        """Whether pooling averages over the prompt's tokens too (INSTRUCTOR models: False)."""
        self.pooling = replace(self.pooling, include_prompt=bool(include_prompt))

    @property
    def max_seq_length(self) -> int | None:
        """Tokens per sentence (prompt included) beyond which encode() truncates."""
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        limit = self.model.config.max_position_embeddings
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit
        ):
            raise ValueError(
                f"max_seq_length must be an integer from 1 to the model's "
                f"max_position_embeddings ({limit}), got {value!r}"
            )
        self._max_seq_length = value

    def __repr__(self) -> str:
        return (
            f"SentenceEncoder(max_seq_length={self.max_seq_length}, "
            f"pooling={'+'.join(self.pooling.pooling_modes)}, heads={len(self.heads)}, "
            f"dim={self.embedding_dimension}, token_type_ids={self.token_type_ids!r})"
        )

    def encode_tokenized(
        self, features: Sequence[dict[str, np.ndarray]], prompt_length: int = 0
    ) -> np.ndarray:
        """Sentence embeddings [n, dim] of texts already tokenized by `tokenize` (one dict per
        batch, joined into one forward pass): `encode` without its tokenizing, sorting and
        normalising, for callers that tokenize elsewhere (the server, off its model thread).
        `prompt_length`: the prompt's tokens after <s>, left out of pooling as in `encode`."""
        joined = _join(list(features), self.tokenizer.pad_token_id)
        token_embeddings = self._token_embeddings(joined)
        embeddings = self._pool(token_embeddings, joined["attention_mask"], prompt_length)
        return embeddings.astype(np.float32, copy=False)

    def _pool(
        self, token_embeddings: np.ndarray, mask: np.ndarray, prompt_length: int
    ) -> np.ndarray:
        """[batch, seq, emb_dim] -> [batch, dim]: Pooling, then the Dense/Normalize heads. The
        prompt's tokens (after <s>) are left out of pooling unless the model includes them."""
        if prompt_length and not self.pooling.include_prompt:
            mask = mask.copy()
            mask[:, :prompt_length] = 0
        embeddings = pool(token_embeddings, mask, self.pooling.pooling_modes)
        for head in self.heads:
            embeddings = head(embeddings)
        return embeddings


def _check_truncate_dim(truncate_dim: Any) -> int | None:
    if truncate_dim is not None and (
        isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int) or truncate_dim < 1
    ):
        raise ValueError(f"truncate_dim must be a positive integer or None, got {truncate_dim!r}")
    return truncate_dim


def _check_numpy_only(convert_to_tensor: bool, device: str | None) -> None:
    """sentence-transformers' torch options: refused in words, not with a TypeError."""
    if convert_to_tensor:
        raise ValueError(
            "convert_to_tensor=True: flaubert-np returns NumPy arrays, not torch tensors "
            "(use torch.from_numpy on the result if you need one)"
        )
    if device not in (None, "cpu"):
        raise ValueError(f"device={device!r}: flaubert-np runs on the CPU with NumPy only")


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


def _passes(
    batches: Iterable[dict[str, np.ndarray]], max_tokens: int, pad_id: int | None
) -> Iterator[dict[str, np.ndarray]]:
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
