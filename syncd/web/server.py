"""Serving the console: ``syncd web`` in the foreground, or beside the daemon in a thread.

Safe by default: it binds 127.0.0.1 unless told otherwise, and without a
token it does not start at all (exit 2).  The socket is bound before uvicorn
runs, so a port in use is one exit-2 line naming it, not a traceback.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from syncd.config import Settings
from syncd.errors import ConfigError
from syncd.logs import get_logger
from syncd.readmodel import ReadModel
from syncd.web.app import create_app

__all__ = ["Console", "console_token", "serve"]

log = get_logger("syncd.web")


def console_token(settings: Settings) -> str:
    token = settings.web.token.get_secret_value().strip() if settings.web.token else ""
    if not token:
        raise ConfigError(
            "web.token: the console needs a token and has none: set SYNCD_WEB__TOKEN "
            "(e.g. to the output of `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
        )
    return token


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP by name: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every small answer waits out the client's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"web: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class Console:
    """The console's server over one store: ``start()`` in a thread, or ``run()`` here."""

    def __init__(self, settings: Settings, *, host: str | None = None, port: int | None = None
                 ) -> None:
        self.token = console_token(settings)
        self.settings = settings
        self.host = host or settings.web.host
        self.sock = _bind(self.host, settings.web.port if port is None else port)
        self.port = int(self.sock.getsockname()[1])
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @contextmanager
    def _model(self) -> Iterator[ReadModel]:
        from syncd.app import migrated_store
        from syncd.readside import connected

        with migrated_store(self.settings) as store, connected(self.settings) as connectors:
            yield ReadModel(self.settings, store, connectors)

    def _prepare(self, model: ReadModel) -> uvicorn.Server:
        config = uvicorn.Config(create_app(model, self.token), log_config=None, access_log=False,
                                log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        return self._server

    def _serve(self, server: uvicorn.Server) -> None:
        log.info("console_started", url=self.url)
        server.run(sockets=[self.sock])

    def run(self) -> int:
        """Serve until SIGINT/SIGTERM (uvicorn's handlers in the main thread); 0 then."""
        try:
            with self._model() as model:
                self._serve(self._prepare(model))
        finally:
            self.sock.close()
        return 0

    def start(self) -> Console:
        """Serve from a background thread (``syncd run``): the daemon keeps the signals."""
        ready = threading.Event()

        def main() -> None:
            try:
                with self._model() as model:
                    server = self._prepare(model)
                    ready.set()
                    self._serve(server)
            except Exception as exc:  # a console that dies must not take the daemon down
                log.error("console_failed", error=str(exc))
            finally:
                ready.set()
                self.sock.close()

        self._thread = threading.Thread(target=main, name="syncd-console", daemon=True)
        self._thread.start()
        ready.wait(60)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    """``syncd web``: the console in the foreground."""
    return Console(settings, host=host, port=port).run()
