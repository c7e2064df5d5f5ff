"""flaubert_np/added_tokens.py: the trie that cuts a text on its added tokens, against
transformers' (the special/added token resolution is checked through whole tokenizer folders in
test_tokenizer.py's layouts)."""

import random

import pytest

from flaubert_np.added_tokens import Trie


@pytest.mark.oracle
def test_trie_matches_transformers_on_random_tokens():
    """Overlapping added tokens included: the ported trie cuts exactly where transformers' does."""
    from transformers.tokenization_python import Trie as HFTrie

    rng = random.Random(3)
    for _ in range(3000):
        words = [
            "".join(rng.choices("ab<>", k=rng.randint(1, 4))) for _ in range(rng.randint(1, 4))
        ]
        text = "".join(rng.choices("ab<> ", k=rng.randint(0, 14)))
        reference = HFTrie()
        for word in words:
            reference.add(word)
        assert Trie(words).split(text) == reference.split(text), (words, text)
