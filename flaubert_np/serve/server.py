"""Running the app on uvicorn: logging to stderr, a deadline for slow clients, signals.

uvicorn already stops on SIGTERM/SIGINT gracefully: it stops accepting connections, lets the
requests in flight finish, then runs the app's shutdown (the model thread ends). It then raises
the signal again for the previous handler; the no-op handlers installed here make that an
ordinary exit, with status 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from flaubert_np.sentence import SentenceEncoder
from flaubert_np.serve.app import Settings, create_app

# uvicorn closes a keep-alive connection idle for this long (its own default).
KEEP_ALIVE_S = 5


class Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for a request's headers. uvicorn has none: a
    client sending a byte now and then would hold a connection for ever. The body has its own
    deadline, in the app (app.read_json)."""

    read_timeout: float = 10.0  # set by `run`

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._cycle = 0
        self._arm_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_deadline()

    def _arm_deadline(self) -> None:
        self._cycle += 1
        self.loop.call_later(self.read_timeout, self._headers_deadline, self._cycle)

    def _headers_deadline(self, cycle: int) -> None:
        # Still waiting for the same request's headers (h11: the client is IDLE until they end).
        if cycle == self._cycle and self.conn.their_state is h11.IDLE:
            if not self.transport.is_closing():
                self.transport.close()


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def check(settings: Settings, port: int) -> None:
    """A one-line ValueError naming the flag, for a setting the server cannot run with."""
    if not 0 <= port < 65536:
        raise ValueError(f"--port must be between 0 and 65535, got {port}")
    for name in (
        "max_batch_tokens",
        "max_concurrent_requests",
        "max_client_batch_size",
        "payload_limit",
    ):
        if getattr(settings, name) < 1:
            raise ValueError(
                f"--{name.replace('_', '-')} must be at least 1, got {getattr(settings, name)}"
            )
    if settings.read_timeout <= 0:
        raise ValueError(f"--read-timeout must be positive, got {settings.read_timeout}")
    if settings.api_key is not None and not settings.api_key.strip():
        raise ValueError("--api-key (or FLAUBERT_NP_API_KEY) is empty")


def run(
    encoder: SentenceEncoder, settings: Settings, host: str, port: int, log_level: str = "info"
) -> None:
    """Serve until SIGTERM or SIGINT; return once the requests in flight are answered."""
    check(settings, port)
    _configure_logging(log_level)
    Protocol.read_timeout = settings.read_timeout
    config = uvicorn.Config(
        create_app(encoder, settings),
        host=host,
        port=port,
        http=Protocol,
        lifespan="on",
        log_config=None,
        log_level=log_level,
        access_log=False,  # the app writes its own
        timeout_keep_alive=KEEP_ALIVE_S,
        server_header=False,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve())
    except SystemExit:  # uvicorn's way out when it cannot start, e.g. the port is taken
        server.started = False
    if not server.started:
        raise OSError(f"could not serve on {host}:{port} (the log above says why)")
