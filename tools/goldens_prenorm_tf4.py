"""Make tests/goldens/prenorm_tf4.npz: a tiny pre_norm FlauBERT, its outputs under transformers 4.

Why: transformers 5's FlaubertModel crashes on every forward pass with `pre_norm=True`
(TypeError: 'EncoderDecoderCache' object is not subscriptable), so tests/test_model.py checks
flaubert-np's pre_norm path against these outputs of transformers 4.x, which runs it.

Run from the repository root with the old stack (transformers 4.57, torch; no pytest needed):

    /work/venv4/bin/python tools/goldens_prenorm_tf4.py

The file is deterministic (fixed seeds) and self-contained, about 100 kB:
  config_json            the model's config.json, as transformers 4 saves it
  transformers_version   the transformers that made the outputs
  weight/<name>          every weight, float32, bare names ("attentions.0.q_lin.weight", ...)
  cases                  the names of the input batches below
  <case>/input_ids       [batch, seq] int64, padded with pad_index
  <case>/attention_mask  [batch, seq] int64 (only for the cases that pass one)
  <case>/hidden_states   [n_layers + 1, batch, seq, dim] float32, output_hidden_states=True
  <case>/attentions      [n_layers, batch, heads, seq, seq] float32

Attention maps: transformers 4.57's pre_norm branch does not pass `output_attentions` on to its
attention modules, so the model cannot return them (asking raises IndexError). This tool asks
each attention module itself, through a forward pre-hook that sets output_attentions=True for
that call, and keeps the weights it returns: transformers' own code computes them, and the
module's first output, the one the model uses, is unchanged.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from oracles import require

require("goldens_prenorm_tf4.py", "torch", "transformers",
        install='pip install "transformers==4.57.*" torch (see the docstring)')  # fmt: skip

import torch  # noqa: E402
import transformers  # noqa: E402
from random_weights import randomize_flaubert  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "goldens" / "prenorm_tf4.npz"

CONFIG = {
    "vocab_size": 99,
    "emb_dim": 32,
    "n_layers": 2,
    "n_heads": 4,
    "max_position_embeddings": 24,
    "pre_norm": True,
    "layer_norm_eps": 1e-6,
}


def make_cases(config, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """Input batches: padding by mask and by pad ids, mixed lengths, length 1, full length."""
    pad = config.pad_index

    def padded(lengths: list[int], seq: int) -> tuple[np.ndarray, np.ndarray]:
        ids = rng.integers(4, config.vocab_size, size=(len(lengths), seq))
        mask = (np.arange(seq) < np.array(lengths)[:, None]).astype(np.int64)
        return np.where(mask == 1, ids, pad), mask

    ids, mask = padded([10, 6, 1], 10)
    full_ids, full_mask = padded(
        [config.max_position_embeddings, 17], config.max_position_embeddings
    )
    return {
        "attention_mask": {"input_ids": ids, "attention_mask": mask},
        "pad_ids": {"input_ids": ids},
        "length_1": {"input_ids": rng.integers(4, config.vocab_size, size=(2, 1))},
        "max_length": {"input_ids": full_ids, "attention_mask": full_mask},
    }


def main() -> None:
    if not transformers.__version__.startswith("4."):
        sys.exit(f"needs transformers 4.x (found {transformers.__version__}): see the docstring")
    torch.manual_seed(0)
    model = transformers.FlaubertModel(transformers.FlaubertConfig(**CONFIG))
    randomize_flaubert(model, seed=0)
    model.eval()

    captured: list[torch.Tensor] = []

    def ask_for_weights(module, args, kwargs):
        return args, {**kwargs, "output_attentions": True}

    def keep_weights(module, args, kwargs, output):
        captured.append(output[1])

    for att in model.attentions:
        att.register_forward_pre_hook(ask_for_weights, with_kwargs=True)
        att.register_forward_hook(keep_weights, with_kwargs=True)

    with tempfile.TemporaryDirectory() as tmp:  # config.json exactly as transformers 4 writes it
        model.config.save_pretrained(tmp)
        config_json = (Path(tmp) / "config.json").read_text(encoding="utf-8")

    arrays = {
        "config_json": np.array(config_json),
        "transformers_version": np.array(transformers.__version__),
    }
    for name, tensor in model.state_dict().items():
        if name != "position_ids":
            arrays[f"weight/{name}"] = tensor.numpy().astype(np.float32)

    cases = make_cases(model.config, np.random.default_rng(0))
    arrays["cases"] = np.array(list(cases))
    for case, inputs in cases.items():
        captured.clear()
        with torch.no_grad():
            out = model(
                **{k: torch.from_numpy(v) for k, v in inputs.items()}, output_hidden_states=True
            )
        assert len(captured) == model.config.n_layers
        for key, value in inputs.items():
            arrays[f"{case}/{key}"] = value.astype(np.int64)
        arrays[f"{case}/hidden_states"] = torch.stack(out.hidden_states).numpy()
        arrays[f"{case}/attentions"] = torch.stack(captured).numpy()

    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, transformers {transformers.__version__})")
    json.loads(config_json)  # sanity: the stored config is JSON


if __name__ == "__main__":
    main()
