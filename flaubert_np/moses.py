"""Text -> Moses words: FlaubertTokenizer's pre-processing and Moses pipeline, before BPE.

transformers' FlaubertTokenizer (models/flaubert/tokenization_flaubert.py) runs, on each piece of
text between added tokens: `` and '' -> ", NFC, lower-casing if do_lowercase, then its
moses_pipeline (replace_unicode_punct, MosesPunctNormalizer('fr'), remove_non_printing_char) and
MosesTokenizer('fr'). `moses_words` is that whole path; tools/learn_bpe.py uses it too, so that
learned vocabularies see the text exactly as the tokenizer does.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

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
        self._steps: list[tuple[str, re.Pattern[str] | None, str]] = []
        for pattern, replacement in self._reference.substitutions:
            if _REGEX_SYNTAX.isdisjoint(pattern) and "\\" not in replacement:
                self._steps.append((pattern, None, replacement))
            else:
                self._steps.append((pattern, re.compile(pattern), replacement))

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
