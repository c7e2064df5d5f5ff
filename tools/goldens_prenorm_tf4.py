"""Make tests/goldens/prenorm_tf4.npz: tiny pre_norm FlauBERTs and their outputs under
transformers 4.

Why: transformers 5's FlaubertModel crashes on every forward pass with `pre_norm=True`
(TypeError: 'EncoderDecoderCache' object is not subscriptable), so tests/test_prenorm.py checks
flaubert-np's pre_norm path against these outputs of transformers 4.57, which runs it.

The cases are tools/option_pairs.py's pairwise set (causal, langs, sinusoidal, activation, eps,
dims/heads, padding, token types, positions) with pre_norm on: one model per case (seed = its
index), each on the case's "mixed" and "no_real_token" batches. `spec()` is that set; the tests
check that the file holds exactly it.

Run from the repository root with the pinned old stack, in any venv:

    python3 -m venv /tmp/tf4 && /tmp/tf4/bin/pip install -r tools/requirements-goldens-tf4.txt
    /tmp/tf4/bin/python tools/goldens_prenorm_tf4.py

Deterministic (fixed seeds), self-contained, a few hundred kB:
  transformers_version            the transformers that made the outputs
  cases                           the case names (option_pairs.case_name)
  <case>/config_json              the model's config.json, as transformers 4 saves it
  <case>/weight/<name>            every weight, float32, bare names ("attentions.0.q_lin.weight")
  <case>/<batch>/<input>          the inputs given (input_ids, attention_mask, lengths, langs,
                                  token_type_ids, position_ids), int64
  <case>/<batch>/hidden_states    [n_layers + 1, batch, seq, dim] float32
  <case>/<batch>/attentions       [n_layers, batch, heads, seq, seq] float32

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
from typing import Any

import numpy as np

import option_pairs

OUT = Path(__file__).resolve().parent.parent / "tests" / "goldens" / "prenorm_tf4.npz"
SETUP = (
    "python3 -m venv VENV && VENV/bin/pip install -r tools/requirements-goldens-tf4.txt, "
    "then run VENV/bin/python tools/goldens_prenorm_tf4.py"
)


def spec() -> dict[str, dict]:
    """Case name -> FlaubertConfig keywords of its model: the pairwise set, pre_norm on."""
    return {
        name: option_pairs.model_config(case, pre_norm=True)
        for name, case in option_pairs.cases().items()
    }


def main() -> None:
    try:
        import torch
        import transformers

        from random_weights import randomize_flaubert
    except ImportError as e:
        sys.exit(f"{e}: this tool needs the pinned transformers 4.57 stack: {SETUP}")
    if not transformers.__version__.startswith("4."):
        sys.exit(f"needs transformers 4.x (found {transformers.__version__}): {SETUP}")

    torch.set_num_threads(1)  # the same sums on any machine's thread count
    arrays: dict[str, Any] = {"transformers_version": np.array(transformers.__version__)}
    cases = option_pairs.cases()
    arrays["cases"] = np.array(list(cases))
    for seed, (name, config) in enumerate(spec().items()):
        torch.manual_seed(seed)
        model = transformers.FlaubertModel(transformers.FlaubertConfig(**config))
        randomize_flaubert(model, seed)
        model.eval()
        captured = _capture_attentions(model)

        with tempfile.TemporaryDirectory() as tmp:  # config.json exactly as transformers writes
            model.config.save_pretrained(tmp)
            arrays[f"{name}/config_json"] = np.array((Path(tmp) / "config.json").read_text())
        for key, tensor in model.state_dict().items():
            if key != "position_ids":
                arrays[f"{name}/weight/{key}"] = tensor.numpy().astype(np.float32)

        batches = option_pairs.batches(cases[name], model.config.pad_index, seed)
        for batch, inputs in batches.items():
            captured.clear()
            with torch.no_grad():
                out = model(
                    **{k: torch.from_numpy(v) for k, v in inputs.items()},
                    output_hidden_states=True,
                )
            assert len(captured) == model.config.n_layers
            for key, value in inputs.items():
                arrays[f"{name}/{batch}/{key}"] = value.astype(np.int64)
            arrays[f"{name}/{batch}/hidden_states"] = torch.stack(out.hidden_states).numpy()
            arrays[f"{name}/{batch}/attentions"] = torch.stack(captured).numpy()

    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} cases, "
          f"transformers {transformers.__version__})")  # fmt: skip
    for name in cases:  # sanity: the stored configs are JSON
        json.loads(str(arrays[f"{name}/config_json"]))


def _capture_attentions(model) -> list:
    """Make every attention module of `model` return its weights, and collect them in order."""
    captured: list = []

    def ask_for_weights(module, args, kwargs):
        return args, {**kwargs, "output_attentions": True}

    def keep_weights(module, args, kwargs, output):
        captured.append(output[1])

    for att in model.attentions:
        att.register_forward_pre_hook(ask_for_weights, with_kwargs=True)
        att.register_forward_hook(keep_weights, with_kwargs=True)
    return captured


if __name__ == "__main__":
    main()
