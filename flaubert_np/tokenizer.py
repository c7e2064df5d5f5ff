"""FlauBERT tokenizer: Moses pre-tokenisation, then BPE; token for token what transformers gives.

The reference is transformers 5's `FlaubertTokenizer` (models/flaubert/tokenization_flaubert.py)
and its base class `PreTrainedTokenizer` (tokenization_python.py, tokenization_utils_base.py):

    "Il fait <special1>"  --split on added/special tokens (a trie)-->  "Il fait ", "<special1>"
    each other piece      --`` and '' to ", NFC, lower-case if do_lowercase-->
                          --Moses: unicode punctuation, MosesPunctNormalizer('fr'),
                            category-C characters dropped, MosesTokenizer('fr')-->  ["il", "fait"]
                          --BPE by merge rank, "</w>" marks a word end-->  ["il</w>", "fait</w>"]
    ids (pieces not in vocab.json -> <unk>), "<s> A </s>" or "<s> A </s> B </s>", truncation,
    padding -> int64 NumPy arrays.

Where transformers has quirks (how merges.txt is read, its trie, its truncation arithmetic) they are
reproduced, not fixed: the promise is identical ids.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from flaubert_np.files import ModelFileError, read_json, read_json_object, read_text

# transformers' "no limit" model_max_length, and the bound above which a length counts as "no limit"
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)
WORD_CACHE_SIZE = 20_000  # words whose BPE pieces and ids are cached (see _make_room)

# The named special tokens, in transformers 5's order (SPECIAL_TOKENS_ATTRIBUTES).
SPECIAL_TOKEN_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
# FlaubertTokenizer's defaults when tokenizer_config.json does not name a token.
DEFAULT_SPECIAL_TOKENS = {
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "cls_token": "</s>",
    "mask_token": "<special1>",
}
DEFAULT_EXTRA_SPECIAL_TOKENS = tuple(f"<special{i}>" for i in range(10))

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")


# ---------------------------------------------------------------------------------------------
# Text -> Moses words (no vocabulary needed; tools/learn_bpe.py uses the same function)
# ---------------------------------------------------------------------------------------------

# Moses' replace-unicode-punctuation.perl as transformers' replace_unicode_punct: one-character
# replacements (a table) and the two full stops that also eat the spaces after them (a regex).
_UNICODE_PUNCT = str.maketrans(
    {
        "，": ",", "、": ",", "”": '"', "“": '"', "∶": ":", "：": ":", "？": "?", "《": '"',
        "》": '"', "）": ")", "！": "!", "（": "(", "；": ";", "１": "1", "」": '"', "「": '"',
        "０": "0", "３": "3", "２": "2", "５": "5", "６": "6", "９": "9", "７": "7", "８": "8",
        "４": "4", "～": "~", "’": "'", "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[",
        "】": "]", "％": "%",
    }
)  # fmt: skip
_FULL_STOPS = re.compile(r"[。．]\s*")


def replace_unicode_punct(text: str) -> str:
    """Full-width and typographic punctuation -> ASCII (’ -> ', … -> ..., 。 -> ". ")."""
    # No replacement creates a full stop or a space, so the regex can run first.
    return _FULL_STOPS.sub(". ", text).translate(_UNICODE_PUNCT)


def remove_non_printing_char(text: str) -> str:
    """Drop every character of Unicode category C (control, format, unassigned, private use)."""
    if text.isprintable():  # no category C or Z character except the space: nothing to drop
        return text
    return "".join([c for c in text if c.isprintable() or unicodedata.category(c)[0] != "C"])


_REGEX_SYNTAX = frozenset(".^$*+?{}[]\\|()")


class PunctNormalizer:
    """sacremoses' MosesPunctNormalizer(lang).normalize, with its regexes compiled once.

    sacremoses runs `re.sub(pattern_string, ...)` ~45 times a text, each a regex-cache lookup.
    Here each substitution is compiled once, and one that is a plain string both ways becomes
    `str.replace` behind an `in` test (same result, a fraction of the time). The reference
    `normalize_reference` is sacremoses itself; tests check that both agree.
    """

    def __init__(self, lang: str = "fr"):
        import sacremoses  # imported on first use: it loads large Unicode tables

        self._reference = sacremoses.MosesPunctNormalizer(lang=lang)
        self.normalize_reference = self._reference.normalize
        self._steps: list[tuple[str | None, Any, str]] = []
        for pattern, replacement in self._reference.substitutions:
            if _REGEX_SYNTAX.isdisjoint(pattern) and "\\" not in replacement:
                self._steps.append((pattern, None, replacement))
            else:
                self._steps.append((None, re.compile(pattern), replacement))

    def normalize(self, text: str) -> str:
        for literal, regex, replacement in self._steps:
            if regex is not None:
                text = regex.sub(replacement, text)
            elif literal in text:
                text = text.replace(literal, replacement)
        return text.strip()


@functools.cache
def _moses_fr() -> tuple[PunctNormalizer, Any]:
    import sacremoses

    return PunctNormalizer("fr"), sacremoses.MosesTokenizer(lang="fr")


def moses_words(text: str, do_lowercase: bool) -> list[str]:
    """FlaubertTokenizer's pre-processing and Moses pipeline: one text -> its Moses words."""
    normalizer, moses = _moses_fr()
    text = unicodedata.normalize("NFC", text.replace("``", '"').replace("''", '"'))
    if do_lowercase:
        text = text.lower()
    text = remove_non_printing_char(normalizer.normalize(replace_unicode_punct(text)))
    return moses.tokenize(text, return_str=False, escape=False)


def bpe(word: str, ranks: dict[tuple[str, ...], int]) -> list[str]:
    """One Moses word -> its BPE pieces: merge the best-ranked adjacent pair, everywhere, again."""
    symbols = [*word[:-1], word[-1] + "</w>"]
    while len(symbols) > 1:
        best = min(pairwise(symbols), key=lambda pair: ranks.get(pair, VERY_LARGE_INTEGER))
        if best not in ranks:
            break
        first, second = best
        merged, i = [], 0
        while i < len(symbols):  # left to right, so "a a a" with (a, a) gives "aa a"
            if symbols[i] == first and i + 1 < len(symbols) and symbols[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


# ---------------------------------------------------------------------------------------------
# Added tokens: the trie that keeps "<special1>" or "<pad>" written in a text as one token
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddedToken:
    """A token matched in raw text before Moses (transformers' AddedToken, same fields)."""

    content: str
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    special: bool = False
    normalized: bool | None = None


class Trie:
    """transformers' Trie.split, ported statement for statement.

    It cuts a text on the added tokens, preferring the earliest start, then the longest match.
    Its lookahead has corner cases (overlapping added tokens) that a regex would resolve
    differently, so it is kept as is: identical cuts are the point.
    """

    def __init__(self, words: Iterable[str]):
        self.data: dict = {}
        for word in words:
            if not word:
                continue
            node = self.data
            for char in word:
                node = node.setdefault(char, {})
            node[""] = 1  # "" marks the end of a word

    def split(self, text: str) -> list[str]:
        if not any(first_char in text for first_char in self.data):
            return [text] if text else []
        states: dict[int, dict] = {}  # start offset of each partial match -> its trie node
        offsets = [0]
        skip = 0
        for current, current_char in enumerate(text):
            if skip and current < skip:
                continue
            to_remove = set()
            reset = False
            for start, node in states.items():
                if "" in node:
                    # A match ended: look ahead for the longest one, from the earliest start.
                    for lookstart, looknode in states.items():
                        if lookstart > start:
                            break
                        if lookstart < start:
                            lookahead_index = current + 1
                            end = current + 1
                        else:
                            lookahead_index = current
                            end = current
                        next_char = text[lookahead_index] if lookahead_index < len(text) else None
                        if "" in looknode:
                            start, end, skip = lookstart, lookahead_index, lookahead_index
                        while next_char in looknode:
                            looknode = looknode[next_char]
                            lookahead_index += 1
                            if "" in looknode:
                                start, end, skip = lookstart, lookahead_index, lookahead_index
                            if lookahead_index == len(text):
                                break
                            next_char = text[lookahead_index]
                    offsets += [start, end]
                    reset = True
                    break
                if current_char in node:
                    states[start] = node[current_char]
                else:
                    to_remove.add(start)
            if reset:
                states = {}
            else:
                for start in to_remove:
                    del states[start]
            if current >= skip and current_char in self.data:
                states[current] = self.data[current_char]
        for start, node in states.items():
            if "" in node:
                offsets += [start, len(text)]
                break
        offsets.append(len(text))
        pieces, start = [], 0
        for end in offsets:
            if start < end:
                pieces.append(text[start:end])
                start = end
        return pieces


# ---------------------------------------------------------------------------------------------
# Reading a Hub repository's tokenizer files
# ---------------------------------------------------------------------------------------------


def read_merges(path: Path) -> dict[tuple[str, ...], int]:
    """merges.txt -> {(left, right): rank}, read exactly as transformers reads it.

    The text after the last newline is dropped (so is a last merge without a trailing newline),
    each line keeps its first two whitespace-separated fields (a "#version" header becomes a
    harmless "merge"), and a repeated merge keeps its last rank.
    """
    lines = read_text(path).split("\n")[:-1]
    return {tuple(line.split()[:2]): rank for rank, line in enumerate(lines)}


def _token_content(value: Any, where: str) -> str:
    """A token as the JSON files store it: a string, or an AddedToken object with "content"."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(f"{where}: expected a token (a string or an AddedToken object), got {value!r}")


def _added_token(value: Any, where: str) -> AddedToken:
    """An entry of added_tokens_decoder (an AddedToken object) -> AddedToken."""
    content = _token_content(value, where)
    flags = ("single_word", "lstrip", "rstrip", "special", "normalized")
    return AddedToken(
        content, **{k: value[k] for k in flags if isinstance(value, dict) and k in value}
    )


def _special_and_added_tokens(
    config: dict, special_tokens_map: dict | None, added_tokens_json: dict | None
) -> tuple[dict[str, str], list[str], dict[int, AddedToken]]:
    """(named special tokens, extra special tokens, added tokens by id), decided as transformers 5
    decides them (tokenization_utils_base.py: _from_pretrained, then __init__).

    - Extra special tokens: `extra_special_tokens` (transformers 5 layout) or, when that is
      missing or empty, `additional_special_tokens` (transformers 4 layout, which also writes
      `"extra_special_tokens": {}`); FlaubertTokenizer's <special0>..<special9> when neither.
    - Any other "*_token" key naming a token is a named special token too, after the 7 usual ones.
    - Added tokens, with their lstrip/rstrip/single_word, come from `added_tokens_decoder`. Only
      without it are the legacy files read: special_tokens_map.json (its tokens override the
      config's) and added_tokens.json (content -> id).
    """
    config = dict(config)
    if "additional_special_tokens" in config and not config.get("extra_special_tokens"):
        config["extra_special_tokens"] = config.pop("additional_special_tokens")
    # Other "*_token" keys: strings first taken aside ("explicit"), AddedToken objects later.
    explicit = {
        key: config.pop(key)
        for key in list(config)
        if key.endswith("_token")
        and key not in SPECIAL_TOKEN_NAMES
        and isinstance(config[key], str)
    }
    if isinstance(config.get("extra_special_tokens"), dict):
        explicit.update(config.pop("extra_special_tokens"))

    added: dict[int, AddedToken] = {}
    if "added_tokens_decoder" in config:
        decoder = config["added_tokens_decoder"]
        if not isinstance(decoder, dict):
            raise ValueError("tokenizer_config.json: added_tokens_decoder must be an object")
        for index, token in decoder.items():
            added[int(index)] = _added_token(token, f"added_tokens_decoder[{index}]")
    else:
        for key, value in (special_tokens_map or {}).items():
            if key == "extra_special_tokens" and isinstance(value, list):
                value = [*(config.get("extra_special_tokens") or []), *value]
            config[key] = value
        if isinstance(config.get("extra_special_tokens"), dict):
            explicit.update(config.pop("extra_special_tokens"))
        for content, index in (added_tokens_json or {}).items():
            if not isinstance(index, int):
                raise ValueError(f"added_tokens.json: the id of {content!r} is not an integer")
            added[index] = AddedToken(content)

    named = {}
    for key in SPECIAL_TOKEN_NAMES:  # FlaubertTokenizer's defaults fill the gaps
        value = config.get(key, DEFAULT_SPECIAL_TOKENS.get(key))
        if value is not None:
            named[key] = _token_content(value, key)
    for key, value in config.items():  # the other "*_token" tokens left (AddedToken objects...)
        if key.endswith("_token") and key not in SPECIAL_TOKEN_NAMES:
            if isinstance(value, str) or (isinstance(value, dict) and "content" in value):
                named[key] = _token_content(value, key)
    for key, value in explicit.items():
        named[key] = _token_content(value, key)

    if "extra_special_tokens" in config:
        extras = config["extra_special_tokens"] or []
    else:
        extras = config.get("additional_special_tokens", DEFAULT_EXTRA_SPECIAL_TOKENS)
    if not isinstance(extras, (list, tuple)):
        raise ValueError("tokenizer files: extra_special_tokens must be a list of tokens")
    return named, [_token_content(t, "extra_special_tokens") for t in extras], added


# ---------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------


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
        # Added tokens by id; special tokens missing from them are added, taking the id they
        # have in vocab.json or, if absent, the next free one (len of the vocabulary).
        self.added_tokens_decoder: dict[int, AddedToken] = dict(added_tokens or {})
        self.added_tokens_encoder = {t.content: i for i, t in self.added_tokens_decoder.items()}
        current = dict(self.encoder, **self._sorted_added_encoder())
        next_index = len(current)
        for content in self.all_special_tokens:
            if content in self.added_tokens_encoder or content == "":
                continue
            if content not in current:
                current[content] = next_index
                next_index += 1
            index = current[content]
            self.added_tokens_decoder[index] = AddedToken(content, special=True, normalized=False)
            self.added_tokens_encoder[content] = index
        self._trie = Trie(t.content for t in self.added_tokens_decoder.values())
        self._unk_id = self.encoder.get(self.special_tokens_map.get("unk_token"))
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
    def from_pretrained(cls, model_dir: str | Path) -> FlaubertTokenizer:
        """Read vocab.json, merges.txt and the optional tokenizer_config.json,
        special_tokens_map.json and added_tokens.json of a FlauBERT repository."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"tokenizer directory not found: {model_dir}")
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
        named, extras, added = _special_and_added_tokens(
            config, optional_json("special_tokens_map.json"), optional_json("added_tokens.json")
        )
        max_length = config.get("model_max_length", config.get("max_len"))
        if max_length is not None and (not isinstance(max_length, int) or max_length < 0):
            raise ValueError(f"tokenizer_config.json: model_max_length {max_length!r} is invalid")
        return cls(
            vocab,
            read_merges(model_dir / "merges.txt"),
            do_lowercase=config.get("do_lowercase", False),
            special_tokens=named,
            extra_special_tokens=extras,
            added_tokens=added,
            model_max_length=max_length,
            split_special_tokens=config.get("split_special_tokens", False),
            padding_side=config.get("padding_side", "right"),
            truncation_side=config.get("truncation_side", "right"),
            model_input_names=config.get("model_input_names") or ("input_ids", "attention_mask"),
            clean_up_tokenization_spaces=config.get("clean_up_tokenization_spaces", False),
        )

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
        """text -> [(piece, is_added_token)], with the added tokens' lstrip/rstrip/single_word."""
        if self.split_special_tokens:
            return [(text, False)]
        pieces = self._trie.split(text)
        for i, piece in enumerate(pieces):
            index = self.added_tokens_encoder.get(piece)
            if index is None:
                continue
            token = self.added_tokens_decoder[index]
            left = pieces[i - 1] if i > 0 else None
            right = pieces[i + 1] if i < len(pieces) - 1 else None
            if token.rstrip and right:
                pieces[i + 1] = right.lstrip()
            if token.lstrip and left:
                pieces[i - 1] = left.rstrip()
            if token.single_word:
                if left and left[-1] != " ":
                    pieces[i - 1] += piece
                    pieces[i] = ""
                elif right and right[0] != " ":
                    pieces[i + 1] = piece + pieces[i + 1]
                    pieces[i] = ""
        return [(p, p in self.added_tokens_encoder) for p in pieces if p]

    def _word_pieces(self, word: str) -> list[str]:
        """A Moses word -> its BPE pieces, cached: a corpus repeats its words."""
        pieces = self._bpe_cache.get(word)
        if pieces is None:
            _make_room(self._bpe_cache)
            pieces = self._bpe_cache[word] = bpe(word, self.bpe_ranks)
        return pieces

    def _word_ids(self, word: str) -> list[int]:
        """A Moses word -> the ids of its BPE pieces, cached."""
        ids = self._ids_cache.get(word)
        if ids is None:
            _make_room(self._ids_cache)
            ids = self._ids_cache[word] = self.convert_tokens_to_ids(self._word_pieces(word))
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

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Token(s) -> id(s): added tokens first, then vocab.json, else the <unk> id."""
        if isinstance(tokens, str):
            index = self.added_tokens_encoder.get(tokens)
            if index is None:
                index = self.encoder.get(tokens, self._unk_id)
                if index is None:
                    raise ValueError(
                        f"token {tokens!r} is not in vocab.json, and neither is the unknown token "
                        f"{self.special_tokens_map.get('unk_token')!r}"
                    )
            return index
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def convert_ids_to_tokens(
        self, ids: int | Iterable[int], skip_special_tokens: bool = False
    ) -> str | list[str]:
        """Id(s) -> token(s); an id in neither vocabulary gives the unknown token."""
        if isinstance(ids, (int, np.integer)):
            ids = int(ids)
            token = self.added_tokens_decoder.get(ids)
            if token is not None:
                return token.content
            return self.decoder.get(ids, self.special_tokens_map.get("unk_token"))
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.convert_ids_to_tokens(int(i)) for i in ids if int(i) not in skip]

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
            token_ids = [token_ids]
        tokens = self.convert_ids_to_tokens(token_ids, skip_special_tokens=skip_special_tokens)
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
        sequences: Iterable[Iterable[int]],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """A batch of id sequences (a list of lists or a 2-D array) -> one text each."""
        if len(sequences) == 0:
            return []
        if not _is_batch(sequences):  # one sequence: transformers decodes it, as a list of one
            return [self.decode(sequences, skip_special_tokens, clean_up_tokenization_spaces)]
        return [
            self.decode(ids, skip_special_tokens, clean_up_tokenization_spaces) for ids in sequences
        ]

    # -- encoding -----------------------------------------------------------------------------

    def build_inputs_with_special_tokens(
        self, ids: list[int], pair_ids: list[int] | None = None
    ) -> list[int]:
        """<s> A </s>, or <s> A </s> B </s>."""
        if pair_ids is None:
            return [self.bos_token_id, *ids, self.sep_token_id]
        return [self.bos_token_id, *ids, self.sep_token_id, *pair_ids, self.sep_token_id]

    def _strategies(
        self, padding: bool | str, truncation: bool | str | None, max_length: int | None
    ) -> tuple[str, str, int | None]:
        """The argument rules of transformers' _get_padding_truncation_strategies."""
        if max_length is not None and (
            not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool)
        ):
            raise TypeError(f"max_length must be an int or None, got {type(max_length).__name__}")
        if max_length is not None and max_length < 0:
            raise ValueError(f"max_length must be >= 0, got {max_length}")
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # transformers: max_length alone turns truncation on
        if padding is True:
            padding = "longest"
        elif padding is False:
            padding = "do_not_pad"
        elif padding not in PADDING_STRATEGIES:
            raise ValueError(
                f"padding must be True, False or one of {PADDING_STRATEGIES}, got {padding!r}"
            )
        if truncation is True:
            truncation = "longest_first"
        elif truncation is None or truncation is False:
            truncation = "do_not_truncate"
        elif truncation not in TRUNCATION_STRATEGIES:
            raise ValueError(
                f"truncation must be True, False, None or one of {TRUNCATION_STRATEGIES}, "
                f"got {truncation!r}"
            )
        if max_length is None:
            # No max_length: use model_max_length, unless that is "no limit".
            if padding == "max_length":
                if self.model_max_length > LARGE_INTEGER:
                    padding = "do_not_pad"
                else:
                    max_length = self.model_max_length
            if truncation != "do_not_truncate":
                if self.model_max_length > LARGE_INTEGER:
                    truncation = "do_not_truncate"
                else:
                    max_length = self.model_max_length
        if padding != "do_not_pad" and self.pad_token_id is None:
            raise ValueError("padding needs a pad token, and this tokenizer has none")
        return padding, truncation, None if max_length is None else int(max_length)

    def _truncate(
        self, ids: list[int], pair_ids: list[int] | None, n_remove: int, strategy: str
    ) -> tuple[list[int], list[int] | None]:
        """Remove n_remove tokens, as transformers 5's truncate_sequences (slices and all)."""
        right = self.truncation_side == "right"
        if strategy == "only_first" or (strategy == "longest_first" and pair_ids is None):
            ids = ids[:-n_remove] if right else ids[n_remove:]
        elif strategy == "longest_first":
            # The longer sequence loses tokens until both have the same length, then both lose
            # half of what remains (the second sequence the odd one).
            first_remove = min(abs(len(pair_ids) - len(ids)), n_remove)
            second_remove = n_remove - first_remove
            if len(ids) > len(pair_ids):
                ids_cut = first_remove + second_remove // 2
                pair_cut = second_remove - second_remove // 2
            else:
                ids_cut = second_remove // 2
                pair_cut = first_remove + second_remove - second_remove // 2
            if right:
                ids = ids[:-ids_cut] if ids_cut > 0 else ids
                pair_ids = pair_ids[:-pair_cut] if pair_ids and pair_cut > 0 else pair_ids
            else:
                ids = ids[ids_cut:]
                pair_ids = pair_ids[pair_cut:] if pair_ids else None  # sic: [] becomes no pair
        elif strategy == "only_second" and pair_ids:
            pair_ids = pair_ids[:-n_remove] if right else pair_ids[n_remove:]
        return ids, pair_ids

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
            ids, pair_ids = self._truncate(ids, pair_ids, total - max_length, truncation)
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
        padding, truncation, max_length = self._strategies(padding, truncation, max_length)
        pair_ids = None if text_pair is None else self._text_ids(text_pair)
        sequence, _ = self._prepare(
            self._text_ids(text), pair_ids, add_special_tokens, truncation, max_length
        )
        if padding == "max_length" and len(sequence) < max_length:
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
        padding, truncation, max_length = self._strategies(padding, truncation, max_length)
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

        # Lengths after padding: to the longest, or up to max_length (padding never cuts).
        lengths = [len(row) for row in rows]
        if padding == "longest":
            lengths = [max(lengths)] * len(rows)
        elif padding == "max_length":
            lengths = [max(n, max_length) for n in lengths]
        width = max(lengths)
        if min(lengths) != width:
            raise ValueError(
                f"the sequences have different lengths ({min(lengths)} to {width} tokens) and "
                "make no array: pass padding=True (and truncation=True with padding='max_length')"
            )
        fill = 0 if self.pad_token_id is None else self.pad_token_id
        input_ids = np.full((len(rows), width), fill, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
        for i, (row, token_types) in enumerate(zip(rows, types, strict=True)):
            start = 0 if self.padding_side == "right" else width - len(row)
            span = slice(start, start + len(row))
            input_ids[i, span] = row
            attention_mask[i, span] = 1
            token_type_ids[i, span] = token_types
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


# ---------------------------------------------------------------------------------------------
# Input checks: one clear error naming the bad item, never a silent drop
# ---------------------------------------------------------------------------------------------


def _make_room(cache: dict) -> None:
    """Keep a word cache bounded: a stream of millions of sentences keeps bringing new words, and
    an unbounded cache would grow with it. Emptying it when full is crude but costs nothing on
    the hot path, and the frequent words come straight back."""
    if len(cache) >= WORD_CACHE_SIZE:
        cache.clear()


def _is_batch(ids: Any) -> bool:
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
