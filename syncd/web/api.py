"""``/api/...``: the console's JSON, in the shapes of the CLI's ``--json`` (CONTRACT §7)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.errors import ConfigError
from syncd.readmodel import ReadModel
from syncd.readside import HistoryUnavailable
from syncd.redact import redact, redact_value
from syncd.web.auth import Session

__all__ = ["api_routes", "json_response"]

Handler = Callable[[Request, Session], Awaitable[Response]]
Wrap = Callable[..., Callable[[Request], Awaitable[Response]]]


def json_response(doc: Any, status: int = 200) -> JSONResponse:
    """A JSON answer with every configured secret masked, as ``--json`` output is."""
    return JSONResponse(json.loads(redact(json.dumps(redact_value(doc), default=str))),
                        status_code=status)


async def _body(request: Request) -> Any:
    """The request's JSON body (``{}`` when empty), or None when it is not JSON or is nested
    past the parser's depth (which raises RecursionError, not ValueError)."""
    try:
        return json.loads(await request.body() or b"{}")
    except (ValueError, RecursionError):
        return None


def _limit(request: Request, default: int, most: int) -> int:
    raw = request.query_params.get("limit", "")
    return max(1, min(most, int(raw))) if raw.isdigit() else default


def api_routes(model: ReadModel, authed: Wrap) -> list[Route]:
    _json = json_response

    async def status(request: Request, session: Session) -> Response:
        return _json(await run_in_threadpool(model.status))

    async def runs(request: Request, session: Session) -> Response:
        return _json({"runs": await run_in_threadpool(model.runs, _limit(request, 20, 1000))})

    async def people(request: Request, session: Session) -> Response:
        q = request.query_params.get("q", "")
        found, total = await run_in_threadpool(model.search, q, _limit(request, 50, 500))
        return _json({"query": q, "people": found, "total": total})

    async def person(request: Request, session: Session) -> Response:
        doc = await run_in_threadpool(model.person, request.path_params["id"])
        if doc is None:
            return _json({"error": f"no person has id {request.path_params['id']!r}"}, 404)
        return _json(doc)

    async def history(request: Request, session: Session) -> Response:
        gid = request.path_params["id"]

        def read() -> dict[str, Any] | None:
            if not model.known(gid):
                return None
            changes = model.history(gid)
            card = model.card(model.snapshot().people(gid))
            return {**card, "available": changes is not None, "changes": changes or []}

        doc = await run_in_threadpool(read)
        if doc is None:
            return _json({"error": f"no person has id {gid!r}"}, 404)
        return _json(doc)

    async def errors(request: Request, session: Session) -> Response:
        return _json({"errors": await run_in_threadpool(model.errors)})

    async def conflicts(request: Request, session: Session) -> Response:
        return _json({"conflicts": await run_in_threadpool(model.conflicts,
                                                           _limit(request, 200, 5000))})

    async def error_action(request: Request, session: Session) -> Response:
        raw, verb = request.path_params["id"], request.path_params["verb"]
        if verb not in ("retry", "drop") or not raw.isdigit():
            return _json({"error": "POST /api/errors/ID/retry or /api/errors/ID/drop"}, 404)
        act = model.retry if verb == "retry" else model.drop
        done = await run_in_threadpool(act, [int(raw)])
        key = "retried" if verb == "retry" else "dropped"
        if not done:
            return _json({"error": f"no quarantined write has id {raw}", key: []}, 404)
        return _json({key: done})

    async def use_value(request: Request, session: Session) -> Response:
        raw = request.path_params["id"]
        body = await _body(request)
        system = body.get("system") if isinstance(body, dict) else None
        if not raw.isdigit() or not isinstance(system, str):
            return _json({"error": 'POST /api/conflicts/ID/use with {"system": NAME}'}, 400)
        done = await run_in_threadpool(model.use_value, int(raw), system)
        if done is None:
            return _json({"error": f"conflict {raw} has no value from {system!r}"}, 404)
        return _json(done)

    async def undo(request: Request, session: Session) -> Response:
        body = await _body(request)
        changes = body.get("changes") if isinstance(body, dict) else None
        run = body.get("run") if isinstance(body, dict) else None
        if not (isinstance(changes, list) and all(isinstance(c, int) for c in changes)) and \
                not isinstance(run, int):
            return _json({"error": 'send {"changes": [ids]} or {"run": id}'}, 400)
        try:
            doc = await run_in_threadpool(lambda: model.undo(changes=changes or [], run=run))
        except HistoryUnavailable as exc:
            return _json({"error": str(exc)}, 501)
        except ConfigError as exc:  # unknown change or run ids: named in the message
            return _json({"error": str(exc)}, 404)
        # Refused (superseded) changes: the CLI's exit 3; the others were undone.
        return _json(doc, 409 if doc["refused"] else 200)

    return [
        Route("/api/status", authed(status)),
        Route("/api/runs", authed(runs)),
        Route("/api/people", authed(people)),
        Route("/api/people/{id}", authed(person)),
        Route("/api/people/{id}/history", authed(history)),
        Route("/api/errors", authed(errors)),
        Route("/api/conflicts", authed(conflicts)),
        Route("/api/errors/{id}/{verb}", authed(error_action, post=True), methods=["POST"]),
        Route("/api/conflicts/{id}/use", authed(use_value, post=True), methods=["POST"]),
        Route("/api/undo", authed(undo, post=True), methods=["POST"]),
    ]
