"""Added tokens: tokens such as "<special1>" or "<pad>" that a text keeps whole, and where they
come from in a tokenizer folder.

transformers' PreTrainedTokenizer cuts a text on its added tokens with a trie before Moses and BPE
see it, and decides which tokens are special and added from tokenizer_config.json,
special_tokens_map.json and added_tokens.json (tokenization_utils_base.py: _from_pretrained, then
__init__). Both are reproduced here, quirks included: the promise is identical ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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


def split_on_added_tokens(
    text: str, trie: Trie, decoder: dict[int, AddedToken], encoder: dict[str, int]
) -> list[tuple[str, bool]]:
    """text -> [(piece, is_added_token)], cut by the trie of the added tokens (by id in decoder,
    by content in encoder), with their lstrip/rstrip/single_word, as transformers' tokenize."""
    pieces = trie.split(text)
    for i, piece in enumerate(pieces):
        index = encoder.get(piece)
        if index is None:
            continue
        token = decoder[index]
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
    return [(p, p in encoder) for p in pieces if p]


def register_special_tokens(
    vocab: dict[str, int], added_tokens: dict[int, AddedToken], special_tokens: Iterable[str]
) -> tuple[dict[int, AddedToken], dict[str, int]]:
    """(added tokens by id, their ids by content), with the special tokens they lack added: each
    takes its id in vocab.json or, if absent, the next free one (the vocabulary's length)."""
    decoder = dict(added_tokens)
    encoder = {t.content: i for i, t in decoder.items()}
    current = dict(vocab, **{t.content: i for i, t in sorted(decoder.items())})
    next_index = len(current)
    for content in special_tokens:
        if content in encoder or content == "":
            continue
        if content not in current:
            current[content] = next_index
            next_index += 1
        index = current[content]
        decoder[index] = AddedToken(content, special=True, normalized=False)
        encoder[content] = index
    return decoder, encoder


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


def special_and_added_tokens(
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
