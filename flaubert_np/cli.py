"""The `flaubert-np` console script.

    flaubert-np encode "Une phrase." "Une autre." -o embeddings.npy
    flaubert-np encode -i sentences.txt --format jsonl > embeddings.jsonl
    cat sentences.txt | flaubert-np encode -o embeddings.npy
    flaubert-np encode -i corpus.jsonl --field text --id-field id -o corpus.npy --workers 2
    flaubert-np similarity "Un chat dort." "Un chien dort." "Il pleut."
    flaubert-np attention "Le chat dort." --layer 0 --head 1 -o attention.svg

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
    model_options = _Parser(add_help=False)  # what loading a model takes
    model_options.add_argument(
        "--model", "-m", default="demo",
        help="local directory, Hugging Face Hub id, or 'demo' (default: demo)",
    )
    model_options.add_argument("--revision", help="Hub revision: branch, tag or commit")
    model_options.add_argument(
        "--cache-dir", help="Hub cache directory (default: the standard one)"
    )
    model_options.add_argument(
        "--offline", action="store_true",
        help="never use the network (as HF_HUB_OFFLINE=1): only the Hub cache",
    )
    model_options.add_argument(
        "--token-type-ids", choices=("auto", "zeros", "none"), default="auto",
        help="auto (default: as the transformers version the model was saved with), "
        "zeros (transformers 4.x) or none (transformers 5)",
    )
    common = _Parser(add_help=False, parents=[model_options])
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
    large = encode.add_argument_group(
        "large files", "-i FILE -o OUT.npy is streamed: bounded memory, written in chunks, "
        "resumable (run the same command again after an interruption)",
    )
    large.add_argument(
        "--field", metavar="NAME", help="read -i as JSON lines, the text in this field"
    )
    large.add_argument(
        "--id-field", metavar="NAME", help="with --field: each row's id, saved in OUT.ids.jsonl"
    )
    large.add_argument(
        "--on-invalid", choices=("error", "skip"),
        help="lines with no readable text: error (default: stop before embedding, naming them) "
        "or skip (listed in OUT.skipped.jsonl, row ids in OUT.ids.jsonl)",
    )
    large.add_argument(
        "--on-blank", choices=("keep", "skip", "error"),
        help="blank texts: keep (default: embedded, row i stays line i), skip or error",
    )
    large.add_argument("--workers", type=int, metavar="N", help="worker processes (default: 1)")
    large.add_argument(
        "--chunk-lines", type=int, metavar="N",
        help="input lines per chunk and checkpoint (default: 1024)",
    )
    large.add_argument(
        "--overwrite", action="store_true", help="discard any checkpoint and existing outputs"
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

    attention = commands.add_parser(
        "attention", parents=[model_options], help="draw a layer's attention weights as SVG",
        description="Draw the attention weights of one sentence as an SVG heatmap: one head "
        "(--head), or every head of the layer as a grid.",
    )
    attention.add_argument("text", help="the sentence")
    attention.add_argument(
        "--layer", "-l", type=int, default=0,
        help="layer, from 0 (default: 0; negative counts from the last, -1 = last)",
    )
    attention.add_argument(
        "--head", type=int, default=None,
        help="head, from 0 (default: every head of the layer, as a grid)",
    )
    attention.add_argument("--columns", type=int, default=4, help="grid columns (default: 4)")
    attention.add_argument(
        "-o", "--output", required=True, help="the SVG file to write ('-': stdout)"
    )
    _add_serve_parser(commands, model_options)
    return parser


# -- serve: the embedding server (flaubert_np/serve/, docs/serving.md) ------------------------


def _add_serve_parser(commands, model_options: argparse.ArgumentParser) -> None:
    serve = commands.add_parser(
        "serve", parents=[model_options], help="run an OpenAI- and TEI-compatible embedding server",
        description="Serve the model over HTTP: OpenAI's /v1/embeddings, TEI's /embed, "
        "/similarity and /tokenize, /health, /info, /metrics. Needs the serve extra.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    serve.add_argument("--port", type=int, default=8080, help="default: 8080")
    serve.add_argument(
        "--served-model-name", metavar="NAME", help="the model's name in answers (default: --model)"
    )
    serve.add_argument(
        "--max-batch-tokens", type=int, default=2048, metavar="N",
        help="real tokens per forward pass, across requests (default: 2048)",
    )
    serve.add_argument(
        "--max-concurrent-requests", type=int, default=512, metavar="N",
        help="requests in flight; more get 429 (default: 512)",
    )
    serve.add_argument(
        "--max-client-batch-size", type=int, default=2048, metavar="N",
        help="texts per request; more get 413 (default: 2048)",
    )
    serve.add_argument(
        "--payload-limit", type=int, default=2_000_000, metavar="BYTES",
        help="request body size; larger gets 413 (default: 2000000)",
    )
    serve.add_argument(
        "--auto-truncate", action="store_true",
        help="/embed and /similarity truncate long texts at max_seq_length instead of 413",
    )
    serve.add_argument(
        "--api-key", metavar="KEY",
        help="require 'Authorization: Bearer KEY' on every route but /health "
        "(default: $FLAUBERT_NP_API_KEY, else none)",
    )
    serve.add_argument(
        "--read-timeout", type=float, default=10.0, metavar="SECONDS",
        help="time a client has to send a request's headers, then its body (default: 10)",
    )
    serve.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info",
        help="default: info (one access-log line per request on stderr)",
    )


def cmd_serve(args: argparse.Namespace) -> None:
    try:
        from flaubert_np.serve import server
    except ImportError as e:
        raise CliError(f'serve needs the serve extra ({e.name} is missing): '
                       'pip install "flaubert-np[serve]"') from None
    import os

    from flaubert_np.serve.app import Settings

    settings = Settings(
        served_model_name=args.served_model_name or args.model,
        max_batch_tokens=args.max_batch_tokens,
        max_concurrent_requests=args.max_concurrent_requests,
        max_client_batch_size=args.max_client_batch_size,
        payload_limit=args.payload_limit,
        auto_truncate=args.auto_truncate,
        api_key=args.api_key if args.api_key is not None else os.environ.get("FLAUBERT_NP_API_KEY"),
        read_timeout=args.read_timeout,
    )
    server.check(settings, args.port)  # a wrong flag fails before the model loads
    server.run(_load(args), settings, args.host, args.port, args.log_level)


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
    if args.input not in (None, "-") and fmt == "npy" and not args.texts:
        _encode_file(args)
        return
    for flag in ("field", "id_field", "on_invalid", "on_blank", "workers", "chunk_lines",
                 "overwrite"):
        if getattr(args, flag) not in (None, False):
            raise CliError(f"--{flag.replace('_', '-')} needs -i FILE and -o OUT.npy")
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


def _encode_file(args: argparse.Namespace) -> None:
    """-i FILE -o OUT.npy: streamed in chunks, resumable (flaubert_np/stream.py)."""
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    from flaubert_np.distributed import EmbeddingFunction
    from flaubert_np.stream import encode_file

    fn = EmbeddingFunction(
        args.model, batch_size=args.batch_size, normalize_embeddings=args.normalize,
        revision=args.revision, cache_dir=args.cache_dir, local_files_only=args.offline,
        token_type_ids=args.token_type_ids,
    )
    try:
        summary = encode_file(
            args.input, args.output, fn, field=args.field, id_field=args.id_field,
            on_invalid=args.on_invalid or "error", on_blank=args.on_blank or "keep",
            chunk_lines=1024 if args.chunk_lines is None else args.chunk_lines,
            workers=1 if args.workers is None else args.workers,
            overwrite=args.overwrite, progress=args.progress is not False,
        )
    except KeyboardInterrupt:
        import os

        if not os.path.isdir(f"{args.output}.partial"):
            raise
        raise KeyboardInterrupt(f"(the work done is kept in {args.output}.partial: run the same "
                                "command again to resume)") from None
    if summary.blank:
        lines = ", ".join(map(str, summary.blank_lines)) + (", ..." if summary.blank > 10 else "")
        sys.stderr.write(f"{PROG}: note: {summary.blank} blank text(s) embedded in place "
                         f"(line {lines}); --on-blank skip or error to change that\n")


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
    width = max(8, 1 + max(len(label) for label in labels))  # room for "-0.1234" and a space
    print(" " * width + "".join(f"{label:>{width}}" for label in labels))
    for label, row in zip(labels, scores, strict=True):
        print(f"{label:<{width}}" + "".join(f"{x:>{width}.4f}" for x in row))


def cmd_attention(args: argparse.Namespace) -> None:
    if args.columns < 1:
        raise CliError(f"--columns must be at least 1, got {args.columns}")
    encoder = _load(args)
    from flaubert_np.svg import attention_grid_svg, attention_svg, token_labels

    features = encoder.tokenize([args.text])
    output = encoder.model(
        features["input_ids"],
        attention_mask=features["attention_mask"],
        token_type_ids=features.get("token_type_ids"),
        output_attentions=True,
    )
    n_layers = len(output.attentions)
    if not -n_layers <= args.layer < n_layers:
        raise CliError(f"--layer {args.layer} out of range: the model has {n_layers} layers")
    layer = args.layer % n_layers
    weights = output.attentions[layer][0]  # [heads, seq, seq]
    ids = features["input_ids"][0].tolist()
    labels = token_labels(encoder.tokenizer.convert_ids_to_tokens(ids))
    if args.head is None:
        title = f"{args.model}: layer {layer}, all heads"
        svg = attention_grid_svg(labels, weights, title=title, columns=args.columns)
    else:
        if not 0 <= args.head < len(weights):
            raise CliError(f"--head {args.head} out of range: layers have {len(weights)} heads")
        title = f"{args.model}: layer {layer}, head {args.head}"
        svg = attention_svg(labels, weights[args.head], title=title)
    if args.output == "-":
        sys.stdout.write(svg)
        return
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(svg)
    except OSError as e:
        raise CliError(f"cannot write '{args.output}': {e.strerror}") from None
    print(f"wrote {args.output}: {title}, {len(labels)} tokens", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.offline:
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported
    command = {"encode": cmd_encode, "similarity": cmd_similarity, "attention": cmd_attention,
               "serve": cmd_serve}[args.command]  # fmt: skip
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
    except KeyboardInterrupt as e:
        return _fail(" ".join(("interrupted", *map(str, e.args))), 130)
    except Exception as e:  # anything else still gets one line, with its type to report it by
        return _fail(f"{type(e).__name__}: {e}")
    return 0


def _fail(message: str, code: int = 1) -> int:
    # One line, whatever the message holds.
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
