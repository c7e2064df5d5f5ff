"""flaubert_np/tokenizer.py against transformers' FlaubertTokenizer: identical tokens and ids.

The tokenizer folders come from conftest's `tokenizer_dirs` (a 5,000-merge BPE learned from the
STS sentences, written by transformers' save_pretrained), do_lowercase true ("uncased") and false
("cased"). Every comparison runs the same input through both tokenizers.
"""

import itertools
import json
import random
import shutil
import warnings

import numpy as np
import pytest
import transformers
from conftest import EDGE_TEXTS

from flaubert_np.tokenizer import FlaubertTokenizer

pytestmark = pytest.mark.oracle

transformers.logging.set_verbosity_error()  # truncation warnings are expected here


@pytest.fixture(scope="module", params=["uncased", "cased"])
def tokenizers(request, tokenizer_dirs):
    """(transformers' FlaubertTokenizer, ours), loaded from the same folder."""
    folder = tokenizer_dirs[request.param]
    return (
        transformers.FlaubertTokenizer.from_pretrained(str(folder)),
        FlaubertTokenizer.from_pretrained(folder),
    )


def hf_arrays(ref, *args, **kwargs):
    """transformers' __call__ with NumPy output; None when it gives ragged (object) arrays."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {k: np.asarray(v) for k, v in ref(*args, return_tensors="np", **kwargs).items()}
    return None if any(v.dtype == object for v in out.values()) else out


def assert_same_arrays(expected, actual):
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert actual[key].dtype == np.int64, key
        np.testing.assert_array_equal(actual[key], value, err_msg=key)


# ---------------------------------------------------------------------------------------------
# The whole STS corpus (~14,500 sentences), both casings: 100% identical
# ---------------------------------------------------------------------------------------------


def test_corpus_identical(tokenizers, stsb_sentences, monkeypatch):
    """tokenize() on every sentence, then __call__ as sentence-transformers calls it: batches of
    64, padding, longest_first truncation, max_length 128."""
    ref, ours = tokenizers
    ref_tokens = {s: ref.tokenize(s) for s in stsb_sentences}
    different = [s for s, tokens in ref_tokens.items() if ours.tokenize(s) != tokens]
    assert not different, f"{len(different)} sentences differ, e.g. {different[:3]}"

    # transformers' own __call__ (ids, special tokens, truncation, padding), with its tokenize()
    # answered from the pass above: the Moses pipeline need not run twice.
    monkeypatch.setattr(ref, "tokenize", lambda text, **kwargs: list(ref_tokens[text]))
    kwargs = {"padding": True, "truncation": "longest_first", "max_length": 128}
    for start in range(0, len(stsb_sentences), 64):
        batch = stsb_sentences[start : start + 64]
        assert_same_arrays(hf_arrays(ref, batch, **kwargs), ours(batch, **kwargs))


# ---------------------------------------------------------------------------------------------
# Edge cases, one at a time
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", EDGE_TEXTS.values(), ids=EDGE_TEXTS.keys())
def test_edge_case_identical(tokenizers, text):
    ref, ours = tokenizers
    assert ours.tokenize(text) == ref.tokenize(text)
    assert ours.encode(text) == ref.encode(text)
    expected = hf_arrays(ref, text, return_token_type_ids=True)
    actual = ours(text, return_token_type_ids=True)
    assert_same_arrays(expected, actual)
    ids = actual["input_ids"][0]
    assert ours.decode(ids) == ref.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)


def test_edge_cases_as_one_batch_and_as_pairs(tokenizers):
    ref, ours = tokenizers
    texts = list(EDGE_TEXTS.values())
    pairs = texts[::-1]
    kwargs = {"padding": True, "truncation": True, "max_length": 40, "return_token_type_ids": True}
    assert_same_arrays(hf_arrays(ref, texts, pairs, **kwargs), ours(texts, pairs, **kwargs))


def test_long_text_truncated_to_model_max_length(tokenizers):
    """truncation=True and no max_length: transformers cuts at model_max_length (512 here)."""
    ref, ours = tokenizers
    text = " ".join(["Un homme joue de la guitare."] * 200)
    out = ours([text, "court"], padding=True, truncation=True)
    assert out["input_ids"].shape == (2, ours.model_max_length) == (2, 512)
    assert_same_arrays(hf_arrays(ref, [text, "court"], padding=True, truncation=True), out)
    untruncated = ours(text)  # no truncation asked: nothing is cut
    assert untruncated["input_ids"].shape[1] > 512
    assert_same_arrays(hf_arrays(ref, text), untruncated)


# ---------------------------------------------------------------------------------------------
# Pairs, truncation strategies, padding modes, max_length
# ---------------------------------------------------------------------------------------------

PADDINGS = [False, True, "longest", "max_length", "do_not_pad"]
TRUNCATIONS = [None, False, True, "longest_first", "only_first", "only_second", "do_not_truncate"]
MAX_LENGTHS = [None, 0, 1, 3, 4, 5, 8, 13]


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("truncation", TRUNCATIONS)
def test_padding_truncation_grid(tokenizers, stsb_sentences, padding, truncation):
    """Every padding x truncation x max_length, single texts and pairs, with and without
    special tokens: the same arrays, or (where transformers' are ragged) a ValueError."""
    ref, ours = tokenizers
    first = [*stsb_sentences[:3], "", "un"]
    second = [*stsb_sentences[3:5], "deux trois quatre cinq six sept huit neuf", "", "dix"]
    for max_length, pair, special, batch in itertools.product(
        MAX_LENGTHS, [False, True], [True, False], [1, 5]
    ):
        args = (first[:batch], second[:batch]) if pair else (first[:batch],)
        kwargs = dict(
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            add_special_tokens=special,
            return_token_type_ids=True,
        )
        expected = hf_arrays(ref, *args, **kwargs)
        if expected is None:
            with pytest.raises(ValueError, match="different lengths"):
                ours(*args, **kwargs)
        else:
            assert_same_arrays(expected, ours(*args, **kwargs))
        del kwargs["return_token_type_ids"]
        pair_text = second[0] if pair else None
        assert ours.encode(first[0], pair_text, **kwargs) == ref.encode(
            first[0], pair_text, **kwargs
        ), kwargs


def test_pair_layout_and_token_types(tokenizers):
    """<s> A </s> B </s>, token types 0 then 1, right padding with the pad id."""
    ref, ours = tokenizers
    out = ours(["Il pleut.", "Le chat"], ["Oui", "Il dort sur le canapé."], padding=True,
               return_token_type_ids=True)  # fmt: skip
    bos, sep, pad = ours.bos_token_id, ours.sep_token_id, ours.pad_token_id
    assert (bos, sep, pad) == (0, 1, 2) == (ref.bos_token_id, ref.sep_token_id, ref.pad_token_id)
    a = ours.encode("Il pleut.", add_special_tokens=False)
    b = ours.encode("Oui", add_special_tokens=False)
    row = [bos, *a, sep, *b, sep]
    width = out["input_ids"].shape[1]
    assert out["input_ids"][0].tolist() == row + [pad] * (width - len(row))
    assert out["token_type_ids"][0].tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1) + [0] * (
        width - len(row)
    )
    assert out["attention_mask"][0].tolist() == [1] * len(row) + [0] * (width - len(row))
    assert "token_type_ids" not in ours(["Il pleut."], ["Oui"])


# ---------------------------------------------------------------------------------------------
# Tokenizer folders in every layout: transformers 5, transformers 4, legacy files, quirks
# ---------------------------------------------------------------------------------------------

EXTRAS = [f"<special{i}>" for i in range(10)]
SPECIAL_TOKENS_MAP_V4 = {
    "additional_special_tokens": EXTRAS,
    "bos_token": "<s>",
    "cls_token": "</s>",
    "mask_token": "<special1>",
    "pad_token": "<pad>",
    "sep_token": "</s>",
    "unk_token": "<unk>",
}


def added(content, **flags):
    token = {"content": content, "lstrip": False, "normalized": False, "rstrip": False}
    return {**token, "single_word": False, "special": True, **flags}


def layouts(v5_config: dict, n_vocab: int) -> dict[str, dict]:
    """Folder variants: {name: dict(config=..., special_tokens_map=..., added_tokens=...,
    merges=function of merges.txt text)}."""
    decoder = v5_config["added_tokens_decoder"]
    v4 = {k: v for k, v in v5_config.items() if k not in ("extra_special_tokens", "backend")}
    v4.update(additional_special_tokens=EXTRAS, extra_special_tokens={})
    v4["clean_up_tokenization_spaces"] = False
    v4_legacy = {k: v for k, v in v4.items() if k != "added_tokens_decoder"}
    old_added_token = {"__type": "AddedToken", "lstrip": True, "normalized": True}
    old_added_token.update(rstrip=False, single_word=False)
    return {
        "transformers-5": dict(config=v5_config),
        "transformers-4": dict(config=v4, special_tokens_map=SPECIAL_TOKENS_MAP_V4),
        "vocab-and-merges-only": dict(),
        "do-lowercase-only": dict(config={"do_lowercase": True}),
        "legacy": dict(
            config={"do_lowercase": True, "model_max_length": 512},
            special_tokens_map=SPECIAL_TOKENS_MAP_V4,
        ),
        "legacy-added-tokens": dict(
            config={"do_lowercase": False, "max_len": 9},
            special_tokens_map=SPECIAL_TOKENS_MAP_V4,
            added_tokens={"[NEW]": n_vocab, "<ent>": n_vocab + 1},
        ),
        "legacy-added-tokens-out-of-order": dict(
            config={"do_lowercase": True}, added_tokens={"[NEW]": n_vocab + 3, "<ent>": n_vocab}
        ),
        "legacy-map-token-objects": dict(
            config={"do_lowercase": True, "model_max_length": 8, "foo_token": "new_tok"},
            special_tokens_map={
                **SPECIAL_TOKENS_MAP_V4,
                "mask_token": added("<special1>", lstrip=True),
                "bar_token": "NEWTOK",
            },
        ),
        "legacy-extras-from-map": dict(
            config={k: v for k, v in v4_legacy.items() if k != "additional_special_tokens"},
            special_tokens_map={**SPECIAL_TOKENS_MAP_V4, "additional_special_tokens": ["<ent>"]},
            added_tokens={"<ent>": n_vocab + 2},
        ),
        "legacy-config-extras-win": dict(
            config=v4_legacy,
            special_tokens_map={**SPECIAL_TOKENS_MAP_V4, "additional_special_tokens": ["<ent>"]},
        ),
        "old-addedtoken-objects": dict(
            config={
                "do_lowercase": True,
                "mask_token": {**old_added_token, "content": "<special1>"},
                "unk_token": {**old_added_token, "content": "<unk>"},
            }
        ),
        "lstrip-rstrip-single-word": dict(
            config={
                **v5_config,
                "added_tokens_decoder": {
                    **decoder,
                    "5": added("<special1>", lstrip=True, rstrip=True),
                    str(n_vocab): added("<ent>", special=False, single_word=True),
                    str(n_vocab + 1): added("[NEW]", lstrip=True),
                },
            }
        ),
        "split-special-tokens": dict(config={**v5_config, "split_special_tokens": True}),
        "left-padding-and-truncation": dict(
            config={**v5_config, "padding_side": "left", "truncation_side": "left"}
            | {"model_max_length": 6}
        ),
        "new-special-tokens": dict(
            config={
                **v5_config,
                "mask_token": "<mask>",
                "eos_token": "</s>",
                "extra_special_tokens": ["<special0>", "NEWTOK"],
            }
        ),
        "extra-special-tokens-dict": dict(
            config={**v5_config, "extra_special_tokens": {"ent_token": "<ent>"}}
        ),
        "no-extra-no-mask": dict(
            config={**v5_config, "extra_special_tokens": None, "mask_token": None}
        ),
        "model-input-names": dict(
            config={
                **v5_config,
                "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
            }
        ),
        "merges-no-trailing-newline": dict(config=v5_config, merges=lambda m: m.rstrip("\n")),
        "merges-version-header": dict(config=v5_config, merges=lambda m: "#version: 0.2\n" + m),
        "merges-crlf-duplicates-blank": dict(
            config=v5_config,
            merges=lambda m: m.replace("\n", "\r\n", 50) + m.split("\n")[3] + "\n\n x \n",
        ),
    }


LAYOUT_TEXTS = [
    "Il fait <special1> beau <pad> aujourd'hui",
    "x<special3>y  <unk>  z <s>",
    "<mask> et [NEW] et new_tok et NEWTOK et <ent>",
    " <special1> ",
    "a <ent> b<ent>c [NEW]d",
    "Un homme joue de la guitare.",
    "",
]


@pytest.fixture(scope="module")
def layout_dirs(tokenizer_dirs, tmp_path_factory):
    source = tokenizer_dirs["uncased"]
    v5_config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    n_vocab = len(json.loads((source / "vocab.json").read_text(encoding="utf-8")))
    merges = (source / "merges.txt").read_text(encoding="utf-8")
    dirs = {}
    for name, files in layouts(v5_config, n_vocab).items():
        folder = tmp_path_factory.mktemp(name)
        shutil.copy(source / "vocab.json", folder)
        edit = files.get("merges", lambda m: m)
        (folder / "merges.txt").write_bytes(edit(merges).encode("utf-8"))
        for key, filename in (
            ("config", "tokenizer_config.json"),
            ("special_tokens_map", "special_tokens_map.json"),
            ("added_tokens", "added_tokens.json"),
        ):
            if key in files:
                (folder / filename).write_text(json.dumps(files[key]), encoding="utf-8")
        dirs[name] = folder
    return dirs


@pytest.mark.parametrize("layout", list(layouts({"added_tokens_decoder": {}}, 0)))
def test_layout_identical(layout_dirs, layout):
    folder = layout_dirs[layout]
    ref = transformers.FlaubertTokenizer.from_pretrained(str(folder))
    ours = FlaubertTokenizer.from_pretrained(folder)
    assert ours.bpe_ranks == ref.bpe_ranks
    assert ours.model_max_length == ref.model_max_length
    assert ours.do_lowercase == ref.do_lowercase
    assert ours.all_special_tokens == ref.all_special_tokens
    assert ours.all_special_ids == ref.all_special_ids
    assert ours.get_vocab() == ref.get_vocab()
    assert len(ours) == len(ref)
    for text in LAYOUT_TEXTS:
        assert ours.tokenize(text) == ref.tokenize(text), text
    pairs = LAYOUT_TEXTS[::-1]
    for truncation, padding in itertools.product([None, True], [True, "max_length"]):
        kwargs = dict(padding=padding, truncation=truncation, return_token_type_ids=None)
        expected = hf_arrays(ref, LAYOUT_TEXTS, pairs, **kwargs)
        if expected is None:
            with pytest.raises(ValueError, match="different lengths"):
                ours(LAYOUT_TEXTS, pairs, **kwargs)
            continue
        actual = ours(LAYOUT_TEXTS, pairs, **kwargs)
        assert_same_arrays(expected, actual)
        for skip in (False, True):
            assert ours.batch_decode(actual["input_ids"], skip) == ref.batch_decode(
                actual["input_ids"], skip
            )


def test_missing_unknown_token_is_an_error(tokenizer_dirs, tmp_path):
    """transformers would put None in the ids; we say what is missing."""
    source = tokenizer_dirs["uncased"]
    vocab = json.loads((source / "vocab.json").read_text(encoding="utf-8"))
    del vocab["<unk>"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    shutil.copy(source / "merges.txt", tmp_path)
    ours = FlaubertTokenizer.from_pretrained(tmp_path)
    assert (
        ours.tokenize("日本")
        == ["日</w>", "本</w>"]
        == transformers.FlaubertTokenizer.from_pretrained(str(tmp_path)).tokenize("日本")
    )
    with pytest.raises(ValueError, match=r"not in vocab\.json.*<unk>"):
        ours(["日本"])


# ---------------------------------------------------------------------------------------------
# Ids <-> tokens <-> text
# ---------------------------------------------------------------------------------------------


def test_ids_tokens_and_decoding(tokenizers, stsb_sentences):
    ref, ours = tokenizers
    ids = [0, 1, 2, 3, 5, 14, 100, len(ours) - 1, len(ours), 10**6]
    assert ours.convert_ids_to_tokens(ids) == ref.convert_ids_to_tokens(ids)
    assert ours.convert_ids_to_tokens(np.int64(100)) == ref.convert_ids_to_tokens(100)
    assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == ref.convert_ids_to_tokens(
        ids, skip_special_tokens=True
    )
    tokens = ["<s>", "le</w>", "zzzzz", "<special1>", "<unk>"]
    assert ours.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids("le</w>") == ref.convert_tokens_to_ids("le</w>")
    batch = ours(stsb_sentences[:64], padding=True)["input_ids"]
    for skip in (False, True):
        assert ours.batch_decode(batch, skip_special_tokens=skip) == ref.batch_decode(
            batch.tolist(), skip_special_tokens=skip
        )
        assert ours.batch_decode(batch.tolist(), skip) == ours.batch_decode(batch, skip)
    assert ours.decode(batch[0], clean_up_tokenization_spaces=True) == ref.decode(
        batch[0], clean_up_tokenization_spaces=True
    )
    assert ours.decode(5) == ref.decode(5)
    for ids in (batch, batch.tolist(), batch[0], batch[0].tolist(), [], [[]]):  # 1-D, 2-D, empty
        assert ours.decode(ids) == ref.decode(ids)
        assert ours.batch_decode(ids) == ref.batch_decode(ids)


def test_bpe_of_random_words(tokenizers):
    """Words the corpus does not have, from its characters: same BPE pieces."""
    ref, ours = tokenizers
    chars = sorted({c for token in ours.encoder for c in token.replace("</w>", "")})
    rng = random.Random(0)
    for _ in range(1000):
        word = "".join(rng.choices(chars[:60] + list("eaisnrtoluédc"), k=rng.randint(1, 14)))
        assert ours._word_pieces(word) == ref.bpe(word).split(" "), word


# ---------------------------------------------------------------------------------------------
# Bad input: one clear error naming the item
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, b"bytes", 3, 2.5, ["nested"]], ids=repr)
def test_non_string_items_raise_type_error_naming_them(tokenizer_dir, bad):
    tok = FlaubertTokenizer.from_pretrained(tokenizer_dir)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        tok(["ok", bad, "ok"], padding=True)
    with pytest.raises(TypeError, match=r"text_pair\[0\] must be a str"):
        tok(["ok"], [bad])
    with pytest.raises(TypeError, match="text must be a str"):
        tok.tokenize(bad)
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(bad)
    if not isinstance(bad, list):
        with pytest.raises(TypeError, match="texts must be a str or a list of str"):
            tok(bad)


def test_bad_arguments(tokenizer_dir):
    tok = FlaubertTokenizer.from_pretrained(tokenizer_dir)
    out = tok(("Bonjour", "Il pleut", ""), padding=True)  # a tuple works; nothing dropped
    assert out["input_ids"].shape[0] == 3
    with pytest.raises(ValueError, match="texts is empty"):
        tok([])
    with pytest.raises(ValueError, match="text_pair has 1 items but texts has 2"):
        tok(["a", "b"], ["c"])
    with pytest.raises(TypeError, match="text_pair must be a list"):
        tok(["a"], "b")
    with pytest.raises(TypeError, match="text_pair"):
        tok("a", ["b"])
    with pytest.raises(ValueError, match="return_tensors must be 'np'"):
        tok("a", return_tensors="pt")
    with pytest.raises(ValueError, match="padding must be"):
        tok("a", padding="yes")
    with pytest.raises(ValueError, match="truncation must be"):
        tok("a", truncation="sometimes")
    with pytest.raises(ValueError, match="max_length must be >= 0"):
        tok("a", max_length=-1)
    with pytest.raises(TypeError, match="max_length must be an int"):
        tok("a", max_length=2.5)
    with pytest.raises(ValueError, match="different lengths"):
        tok(["un", "un deux trois"])  # padding=False by default: no array possible


def test_bad_folders(tokenizer_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model directory .* does not exist"):
        FlaubertTokenizer.from_pretrained(tmp_path / "missing")
    shutil.copy(tokenizer_dir / "vocab.json", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"merges\.txt: missing"):
        FlaubertTokenizer.from_pretrained(tmp_path)
    shutil.copy(tokenizer_dir / "merges.txt", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"tokenizer_config\.json: not valid JSON"):
        FlaubertTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"model_max_length": "big"}', encoding="utf-8")
    with pytest.raises(ValueError, match="model_max_length 'big' is invalid"):
        FlaubertTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"mask_token": 3}', encoding="utf-8")
    with pytest.raises(ValueError, match="mask_token: expected a token"):
        FlaubertTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").unlink()
    (tmp_path / "vocab.json").write_text('{"a": "zero"}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab\.json: expected an object of token -> int id"):
        FlaubertTokenizer.from_pretrained(tmp_path)


def test_word_caches_stay_bounded(tokenizer_dir, monkeypatch):
    """A stream of new words must not grow the BPE caches without limit (issue 8: flat RSS)."""
    import flaubert_np.tokenizer as tokenizer_module

    words = [f"mot{i}" for i in range(500)]
    unbounded = FlaubertTokenizer.from_pretrained(tokenizer_dir)  # the default cap, not reached
    expected = [(unbounded.tokenize(w), unbounded.encode(w)) for w in words]
    monkeypatch.setattr(tokenizer_module, "WORD_CACHE_SIZE", 50)
    tok = FlaubertTokenizer.from_pretrained(tokenizer_dir)
    got = [(tok.tokenize(w), tok.encode(w)) for w in words]
    assert 0 < len(tok._bpe_cache) <= 50 and 0 < len(tok._ids_cache) <= 50  # used, and bounded
    assert got == expected


def test_long_words_are_not_cached(tokenizer_dir):
    """A word over MAX_CACHED_WORD_LENGTH characters is tokenised each time, never kept: one line
    without spaces would otherwise hold megabytes in the cache."""
    from flaubert_np.tokenizer import MAX_CACHED_WORD_LENGTH

    ref = transformers.FlaubertTokenizer.from_pretrained(str(tokenizer_dir))
    tok = FlaubertTokenizer.from_pretrained(tokenizer_dir)
    rng = random.Random(4)
    for length in (MAX_CACHED_WORD_LENGTH, MAX_CACHED_WORD_LENGTH + 1, 5000):
        word = "".join(rng.choices("abcdefghijklmnopqrstuvwxyzé", k=length))
        for _ in range(2):  # the second time from the cache, if cached
            assert tok.tokenize(word) == ref.tokenize(word)
            assert tok.encode(word) == ref.encode(word)
        cached = length <= MAX_CACHED_WORD_LENGTH
        assert (word in tok._bpe_cache, word in tok._ids_cache) == (cached, cached), length


def make_folder(bpe_vocab_dir, folder, config):
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(bpe_vocab_dir / name, folder)
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_do_lower_case_is_ignored_as_in_transformers_with_a_warning(bpe_vocab_dirs, tmp_path):
    """flaubert/flaubert_base_uncased's tokenizer_config.json says "do_lower_case": true, a name
    FlaubertTokenizer ignores (transformers issue 14042): the same tokens as transformers (not
    lower-cased), and one warning line naming the issue and the keyword that lower-cases."""
    folder = make_folder(bpe_vocab_dirs["uncased"], tmp_path / "tok", {"do_lower_case": True})
    text = "L'ÉTÉ À PARIS"
    with pytest.warns(UserWarning) as record:
        ours = FlaubertTokenizer.from_pretrained(folder)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert messages[0].startswith(f"{folder / 'tokenizer_config.json'}: do_lower_case is ignored")
    assert "transformers issue 14042" in messages[0] and "pass do_lowercase=True" in messages[0]
    ref = transformers.FlaubertTokenizer.from_pretrained(str(folder))
    assert ours.do_lowercase is False and ref.do_lowercase is False
    assert ours.tokenize(text) == ref.tokenize(text)

    # The keyword the warning names lower-cases, as transformers' does, and silences it.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lowered = FlaubertTokenizer.from_pretrained(folder, do_lowercase=True)
    ref_lowered = transformers.FlaubertTokenizer.from_pretrained(str(folder), do_lowercase=True)
    assert lowered.tokenize(text) == ref_lowered.tokenize(text) != ours.tokenize(text)
    assert lowered.tokenize(text) == ours.tokenize(text.lower())


@pytest.mark.parametrize(
    "config",
    [
        {"do_lower_case": True, "do_lowercase": True},
        {"do_lower_case": True, "do_lowercase": False},
        {"do_lower_case": False},
        {"do_lowercase": True},
        {},
    ],
    ids=json.dumps,
)
def test_no_warning_when_do_lowercase_decides(bpe_vocab_dirs, tmp_path, config):
    """With do_lowercase in the file, or do_lower_case false (ignoring it changes nothing)."""
    folder = make_folder(bpe_vocab_dirs["uncased"], tmp_path / "tok", config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = FlaubertTokenizer.from_pretrained(folder)
    ref = transformers.FlaubertTokenizer.from_pretrained(str(folder))
    assert ours.do_lowercase == ref.do_lowercase == config.get("do_lowercase", False)
    assert ours.tokenize("L'ÉTÉ À PARIS") == ref.tokenize("L'ÉTÉ À PARIS")


def test_missing_bos_or_unknown_token_gives_a_clear_error(bpe_vocab_dirs, tmp_path):
    """Where transformers fails obscurely (a None in the ids, a None joined into a text), one
    error that names the missing token."""
    vocab = bpe_vocab_dirs["uncased"]
    no_bos = FlaubertTokenizer.from_pretrained(
        make_folder(vocab, tmp_path / "no-bos", {"bos_token": None})
    )
    ref = transformers.FlaubertTokenizer.from_pretrained(str(tmp_path / "no-bos"))
    assert no_bos.bos_token_id is None and ref.bos_token_id is None
    with pytest.raises(ValueError):
        ref.encode("le chat")
    with pytest.raises(ValueError, match=r"need a bos_token and a sep_token.*add_special_tokens"):
        no_bos.encode("le chat")
    assert no_bos.encode("le chat", add_special_tokens=False) == ref.encode(
        "le chat", add_special_tokens=False
    )

    no_unk = FlaubertTokenizer.from_pretrained(
        make_folder(vocab, tmp_path / "no-unk", {"unk_token": None})
    )
    ref = transformers.FlaubertTokenizer.from_pretrained(str(tmp_path / "no-unk"))
    assert no_unk.convert_ids_to_tokens([5, 6]) == ref.convert_ids_to_tokens([5, 6])
    assert ref.convert_ids_to_tokens(10**6) is None
    with pytest.raises(ValueError, match=r"id 1000000 is in neither.*no unknown token"):
        no_unk.decode([5, 10**6])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("do_lowercase", "yes", "do_lowercase must be true or false, found a string"),
        ("padding_side", "middle", "padding_side must be 'right' or 'left'"),
        ("truncation_side", 3, "truncation_side must be a string, found an integer"),
        ("model_input_names", 5, "model_input_names must be a list, found an integer"),
        ("model_max_length", -1, "model_max_length -1 is invalid"),
        ("added_tokens_decoder", [1], "added_tokens_decoder must be an object"),
    ],
)
def test_a_bad_tokenizer_config_is_a_model_file_error_naming_it(tmp_path, key, value, message):
    """Every bad value of tokenizer_config.json: one ModelFileError that names the file's folder
    (and the file), never a TypeError from deep inside."""
    import json
    import shutil

    from flaubert_np import hub
    from flaubert_np.files import ModelFileError

    folder = tmp_path / "tok"
    shutil.copytree(hub.PACKAGE_DIR / "models" / "demo", folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config[key] = value
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelFileError) as error:
        FlaubertTokenizer.from_pretrained(folder)
    assert str(error.value).startswith(str(folder)) and message in str(error.value)
