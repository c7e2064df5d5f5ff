"""sentence-transformers' Dense module: a linear layer and an activation after pooling.

A Dense folder holds `config.json` (in_features, out_features, bias, activation_function,
use_residual) and its weights (`linear.weight`, `linear.bias`, `residual.weight`) in
model.safetensors or, from older models, pytorch_model.bin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flaubert_np.files import ModelFileError, field, read_json_object
from flaubert_np.weights import SAFETENSORS_NAME, TORCH_BIN_NAME, read_safetensors, to_float32

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Tanh": np.tanh,
    "Identity": lambda x: x,
}


@dataclass
class Dense:
    """activation(x @ weight.T + bias) (+ x, with use_residual)."""

    weight: np.ndarray  # [out, in]
    bias: np.ndarray | None  # [out]
    activation: str  # a key of ACTIVATIONS
    residual: np.ndarray | None = None  # [out, in], when use_residual and in != out
    use_residual: bool = False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # [batch, in] -> [batch, out]
        out = x @ self.weight.T
        if self.bias is not None:
            out = out + self.bias
        out = ACTIVATIONS[self.activation](out)
        if self.use_residual:
            out = out + (x if self.residual is None else x @ self.residual.T)
        return out.astype(np.float32, copy=False)

    @classmethod
    def from_dir(cls, folder: Path) -> Dense:
        config_file = folder / "config.json"
        config = read_json_object(config_file)
        activation = field(
            config, "activation_function", str, config_file, "torch.nn.modules.activation.Tanh"
        )
        name = activation.rsplit(".", 1)[-1]
        if not activation.startswith("torch.") or name not in ACTIVATIONS:
            raise ModelFileError(
                f"{config_file}: Dense activation '{activation}' is not supported "
                f"(flaubert-np runs {', '.join(ACTIVATIONS)})"
            )
        for key in ("module_input_name", "module_output_name"):
            if config.get(key, "sentence_embedding") not in (None, "sentence_embedding"):
                raise ModelFileError(f"{config_file}: Dense {key} {config[key]!r} is not supported")
        n_in, n_out = (field(config, k, int, config_file) for k in ("in_features", "out_features"))
        if n_in is None or n_out is None:
            raise ModelFileError(f"{config_file}: in_features and out_features are required")
        has_bias = field(config, "bias", bool, config_file, True)
        use_residual = field(config, "use_residual", bool, config_file, False)
        tensors = load_module_weights(folder)
        expected: dict[str, tuple[int, ...]] = {"linear.weight": (n_out, n_in)}
        if has_bias:
            expected["linear.bias"] = (n_out,)
        if use_residual and n_in != n_out:
            expected["residual.weight"] = (n_out, n_in)
        for key, shape in expected.items():
            if key not in tensors:
                raise ModelFileError(f"{folder}: Dense weights have no tensor '{key}'")
            if tensors[key].shape != shape:
                raise ModelFileError(
                    f"{folder}: Dense tensor '{key}' has shape {tensors[key].shape}, "
                    f"expected {shape} from {config_file.name}"
                )
        return cls(
            weight=tensors["linear.weight"],
            bias=tensors.get("linear.bias") if has_bias else None,
            activation=name,
            residual=tensors.get("residual.weight") if use_residual else None,
            use_residual=use_residual,
        )

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]


def load_module_weights(folder: Path) -> dict[str, np.ndarray]:
    """A small module's float32 tensors, from model.safetensors or (without torch)
    pytorch_model.bin."""
    if (folder / SAFETENSORS_NAME).is_file():
        path = folder / SAFETENSORS_NAME
        return {
            key: to_float32(code, array, f"{path}: tensor '{key}'")
            for key, (code, array) in read_safetensors(path).items()
        }
    if (folder / TORCH_BIN_NAME).is_file():
        from flaubert_np.torch_bin import load_torch_bin

        tensors = load_torch_bin(folder / TORCH_BIN_NAME)
        return {key: np.asarray(v, dtype=np.float32) for key, v in tensors.items()}
    raise FileNotFoundError(f"{folder}: no {SAFETENSORS_NAME} or {TORCH_BIN_NAME}")
