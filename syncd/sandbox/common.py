"""What every simulator shares: admin side channel, counters, fault injection, serving.

A simulator subclasses :class:`Simulator`, keeps its records in its own
native shape, adds the vendor's routes in ``routes()`` and implements the
four ``admin_*`` methods in canonical fields, so tests and the demo can act
"as a user in the UI" the same way on every system:

* ``GET  /_admin/state``            every record, canonical, with ``id`` and ``org``
* ``POST /_admin/records``          ``{"org": ..., "fields": {...}}`` → ``{"id": ...}``
* ``PATCH /_admin/records/{id}``    ``{"fields": {...}}``
* ``DELETE /_admin/records/{id}``
* ``GET  /_admin/counters``         requests by method; ``POST /_admin/counters/reset``
* ``POST /_admin/faults``           ``{"error_rate", "drop_rate", "latency", "throttle_next",
  "error_next", "drop_next", "lose_next", "stall_next", "stall"}``

The admin side is unauthenticated and never counted or faulted.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

__all__ = ["Faults", "ServerHandle", "Simulator", "serve", "stop_all", "utc_now"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Faults:
    error_rate: float = 0.0
    """Probability of a plain HTTP 500."""
    drop_rate: float = 0.0
    """Probability of closing the connection without an answer."""
    latency: float = 0.0
    """Seconds added to every answer."""
    throttle_next: int = 0
    """Answer the next N requests with the vendor's own rate-limit signal."""
    error_next: int = 0
    """Answer the next N requests with HTTP 500."""
    drop_next: int = 0
    """Cut the connection of the next N requests mid-answer."""
    lose_next: int = 0
    """Apply the next N writes, then cut the connection: the answer is lost, the write is not."""
    stall_next: int = 0
    """Apply the next N writes, then hold their answer for ``stall`` seconds (past a client's
    timeout: the write landed, the client heard nothing)."""
    stall: float = 2.0
    seed: int | None = None


class Simulator:
    """Base of every simulated API."""

    kind: str = ""
    clock: Callable[[], datetime]
    """Set by each simulator (tests pass a frozen one)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.faults = Faults()
        self.counters: Counter[str] = Counter()
        self._random = random.Random()
        self.app = self._build()

    def _now(self) -> datetime:
        """The simulator's clock, in UTC; a naive clock is a test's mistake, not a time."""
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the simulator's clock must be timezone-aware")
        return now.astimezone(UTC)

    # -- to implement -----------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def admin_create(self, org: str, fields: Mapping[str, str]) -> str:
        raise NotImplementedError

    def admin_update(self, record_id: str, fields: Mapping[str, str]) -> None:
        raise NotImplementedError

    def admin_delete(self, record_id: str) -> None:
        raise NotImplementedError

    def admin_dump(self) -> list[dict[str, Any]]:
        """Every record: ``{"id", "org", **canonical fields}``."""
        raise NotImplementedError

    login_paths: tuple[str, ...] = ()
    """Paths of the vendor's login: a POST there is no data write."""

    def is_write(self, method: str, path: str) -> bool:
        """A data write (what ``lose_next`` applies to): a login is not one."""
        return method in ("POST", "PUT", "PATCH", "DELETE") and not any(
            path.startswith(p) or path.endswith(p) for p in self.login_paths)

    def throttle_response(self) -> Response:
        """The vendor's own rate-limit answer."""
        return JSONResponse({"error": "rate limited"}, status_code=429)

    # -- shared -------------------------------------------------------------------------

    def writes(self) -> int:
        """Data writes: every POST/PUT/PATCH/DELETE except logins.

        A simulator whose login is a POST counts each one under ``"login"`` as
        well, so that "a quiet cycle makes no write" holds for it too.
        """
        total = sum(n for key, n in self.counters.items() if key in ("POST", "PUT", "PATCH", "DELETE"))
        return total - self.counters.get("login", 0)

    def _build(self) -> Starlette:
        admin = [
            Route("/_admin/state", self._admin_state, methods=["GET"]),
            Route("/_admin/records", self._admin_create, methods=["POST"]),
            Route("/_admin/records/{rid}", self._admin_update, methods=["PATCH"]),
            Route("/_admin/records/{rid}", self._admin_delete, methods=["DELETE"]),
            Route("/_admin/counters", self._admin_counters, methods=["GET"]),
            Route("/_admin/counters/reset", self._admin_reset, methods=["POST"]),
            Route("/_admin/faults", self._admin_faults, methods=["POST"]),
        ]
        app = Starlette(routes=[*admin, *self.routes()])
        app.add_middleware(_FaultMiddleware, sim=self)
        return app

    async def _admin_state(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse({"records": self.admin_dump()})

    async def _admin_create(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            rid = self.admin_create(str(body["org"]), body.get("fields", {}))
        return JSONResponse({"id": rid}, status_code=201)

    async def _admin_update(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            self.admin_update(request.path_params["rid"], body.get("fields", {}))
        return JSONResponse({"ok": True})

    async def _admin_delete(self, request: Request) -> Response:
        with self.lock:
            self.admin_delete(request.path_params["rid"])
        return JSONResponse({"ok": True})

    async def _admin_counters(self, request: Request) -> Response:
        with self.lock:
            total = sum(n for k, n in self.counters.items() if k.isupper())
            return JSONResponse({"total": total, "writes": self.writes(), **self.counters})

    async def _admin_reset(self, request: Request) -> Response:
        with self.lock:
            self.counters.clear()
        return JSONResponse({"ok": True})

    async def _admin_faults(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            self.faults = Faults(**{**asdict(self.faults), **body})
            if self.faults.seed is not None:
                self._random.seed(self.faults.seed)
        return JSONResponse(asdict(self.faults))


class _FaultMiddleware:
    """Counts vendor requests and injects the configured faults (admin paths excluded)."""

    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith("/_admin"):
            await self.app(scope, receive, send)
            return
        sim = self.sim
        with sim.lock:
            sim.counters[str(scope["method"])] += 1
            faults = sim.faults
            throttle, faults.throttle_next = faults.throttle_next > 0, max(0, faults.throttle_next - 1)
            error, faults.error_next = faults.error_next > 0, max(0, faults.error_next - 1)
            drop, faults.drop_next = faults.drop_next > 0, max(0, faults.drop_next - 1)
            lose = faults.lose_next > 0 and sim.is_write(str(scope["method"]), str(scope["path"]))
            faults.lose_next -= 1 if lose else 0
            stall = (not lose and faults.stall_next > 0
                     and sim.is_write(str(scope["method"]), str(scope["path"])))
            faults.stall_next -= 1 if stall else 0
            roll = sim._random.random()
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if throttle:
            await sim.throttle_response()(scope, receive, send)
            return
        if drop or roll < faults.drop_rate:
            await _drop_connection(send)
            return
        if error or roll < faults.drop_rate + faults.error_rate:
            await JSONResponse({"error": "injected server error"}, status_code=500)(
                scope, receive, send
            )
            return
        if lose:
            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)  # applied ...
            await _drop_connection(send)  # ... and never heard of
            return
        if stall:
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await self.app(scope, receive, hold)  # applied ...
            await asyncio.sleep(faults.stall)  # ... and answered after the client gave up
            for message in held:
                await send(message)
            return
        await self.app(scope, receive, send)


class _DropConnection(Exception):
    """Raised mid-answer: uvicorn closes the connection on an incomplete response."""


async def _drop_connection(send: Send) -> None:
    """Promise a body, send part of it, then fail: the client sees the connection cut.

    (Failing before the response starts would make uvicorn answer a tidy 500.)
    """
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"1000")]})
    await send({"type": "http.response.body", "body": b"<partial", "more_body": True})
    raise _DropConnection


@dataclass
class ServerHandle:
    url: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    def ask_to_stop(self) -> None:
        """Tell the server to shut down (it takes about 0.2 s: uvicorn's tick and grace)."""
        self.server.should_exit = True

    def stop(self) -> None:
        stop_all([self])


def stop_all(handles: Iterable[ServerHandle]) -> None:
    """Stop servers side by side: all are told first, then each is waited for."""
    waiting = list(handles)
    for handle in waiting:
        handle.ask_to_stop()
    for handle in waiting:
        handle.thread.join(timeout=10)


def serve(app: ASGIApp, port: int = 0, host: str = "127.0.0.1") -> ServerHandle:
    """Serve ``app`` on 127.0.0.1 in a background thread; ``port=0`` picks a free one."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP, and without it every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    actual = sock.getsockname()[1]
    # log_config=None: uvicorn's own set-up would give its loggers handlers that skip
    # syncd's masking (syncd.logs); its records go through the root logger instead.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    return ServerHandle(f"http://{host}:{actual}", actual, server, thread)
