"""flaubert_np.config: config.json read as transformers 5 reads it, bad configs refused."""

import json
import warnings

import pytest
import transformers

from flaubert_np.config import ConfigError, FlaubertConfig

pytestmark = pytest.mark.oracle

# Our field -> the attribute transformers' FlaubertConfig exposes it as.
FIELDS = {
    "emb_dim": "emb_dim",
    "n_layers": "n_layers",
    "n_heads": "n_heads",
    "n_words": "vocab_size",
    "pad_index": "pad_token_id",
    "bos_index": "bos_token_id",
    "eos_index": "eos_token_id",
    "max_position_embeddings": "max_position_embeddings",
    "pre_norm": "pre_norm",
    "gelu_activation": "gelu_activation",
    "sinusoidal_embeddings": "sinusoidal_embeddings",
    "causal": "causal",
    "n_langs": "n_langs",
    "use_lang_emb": "use_lang_emb",
    "layer_norm_eps": "layer_norm_eps",
    "unk_index": "unk_index",
    "mask_index": "mask_index",
    "lang_id": "lang_id",
}

# Dicts where the aliases collide, in both key orders.
CONFIG_DICTS = [
    {},
    {"pad_index": 5},
    {"pad_token_id": 7},
    {"pad_index": 5, "pad_token_id": 7},
    {"pad_token_id": 7, "pad_index": 5},
    {"bos_index": 9, "bos_token_id": 8, "eos_index": 4},
    {"n_words": 100},
    {"vocab_size": 200},
    {"n_words": 100, "vocab_size": 200},
    {"vocab_size": 200, "n_words": 100},
    {"emb_dim": 32, "hidden_size": 64, "n_heads": 4},
    {"hidden_size": 64, "emb_dim": 32, "n_heads": 4},
    {"num_attention_heads": 8, "n_heads": 4, "num_hidden_layers": 3, "n_layers": 5},
    {"n_layers": 5, "num_hidden_layers": 3, "layer_norm_eps": 1e-6, "pre_norm": True},
    {  # the keys of a FlauBERT base config.json
        "emb_dim": 768,
        "n_heads": 12,
        "n_layers": 12,
        "n_words": 67542,
        "vocab_size": 67542,
        "pad_index": 2,
        "pad_token_id": 2,
        "bos_index": 0,
        "eos_index": 1,
        "unk_index": 3,
        "mask_index": 5,
        "layer_norm_eps": 1e-6,
        "max_position_embeddings": 512,
        "sinusoidal_embeddings": False,
        "n_langs": 1,
        "lang_id": 0,
    },
]


def write_config(folder, data) -> None:
    (folder / "config.json").write_text(json.dumps({"model_type": "flaubert", **data}))


@pytest.mark.parametrize("data", CONFIG_DICTS)
def test_resolves_aliases_like_transformers(tmp_path, data):
    write_config(tmp_path, data)
    ref = transformers.FlaubertConfig.from_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = FlaubertConfig.from_pretrained(tmp_path)
    for ours_name, ref_name in FIELDS.items():
        assert getattr(ours, ours_name) == getattr(ref, ref_name), ours_name
    assert ours.vocab_size == ref.vocab_size and ours.hidden_size == ref.hidden_size


def test_pad_index_alone_is_ignored_as_transformers_does_with_a_warning(tmp_path):
    write_config(tmp_path, {"pad_index": 5})
    with pytest.warns(UserWarning, match=r"pad_index=5 is ignored.*pad_token_id decides \(2\)"):
        config = FlaubertConfig.from_pretrained(tmp_path)
    assert config.pad_index == 2 == transformers.FlaubertConfig.from_pretrained(tmp_path).pad_index


def test_agreeing_pad_keys_do_not_warn(tmp_path):
    write_config(tmp_path, {"pad_index": 2, "pad_token_id": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FlaubertConfig.from_pretrained(tmp_path).pad_index == 2


def test_defaults_are_transformers_defaults():
    ours, ref = FlaubertConfig(), transformers.FlaubertConfig()
    for ours_name, ref_name in FIELDS.items():
        assert getattr(ours, ours_name) == getattr(ref, ref_name), ours_name
    assert ours.embed_init_std == ref.embed_init_std and ours.is_encoder and not ours.asm


def test_unknown_keys_are_kept(tmp_path):
    write_config(tmp_path, {"architectures": ["FlaubertWithLMHeadModel"], "lgs": "fr", "amp": 1})
    config = FlaubertConfig.from_pretrained(tmp_path)
    assert config.extra == {"architectures": ["FlaubertWithLMHeadModel"], "lgs": "fr", "amp": 1}


def test_reads_a_config_saved_by_transformers(tmp_path):
    transformers.FlaubertConfig(
        vocab_size=300, emb_dim=48, n_layers=3, n_heads=6, pad_token_id=1, causal=True
    ).save_pretrained(tmp_path)
    config = FlaubertConfig.from_pretrained(tmp_path)
    assert (config.n_words, config.emb_dim, config.n_layers, config.n_heads) == (300, 48, 3, 6)
    assert config.pad_index == 1 and config.causal and config.ffn_dim == 192


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"is_encoder": False}, "is_encoder is false: FlauBERT decoders are not supported"),
        ({"asm": True}, "asm .adaptive softmax. is not supported"),
        ({"emb_dim": 30, "n_heads": 4}, "emb_dim=30 is not a multiple of n_heads=4"),
        ({"emb_dim": "768"}, "emb_dim must be an integer, found '768'"),
        ({"n_layers": 2.0}, "n_layers must be an integer"),
        ({"causal": "yes"}, "causal must be true or false"),
        ({"layer_norm_eps": 0}, "layer_norm_eps must be a positive number"),
        ({"n_layers": 0}, "n_layers must be between 1 and 256"),
        ({"pad_token_id": None}, "pad_token_id is null"),
        ({"pad_token_id": 99, "vocab_size": 50}, r"pad_index=99 is outside the vocabulary"),
        ({"model_type": "bert"}, "model_type is 'bert', not 'flaubert'"),
    ],
)
def test_bad_configs_raise_naming_the_file_and_key(tmp_path, data, message):
    write_config(tmp_path, data)
    with pytest.raises(ConfigError, match=message) as info:
        FlaubertConfig.from_pretrained(tmp_path)
    assert str(tmp_path / "config.json") in str(info.value)


def test_missing_and_malformed_config_json(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json: no such file"):
        FlaubertConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json: not valid JSON"):
        FlaubertConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object, found list"):
        FlaubertConfig.from_pretrained(tmp_path)
