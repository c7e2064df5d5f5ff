"""Well-scaled random weights for test and golden FlauBERT models.

transformers' own init leaves layer norms at 1 / 0 and biases at 0, which would hide mistakes in
them; this gives every parameter a random value of a sensible size. Shared by tests/conftest.py
and the golden tools (goldens_prenorm_tf4.py, goldens_sentence_tf4.py), so a golden model and a
test model are made the same way.
"""

import torch


def randomize_flaubert(model: torch.nn.Module, seed: int = 0) -> None:
    """Overwrite the parameters of a FlauBERT model in place, deterministically from `seed`.

    A sinusoidal position table is left as it is: it is fixed, not learned.
    """
    gen = torch.Generator().manual_seed(seed)
    sinusoidal = getattr(model.config, "sinusoidal_embeddings", False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("position_embeddings.weight") and sinusoidal:
                continue
            noise = torch.randn(p.shape, generator=gen)
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.2 * noise)
            elif "embeddings" in name:
                p.copy_(noise)
            else:  # a linear weight [out, in]
                p.copy_(noise / p.shape[1] ** 0.5)
