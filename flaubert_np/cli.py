"""The `flaubert-np` console script.

    flaubert-np encode "Une phrase." "Une autre." -o embeddings.npy
    flaubert-np encode -i sentences.txt --format jsonl > embeddings.jsonl
    cat sentences.txt | flaubert-np encode -o embeddings.npy
    flaubert-np similarity "Un chat dort." "Un chien dort." "Il pleut."

`--model` takes a local directory, a Hugging Face Hub id or "demo" (the default, the small model
shipped with the package). Any failure is one line on stderr and a non-zero exit code: 2 for a
wrong command line, 1 for everything else.

Importing this module is cheap: numpy and the model code load inside the commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

PROG = "flaubert-np"
# Inputs at least this long get a progress bar on stderr (unless --no-progress).
PROGRESS_MIN_TEXTS = 256


class CliError(Exception):
    """A failure to report as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a wrong command line is one line too (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="FlauBERT sentence embeddings in pure NumPy.")
    common = _Parser(add_help=False)
    common.add_argument(
        "--model", "-m", default="demo",
        help="local directory, Hugging Face Hub id, or 'demo' (default: demo)",
    )
    common.add_argument("--revision", help="Hub revision: branch, tag or commit")
    common.add_argument("--cache-dir", help="Hub cache directory (default: the standard one)")
    common.add_argument(
        "--offline", action="store_true",
        help="never use the network (as HF_HUB_OFFLINE=1): only the Hub cache",
    )
    common.add_argument(
        "--token-type-ids", choices=("auto", "zeros", "none"), default="auto",
        help="auto (default: as the transformers version the model was saved with), "
        "zeros (transformers 4.x) or none (transformers 5)",
    )
    common.add_argument("--batch-size", type=int, default=32, help="default: 32")
    common.add_argument(
        "--normalize", action="store_true", help="L2-normalise the embeddings"
    )
    progress = common.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None,
        help=f"always show a progress bar on stderr (default: for {PROGRESS_MIN_TEXTS}+ texts)",
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show it"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    encode = commands.add_parser(
        "encode", parents=[common], help="embed texts",
        description="Embed texts given as arguments, or one per line from a file or stdin.",
    )
    encode.add_argument("texts", nargs="*", help="texts (default: read -i FILE or stdin)")
    encode.add_argument(
        "-i", "--input",
        help="a UTF-8 file, one text per line, each line a row of the output ('-': stdin)",
    )
    encode.add_argument(
        "-o", "--output", help="write a .npy file [n_texts, dim] (default: JSON lines on stdout)"
    )
    encode.add_argument(
        "--format", choices=("npy", "jsonl"), default=None,
        help="npy (needs -o) or jsonl (default: npy with -o, else jsonl)",
    )

    similarity = commands.add_parser(
        "similarity", parents=[common], help="cosine similarity matrix of texts",
        description="Print the cosine similarity of every pair of texts.",
    )
    similarity.add_argument("texts", nargs="+", help="two or more texts")
    similarity.add_argument(
        "--format", choices=("table", "json"), default="table",
        help="table (default) or json (the full-precision matrix)",
    )
    return parser


def _read_texts(args: argparse.Namespace) -> list[str]:
    if args.texts and args.input:
        raise CliError("give texts as arguments or with --input, not both")
    if args.texts:
        return list(args.texts)
    source = "stdin" if args.input in (None, "-") else f"'{args.input}'"
    try:
        if source == "stdin":
            data = sys.stdin.buffer.read()
        else:
            with open(args.input, "rb") as f:
                data = f.read()
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise CliError(f"input file {source} does not exist") from None
    except UnicodeDecodeError as e:
        raise CliError(f"input {source} is not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise CliError(f"cannot read input {source}: {e.strerror}") from None
    # Every line is a text, blank ones too, so that row i of the output is line i.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines[-1] == "":  # the final newline ends the last line; it does not start a new one
        lines.pop()
    if not lines:
        raise CliError(f"no texts to encode: {source} is empty")
    return lines


def _load(args: argparse.Namespace):
    from flaubert_np.sentence import SentenceEncoder

    return SentenceEncoder.from_pretrained(
        args.model,
        revision=args.revision,
        cache_dir=args.cache_dir,
        local_files_only=args.offline,
        token_type_ids=args.token_type_ids,
    )


def _encode_texts(args: argparse.Namespace, texts: list[str]):
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    encoder = _load(args)
    progress = len(texts) >= PROGRESS_MIN_TEXTS if args.progress is None else args.progress
    embeddings = encoder.encode(
        texts,
        batch_size=args.batch_size,
        show_progress_bar=progress,
        normalize_embeddings=args.normalize,
    )
    return embeddings


def cmd_encode(args: argparse.Namespace) -> None:
    fmt = args.format or ("npy" if args.output else "jsonl")
    if fmt == "npy" and not args.output:
        raise CliError("--format npy needs an output file: -o FILE.npy")
    texts = _read_texts(args)
    embeddings = _encode_texts(args, texts)
    if fmt == "npy":
        import numpy as np

        try:
            with open(args.output, "wb") as f:
                np.save(f, embeddings)
        except OSError as e:
            raise CliError(f"cannot write '{args.output}': {e.strerror}") from None
        return
    import json

    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for text, vector in zip(texts, embeddings, strict=True):
            row = {"text": text, "embedding": [float(x) for x in vector]}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()


def cmd_similarity(args: argparse.Namespace) -> None:
    if len(args.texts) < 2:
        raise CliError("similarity needs at least two texts")
    embeddings = _encode_texts(args, list(args.texts))
    from flaubert_np.similarity import cos_sim

    scores = cos_sim(embeddings, embeddings)
    if args.format == "json":
        import json

        print(json.dumps({"texts": args.texts, "cosine": scores.tolist()}, ensure_ascii=False))
        return
    labels = [f"[{i}]" for i in range(len(args.texts))]
    for label, text in zip(labels, args.texts, strict=True):
        print(f"{label} {text}")
    width = max(7, *(len(label) for label in labels))
    print(" " * width + "".join(f"{label:>{width}}" for label in labels))
    for label, row in zip(labels, scores, strict=True):
        print(f"{label:<{width}}" + "".join(f"{x:>{width}.4f}" for x in row))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.offline:
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported
    command = {"encode": cmd_encode, "similarity": cmd_similarity}[args.command]
    try:
        command(args)
    except CliError as e:
        return _fail(str(e))
    except BrokenPipeError:  # e.g. `flaubert-np encode ... | head`: the reader left, stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (OSError, ValueError) as e:  # what the package raises, with a message naming the cause
        return _fail(str(e) or type(e).__name__)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as e:  # anything else still gets one line, with its type to report it by
        return _fail(f"{type(e).__name__}: {e}")
    return 0


def _fail(message: str, code: int = 1) -> int:
    # One line, whatever the message holds.
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
