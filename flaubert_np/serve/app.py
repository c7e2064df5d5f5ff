"""The Starlette app: OpenAI's and TEI's routes over one SentenceEncoder.

    POST /v1/embeddings   OpenAI: {"input": str | [str], "model", "encoding_format", "dimensions"}
    POST /embed           TEI: {"inputs": str | [str], "normalize": true, "truncate": false}
    POST /similarity      TEI: {"inputs": {"source_sentence": s, "sentences": [...]}} -> cosines
    POST /tokenize        TEI: {"inputs": str | [str]} -> each text's tokens
    GET  /health, /info, /metrics

Every request passes the Gate first: a request id, the in-flight limit (429), the API key (401),
then the access-log line and the metrics when it is answered. Errors are JSON in the shape of the
API the route belongs to (OpenAI under /v1/, TEI elsewhere); an unexpected one is a 500 naming
the request id, its traceback in the server log only.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flaubert_np import __version__
from flaubert_np.pooling import normalize
from flaubert_np.sentence import SentenceEncoder
from flaubert_np.serve import inputs, schemas
from flaubert_np.serve.batching import Batcher
from flaubert_np.serve.metrics import CONTENT_TYPE, Metrics
from flaubert_np.serve.schemas import ApiError

log = logging.getLogger("flaubert_np.serve")
access_log = logging.getLogger("flaubert_np.serve.access")

# Routes that answer without the model: never refused for load, /health never asks for the key.
LIGHT_ROUTES = ("/health", "/metrics")
WARM_UP_TEXT = "Le serveur démarre."


@dataclass(frozen=True)
class Settings:
    """The server's limits (the command's flags, docs/serving.md)."""

    served_model_name: str
    max_batch_tokens: int = 2048  # as SentenceEncoder.encode's TOKENS_PER_PASS
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 2048  # OpenAI's limit
    payload_limit: int = 2_000_000  # bytes, as TEI
    auto_truncate: bool = False
    api_key: str | None = None
    read_timeout: float = 10.0  # seconds to send a request's headers, then its body


def error_response(error: ApiError, path: str, headers: dict | None = None) -> JSONResponse:
    body = schemas.openai_error(error) if path.startswith("/v1/") else schemas.tei_error(error)
    return JSONResponse(body, status_code=error.status, headers=headers)


class Gate:
    """ASGI middleware around every request (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics, routes: set[str]):
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.routes = routes
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        request_id = uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state.update(request_id=request_id, inputs=0, tokens=0)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
            elif path in LIGHT_ROUTES:
                await self.app(scope, receive, send_with_id)
            else:
                self.in_flight += 1
                try:
                    await self.app(scope, receive, send_with_id)
                finally:
                    self.in_flight -= 1
        finally:
            seconds = time.perf_counter() - start
            self.metrics.request(path if path in self.routes else "other", status, seconds)
            access_log.info(
                "%s %s %d inputs=%d tokens=%d %.1fms id=%s",
                scope["method"],
                scope.get("raw_path", path.encode()).decode("latin-1"),  # as sent: no newlines
                status,
                state["inputs"],
                state["tokens"],
                1000 * seconds,
                request_id,
            )

    def _refusal(self, scope: Scope) -> Response | None:
        """The 401 or 429 answer a request gets instead of being served, if any."""
        path = scope["path"]
        key = self.settings.api_key
        if key is not None and path != "/health":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + key.encode()):
                error = ApiError(
                    401,
                    "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                    code="invalid_api_key",
                )
                return error_response(error, path, {"www-authenticate": "Bearer"})
        if path not in LIGHT_ROUTES and self.in_flight >= self.settings.max_concurrent_requests:
            error = ApiError(
                429,
                f"the server is at its limit of {self.settings.max_concurrent_requests} "
                "requests in flight (--max-concurrent-requests): retry shortly",
                type="requests",
                code="rate_limit_exceeded",
            )
            return error_response(error, path, {"retry-after": "1"})
        return None


async def read_json(request: Request, limit: int, timeout: float) -> Any:
    """The body, parsed: 413 over `limit` bytes (before parsing, and before reading it all when
    Content-Length says so), 408 if it takes longer than `timeout` seconds to arrive."""
    close = {"connection": "close"}  # the rest of the body is not read: the connection ends
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _Refused(
            413, f"the body has {int(length)} bytes; the limit is {limit} (--payload-limit)", close
        )
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _Refused(
                        413, f"the body is over the limit of {limit} bytes (--payload-limit)", close
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise _Refused(408, f"the body took more than {timeout:g} s to arrive", close) from None
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected before sending the whole body") from None
    try:
        return json.loads(b"".join(chunks))
    except ValueError as e:  # UnicodeDecodeError included
        raise ApiError(400, f"the body is not valid JSON: {e}") from None


class _Refused(ApiError):
    """An error answered before the whole body was read, with headers (connection: close)."""

    def __init__(self, status: int, message: str, headers: dict):
        super().__init__(status, message)
        self.headers = headers


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    """A route whose errors are JSON: ApiError as it says, anything else a 500 (logged)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except _Refused as e:
            return error_response(e, request.url.path, e.headers)
        except ApiError as e:
            return error_response(e, request.url.path)
        except Exception:
            request_id = request.state.request_id
            log.exception("request %s (%s %s) failed", request_id, request.method, request.url.path)
            error = ApiError(
                500,
                f"internal error (request id {request_id}; the server log has the details)",
                type="server_error",
            )
            return error_response(error, request.url.path)

    return endpoint


class Service:
    """The routes, over one encoder, its batcher and the settings."""

    def __init__(self, encoder: SentenceEncoder, settings: Settings):
        self.encoder = encoder
        self.settings = settings
        prompt, self.prompt_length = encoder._prompt(None, None)  # the model's default prompt
        self.prompt = prompt or ""
        self.metrics = Metrics()
        self.batcher = Batcher(encoder, settings.max_batch_tokens, self.prompt_length, self.metrics)
        self.metrics.queue_depth = self.batcher.queue_depth

    async def _embed(
        self, request: Request, texts: list[str], field: str, truncate: bool
    ) -> tuple[np.ndarray, int]:
        """[n, dim] embeddings of texts (not normalised) and their tokens, counted in the
        request's state for the access log."""
        request.state.inputs = len(texts)
        tokenized = await run_in_threadpool(
            inputs.tokenize, self.encoder, texts, field, self.prompt, truncate
        )
        request.state.tokens = tokenized.tokens
        embeddings = await self.batcher.embed(tokenized.features)
        return embeddings, tokenized.tokens

    async def _body(self, request: Request) -> Any:
        return await read_json(request, self.settings.payload_limit, self.settings.read_timeout)

    async def openai_embeddings(self, request: Request) -> Response:
        body = await self._body(request)
        req = schemas.parse_openai(
            body, self.encoder.embedding_dimension, self.settings.max_client_batch_size
        )
        embeddings, tokens = await self._embed(request, req.texts, "input", truncate=True)
        return JSONResponse(
            schemas.openai_response(
                normalize(embeddings), req.base64, self.settings.served_model_name, tokens
            )
        )

    async def tei_embed(self, request: Request) -> Response:
        body = await self._body(request)
        req = schemas.parse_tei_embed(
            body, self.settings.max_client_batch_size, self.settings.auto_truncate
        )
        embeddings, _ = await self._embed(request, req.texts, "inputs", req.truncate)
        if req.normalize:
            embeddings = normalize(embeddings)
        return JSONResponse(embeddings.tolist())

    async def tei_similarity(self, request: Request) -> Response:
        body = await self._body(request)
        source, sentences = schemas.parse_tei_similarity(body, self.settings.max_client_batch_size)
        embeddings, _ = await self._embed(
            request, [source, *sentences], "inputs", self.settings.auto_truncate
        )
        embeddings = normalize(embeddings)
        return JSONResponse((embeddings[1:] @ embeddings[0]).tolist())

    async def tei_tokenize(self, request: Request) -> Response:
        body = await self._body(request)
        texts, _, special = schemas.parse_tei_tokenize(body, self.settings.max_client_batch_size)
        request.state.inputs = len(texts)
        tokens = await run_in_threadpool(inputs.token_lists, self.encoder, texts, special)
        request.state.tokens = sum(map(len, tokens))
        return JSONResponse(tokens)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def info(self, request: Request) -> Response:
        encoder = self.encoder
        return JSONResponse(
            {
                "model_id": self.settings.served_model_name,
                "version": __version__,
                "dimension": encoder.embedding_dimension,
                "max_seq_length": encoder.max_seq_length,
                "pooling": "+".join(encoder.pooling.pooling_modes),
                "token_type_ids": encoder.token_type_ids,
                "prompt": self.prompt or None,
                "limits": {
                    k: v
                    for k, v in asdict(self.settings).items()
                    if k not in ("served_model_name", "api_key")
                },
            }
        )

    async def metrics_page(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Warm the model up before the port opens (so /health answers only when ready), run
        the model thread, and stop it once uvicorn has answered the requests in flight."""
        warm_up = inputs.tokenize(self.encoder, [WARM_UP_TEXT], "warm-up", self.prompt, True)
        await run_in_threadpool(self.encoder.encode_tokenized, warm_up.features, self.prompt_length)
        self.batcher.start()
        try:
            yield
        finally:
            await run_in_threadpool(self.batcher.stop)


def create_app(encoder: SentenceEncoder, settings: Settings) -> Starlette:
    service = Service(encoder, settings)
    routes = [
        Route("/v1/embeddings", _guarded(service.openai_embeddings), methods=["POST"]),
        Route("/embed", _guarded(service.tei_embed), methods=["POST"]),
        Route("/similarity", _guarded(service.tei_similarity), methods=["POST"]),
        Route("/tokenize", _guarded(service.tei_tokenize), methods=["POST"]),
        Route("/health", _guarded(service.health), methods=["GET"]),
        Route("/info", _guarded(service.info), methods=["GET"]),
        Route("/metrics", _guarded(service.metrics_page), methods=["GET"]),
    ]
    paths = {route.path for route in routes}

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        path = request.url.path
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message, code = f"{request.method} is not allowed on {path}: use {allowed}", None
        else:
            routes_list = ", ".join(sorted(paths))
            message, code = (
                f"no route {request.method} {path} (routes: {routes_list})",
                "unknown_url",
            )
        return error_response(ApiError(exc.status_code, message, code=code), path)

    app = Starlette(
        routes=routes, lifespan=service.lifespan, exception_handlers={HTTPException: http_error}
    )
    app.add_middleware(Gate, settings=settings, metrics=service.metrics, routes=paths)
    app.state.service = service
    return app
