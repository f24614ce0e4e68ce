"""The console's routes: server-rendered pages, their JSON twins, and the operator's actions.

Every handler asks the :class:`~syncd.readmodel.ReadModel` (the read side the
CLI uses too) and formats; there is no SQL here.  Pages work without
JavaScript: actions are plain form POSTs answered with a redirect back.
Everything leaving the process passes ``syncd.redact`` (Jinja's ``finalize``
for pages, :func:`_json` for the API), and Jinja escapes every value.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from syncd.errors import ConfigError
from syncd.readmodel import ReadModel
from syncd.readside import HistoryUnavailable, error_groups
from syncd.redact import redact
from syncd.web.api import api_routes
from syncd.web.api import json_response as _json
from syncd.web.auth import COOKIE, SESSION_AGE, Guard, Session

__all__ = ["create_app"]

Handler = Callable[[Request, Session], Awaitable[Response]]
_MAX_FORM = 64 * 1024
_CSV_RISKY = ("=", "+", "-", "@", "\t", "\r")


def _when(value: Any) -> str:
    """A time to the second in UTC for a page (the API has it whole)."""
    if not value:
        return "-"
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{when:%Y-%m-%d %H:%M:%S} UTC"


def _ago(seconds: Any) -> str:
    s = int(seconds or 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}" + (f" {s % size // 60}m" if unit == "h" and s % size else "")
    return f"{s}s"


def _finalize(value: Any) -> Any:
    """Every printed value masked; a macro's output (Markup) was built of masked values."""
    return redact(value) if isinstance(value, str) and not isinstance(value, Markup) else value


def _env() -> Environment:
    env = Environment(loader=PackageLoader("syncd.web", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      finalize=_finalize)
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    return env


_DONE = re.compile(r"\d+ (retried|dropped)")


def _flash(request: Request) -> str | None:
    """The note an action left in the redirect: one of ours only, so that a crafted link
    cannot put words of its own on the page."""
    done = request.query_params.get("done", "")
    if done == "used":
        return "Saved as an operator change: the next cycle writes the value everywhere."
    return done if _DONE.fullmatch(done) else None


def _local(path: str | None, default: str = "/") -> str:
    """Only a path of this console is a place to go back to (no open redirect)."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return default


async def _form(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if len(body) > _MAX_FORM:
        return {}
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _first(form: dict[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


def create_app(model: ReadModel, token: str, *, guard: Guard | None = None) -> Starlette:
    """The console over ``model``, for callers holding ``token``."""
    guard = guard or Guard(token)
    env = _env()
    stylesheet = (files("syncd.web") / "templates" / "style.css").read_text()

    def page(name: str, request: Request, session: Session | None, code: int = 200,
             **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(stylesheet=stylesheet, session=session,
                                             here=request.url.path, **context)
        return HTMLResponse(html, status_code=code)

    def login_page(request: Request, problem: str | None, code: int, nxt: str) -> HTMLResponse:
        return page("login.html", request, None, code, title="Log in", problem=problem,
                    next=nxt)

    def too_many(request: Request, wait: float) -> Response:
        headers = {"Retry-After": str(max(1, int(wait + 0.999)))}
        if request.url.path.startswith("/api/"):
            resp: Response = _json({"error": "too many wrong tokens: wait a minute"}, 429)
        else:
            resp = page("message.html", request, None, 429, title="Too many attempts",
                        message="Too many wrong tokens from this address: wait a minute.",
                        back=None)
        resp.headers.update(headers)
        return resp

    def unauthorized(request: Request, problem: str | None) -> Response:
        if request.url.path.startswith("/api/"):
            return _json({"error": problem or "this needs the console token"}, 401)
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return login_page(request, problem, 401, nxt)

    def authed(handler: Handler, *, post: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            address = request.client.host if request.client else "?"
            wait = guard.lockout.blocked_for(address)
            if wait:
                return too_many(request, wait)
            header = request.headers.get("authorization", "")
            scheme, _, sent = header.partition(" ")
            session: Session | None = None
            if header and not (scheme.lower() == "bearer" and sent.strip()):
                return unauthorized(request, "use Authorization: Bearer TOKEN")
            if sent.strip():
                if not guard.token_ok(sent.strip()):
                    guard.lockout.wrong(address)
                    return unauthorized(request, "wrong token")
                session = Session("", bearer=True)
            else:
                session = guard.session(request.cookies.get(COOKIE))
            if session is None:
                return unauthorized(request, None)
            if post and not session.bearer:
                sent_csrf = request.headers.get("x-csrf-token")
                if sent_csrf is None and request.headers.get("content-type", "").startswith(
                        "application/x-www-form-urlencoded"):
                    request.state.form = await _form(request)
                    sent_csrf = _first(request.state.form, "csrf")
                if not guard.csrf_ok(session, sent_csrf):
                    if request.url.path.startswith("/api/"):
                        return _json({"error": "missing or wrong CSRF token"}, 403)
                    return page("message.html", request, session, 403, title="Refused",
                                message="This form is out of date (missing or wrong CSRF "
                                        "token): reload the page and try again.", back="/")
            return await handler(request, session)

        return endpoint

    async def form_of(request: Request) -> dict[str, list[str]]:
        cached = getattr(request.state, "form", None)
        return cached if cached is not None else await _form(request)

    # -- login ---------------------------------------------------------------------------

    async def login_get(request: Request) -> Response:
        return login_page(request, None, 200, _local(request.query_params.get("next")))

    async def login_post(request: Request) -> Response:
        address = request.client.host if request.client else "?"
        wait = guard.lockout.blocked_for(address)
        if wait:
            return too_many(request, wait)
        form = await _form(request)
        sent = (_first(form, "token") or "").strip()
        nxt = _local(_first(form, "next"))
        if not sent:
            return login_page(request, "Enter the token.", 401, nxt)
        if not guard.token_ok(sent):
            guard.lockout.wrong(address)
            return login_page(request, "Wrong token.", 401, nxt)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, guard.new_session(), max_age=SESSION_AGE, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")
        return resp

    async def logout(request: Request, session: Session) -> Response:
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return resp

    async def healthz(request: Request) -> Response:
        return _json({"ok": True})

    # -- pages ---------------------------------------------------------------------------

    async def overview(request: Request, session: Session) -> Response:
        status, runs = await run_in_threadpool(lambda: (model.status(), model.runs(10)))
        return page("overview.html", request, session, title="Overview", status=status, runs=runs)

    async def runs_page(request: Request, session: Session) -> Response:
        runs = await run_in_threadpool(model.runs, 100)
        return page("runs.html", request, session, title="Runs", runs=runs)

    async def errors_page(request: Request, session: Session) -> Response:
        rows = await run_in_threadpool(model.errors)
        return page("errors.html", request, session, title="Errors", total=len(rows),
                    groups=error_groups(rows), flash=_flash(request))

    async def errors_csv(request: Request, session: Session) -> Response:
        rows = await run_in_threadpool(model.errors)
        out = io.StringIO()
        columns = ("id", "system", "action", "field", "person", "name", "email", "label",
                   "remote_id", "attempts", "kind", "error", "since")
        writer = csv.writer(out)
        writer.writerow(columns)
        for r in rows:
            # A cell a spreadsheet would run as a formula is quoted as text.
            writer.writerow([("'" + v if isinstance(v, str) and v.startswith(_CSV_RISKY) else v)
                             for v in (redact(str(r.get(c) or "")) for c in columns)])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="syncd-errors.csv"'})

    async def conflicts_page(request: Request, session: Session) -> Response:
        rows = await run_in_threadpool(model.conflicts)
        return page("conflicts.html", request, session, title="Conflicts", conflicts=rows,
                    flash=_flash(request))

    async def people_page(request: Request, session: Session) -> Response:
        q = request.query_params.get("q", "")
        people, total = await run_in_threadpool(model.search, q)
        return page("people.html", request, session, title="People", q=q, people=people,
                    total=total)

    def person_view(gid: str) -> tuple[dict[str, Any], list[dict[str, Any]] | None] | None:
        doc = model.person(gid)
        if doc is None:
            return None
        ids = {(e["system"]): e["id"] for e in model.errors(golden_id=gid)}
        for f in doc["failures"]:
            f["id"] = ids.get(f["system"]) if f["quarantined"] else None
        return doc, model.history(gid)

    async def person_page(request: Request, session: Session) -> Response:
        found = await run_in_threadpool(person_view, request.path_params["id"])
        if found is None:
            return page("message.html", request, session, 404, title="Not found",
                        message="No person has this id.", back="/people")
        doc, history = found
        linked = {n: s for n, s in doc["systems"].items() if "fields" in s}
        fields = sorted({f for f, v in doc["golden"].items() if v}
                        | {f for s in linked.values() for f, v in s["fields"].items() if v})
        return page("person.html", request, session, title=doc["label"], p=doc, linked=linked,
                    fields=fields, history=history, flash=_flash(request))

    # -- actions (pages) -----------------------------------------------------------------

    def act_on(ids: list[int], verb: str) -> list[int]:
        return model.retry(ids) if verb == "retry" else model.drop(ids)

    async def acted(form: dict[str, list[str]], ids: list[int], verb: str) -> Response:
        """Retry or drop ``ids``, then back to the page the form came from, saying how many."""
        done = await run_in_threadpool(act_on, ids, verb)
        what = "retried" if verb == "retry" else "dropped"
        back = _local(_first(form, "back"), "/errors")
        sep = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{sep}done={quote(f'{len(done)} {what}')}", status_code=303)

    def no_such(request: Request, session: Session) -> Response:
        return page("message.html", request, session, 404, title="Not found",
                    message="No such write or action.", back="/errors")

    async def error_action(request: Request, session: Session) -> Response:
        """Retry or drop one quarantined write, every one, or one group of them."""
        params = request.path_params
        target, group, verb = params.get("target", ""), params.get("group"), params["verb"]
        if verb not in ("retry", "drop") or not (group or target == "all" or target.isdigit()):
            return no_such(request, session)
        form = await form_of(request)
        if target.isdigit():
            ids = [int(target)]  # one write: no need to read them all
        else:
            rows = await run_in_threadpool(model.errors)
            ids = [r["id"] for r in rows if group is None or r["group"] == group]
        return await acted(form, ids, verb)

    async def use_value(request: Request, session: Session) -> Response:
        form = await form_of(request)
        raw = request.path_params["id"]
        done = await run_in_threadpool(model.use_value, int(raw), _first(form, "system") or "") \
            if raw.isdigit() else None
        if done is None:
            return page("message.html", request, session, 404, title="Not found",
                        message="No such conflict or value.", back="/conflicts")
        back = _local(_first(form, "back"), "/conflicts")
        return RedirectResponse(f"{back}?done=used", status_code=303)

    async def undo_form(request: Request, session: Session) -> Response:
        form = await form_of(request)
        try:
            changes = [int(c) for c in form.get("change", []) if c.isdigit()]
            await run_in_threadpool(lambda: model.undo(changes=changes))
        except HistoryUnavailable as exc:
            return page("message.html", request, session, 501, title="Undo unavailable",
                        message=str(exc), back=_local(_first(form, "back")))
        except ConfigError as exc:  # a change no longer kept
            return page("message.html", request, session, 404, title="No such change",
                        message=str(exc), back=_local(_first(form, "back")))
        return RedirectResponse(_local(_first(form, "back")), status_code=303)

    routes = [
        Route("/healthz", healthz),
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", authed(logout, post=True), methods=["POST"]),
        Route("/", authed(overview)),
        Route("/runs", authed(runs_page)),
        Route("/errors", authed(errors_page)),
        Route("/errors.csv", authed(errors_csv)),
        Route("/errors/group/{group}/{verb:str}", authed(error_action, post=True),
              methods=["POST"]),
        Route("/errors/{target}/{verb:str}", authed(error_action, post=True), methods=["POST"]),
        Route("/conflicts", authed(conflicts_page)),
        Route("/conflicts/{id}/use", authed(use_value, post=True), methods=["POST"]),
        Route("/people", authed(people_page)),
        Route("/people/{id}", authed(person_page)),
        Route("/undo", authed(undo_form, post=True), methods=["POST"]),
        *api_routes(model, authed),
    ]
    return Starlette(routes=routes)
