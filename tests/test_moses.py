"""flaubert_np/moses.py: each piece of the Moses pipeline against its original (transformers'
functions, sacremoses' normaliser)."""

import random

import pytest
import sacremoses
from conftest import EDGE_TEXTS

from flaubert_np.moses import PunctNormalizer, remove_non_printing_char, replace_unicode_punct


@pytest.mark.oracle
def test_replace_unicode_punct_random_strings():
    from transformers.models.flaubert import tokenization_flaubert as hf_flaubert

    alphabet = "，。、”“∶：？《》）！（；」「０１２３４５６７８９．～’…━〈〉【】％ \t\u3000\u00a0a."
    rng = random.Random(1)
    for _ in range(3000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 12)))
        assert replace_unicode_punct(text) == hf_flaubert.replace_unicode_punct(text), repr(text)


@pytest.mark.oracle
def test_remove_non_printing_char_every_code_point():
    from transformers.models.flaubert import tokenization_flaubert as hf_flaubert

    every = "".join(map(chr, range(0x110000)))
    assert remove_non_printing_char(every) == hf_flaubert.remove_non_printing_char(every)
    assert remove_non_printing_char("Déjà vu !") == "Déjà vu !"


def test_punct_normalizer_matches_sacremoses(stsb_sentences):
    ours = PunctNormalizer("fr")
    reference = sacremoses.MosesPunctNormalizer(lang="fr")
    texts = [*stsb_sentences[:3000], *(s.lower() for s in stsb_sentences[:500])]
    texts += list(EDGE_TEXTS.values())
    alphabet = " \u00a0()%:;`'„“”–—´‘‚’…«»ºCcm?!,.\"<5a\r"
    rng = random.Random(2)
    texts += ["".join(rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(3000)]
    for text in texts:
        assert ours.normalize(text) == reference.normalize(text), repr(text)
