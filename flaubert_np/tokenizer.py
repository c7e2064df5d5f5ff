"""FlauBERT tokenizer: Moses pre-tokenisation, then BPE; token for token what transformers gives.

The reference is transformers 5's `FlaubertTokenizer` (models/flaubert/tokenization_flaubert.py)
and its base class `PreTrainedTokenizer` (tokenization_python.py, tokenization_utils_base.py):

    "Il fait <special1>"  --split on added/special tokens (added_tokens.py: a trie)-->
                          "Il fait ", "<special1>"
    each other piece      --moses.py: `` and '' to ", NFC, lower-case if do_lowercase, Moses
                            punctuation normalisation and word splitting-->  ["il", "fait"]
                          --bpe.py: BPE by merge rank, "</w>" marks a word end-->
                          ["il</w>", "fait</w>"]
    ids (pieces not in vocab.json -> <unk>), "<s> A </s>" or "<s> A </s> B </s>",
    truncation and padding (padding.py) -> int64 NumPy arrays.

Where transformers has quirks (how merges.txt is read, its trie, its truncation arithmetic) they are
reproduced, not fixed: the promise is identical ids.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeGuard, cast, overload

import numpy as np

from flaubert_np import hub
from flaubert_np.added_tokens import (
    DEFAULT_EXTRA_SPECIAL_TOKENS,
    DEFAULT_SPECIAL_TOKENS,
    SPECIAL_TOKEN_NAMES,
    AddedToken,
    Trie,
    register_special_tokens,
    special_and_added_tokens,
    split_on_added_tokens,
)
from flaubert_np.bpe import bpe, read_merges
from flaubert_np.files import ModelFileError, field, read_json, read_json_object
from flaubert_np.moses import moses_words
from flaubert_np.padding import pad, padding_truncation_strategies, truncate_sequences

# tokenizer_config.json keys and the JSON types they must have (checked before use).
_CONFIG_TYPES = {
    "do_lowercase": bool,
    "split_special_tokens": bool,
    "clean_up_tokenization_spaces": bool,
    "padding_side": str,
    "truncation_side": str,
    "model_input_names": list,
}
VERY_LARGE_INTEGER = int(1e30)  # transformers' "no limit" model_max_length
WORD_CACHE_SIZE = 20_000  # words whose BPE pieces and ids are cached (see _remember)
MAX_CACHED_WORD_LENGTH = 100  # characters; a longer word is not cached


class FlaubertTokenizer:
    """transformers' FlaubertTokenizer without transformers: same tokens, same ids, NumPy out.

    >>> tok = FlaubertTokenizer.from_pretrained("path/to/flaubert")      # doctest: +SKIP
    >>> tok.tokenize("Le chat dort.")                                     # doctest: +SKIP
    ['le</w>', 'chat</w>', 'dort</w>', '.</w>']
    >>> tok(["Le chat dort.", "Il pleut"], padding=True)["input_ids"]     # doctest: +SKIP
    """

    bos_token_id: int | None
    eos_token_id: int | None
    unk_token_id: int | None
    sep_token_id: int | None
    pad_token_id: int | None
    cls_token_id: int | None
    mask_token_id: int | None

    def __init__(
        self,
        vocab: dict[str, int],
        bpe_ranks: dict[tuple[str, ...], int],
        *,
        do_lowercase: bool = False,
        special_tokens: dict[str, str] | None = None,
        extra_special_tokens: Sequence[str] = DEFAULT_EXTRA_SPECIAL_TOKENS,
        added_tokens: dict[int, AddedToken] | None = None,
        model_max_length: int | None = None,
        split_special_tokens: bool = False,
        padding_side: str = "right",
        truncation_side: str = "right",
        model_input_names: Sequence[str] = ("input_ids", "attention_mask"),
        clean_up_tokenization_spaces: bool = False,
    ):
        if special_tokens is None:
            special_tokens = {
                k: v for k in SPECIAL_TOKEN_NAMES if (v := DEFAULT_SPECIAL_TOKENS.get(k))
            }
        for name, side in (("padding_side", padding_side), ("truncation_side", truncation_side)):
            if side not in ("right", "left"):
                raise ValueError(f"{name} must be 'right' or 'left', got {side!r}")
        self.encoder = vocab
        self.decoder = {index: token for token, index in vocab.items()}
        self.bpe_ranks = bpe_ranks
        self.do_lowercase = bool(do_lowercase)
        self.model_max_length = VERY_LARGE_INTEGER if model_max_length is None else model_max_length
        self.split_special_tokens = split_special_tokens
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.model_input_names = list(model_input_names)
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.special_tokens_map = dict(special_tokens)

        # The unique special tokens, named ones first (transformers' all_special_tokens).
        self.all_special_tokens = list(
            dict.fromkeys([*self.special_tokens_map.values(), *extra_special_tokens])
        )
        self.added_tokens_decoder, self.added_tokens_encoder = register_special_tokens(
            vocab, added_tokens or {}, self.all_special_tokens
        )
        self._trie = Trie(t.content for t in self.added_tokens_decoder.values())
        unk_token = self.special_tokens_map.get("unk_token")
        self._unk_id = None if unk_token is None else self.encoder.get(unk_token)
        # bos_token_id, sep_token_id, pad_token_id, ...: None for a token the files do not name
        for name in SPECIAL_TOKEN_NAMES:
            token = self.special_tokens_map.get(name)
            setattr(
                self, f"{name}_id", None if token is None else self.convert_tokens_to_ids(token)
            )
        self._bpe_cache: dict[str, list[str]] = {}
        self._ids_cache: dict[str, list[int]] = {}

    def _sorted_added_encoder(self) -> dict[str, int]:
        return {t.content: i for i, t in sorted(self.added_tokens_decoder.items())}

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        *,
        do_lowercase: bool | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> FlaubertTokenizer:
        """Read vocab.json, merges.txt and the optional tokenizer_config.json,
        special_tokens_map.json and added_tokens.json of a FlauBERT repository: a folder, "demo"
        or a Hugging Face Hub id (see flaubert_np/hub.py; the weights are not downloaded).
        do_lowercase, when given, replaces tokenizer_config.json's (as in transformers)."""
        model_dir = hub.resolve_model_dir(
            model_dir, revision, cache_dir, local_files_only, token, weights=False
        )
        for name in ("vocab.json", "merges.txt"):
            if not (model_dir / name).is_file():
                raise FileNotFoundError(
                    f"{model_dir / name}: missing (FlauBERT's tokenizer needs it)"
                )

        def optional_json(name: str) -> Any:
            path = model_dir / name
            if not path.is_file():
                return None
            return read_json_object(path)

        vocab = read_json(model_dir / "vocab.json")
        if not isinstance(vocab, dict) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()
        ):
            raise ModelFileError(
                f"{model_dir / 'vocab.json'}: expected an object of token -> int id"
            )
        config = optional_json("tokenizer_config.json") or {}
        config_file = model_dir / "tokenizer_config.json"
        for key, kind in _CONFIG_TYPES.items():  # a wrong type names the file and the key
            field(config, key, kind, config_file)
        try:
            named, extras, added = special_and_added_tokens(
                config, optional_json("special_tokens_map.json"), optional_json("added_tokens.json")
            )
        except ModelFileError:
            raise
        except ValueError as e:  # its message names the file within the folder
            raise ModelFileError(f"{model_dir}: {e}") from None
        if do_lowercase is None:
            do_lowercase = config.get("do_lowercase", False)
            # flaubert/flaubert_base_uncased says "do_lower_case", a name transformers ignores
            if config.get("do_lower_case") and "do_lowercase" not in config:
                warnings.warn(
                    f"{model_dir / 'tokenizer_config.json'}: do_lower_case is ignored, as in "
                    "transformers (FlauBERT's setting is do_lowercase: transformers issue 14042), "
                    "so the text is not lower-cased; to lower-case it, pass do_lowercase=True or "
                    'add "do_lowercase": true to that file',
                    stacklevel=2,
                )
        max_length = config.get("model_max_length", config.get("max_len"))
        if max_length is not None and (not isinstance(max_length, int) or max_length < 0):
            raise ModelFileError(f"{config_file}: model_max_length {max_length!r} is invalid")
        ranks = read_merges(model_dir / "merges.txt")
        try:  # the constructor checks the values (padding_side, ...): name the file they came from
            return cls(
                vocab,
                ranks,
                do_lowercase=do_lowercase,
                special_tokens=named,
                extra_special_tokens=extras,
                added_tokens=added,
                model_max_length=max_length,
                split_special_tokens=config.get("split_special_tokens", False),
                padding_side=config.get("padding_side", "right"),
                truncation_side=config.get("truncation_side", "right"),
                model_input_names=config.get("model_input_names")
                or ("input_ids", "attention_mask"),
                clean_up_tokenization_spaces=config.get("clean_up_tokenization_spaces", False),
            )
        except ValueError as e:
            raise ModelFileError(f"{config_file}: {e}") from None

    # -- vocabulary ---------------------------------------------------------------------------

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def __len__(self) -> int:
        return len(dict(self.encoder, **self._sorted_added_encoder()))

    def get_vocab(self) -> dict[str, int]:
        return dict(self.encoder, **self._sorted_added_encoder())

    # -- text -> tokens -----------------------------------------------------------------------

    def _split_on_added_tokens(self, text: str) -> list[tuple[str, bool]]:
        """text -> [(piece, is_added_token)]; with split_special_tokens, the text is one piece."""
        if self.split_special_tokens:
            return [(text, False)]
        return split_on_added_tokens(
            text, self._trie, self.added_tokens_decoder, self.added_tokens_encoder
        )

    def _word_pieces(self, word: str) -> list[str]:
        """A Moses word -> its BPE pieces, cached: a corpus repeats its words."""
        pieces = self._bpe_cache.get(word)
        if pieces is None:
            pieces = bpe(word, self.bpe_ranks)
            _remember(self._bpe_cache, word, pieces)
        return pieces

    def _word_ids(self, word: str) -> list[int]:
        """A Moses word -> the ids of its BPE pieces, cached."""
        ids = self._ids_cache.get(word)
        if ids is None:
            ids = self.convert_tokens_to_ids(self._word_pieces(word))
            _remember(self._ids_cache, word, ids)
        return ids

    def tokenize(self, text: str) -> list[str]:
        """Text -> BPE tokens ("</w>" ends a word); added tokens such as <special1> stay whole."""
        _check_text(text, "text")
        tokens: list[str] = []
        for piece, is_added in self._split_on_added_tokens(text):
            if is_added:
                tokens.append(piece)
            else:
                for word in moses_words(piece, self.do_lowercase):
                    tokens += self._word_pieces(word)
        return tokens

    def _text_ids(self, text: str) -> list[int]:
        """Text -> token ids, without special tokens (= convert_tokens_to_ids(tokenize(text)))."""
        ids: list[int] = []
        for piece, is_added in self._split_on_added_tokens(text):
            if is_added:
                ids.append(self.added_tokens_encoder[piece])
            else:
                for word in moses_words(piece, self.do_lowercase):
                    ids += self._word_ids(word)
        return ids

    def _convert_token_to_id_with_added_voc(self, token: str) -> int:
        """Added tokens first, then vocab.json, else the <unk> id."""
        index = self.added_tokens_encoder.get(token)
        if index is None:
            index = self.encoder.get(token, self._unk_id)
            if index is None:
                raise ValueError(
                    f"token {token!r} is not in vocab.json, and neither is the unknown token "
                    f"{self.special_tokens_map.get('unk_token')!r}"
                )
        return index

    @overload
    def convert_tokens_to_ids(self, tokens: str) -> int: ...
    @overload
    def convert_tokens_to_ids(self, tokens: list[str] | tuple[str, ...]) -> list[int]: ...
    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        """Token(s) -> id(s): added tokens first, then vocab.json, else the <unk> id."""
        if isinstance(tokens, str):
            return self._convert_token_to_id_with_added_voc(tokens)
        return [self._convert_token_to_id_with_added_voc(token) for token in tokens]

    def _convert_id_to_token(self, index: int) -> str:
        """Added tokens first, then vocab.json, else the unknown token."""
        token = self.added_tokens_decoder.get(index)
        if token is not None:
            return token.content
        content = self.decoder.get(index, self.special_tokens_map.get("unk_token"))
        if content is None:
            raise ValueError(
                f"id {index} is in neither vocab.json nor the added tokens, and this tokenizer "
                "has no unknown token"
            )
        return content

    @overload
    def convert_ids_to_tokens(self, ids: int, skip_special_tokens: bool = False) -> str: ...
    @overload
    def convert_ids_to_tokens(
        self, ids: Iterable[int], skip_special_tokens: bool = False
    ) -> list[str]: ...
    def convert_ids_to_tokens(
        self, ids: int | Iterable[int], skip_special_tokens: bool = False
    ) -> str | list[str]:
        """Id(s) -> token(s); an id in neither vocabulary gives the unknown token."""
        if isinstance(ids, (int, np.integer)):
            return self._convert_id_to_token(int(ids))
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._convert_id_to_token(int(i)) for i in ids if int(i) not in skip]

    # -- ids -> text --------------------------------------------------------------------------

    def decode(
        self,
        token_ids: int | Iterable[int] | Iterable[Iterable[int]],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str | list[str]:
        """Ids -> text: pieces joined, "</w>" -> a space (the Moses split is not undone).
        A batch (2-D array, list of lists) gives a list of texts, as in transformers."""
        if _is_batch(token_ids):
            return self.batch_decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)
        if isinstance(token_ids, (int, np.integer)):
            token_ids = [int(token_ids)]
        ids = cast("Iterable[int]", token_ids)  # not a batch: one sequence
        return self._decode(ids, skip_special_tokens, clean_up_tokenization_spaces)

    def _decode(
        self,
        ids: Iterable[int],
        skip_special_tokens: bool,
        clean_up_tokenization_spaces: bool | None,
    ) -> str:
        tokens = self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)
        text = "".join(tokens).replace("</w>", " ").strip()
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if clean_up_tokenization_spaces:
            for before, after in (
                (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
            ):  # fmt: skip
                text = text.replace(before, after)
        return text

    def batch_decode(
        self,
        sequences: Sequence[int] | Sequence[Iterable[int]] | np.ndarray,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """A batch of id sequences (a list of lists or a 2-D array) -> one text each."""
        if len(sequences) == 0:
            return []
        if not _is_batch(sequences):  # one sequence: transformers decodes it, as a list of one
            ids = cast("Sequence[int]", sequences)
            return [self._decode(ids, skip_special_tokens, clean_up_tokenization_spaces)]
        return [
            self._decode(ids, skip_special_tokens, clean_up_tokenization_spaces)
            for ids in sequences
        ]

    # -- encoding -----------------------------------------------------------------------------

    def build_inputs_with_special_tokens(
        self, ids: list[int], pair_ids: list[int] | None = None
    ) -> list[int]:
        """<s> A </s>, or <s> A </s> B </s>."""
        bos, sep = self.bos_token_id, self.sep_token_id
        if bos is None or sep is None:
            raise ValueError(
                "special tokens need a bos_token and a sep_token, and this tokenizer lacks one: "
                "pass add_special_tokens=False"
            )
        if pair_ids is None:
            return [bos, *ids, sep]
        return [bos, *ids, sep, *pair_ids, sep]

    def _prepare(
        self,
        ids: list[int],
        pair_ids: list[int] | None,
        add_special_tokens: bool,
        truncation: str,
        max_length: int | None,
    ) -> tuple[list[int], list[int]]:
        """Ids of one text (and its pair) -> (input_ids, token_type_ids), truncated."""
        n_special = (2 if pair_ids is None else 3) if add_special_tokens else 0
        total = len(ids) + len(pair_ids or []) + n_special
        if truncation != "do_not_truncate" and max_length and total > max_length:
            ids, pair_ids = truncate_sequences(
                ids, pair_ids, total - max_length, truncation, self.truncation_side
            )
        if not add_special_tokens:
            sequence = ids + (pair_ids or [])
            return sequence, [0] * len(sequence)
        sequence = self.build_inputs_with_special_tokens(ids, pair_ids)
        n_first = len(ids) + 2
        return sequence, [0] * n_first + [1] * (len(sequence) - n_first)

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
    ) -> list[int]:
        """One text (and an optional pair) -> ids: <s> A </s> or <s> A </s> B </s>."""
        _check_text(text, "text")
        if text_pair is not None:
            _check_text(text_pair, "text_pair")
        padding, truncation, max_length = padding_truncation_strategies(
            padding, truncation, max_length, self.model_max_length, self.pad_token_id
        )
        pair_ids = None if text_pair is None else self._text_ids(text_pair)
        sequence, _ = self._prepare(
            self._text_ids(text), pair_ids, add_special_tokens, truncation, max_length
        )
        if padding == "max_length" and max_length is not None and len(sequence) < max_length:
            assert self.pad_token_id is not None  # padding_truncation_strategies checked it
            pads = [self.pad_token_id] * (max_length - len(sequence))
            sequence = sequence + pads if self.padding_side == "right" else pads + sequence
        return sequence

    def __call__(
        self,
        texts: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        return_token_type_ids: bool | None = False,
        return_tensors: str = "np",
        *,
        add_special_tokens: bool = True,
    ) -> dict[str, np.ndarray]:
        """Texts (and optional pairs) -> int64 arrays "input_ids", "attention_mask" [batch, seq]
        (+ "token_type_ids": 0 for <s> A </s>, 1 for B </s>), padded with the pad id.

        A single string is a batch of one. return_token_type_ids=None follows transformers'
        default (returned when the tokenizer's model_input_names list it).
        """
        if return_tensors != "np":
            raise ValueError(f"return_tensors must be 'np', got {return_tensors!r}")
        texts, pairs = _check_batch(texts, text_pair)
        padding, truncation, max_length = padding_truncation_strategies(
            padding, truncation, max_length, self.model_max_length, self.pad_token_id
        )
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names

        rows, types = [], []
        for i, text in enumerate(texts):
            pair_ids = None if pairs is None else self._text_ids(pairs[i])
            sequence, token_types = self._prepare(
                self._text_ids(text), pair_ids, add_special_tokens, truncation, max_length
            )
            rows.append(sequence)
            types.append(token_types)

        input_ids, token_type_ids, attention_mask = pad(
            rows, types, padding, max_length, self.pad_token_id, self.padding_side
        )
        out = {"input_ids": input_ids}
        if return_token_type_ids:
            out["token_type_ids"] = token_type_ids
        out["attention_mask"] = attention_mask
        return out

    def __repr__(self) -> str:
        return (
            f"FlaubertTokenizer(vocab_size={self.vocab_size}, do_lowercase={self.do_lowercase}, "
            f"model_max_length={self.model_max_length})"
        )


def _remember(cache: dict[str, Any], word: str, value: Any) -> None:
    """Cache a word's pieces or ids, keeping the cache bounded: a stream of millions of sentences
    keeps bringing new words, and an unbounded cache would grow with it. Emptying it when full is
    crude but costs nothing on the hot path, and the frequent words come straight back. A long
    word is not cached: it is rare, and one line without spaces would hold megabytes."""
    if len(word) > MAX_CACHED_WORD_LENGTH:
        return
    if len(cache) >= WORD_CACHE_SIZE:
        cache.clear()
    cache[word] = value


def _is_batch(ids: Any) -> TypeGuard[Sequence[Iterable[int]] | np.ndarray]:
    """A 2-D array or a non-empty sequence of sequences of ids."""
    if isinstance(ids, np.ndarray):
        return ids.ndim == 2
    return isinstance(ids, (list, tuple)) and len(ids) > 0 and not np.isscalar(ids[0])


def _check_text(text: Any, where: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a str, got {type(text).__name__}: {text!r:.60}")


def _check_batch(texts: Any, text_pair: Any) -> tuple[list[str], list[str] | None]:
    """texts (str or list of str) and text_pair (same shape, or None) -> two lists."""
    if isinstance(texts, str):
        if text_pair is not None:
            _check_text(text_pair, "text_pair (texts is a single str)")
        return [texts], None if text_pair is None else [text_pair]
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
    if not texts:
        raise ValueError("texts is empty: nothing to tokenize")
    for i, text in enumerate(texts):
        _check_text(text, f"texts[{i}]")
    if text_pair is None:
        return list(texts), None
    if not isinstance(text_pair, (list, tuple)):
        raise TypeError(
            f"text_pair must be a list of str like texts, got {type(text_pair).__name__}"
        )
    if len(text_pair) != len(texts):
        raise ValueError(f"text_pair has {len(text_pair)} items but texts has {len(texts)}")
    for i, text in enumerate(text_pair):
        _check_text(text, f"text_pair[{i}]")
    return list(texts), list(text_pair)
