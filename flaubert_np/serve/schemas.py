"""What the routes accept and answer: OpenAI's and TEI's request fields, checked, and their
response and error shapes.

A request field is checked against the API it comes from: an unknown field, a wrong type, an
empty text or token ids instead of text is an error naming the field, never silently ignored.
OpenAI answers a bad request with 400 and `{"error": {"message", "type", "param", "code"}}`;
TEI with 422 and `{"error", "error_type"}`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

OPENAI_FIELDS = ("input", "model", "encoding_format", "dimensions", "user")
TEI_EMBED_FIELDS = ("inputs", "normalize", "truncate", "truncation_direction")
TEI_TOKENIZE_FIELDS = ("inputs", "add_special_tokens")
TEI_SIMILARITY_FIELDS = ("inputs",)
# TEI's error_type for each status it can answer with.
TEI_ERROR_TYPES = {
    400: "Validation",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    408: "Timeout",
    413: "Validation",
    422: "Validation",
    429: "Overloaded",
    500: "Backend",
}


class ApiError(Exception):
    """A request that gets an error response: its status, message and (OpenAI) param/type/code."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        type: str = "invalid_request_error",
        code: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.type = type
        self.code = code


def openai_error(error: ApiError) -> dict:
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


def tei_error(error: ApiError) -> dict:
    return {"error": error.message, "error_type": TEI_ERROR_TYPES.get(error.status, "Backend")}


@dataclass
class EmbedRequest:
    texts: list[str]
    single: bool  # one string was sent, not a list
    truncate: bool = True  # at max_seq_length; else a longer input is refused
    normalize: bool = True
    base64: bool = False  # OpenAI's encoding_format


def _object(body: Any, fields: tuple[str, ...], status: int) -> dict:
    if not isinstance(body, dict):
        raise ApiError(status, f"the body must be a JSON object, got {_kind(body)}")
    unknown = [name for name in body if name not in fields]
    if unknown:
        raise ApiError(
            status,
            f"unknown field '{unknown[0]}' (this route takes: {', '.join(fields)})",
            param=unknown[0],
        )
    return body


def _kind(value: Any) -> str:
    """A JSON value's type, as JSON names it."""
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _required(body: dict, field: str, status: int) -> Any:
    if field not in body:
        raise ApiError(status, f"missing field '{field}'", param=field)
    return body[field]


def _texts(value: Any, field: str, status: int, max_inputs: int) -> tuple[list[str], bool]:
    """A string or a non-empty list of non-empty strings -> (texts, single)."""
    if isinstance(value, str):
        texts, single = [value], True
    elif isinstance(value, list):
        texts, single = value, False
    else:
        raise ApiError(
            status,
            f"'{field}' must be a string or a list of strings, got {_kind(value)}",
            param=field,
        )
    if not texts:
        raise ApiError(status, f"'{field}' is an empty list", param=field)
    if len(texts) > max_inputs:
        raise ApiError(
            413,
            f"'{field}' has {len(texts)} inputs; the limit is {max_inputs} "
            "per request (--max-client-batch-size)",
            param=field,
        )
    if all(_is_token_ids(item) for item in texts):
        raise ApiError(
            status,
            f"'{field}' holds token ids: this model takes text (a string or a list of strings)",
            param=field,
        )
    for i, text in enumerate(texts):
        where = field if single else f"{field}[{i}]"
        if not isinstance(text, str):
            raise ApiError(status, f"'{where}' must be a string, got {_kind(text)}", param=field)
        if not text.strip():
            raise ApiError(status, f"'{where}' is empty (or only whitespace)", param=field)
    return texts, single


def _is_token_ids(item: Any) -> bool:
    """A token id, or a list of them: what OpenAI's `input` also takes, for its own models."""
    if isinstance(item, list):
        return bool(item) and all(_is_token_ids(x) and not isinstance(x, list) for x in item)
    return isinstance(item, int) and not isinstance(item, bool)


def _bool(body: dict, field: str, default: bool, status: int) -> bool:
    value = body.get(field, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(status, f"'{field}' must be true or false, got {_kind(value)}", param=field)
    return value


def parse_openai(body: Any, dimension: int, max_inputs: int) -> EmbedRequest:
    """POST /v1/embeddings. `model` is accepted whatever it names: the server has one model."""
    body = _object(body, OPENAI_FIELDS, 400)
    texts, single = _texts(_required(body, "input", 400), "input", 400, max_inputs)
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ApiError(
            400,
            f"'encoding_format' must be 'float' or 'base64', got {encoding!r}",
            param="encoding_format",
        )
    dimensions = body.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or dimensions != dimension):
        raise ApiError(
            400,
            f"'dimensions' must be {dimension}, this model's dimension (it cannot "
            f"shorten its embeddings), got {dimensions!r}",
            param="dimensions",
        )
    for field in ("model", "user"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise ApiError(
                400, f"'{field}' must be a string, got {_kind(body[field])}", param=field
            )
    return EmbedRequest(texts, single, base64=encoding == "base64")


def parse_tei_embed(body: Any, max_inputs: int, auto_truncate: bool) -> EmbedRequest:
    """POST /embed: TEI's defaults are normalize=true, truncate=false."""
    body = _object(body, TEI_EMBED_FIELDS, 422)
    texts, single = _texts(_required(body, "inputs", 422), "inputs", 422, max_inputs)
    direction = body.get("truncation_direction") or "Right"
    if direction not in ("Right", "right"):
        raise ApiError(
            422,
            f"'truncation_direction' {direction!r} is not supported: sentence-transformers "
            "truncates on the right",
            param="truncation_direction",
        )
    truncate = _bool(body, "truncate", False, 422) or auto_truncate
    return EmbedRequest(texts, single, truncate, normalize=_bool(body, "normalize", True, 422))


def parse_tei_similarity(body: Any, max_inputs: int) -> tuple[str, list[str]]:
    """POST /similarity: {"inputs": {"source_sentence": s, "sentences": [...]}}."""
    body = _object(body, TEI_SIMILARITY_FIELDS, 422)
    inputs = body.get("inputs")
    if not isinstance(inputs, dict) or set(inputs) != {"source_sentence", "sentences"}:
        raise ApiError(
            422,
            "'inputs' must be an object with 'source_sentence' (a string) and "
            "'sentences' (a list of strings)",
            param="inputs",
        )
    [source], _ = _texts(inputs["source_sentence"], "inputs.source_sentence", 422, 1)
    if not isinstance(inputs["sentences"], list):
        raise ApiError(422, "'inputs.sentences' must be a list of strings", param="inputs")
    sentences, _ = _texts(inputs["sentences"], "inputs.sentences", 422, max_inputs - 1)
    return source, sentences


def parse_tei_tokenize(body: Any, max_inputs: int) -> tuple[list[str], bool, bool]:
    """POST /tokenize -> (texts, single, add_special_tokens)."""
    body = _object(body, TEI_TOKENIZE_FIELDS, 422)
    texts, single = _texts(_required(body, "inputs", 422), "inputs", 422, max_inputs)
    return texts, single, _bool(body, "add_special_tokens", True, 422)


def openai_response(embeddings: np.ndarray, as_base64: bool, model: str, tokens: int) -> dict:
    """OpenAI's list of embedding objects; base64 is the float32 vector's little-endian bytes."""
    # embeddings: [n, dim]
    if as_base64:
        data: list = [
            base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in embeddings
        ]
    else:
        data = embeddings.tolist()
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(data)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
