"""The `flaubert-np` command line's flags: every subcommand and option, in one place.

cli.py runs the commands; this module only describes them (argparse), so that `--help` and the
flags read like the program's manual. A wrong command line is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse

from flaubert_np import __version__

PROG = "flaubert-np"
# Inputs at least this long get a progress bar on stderr (unless --no-progress).
PROGRESS_MIN_TEXTS = 256


def _positive(value: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


class _Parser(argparse.ArgumentParser):
    """argparse, but a wrong command line is one line too (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand: encode, similarity, attention, explain, serve."""
    parser = _Parser(prog=PROG, description="FlauBERT sentence embeddings in pure NumPy.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    model_options = _Parser(add_help=False)  # what loading a model takes
    model_options.add_argument(
        "--model",
        "-m",
        default="demo",
        help="local directory, Hugging Face Hub id, or 'demo' (default: demo)",
    )
    model_options.add_argument("--revision", help="Hub revision: branch, tag or commit")
    model_options.add_argument(
        "--cache-dir", help="Hub cache directory (default: the standard one)"
    )
    model_options.add_argument(
        "--offline",
        action="store_true",
        help="never use the network (as HF_HUB_OFFLINE=1): only the Hub cache",
    )
    model_options.add_argument(
        "--token-type-ids",
        choices=("auto", "zeros", "none"),
        default="auto",
        help="auto (default: as the transformers version the model was saved with), "
        "zeros (transformers 4.x) or none (transformers 5)",
    )
    common = _Parser(add_help=False, parents=[model_options])
    common.add_argument("--batch-size", type=_positive, default=32, help="default: 32")
    common.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    common.add_argument(
        "--max-seq-length",
        type=int,
        metavar="N",
        help="truncate texts to N tokens, prompt included (default: the model's)",
    )
    prompts = common.add_mutually_exclusive_group()
    prompts.add_argument(
        "--prompt", metavar="TEXT", help='prepend TEXT to every text (e.g. "query: ")'
    )
    prompts.add_argument(
        "--prompt-name",
        metavar="NAME",
        help="prepend the model's prompt of that name (e.g. query, document)",
    )
    progress = common.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help=f"always show a progress bar on stderr (default: for {PROGRESS_MIN_TEXTS}+ texts)",
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show it"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    encode = commands.add_parser(
        "encode",
        parents=[common],
        help="embed texts",
        description="Embed texts given as arguments, or one per line from a file or stdin.",
    )
    encode.add_argument("texts", nargs="*", help="texts (default: read -i FILE or stdin)")
    encode.add_argument(
        "-i",
        "--input",
        help="a UTF-8 file, one text per line, each line a row of the output ('-': stdin)",
    )
    encode.add_argument(
        "-o",
        "--output",
        help="write a .npy file [n_texts, dim] or a .jsonl file (default: JSON lines on stdout)",
    )
    encode.add_argument(
        "--format",
        choices=("npy", "jsonl"),
        default=None,
        help="npy (needs -o) or jsonl (default: -o's suffix, .npy or .jsonl/.ndjson; else jsonl)",
    )
    encode.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing output files (a streamed run also discards a checkpoint made "
        "with other inputs or options)",
    )
    lines = encode.add_argument_group(
        "input lines",
        "rules for the lines of -i FILE or stdin (row ids and skipped lines go to "
        "OUT.ids.jsonl and OUT.skipped.jsonl, or into the JSON lines output)",
    )
    lines.add_argument("--field", metavar="NAME", help="read JSON lines, the text in this field")
    lines.add_argument("--id-field", metavar="NAME", help="with --field: each row's id")
    lines.add_argument(
        "--on-invalid",
        choices=("error", "skip"),
        help="lines with no readable text: error (default: stop before embedding, naming them) "
        "or skip (leave them out, listed)",
    )
    lines.add_argument(
        "--on-blank",
        choices=("keep", "skip", "error"),
        help="blank texts: keep (default: embedded, row i stays line i), skip or error",
    )
    large = encode.add_argument_group(
        "large files",
        "-i FILE -o OUT.npy is streamed: bounded memory, written in chunks, "
        "resumable (run the same command again after an interruption)",
    )
    large.add_argument(
        "--workers", type=_positive, metavar="N", help="worker processes (default: 1)"
    )
    large.add_argument(
        "--chunk-lines",
        type=_positive,
        metavar="N",
        help="input lines per chunk and checkpoint (default: 1024)",
    )

    similarity = commands.add_parser(
        "similarity",
        parents=[common],
        help="cosine similarity matrix of texts",
        description="Print the cosine similarity of every pair of texts.",
    )
    similarity.add_argument("texts", nargs="*", help="two or more texts (default: read -i FILE)")
    similarity.add_argument("-i", "--input", help="a UTF-8 file, one text per line ('-': stdin)")
    similarity.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table (default) or json (the full-precision matrix)",
    )

    attention = commands.add_parser(
        "attention",
        parents=[model_options],
        help="draw a layer's attention weights as SVG",
        description="Draw the attention weights of one sentence as an SVG heatmap: one head "
        "(--head), or every head of the layer as a grid.",
    )
    attention.add_argument("text", help="the sentence")
    attention.add_argument(
        "--layer",
        "-l",
        type=int,
        default=0,
        help="layer, from 0 (default: 0; negative counts from the last, -1 = last)",
    )
    attention.add_argument(
        "--head",
        type=int,
        default=None,
        help="head, from 0 (default: every head of the layer, as a grid)",
    )
    attention.add_argument("--columns", type=_positive, default=4, help="grid columns (default: 4)")
    attention.add_argument(
        "-o", "--output", required=True, help="the SVG file to write ('-': stdout)"
    )
    attention.add_argument("--overwrite", action="store_true", help="replace an existing file")

    explain = commands.add_parser(
        "explain",
        parents=[model_options],
        help="why two sentences are similar, as an HTML page",
        description="Write one self-contained HTML page (no network needed to view it): the "
        "tokens, every attention map, and for two sentences the exact split of their cosine "
        "into token pairs and how it forms layer by layer.",
    )
    explain.add_argument("text_a", metavar="A", help="a sentence")
    explain.add_argument("text_b", metavar="B", nargs="?", help="a second sentence (optional)")
    explain.add_argument(
        "-o", "--output", required=True, help="the HTML file to write ('-': stdout)"
    )
    explain.add_argument("--overwrite", action="store_true", help="replace an existing file")
    _add_serve_parser(commands, model_options)
    return parser


def _add_serve_parser(commands, model_options: argparse.ArgumentParser) -> None:
    serve = commands.add_parser(
        "serve",
        parents=[model_options],
        help="run an OpenAI- and TEI-compatible embedding server",
        description="Serve the model over HTTP: OpenAI's /v1/embeddings, TEI's /embed, "
        "/similarity and /tokenize, /health, /info, /metrics. Needs the serve extra.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    serve.add_argument("--port", type=int, default=8080, help="default: 8080")
    serve.add_argument(
        "--served-model-name", metavar="NAME", help="the model's name in answers (default: --model)"
    )
    serve.add_argument(
        "--max-batch-tokens",
        type=int,
        default=2048,
        metavar="N",
        help="real tokens per forward pass, across requests (default: 2048)",
    )
    serve.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=512,
        metavar="N",
        help="requests in flight; more get 429 (default: 512)",
    )
    serve.add_argument(
        "--max-client-batch-size",
        type=int,
        default=2048,
        metavar="N",
        help="texts per request; more get 413 (default: 2048)",
    )
    serve.add_argument(
        "--payload-limit",
        type=int,
        default=2_000_000,
        metavar="BYTES",
        help="request body size; larger gets 413 (default: 2000000)",
    )
    serve.add_argument(
        "--auto-truncate",
        action="store_true",
        help="/embed and /similarity truncate long texts at max_seq_length instead of 413",
    )
    serve.add_argument(
        "--api-key",
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' on every route but /health "
        "(default: $FLAUBERT_NP_API_KEY, else none)",
    )
    serve.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time a client has to send a request's headers, then its body (default: 10)",
    )
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="default: info (one access-log line per request on stderr)",
    )
