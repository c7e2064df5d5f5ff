"""Shared fixtures.

The parity oracles (torch, transformers, sentence-transformers) are imported plainly by the tests
that need them: a missing oracle is an error, never a skip. A skipped test proves nothing, so the
session fails when any test was skipped (see pytest_sessionfinish below).

Every test that needs an oracle is marked `oracle` (pyproject.toml), so that the fast lane,
`pytest -m "not oracle"`, runs without them installed. A module marked as a whole
(`pytestmark = pytest.mark.oracle`) may import an oracle at the top: the fast lane does not import
it at all (pytest_ignore_collect below). Every other module imports oracles inside its tests.
"""

import ast
import csv
import functools
from pathlib import Path

import numpy as np
import pytest
from _pytest.mark.expression import Expression  # how pytest reads -m (no public name)

from learn_bpe import learn_bpe  # tools/ is on sys.path (pyproject.toml: pythonpath)

DATA = Path(__file__).parent / "data"
STSB = DATA / "stsb-fr"


def read_sts_sentences(split: str) -> list[str]:
    """Every sentence of an STS split (both columns), in file order."""
    with open(STSB / f"{split}.csv", encoding="utf-8", newline="") as f:
        return [s for row in csv.reader(f) for s in row[:2]]


@pytest.fixture(scope="session")
def stsb_sentences() -> list[str]:
    """The ~14,500 French sentences of the STS train and dev splits."""
    return read_sts_sentences("train") + read_sts_sentences("dev")


_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_line(
            f"FAILED: {len(_skipped)} test(s) skipped; this suite allows no skips.", red=True
        )


def marked_oracle_as_a_whole(module: Path) -> bool:
    """Whether a test module says `pytestmark = pytest.mark.oracle` (alone or in a list)."""
    for node in ast.parse(module.read_bytes()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            return "pytest.mark.oracle" in ast.unparse(node.value)
    return False


def pytest_ignore_collect(collection_path: Path, config):
    """Leave a module marked oracle as a whole unimported when `-m` deselects oracle tests:
    importing it would need the oracles that the fast lane runs without."""
    markexpr = config.getoption("markexpr")
    if not markexpr or collection_path.suffix != ".py" or collection_path.name == "conftest.py":
        return None
    if Expression.compile(markexpr).evaluate(lambda name, **kwargs: name == "oracle"):
        return None
    return True if marked_oracle_as_a_whole(collection_path) else None


# ------------------------------------------------------------------------------------------------
# Model fixtures (issue 2, the encoder): tiny random FlauBERT checkpoints written by transformers.
# ------------------------------------------------------------------------------------------------

# Small enough to build in milliseconds; max_position_embeddings small so that a batch at full
# length is cheap. FlaubertConfig keyword names (transformers' spelling).
TINY_FLAUBERT = {
    "vocab_size": 99,
    "emb_dim": 32,
    "n_layers": 2,
    "n_heads": 4,
    "max_position_embeddings": 40,
}


@pytest.fixture(scope="session")
def flaubert_checkpoint(tmp_path_factory):
    """Factory: a folder with config.json + safetensors weights written by transformers.

    make(head=False, dtype="float32", max_shard_size=None, seed=0, **config) -> Path
      config: FlaubertConfig keywords overriding TINY_FLAUBERT (vocab_size, emb_dim, ...);
      head: save a FlaubertWithLMHeadModel (keys under `transformer.`, plus `pred_layer.*`);
      dtype: "float32", "float16" or "bfloat16" (the dtype the tensors are saved in);
      max_shard_size: e.g. "20KB" to get model.safetensors.index.json and shards.
    Each distinct call builds once per session (random init, randomized as above).
    """
    import torch
    import transformers

    from random_weights import randomize_flaubert  # tools/random_weights.py (imports torch)

    built: dict = {}

    def make(head=False, dtype="float32", max_shard_size=None, seed=0, **config):
        key = (head, dtype, max_shard_size, seed, tuple(sorted(config.items())))
        if key not in built:
            cfg = transformers.FlaubertConfig(**{**TINY_FLAUBERT, **config})
            torch.manual_seed(seed)
            if head:
                model = transformers.FlaubertWithLMHeadModel(cfg)
                randomize_flaubert(model.transformer, seed)
            else:
                model = transformers.FlaubertModel(cfg)
                randomize_flaubert(model, seed)
            model = model.to(getattr(torch, dtype)).eval()
            folder = tmp_path_factory.mktemp("flaubert")
            kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
            model.save_pretrained(folder, **kwargs)
            built[key] = folder
        return built[key]

    return make


# ------------------------------------------------------------------------------------------------
# Encoder parity (tests/test_model.py, tests/test_fast.py): configurations, input batches, both
# implementations loaded from one folder, and the transformers 4.57 pre_norm goldens.
# ------------------------------------------------------------------------------------------------

TOL = 1e-5
PRENORM_GOLDENS = Path(__file__).parent / "goldens" / "prenorm_tf4.npz"

# name -> flaubert_checkpoint arguments (config keys in transformers' spelling).
CONFIGS = {
    "default": {},  # post-norm, GELU, layer_norm_eps 1e-12
    "layer_norm_eps_1e-6": {"layer_norm_eps": 1e-6},
    "sinusoidal": {"sinusoidal_embeddings": True},
    "langs": {"n_langs": 3},
    "langs_without_lang_emb": {"n_langs": 3, "use_lang_emb": False},
    "causal": {"causal": True},
    "relu": {"gelu_activation": False},
    "odd_sizes": {
        "emb_dim": 36,
        "n_heads": 3,
        "vocab_size": 57,
        "max_position_embeddings": 17,
        "pad_token_id": 1,
        "n_layers": 3,
    },
    "base_dims": {
        "emb_dim": 768,
        "n_heads": 12,
        "n_layers": 2,
        "vocab_size": 300,
        "max_position_embeddings": 512,
    },
    "lm_head_checkpoint": {"head": True},
    "float16_checkpoint": {"dtype": "float16"},
    "bfloat16_checkpoint": {"dtype": "bfloat16"},
    "sharded_checkpoint": {"max_shard_size": "20KB"},
}


def make_cases(config, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Input batches: padding through attention_mask, through pad ids and through lengths;
    mixed lengths with an all-padding row; length 1; length max_position_embeddings; langs;
    token types and positions."""
    rng = np.random.default_rng(seed)
    pad, n_words, max_len = config.pad_index, config.n_words, config.max_position_embeddings

    def tokens(*shape: int) -> np.ndarray:  # random ids, never the pad id
        ids = rng.integers(0, n_words - 1, size=shape)
        return ids + (ids >= pad)

    def padded(lengths: list[int], seq: int) -> tuple[np.ndarray, np.ndarray]:
        mask = (np.arange(seq) < np.array(lengths)[:, None]).astype(np.int64)
        return np.where(mask == 1, tokens(len(lengths), seq), pad), mask

    seq = min(12, max_len)
    ids, mask = padded([seq, 5, 1, 0], seq)
    inside = tokens(2, seq)
    inside[0, 2] = pad  # transformers then drops the *last* position of row 0 (lengths = count)
    full_ids, full_mask = padded([max_len, max_len - 5], max_len)
    return {
        "attention_mask": {"input_ids": ids, "attention_mask": mask},
        "pad_ids": {"input_ids": ids},
        "pad_id_inside_a_row": {"input_ids": inside},
        "lengths": {"input_ids": tokens(2, seq), "lengths": np.array([seq, 3])},
        "length_1": {"input_ids": np.array([[tokens(1)[0]], [pad], [tokens(1)[0]]])},
        "max_length": {"input_ids": full_ids, "attention_mask": full_mask},
        "langs": {
            "input_ids": ids,
            "attention_mask": mask,
            "langs": rng.integers(0, config.n_langs, size=ids.shape),
        },
        "token_types_and_positions": {
            "input_ids": tokens(2, seq),
            "token_type_ids": rng.integers(0, n_words, size=(2, seq)),
            "position_ids": np.stack([rng.permutation(max_len)[:seq] for _ in range(2)]),
        },
    }


@functools.cache
def load_both(folder: Path) -> tuple:
    """(flaubert-np's FlaubertModel, transformers' FlaubertModel in eval mode) of one folder."""
    import torch
    import transformers

    from flaubert_np.model import FlaubertModel

    ours = FlaubertModel.from_pretrained(folder)
    ref = transformers.FlaubertModel.from_pretrained(folder, dtype=torch.float32).eval()
    return ours, ref


def our_forward(model, inputs: dict, path: str) -> tuple:
    """flaubert-np's forward on one path, and the path that actually ran: (output, "plain" or
    "fast").

    "plain": model.py's reference forward, with every hidden state and attention map; "fast":
    fast.py's forward (the last hidden state only), which the model declines for a causal model
    with padding before a real token (see `expected_path`). Every encoder parity test calls our
    forward through here, so how a path is asked for lives in this one place.
    """
    from flaubert_np import fast

    forward, calls = fast.forward, []

    def counted(*args):
        calls.append(1)
        return forward(*args)

    fast.forward = counted
    try:
        if path == "plain":
            out = model(**inputs, output_hidden_states=True, output_attentions=True)
        elif path == "fast":
            out = model(**inputs)
        else:
            raise ValueError(f"path must be 'plain' or 'fast', not {path!r}")
    finally:
        fast.forward = forward
    return out, "fast" if calls else "plain"


def expected_path(model, inputs: dict) -> str:
    """The path the model should take when asked for "fast": fast.py computes no padded token,
    so it runs a causal model only when each row's padding comes after its real tokens (the
    padded keys a causal row attends before a real token would be missing)."""
    from flaubert_np.inputs import check_inputs

    checked = check_inputs(
        model.config, **inputs, has_lang_embeddings=model.params.lang_embeddings is not None
    )
    real = checked.mask != 0
    padding_last = np.array_equal(real, np.arange(real.shape[1]) < real.sum(axis=1)[:, None])
    return "fast" if padding_last or not model.config.causal else "plain"


def max_diffs(ours, ref_hidden, ref_attentions) -> tuple[float, float]:
    """Largest |ours - reference| over all hidden states, and over all attention maps."""
    pairs_h = list(zip(ours.hidden_states, ref_hidden, strict=True))
    pairs_a = list(zip(ours.attentions, ref_attentions, strict=True))
    for a, b in pairs_h + pairs_a:
        assert a.dtype == np.float32 and a.shape == tuple(b.shape)
    assert ours.last_hidden_state is ours.hidden_states[-1]
    hidden = max(float(np.abs(a - b).max()) for a, b in pairs_h)
    attn = max(float(np.abs(a - b).max()) for a, b in pairs_a)
    return hidden, attn


def prenorm_cases() -> list[str]:
    """The case names the pre_norm golden file holds, in its order."""
    with np.load(PRENORM_GOLDENS) as goldens:
        return [str(name) for name in goldens["cases"]]


@pytest.fixture(scope="session")
def prenorm_goldens(tmp_path_factory):
    """transformers 4.57's pre_norm goldens (tools/goldens_prenorm_tf4.py): (the arrays, load),
    load(case) -> flaubert-np's FlaubertModel of that case, its config and weights written out
    as a checkpoint folder first, so that it loads the normal way."""
    import safetensors.numpy

    from flaubert_np.model import FlaubertModel

    goldens = np.load(PRENORM_GOLDENS)

    @functools.cache
    def load(case: str) -> FlaubertModel:
        folder = tmp_path_factory.mktemp("prenorm")
        (folder / "config.json").write_text(str(goldens[f"{case}/config_json"]))
        prefix = f"{case}/weight/"
        weights = {k[len(prefix) :]: goldens[k] for k in goldens.files if k.startswith(prefix)}
        safetensors.numpy.save_file(weights, folder / "model.safetensors")
        return FlaubertModel.from_pretrained(folder)

    return goldens, load


# ------------------------------------------------------------------------------------------------
# Tokenizer fixtures (issue 3: flaubert_np/tokenizer.py, tools/learn_bpe.py): realistic FlauBERT
# tokenizer folders. A BPE vocabulary is learned from the STS sentences with tools/learn_bpe.py,
# then transformers' FlaubertTokenizer loads it and `save_pretrained` writes the folder, so the
# files (vocab.json, merges.txt, tokenizer_config.json) are exactly what transformers writes.
# ------------------------------------------------------------------------------------------------

TOKENIZER_MERGES = 5000  # "several thousand merges": words are split into a few pieces each
TOKENIZER_MAX_LENGTH = 512  # FlauBERT's model_max_length on the Hub


def save_flaubert_tokenizer(vocab_dir: Path, out_dir: Path, do_lowercase: bool, **kwargs) -> Path:
    """vocab.json + merges.txt -> a full tokenizer folder written by transformers' save_pretrained.

    kwargs go to transformers' FlaubertTokenizer (default model_max_length=512).
    """
    from transformers import FlaubertTokenizer

    kwargs.setdefault("model_max_length", TOKENIZER_MAX_LENGTH)
    files = (str(vocab_dir / "vocab.json"), str(vocab_dir / "merges.txt"))
    tok = FlaubertTokenizer(*files, do_lowercase=do_lowercase, **kwargs)
    tok.save_pretrained(str(out_dir))
    return out_dir


# Texts that a tokenizer can get wrong, one kind each (tests/test_tokenizer.py, test_moses.py).
EDGE_TEXTS = {
    "empty": "",
    "space": " ",
    "whitespace": "   \t  \n ",
    "tabs-newlines": "un\tdeux\ntrois\r\nquatre\rcinq",
    "nbsp-before-punct": "Bonjour\u00a0: ça va\u00a0? Oui\u00a0! Non\u00a0; « Salut\u00a0»",
    "narrow-nbsp": "Quoi\u202f? Vraiment\u202f! Ici\u202f: là\u202f; «\u202fsi\u202f»",
    "guillemets": "Il a dit « bonjour » puis «\u00a0au revoir\u00a0».",
    "curly-quotes": "“Bonjour”, ‘salut’ et „hallo“",
    "ellipsis": "Attends… quoi... vraiment....",
    "apostrophes": "l'été, aujourd'hui, qu'il, jusqu'à, c'est-à-dire",
    "typographic-apostrophe": "l’été, aujourd’hui, qu’il",
    "ligatures": "œuvre, cœur, Œdipe, Æsope, nævus",
    "upper-accents": "ÉCOLE À PARIS ÇA ÎLE ÊTRE Ébène",
    "decomposed-accents": "e\u0301te\u0301, cafe\u0301, E\u0301cole, c\u0327a",
    "numbers": "1 000 000 habitants, 3,14 et 2.5, 1\u00a0000\u00a0€, 10 % et 10%",
    "url-email": "Voir https://www.exemple.fr/page?x=1&y=2 ou jean.dupont@mail.fr",
    "emoji": "Super 😀 👍🏽 👨\u200d👩\u200d👧 ❤️",
    "cjk": "日本語のテキスト。中文，测试！（括号）",
    "arabic": "مرحبا بالعالم، كيف حالك؟",
    "control-chars": "a\x00b\x01c\x7fd\x1be\u0085f",
    "zero-width": "zero\u200dwidth\u200bspace\u2060joiner\ufeff",
    "long-word": "anticonstitutionnellement" * 14,
    "special-in-text": "Il fait <special1> beau<pad>ici <special1><special1>",
    "all-specials": "<s></s><pad><unk><special0><special9>",
    "special-upper": "<SPECIAL1> <PAD> <Pad>",
    "special-near-miss": "<special10> <<special1>> <special <pad",
    "unknown-chars": "ℌ ¤ ∰ ⟁ ǅ ß İstanbul Ⅻ",
    "latex-quotes": "``citation'' et ''autre``",
    "brackets": "(parenthèses) [crochets] {accolades} <chevrons>",
    "symbols": "prix: 5$ 10% #tag @user & | ~ ^ * + = _",
    "dashes-slashes": "--double-- a/b c-d – e — f",
    "abbreviations": "M. Dupont, Mme. Martin, etc. U.S.A. p. 12",
    "full-width": "Ｆｕｌｌ　ｗｉｄｔｈ　１２３",
    "cjk-stops": "。。  ．．fin",
    "line-separators": "ligne\u2028paragraphe\u2029fin",
    "leading-trailing": "   espaces autour   ",
    "single-char": "a",
    "punctuation-only": "?!...,;:",
}


@pytest.fixture(scope="session")
def bpe_vocab_dirs(tmp_path_factory, stsb_sentences) -> dict[str, Path]:
    """{"uncased": Path, "cased": Path}: vocab.json + merges.txt, 5,000 merges learned from the STS
    sentences (lower-cased or not) by tools/learn_bpe.py; no oracle needed."""
    return {
        name: learn_bpe(
            stsb_sentences, TOKENIZER_MERGES, tmp_path_factory.mktemp(f"bpe-{name}"), lowercase
        )
        for name, lowercase in (("uncased", True), ("cased", False))
    }


@pytest.fixture(scope="session")
def tokenizer_dirs(tmp_path_factory, bpe_vocab_dirs) -> dict[str, Path]:
    """{"uncased": Path, "cased": Path}: FlauBERT tokenizer folders (do_lowercase true / false),
    5,000 merges learned from the STS sentences, model_max_length 512. Built once per session."""
    dirs = {}
    for name, lowercase in (("uncased", True), ("cased", False)):
        out = tmp_path_factory.mktemp(f"tok-{name}")
        dirs[name] = save_flaubert_tokenizer(bpe_vocab_dirs[name], out, lowercase)
    return dirs


@pytest.fixture(scope="session")
def tokenizer_dir(tokenizer_dirs) -> Path:
    """The uncased tokenizer folder (like flaubert_base_uncased, the first target model)."""
    return tokenizer_dirs["uncased"]


# ------------------------------------------------------------------------------------------------
# Sentence fixtures (issue 4: flaubert_np/sentence.py, hub.py, cli.py): tiny sentence-transformers
# models written by SentenceTransformer.save (sentence-transformers 6.2 on transformers 5), built
# from the random FlauBERT of `flaubert_checkpoint` and the STS tokenizers of `tokenizer_dirs`.
# ------------------------------------------------------------------------------------------------

SENTENCE_MAX_SEQ_LENGTH = 32  # short, so that many STS sentences are truncated


@pytest.fixture
def torch_single_thread():
    """Run torch on one thread during the test: tiny models on two busy cores are many times
    faster that way (thread start-up and spinning dominate)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sentence_model(tmp_path_factory, flaubert_checkpoint, tokenizer_dirs):
    """Factory: a sentence-transformers model folder saved by `SentenceTransformer.save`.

    make(pooling="mean", normalize=False, dense=None, max_seq_length=32, tokenizer="uncased",
         safe_serialization=True, include_prompt=True, prompts=None, similarity_fn_name=None,
         seed=0) -> Path
      pooling: a mode or a tuple of modes ("mean", "cls", "max", "mean_sqrt_len_tokens", ...);
      dense: None, or a torch.nn activation class name ("Tanh", "Identity") for a Dense layer
             32 -> 24 after pooling (Normalize, when asked, comes after it);
      max_seq_length: None leaves sentence-transformers' default (tokenizer model_max_length 512
             capped at max_position_embeddings 64);
      safe_serialization=False: pytorch_model.bin files (torch.save) instead of model.safetensors.
    The FlauBERT is tiny: 2 layers, 32 dims, 4 heads, max_position_embeddings 64. Each distinct
    call builds once per session.
    """
    import json
    import shutil

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    built: dict = {}

    def make(
        pooling="mean",
        normalize=False,
        dense=None,
        max_seq_length=SENTENCE_MAX_SEQ_LENGTH,
        tokenizer="uncased",
        safe_serialization=True,
        include_prompt=True,
        prompts=None,
        similarity_fn_name=None,
        seed=0,
    ):
        key = json.dumps(
            [
                pooling,
                normalize,
                dense,
                max_seq_length,
                tokenizer,
                safe_serialization,
                include_prompt,
                prompts,
                similarity_fn_name,
                seed,
            ],
            sort_keys=True,
        )
        if key in built:
            return built[key]
        tok_dir = tokenizer_dirs[tokenizer]
        n_words = len(json.loads((tok_dir / "vocab.json").read_text(encoding="utf-8")))
        checkpoint = flaubert_checkpoint(vocab_size=n_words, max_position_embeddings=64, seed=seed)
        hf_dir = tmp_path_factory.mktemp("flaubert-hf")
        shutil.copytree(checkpoint, hf_dir, dirs_exist_ok=True)
        shutil.copytree(tok_dir, hf_dir, dirs_exist_ok=True)

        torch.manual_seed(seed)
        modules = [Transformer(str(hf_dir), max_seq_length=max_seq_length)]
        dim = modules[0].get_embedding_dimension()
        modules.append(Pooling(dim, pooling_mode=pooling, include_prompt=include_prompt))
        if dense is not None:
            activation = getattr(torch.nn, dense)()
            n_in = modules[-1].get_embedding_dimension()
            modules.append(Dense(n_in, 24, activation_function=activation))
        if normalize:
            modules.append(Normalize())
        model = SentenceTransformer(
            modules=modules, device="cpu", prompts=prompts, similarity_fn_name=similarity_fn_name
        )
        out = tmp_path_factory.mktemp("sentence-model")
        model.save(str(out), safe_serialization=safe_serialization)
        if not safe_serialization and (out / "model.safetensors").exists():
            # transformers 5 writes safetensors whatever it is asked; write the FlauBERT weights
            # as transformers 4 did (torch.save of the state dict), the 2021 models' only file.
            from safetensors.torch import load_file

            torch.save(load_file(out / "model.safetensors"), out / "pytorch_model.bin")
            (out / "model.safetensors").unlink()
        built[key] = out
        return out

    return make


def place_in_hub_cache(model_dir: Path, cache_dir: Path, repo_id: str, commit: str) -> Path:
    """Put model_dir's files in a Hub cache as huggingface_hub lays it out: content-addressed
    blobs/, relative symlinks to them in snapshots/<commit>/, refs/main naming the commit.
    Returns the snapshot folder."""
    import hashlib
    import os

    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / f.relative_to(model_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
