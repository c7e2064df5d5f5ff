"""Convert a PyTorch `pytorch_model.bin` to `model.safetensors`, without torch.

    python tools/convert_bin.py MODEL_DIR_OR_BIN [--out model.safetensors] [--force]

The .bin is read by flaubert_np.torch_bin, whose restricted unpickler never runs code from the
file, and written with safetensors.numpy. The output defaults to `model.safetensors` beside the
.bin; an existing output is kept unless --force. Every tensor keeps its name, shape and values;
bfloat16 tensors become float32 (NumPy has no bfloat16; the conversion is exact), and tensors
that shared storage in the .bin (tied weights) are written as separate copies.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from safetensors.numpy import save_file

from flaubert_np.torch_bin import load_torch_bin


def convert(source: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
    """Write the state dict in `source` (a .bin or a folder holding pytorch_model.bin) as
    safetensors; return the output path."""
    source = Path(source)
    if source.is_dir():
        if not (source / "pytorch_model.bin").exists() and any(
            source.glob("pytorch_model*.bin.index.json")
        ):
            raise ValueError(f"{source}: sharded .bin checkpoints are not supported")
        source = source / "pytorch_model.bin"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    out = Path(out) if out is not None else source.with_name("model.safetensors")
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    tensors = load_torch_bin(source)
    partial = out.with_name(out.name + ".partial")  # never leave a half-written output behind
    # "format": "pt" is what transformers expects in the metadata of a safetensors checkpoint.
    save_file(tensors, partial, metadata={"format": "pt"})
    os.replace(partial, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a pytorch_model.bin, or the model folder holding it")
    parser.add_argument("--out", help="output file (default: model.safetensors beside the .bin)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = parser.parse_args(argv)
    try:
        out = convert(args.source, args.out, args.force)
    except (OSError, ValueError) as e:  # TorchBinError is a ValueError
        print(f"convert_bin: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
