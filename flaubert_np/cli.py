"""The `flaubert-np` console script.

    flaubert-np encode "Une phrase." "Une autre." -o embeddings.npy
    flaubert-np encode -i sentences.txt --format jsonl > embeddings.jsonl
    cat sentences.txt | flaubert-np encode -o embeddings.npy
    flaubert-np encode -i corpus.jsonl --field text --id-field id -o corpus.npy --workers 2
    flaubert-np similarity "Un chat dort." "Un chien dort." "Il pleut."
    flaubert-np similarity -i sentences.txt --format json
    flaubert-np encode -i passages.txt -o passages.npy --prompt-name document --max-seq-length 256
    flaubert-np attention "Le chat dort." --layer 0 --head 1 -o attention.svg
    flaubert-np explain "Un chat dort." "Un chien dort." -o explain.html

`--model` takes a local directory, a Hugging Face Hub id or "demo" (the default, the small model
shipped with the package). Any failure is one line on stderr and a non-zero exit code: 2 for a
wrong command line, 1 for everything else (130 for Ctrl-C). No output file is ever replaced
without --overwrite, and every one is written atomically. docs/cli.md has the details.

The flags are described in arguments.py. Importing this module is cheap: numpy and the model
code load inside the commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flaubert_np.arguments import PROG, PROGRESS_MIN_TEXTS, build_parser

if TYPE_CHECKING:
    import numpy as np

    from flaubert_np.lines import Chunk


class CliError(Exception):
    """A failure to report as one line."""

    code = 1


class UsageError(CliError):
    """A wrong command line (exit code 2, as argparse's own errors)."""

    code = 2


def _read_input(args: argparse.Namespace) -> Chunk:
    """The texts to encode: the arguments, or the lines of -i FILE / stdin by the line rules
    (--field, --id-field, --on-invalid, --on-blank), as a lines.Chunk."""
    from flaubert_np.lines import Chunk, InputSpec, Rules, read_all

    if args.texts and getattr(args, "input", None):
        raise UsageError("give texts as arguments or with --input, not both")
    flags = [f for f in ("field", "id_field", "on_invalid", "on_blank") if getattr(args, f, None)]
    if args.texts:
        if flags:
            raise UsageError(
                f"--{flags[0].replace('_', '-')} applies to the lines of -i FILE "
                "or stdin, not to texts given as arguments"
            )
        return Chunk(0, 0, 0, list(args.texts), [], [], [])
    source = "stdin" if args.input in (None, "-") else f"'{args.input}'"
    try:
        if source == "stdin":
            data = sys.stdin.buffer.read()
        else:
            with open(args.input, "rb") as f:
                data = f.read()
    except FileNotFoundError:
        raise CliError(f"input file {source} does not exist") from None
    except OSError as e:
        raise CliError(f"cannot read input {source}: {e.strerror}") from None
    if not data:
        raise CliError(f"no texts to encode: {source} is empty")
    # Every line is a text, blank ones too (by default), so that row i of the output is line i.
    spec = InputSpec(getattr(args, "field", None), getattr(args, "id_field", None))
    rules = Rules(getattr(args, "on_invalid", None) or "error",
                  getattr(args, "on_blank", None) or "keep")  # fmt: skip
    chunk = read_all(data, spec, rules, "stdin" if source == "stdin" else args.input)
    if not chunk.texts:
        raise CliError(f"no texts to encode in {source} ({len(chunk.skipped)} lines skipped)")
    return chunk


def _read_texts(args: argparse.Namespace) -> list[str]:
    """The texts of the arguments, or of the lines of -i FILE / stdin."""
    return _read_input(args).texts


def _load(args: argparse.Namespace):
    from flaubert_np.sentence import SentenceEncoder

    encoder = SentenceEncoder.from_pretrained(
        args.model,
        revision=args.revision,
        cache_dir=args.cache_dir,
        local_files_only=args.offline,
        token_type_ids=args.token_type_ids,
    )
    _check_model_options(args, encoder.prompts, encoder.model.config.max_position_embeddings)
    if getattr(args, "max_seq_length", None) is not None:
        encoder.max_seq_length = args.max_seq_length
    return encoder


def _check_model_options(args: argparse.Namespace, prompts: dict, limit: int) -> None:
    """--prompt-name and --max-seq-length against the model's prompts and its
    max_position_embeddings (`limit`)."""
    name = getattr(args, "prompt_name", None)
    if name is not None and name not in prompts:
        known = ", ".join(sorted(prompts)) or "none"
        raise CliError(f"--prompt-name {name}: not one of the model's prompts ({known})")
    length = getattr(args, "max_seq_length", None)
    if length is not None and not 1 <= length <= limit:
        raise CliError(
            f"--max-seq-length must be from 1 to the model's "
            f"max_position_embeddings ({limit}), got {length}"
        )


def _encode_texts(args: argparse.Namespace, texts: list[str]):
    encoder = _load(args)
    progress = len(texts) >= PROGRESS_MIN_TEXTS if args.progress is None else args.progress
    embeddings = encoder.encode(
        texts,
        batch_size=args.batch_size,
        show_progress_bar=progress,
        normalize_embeddings=args.normalize,
        prompt=args.prompt,
        prompt_name=args.prompt_name,
    )
    return embeddings


def _refuse_existing(args: argparse.Namespace, fmt: str) -> None:
    """Before any work: an output that exists needs --overwrite."""
    from flaubert_np.stream import existing_outputs

    if not args.output or args.overwrite:
        return
    out = Path(args.output)
    existing = existing_outputs(out) if fmt == "npy" else [out] if out.exists() else []
    if existing:
        raise CliError(f"{existing[0]} exists; pass --overwrite to replace it")


def _output_format(output: str | None) -> str:
    """encode's format when --format is not given: JSON lines on stdout, else -o's suffix."""
    if not output:
        return "jsonl"
    suffix = Path(output).suffix.lower()
    if suffix == ".npy":
        return "npy"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise UsageError(f"-o {output}: name it .npy (a NumPy array) or .jsonl / .ndjson (JSON "
                     "lines), or give --format")  # fmt: skip


def cmd_encode(args: argparse.Namespace) -> None:
    fmt = args.format or _output_format(args.output)
    if fmt == "npy" and not args.output:
        raise UsageError("--format npy needs an output file: -o FILE.npy")
    if args.id_field and not args.field:
        raise UsageError("--id-field needs --field: ids come from JSON lines")
    if args.input not in (None, "-") and fmt == "npy" and not args.texts:
        _encode_file(args)
        return
    for flag in ("workers", "chunk_lines"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag.replace('_', '-')} needs -i FILE and -o OUT.npy")
    _refuse_existing(args, fmt)
    chunk = _read_input(args)
    embeddings = _encode_texts(args, chunk.texts)
    write_ids = bool(args.id_field) or "skip" in (args.on_invalid, args.on_blank)
    if fmt == "npy":
        from flaubert_np.lines import Rules
        from flaubert_np.stream import save_all

        rules = Rules(args.on_invalid or "error", args.on_blank or "keep")
        _write(args.output, lambda: save_all(chunk, embeddings, Path(args.output), rules,
                                             write_ids, args.overwrite))  # fmt: skip
    else:
        _write_json_lines(args, chunk, embeddings, write_ids)
    _notes(len(chunk.blank), chunk.blank, chunk.skipped)


def _write_json_lines(
    args: argparse.Namespace, chunk: Chunk, embeddings: np.ndarray, write_ids: bool
) -> None:
    """One {"id"?, "text", "embedding"} object per row, on stdout or into -o FILE."""
    import json

    def rows() -> Iterator[str]:
        ids = chunk.ids if write_ids else [None] * len(chunk.texts)
        for ident, text, vector in zip(ids, chunk.texts, embeddings, strict=True):
            row = {"id": ident} if write_ids else {}
            row.update(text=text, embedding=[float(x) for x in vector])
            yield json.dumps(row, ensure_ascii=False) + "\n"

    if not args.output:
        sys.stdout.writelines(rows())
        return
    from flaubert_np.atomic import atomic_write

    _write(args.output, lambda: atomic_write(
        Path(args.output), lambda f: f.writelines(r.encode("utf-8") for r in rows()),
        args.overwrite))  # fmt: skip


def _write(output: str, write: Callable[[], object]) -> None:
    """Call `write`; a failure to write `output` is one line (an existing file says so)."""
    try:
        write()
    except FileExistsError:
        raise
    except OSError as e:
        raise CliError(f"cannot write '{output}': {e.strerror or e}") from None


def _notes(blank: int, blank_lines: list[int], skipped: list[tuple[int, str]]) -> None:
    if blank:
        lines = ", ".join(map(str, blank_lines[:10])) + (", ..." if blank > 10 else "")
        sys.stderr.write(
            f"{PROG}: note: {blank} blank text(s) embedded in place "
            f"(line {lines}); --on-blank skip or error to change that\n"
        )
    if skipped:
        listed = "; ".join(f"line {n}: {reason}" for n, reason in skipped[:10])
        more = "; ..." if len(skipped) > 10 else ""
        sys.stderr.write(f"{PROG}: note: {len(skipped)} line(s) skipped: {listed}{more}\n")


def _encode_file(args: argparse.Namespace) -> None:
    """-i FILE -o OUT.npy: streamed in chunks, resumable (flaubert_np/stream.py)."""
    import dataclasses

    from flaubert_np.embedding_function import EmbeddingFunction
    from flaubert_np.stream import encode_file

    fn = EmbeddingFunction(
        args.model,
        batch_size=args.batch_size,
        normalize_embeddings=args.normalize,
        revision=args.revision,
        cache_dir=args.cache_dir,
        local_files_only=args.offline,
        token_type_ids=args.token_type_ids,
        prompt=args.prompt,
        prompt_name=args.prompt_name,
        max_seq_length=args.max_seq_length,
    )
    # flag names in the messages, before any work (fn.encoder itself would refuse a bad length)
    model = dataclasses.replace(fn, max_seq_length=None).encoder
    _check_model_options(args, model.prompts, model.model.config.max_position_embeddings)
    try:
        summary = encode_file(
            args.input,
            args.output,
            fn,
            field=args.field,
            id_field=args.id_field,
            on_invalid=args.on_invalid or "error",
            on_blank=args.on_blank or "keep",
            chunk_lines=1024 if args.chunk_lines is None else args.chunk_lines,
            workers=1 if args.workers is None else args.workers,
            overwrite=args.overwrite,
            progress=args.progress is not False,
        )
    except KeyboardInterrupt:
        if not os.path.isdir(f"{args.output}.partial"):
            raise
        raise KeyboardInterrupt(
            f"(the work done is kept in {args.output}.partial: run the same "
            "command again to resume)"
        ) from None
    _notes(summary.blank, summary.blank_lines, [])


def cmd_similarity(args: argparse.Namespace) -> None:
    texts = _read_texts(args)
    if len(texts) < 2:  # a usage error on the command line, a data error in a file
        error = CliError if getattr(args, "input", None) else UsageError
        raise error(f"similarity needs at least two texts, got {len(texts)}")
    embeddings = _encode_texts(args, texts)
    from flaubert_np.similarity import cos_sim

    scores = cos_sim(embeddings, embeddings)
    if args.format == "json":
        import json

        print(json.dumps({"texts": texts, "cosine": scores.tolist()}, ensure_ascii=False))
        return
    labels = [f"[{i}]" for i in range(len(texts))]
    for label, text in zip(labels, texts, strict=True):
        print(f"{label} {text}")
    width = max(8, 1 + max(len(label) for label in labels))  # room for "-0.1234" and a space
    print(" " * width + "".join(f"{label:>{width}}" for label in labels))
    for label, row in zip(labels, scores, strict=True):
        print(f"{label:<{width}}" + "".join(f"{x:>{width}.4f}" for x in row))


def cmd_attention(args: argparse.Namespace) -> None:
    if args.output != "-" and not args.overwrite and os.path.exists(args.output):
        raise CliError(f"{args.output} exists; pass --overwrite to replace it")
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
        raise UsageError(f"--layer {args.layer} out of range: the model has {n_layers} layers")
    layer = args.layer % n_layers
    weights = output.attentions[layer][0]  # [heads, seq, seq]
    ids = features["input_ids"][0].tolist()
    labels = token_labels(encoder.tokenizer.convert_ids_to_tokens(ids))
    if args.head is None:
        title = f"{args.model}: layer {layer}, all heads"
        svg = attention_grid_svg(labels, weights, title=title, columns=args.columns)
    else:
        if not 0 <= args.head < len(weights):
            raise UsageError(f"--head {args.head} out of range: layers have {len(weights)} heads")
        title = f"{args.model}: layer {layer}, head {args.head}"
        svg = attention_svg(labels, weights[args.head], title=title)
    if args.output == "-":
        sys.stdout.write(svg)
        return
    from flaubert_np.atomic import atomic_write

    _write(args.output, lambda: atomic_write(Path(args.output), svg.encode("utf-8"),
                                             args.overwrite))  # fmt: skip
    print(f"wrote {args.output}: {title}, {len(labels)} tokens", file=sys.stderr)


def cmd_explain(args: argparse.Namespace) -> None:
    if args.output != "-" and not args.overwrite and os.path.exists(args.output):
        raise CliError(f"{args.output} exists; pass --overwrite to replace it")
    encoder = _load(args)
    from flaubert_np.explain import render_html

    page = render_html(encoder, args.text_a, args.text_b, model_name=args.model)
    if args.output == "-":
        sys.stdout.write(page)
        return
    from flaubert_np.atomic import atomic_write

    data = page.encode("utf-8")
    _write(args.output, lambda: atomic_write(Path(args.output), data, args.overwrite))
    print(f"wrote {args.output} ({len(data) / 1e6:.2f} MB)", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> None:
    try:
        from flaubert_np.serve import server
    except ImportError as e:
        raise CliError(
            f'serve needs the serve extra ({e.name} is missing): pip install "flaubert-np[serve]"'
        ) from None
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported
    command = {"encode": cmd_encode, "similarity": cmd_similarity, "attention": cmd_attention,
               "explain": cmd_explain, "serve": cmd_serve}[args.command]  # fmt: skip
    try:
        command(args)
    except CliError as e:
        return _fail(str(e), e.code)
    except BrokenPipeError:  # e.g. `flaubert-np encode ... | head`: the reader left, stop quietly
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
