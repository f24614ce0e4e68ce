"""A simulated Valomnia REST API (contacts of customers), cookie session and all.

Faithful to seed 004, ``systems/valomnia.md`` and the readings fixed in
``systems/DECISIONS.md``, so that a connector tested against it meets the
real traps:

* a Spring Security form login, ``POST /j_spring_security_check``
  (``j_username``, ``j_password``, ``ajax=true``), that answers the JSON with
  the ``token`` directly or — ``login_redirect=True`` — a 302 to
  ``/login/ajaxSuccess`` that answers it; every API call then carries
  ``Cookie: JSESSIONID=<token>``.  Sessions die after ``session_ttl`` seconds
  idle (servlet semantics) or at once through :meth:`ValomniaSim.expire_sessions`
  (``POST /_admin/sessions/expire``); a dead or missing session is a 401;
* ``GET /api/v1.0/contacts`` with ``max``/``offset`` paging, ``sort``/``order``,
  the documented filters and the ``{paging, data}`` envelope; any other query
  parameter is a 400 ``invalid_param`` and a date that is not exactly
  ``YYYY-MM-DDTHH:MM:SSZ`` a 400 ``invalid_datetime_format``;
* form-encoded writes: create ``POST`` (201), update ``PUT`` (200, partial),
  delete ``DELETE`` (204) — or, with ``deletes=False``, no delete route at all
  (405), since the vendor documents none;
* errors as ``{"error", "error_description"}``.

``lastUpdated`` and ``dateCreated`` have second grain, like the vendor's, and
come from an injectable ``clock``: a frozen clock puts any number of writes
in one second, the case the connector's ``lastUpdated_gte`` watermark exists
for.  Where the vendor is silent the reading is one named constant below
(``ASSUMPTION``), so a real server that differs is a one-place change.
"""

from __future__ import annotations

import re
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from syncd.sandbox.common import Simulator, utc_now

__all__ = [
    "CANONICAL",
    "MAX_LENGTH",
    "MAX_PAGE_SIZE",
    "SANDBOX_PASSWORD",
    "SANDBOX_USER",
    "SESSION_TTL",
    "ValomniaContact",
    "ValomniaSim",
    "seeded",
]

API = "/api/v1.0"
LOGIN_PATH = "/j_spring_security_check"
AJAX_SUCCESS_PATH = "/login/ajaxSuccess"
AJAX_FAIL_PATH = "/login/authfail"

MAX_LENGTH = 255
"""DECISIONS.md: strings are limited to 255 characters (undocumented by the vendor)."""
MAX_PAGE_SIZE = 100
"""ASSUMPTION: ``max`` above 100 is undocumented; the server serves at most 100 (Grails habit)."""
SESSION_TTL = 1800.0
"""ASSUMPTION: seconds a session lives idle (the servlet default of 30 minutes)."""
TENANT = "entity1"
"""``organization`` in a contact is Valomnia's tenant, never the customer (note §8.8)."""

SANDBOX_USER = "api@example.com"
SANDBOX_PASSWORD = "sandbox-only"  # noqa: S105 - a local simulator's well-known login

CANONICAL: dict[str, str] = {
    "firstName": "first_name",
    "lastName": "last_name",
    "email": "email",
    "phone": "phone",
    "mobile": "mobile",
    "fax": "fax",
    "fonction": "job_title",
}
"""Valomnia field → canonical field (CONTRACT §4); the customer is the organization."""

STRINGS = ("firstName", "lastName", "fonction", "email", "phone", "phone2", "mobile", "fax",
           "comment", "country", "city", "postalCode", "address")
"""Every string field a contact shows; those not in :data:`CANONICAL` are Valomnia's own."""

WRITABLE = frozenset({"firstName", "lastName", "customerId", "useExternalId", "fonction",
                      "country", "city", "postalCode", "address", "email", "phone", "phone2",
                      "mobile", "fax", "imageFile"})
"""The create parameters [V2]; ASSUMPTION (DECISIONS.md): update takes the same ones."""
REQUIRED = ("firstName", "lastName", "customerId")

DATE_FILTERS = frozenset(f"{f}_{op}" for f in ("dateCreated", "lastUpdated")
                         for op in ("gt", "gte", "lt", "lte"))
LIST_PARAMS = frozenset({"max", "offset", "order", "sort", "customerReference", "firstName",
                         "lastName"}) | DATE_FILTERS
SORTABLE = frozenset({"id", "dateCreated", "lastUpdated", *STRINGS})
"""ASSUMPTION: ``sort`` takes a contact's own scalar field names, ``lastUpdated`` included."""

_ISO_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")

Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status)


class _Refused(Exception):
    """A request the vendor answers with ``{error, error_description}``."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.response = _error(status, code, description)


@dataclass(frozen=True)
class _Customer:
    id: int
    reference: str
    name: str


@dataclass
class ValomniaContact:
    """One contact in Valomnia's shape; ``values`` holds every string field of :data:`STRINGS`."""

    id: int
    customer_id: int
    values: dict[str, str]
    date_created: datetime
    last_updated: datetime
    is_decision_maker: bool = False
    photo: str | None = None
    user_id: int | None = None


class ValomniaSim(Simulator):
    """Valomnia contacts in memory, behind a cookie session.

    ``login_redirect`` makes the login answer 302 to ``/login/ajaxSuccess``
    (as the real server often does) instead of the JSON itself; ``deletes``
    off removes the undocumented DELETE route (405); ``unique_email`` makes a
    second contact with the same e-mail under one customer a 400
    ``not_unique``; ``clock`` decides ``dateCreated``/``lastUpdated`` and
    session age.
    """

    kind = "valomnia"

    login_paths = (LOGIN_PATH,)

    def __init__(
        self,
        *,
        username: str = SANDBOX_USER,
        password: str = SANDBOX_PASSWORD,
        customers: Iterable[int | str] = (3229, 3230),
        login_redirect: bool = False,
        deletes: bool = True,
        unique_email: bool = False,
        session_ttl: float = SESSION_TTL,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.username = username
        self.password = password
        self.login_redirect = login_redirect
        self.deletes = deletes
        self.unique_email = unique_email
        self.session_ttl = session_ttl
        self.clock = clock
        self.customers: dict[int, _Customer] = {
            int(c): _Customer(int(c), f"C{int(c)}", f"Customer {int(c)}") for c in customers
        }
        self.contacts: dict[int, ValomniaContact] = {}
        self.sessions: dict[str, datetime] = {}
        """Session token → last use (idle expiry)."""
        self.logins: list[dict[str, str]] = []
        """Every login's parameters, query and form merged (tests check the fields)."""
        self.log: deque[dict[str, Any]] = deque(maxlen=2000)
        """Recent API requests: method, path, query, cookie, content type, form."""
        self._next_id = 7000
        super().__init__()

    # -- time, ids, customers -------------------------------------------------------------

    def _now(self) -> datetime:
        """The clock, in UTC, cut to the second: the vendor's timestamps have no fraction."""
        return super()._now().replace(microsecond=0)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_customer(self, cid: int, reference: str | None = None, name: str = "") -> None:
        """A customer as the UI would create it; the reference defaults to ``C<id>``."""
        with self.lock:
            if cid not in self.customers:
                self.customers[cid] = _Customer(cid, reference or f"C{cid}",
                                                name or f"Customer {cid}")

    # -- sessions -----------------------------------------------------------------------

    def expire_sessions(self) -> None:
        """Forget every session, as a server restart or the idle timeout would."""
        with self.lock:
            self.sessions.clear()

    def _session(self, request: Request) -> str | None:
        """The live session of the request's ``JSESSIONID`` cookie (and touch it), else None."""
        token = request.cookies.get("JSESSIONID", "")
        with self.lock:
            last = self.sessions.get(token)
            now = self.clock()
            if last is None:
                return None
            if (now - last).total_seconds() > self.session_ttl:
                del self.sessions[token]
                return None
            self.sessions[token] = now
            return token

    def throttle_response(self) -> Response:
        # No throttle is documented and DECISIONS.md fixes none: a plain 429 in the error shape.
        return _error(429, "too_many_requests", "Too many requests, slow down.")

    # -- routing ------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route(LOGIN_PATH, self._login, methods=["POST"]),
            Route(AJAX_SUCCESS_PATH, self._ajax_success, methods=["GET"]),
            Route(AJAX_FAIL_PATH, self._ajax_fail, methods=["GET"]),
            Route(f"{API}/contacts", self._guarded(self._list), methods=["GET"]),
            Route(f"{API}/contacts", self._guarded(self._create), methods=["POST"]),
            Route(f"{API}/contacts/{{cid}}", self._guarded(self._show), methods=["GET"]),
            Route(f"{API}/contacts/{{cid}}", self._guarded(self._update), methods=["PUT"]),
            Route("/_admin/sessions/expire", self._admin_expire, methods=["POST"]),
        ]
        if self.deletes:
            routes.append(Route(f"{API}/contacts/{{cid}}", self._guarded(self._delete),
                                methods=["DELETE"]))
        return routes

    def _build(self) -> Any:
        app = super()._build()

        async def no_route(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
            code = {404: "not_found", 405: "method_not_allowed"}.get(status, "server_error")
            response = _error(status, code, f"No route {request.method} {request.url.path}.")
            response.headers.update(headers)
            return response

        app.add_exception_handler(HTTPException, no_route)
        return app

    def _guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Every API route: log, check the session, parse the form; refusals become 4xx."""

        async def endpoint(request: Request) -> Response:
            form = await self._form(request)
            with self.lock:
                self.log.append({
                    "method": request.method, "path": request.url.path,
                    "query": dict(request.query_params), "form": form,
                    "cookie": request.headers.get("cookie", ""),
                    "content_type": request.headers.get("content-type", ""),
                })
            if self._session(request) is None:
                with self.lock:
                    self.counters["unauthorized"] += 1
                # DECISIONS.md: an expired (or missing) session is a 401.
                return _error(401, "unauthorized",
                              "Full authentication is required to access this resource")
            try:
                response = await handler(request, form)
            except _Refused as refused:
                return refused.response
            return response

        return endpoint

    @staticmethod
    async def _form(request: Request) -> dict[str, str]:
        """A form-encoded body's fields; any other body carries none, as for a Grails params map.

        Parsed by hand: Starlette's form parser needs python-multipart, not a dependency.
        """
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("application/x-www-form-urlencoded"):
            return {}
        try:
            text = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            return {}
        return dict(parse_qsl(text, keep_blank_values=True))

    # -- login ----------------------------------------------------------------------------

    async def _login(self, request: Request) -> Response:
        # Spring Security reads the query string and the form alike ([V5] uses the query).
        params = {**dict(request.query_params), **await self._form(request)}
        with self.lock:
            self.counters["login"] += 1
            self.logins.append(params)
        missing = [p for p in ("j_username", "j_password", "ajax") if not params.get(p)]
        if missing:
            return _error(400, "missing_param", f"{missing[0]} parameter is missing")
        if params["ajax"] != "true":
            return _error(400, "invalid_param", "The parameters [ajax] you provided are not "
                                                "valid for this request.")
        if params["j_username"] != self.username or params["j_password"] != self.password:
            if self.login_redirect:
                return RedirectResponse(f"{AJAX_FAIL_PATH}?ajax=true", status_code=302)
            return self._login_failed()
        token = secrets.token_hex(16).upper()
        with self.lock:
            self.sessions[token] = self.clock()
        response: Response
        if self.login_redirect:
            response = RedirectResponse(AJAX_SUCCESS_PATH, status_code=302)
        else:
            response = JSONResponse(self._login_body(token))
        response.set_cookie("JSESSIONID", token, path="/", httponly=True)
        return response

    def _login_body(self, token: str) -> dict[str, Any]:
        return {
            "success": True,
            "token": token,
            "user": {"id": 1, "username": self.username, "href": f"{API}/users/1"},
            "warning": {"warning_code": "deprecated_version",
                        "warning_description": "API versions older than 1.0 are deprecated."},
        }

    @staticmethod
    def _login_failed() -> Response:
        # ASSUMPTION (undocumented): bad credentials answer 401 and no token.
        return JSONResponse({"success": False, "error": "Sorry, we were not able to find a "
                                                        "user with that username and password."},
                            status_code=401)

    async def _ajax_success(self, request: Request) -> Response:
        token = self._session(request)
        if token is None:
            return _error(401, "unauthorized",
                          "Full authentication is required to access this resource")
        return JSONResponse(self._login_body(token))

    async def _ajax_fail(self, request: Request) -> Response:
        return self._login_failed()

    async def _admin_expire(self, request: Request) -> Response:
        self.expire_sessions()
        return JSONResponse({"ok": True})

    # -- rendering and validation -----------------------------------------------------------

    def _render(self, c: ValomniaContact) -> dict[str, Any]:
        customer = self.customers[c.customer_id]
        out: dict[str, Any] = {
            "id": c.id,
            "customerReference": customer.reference,
            "customer": {"id": customer.id, "reference": customer.reference,
                         "name": customer.name, "href": f"{API}/customers/{customer.id}"},
        }
        out.update({name: c.values.get(name, "") for name in STRINGS})
        out["isDecisionMaker"] = c.is_decision_maker
        out["photo"] = c.photo
        out["user"] = (None if c.user_id is None else
                       {"id": c.user_id, "reference": f"emp-{c.user_id:02d}",
                        "href": f"{API}/users/{c.user_id}"})
        out["organization"] = TENANT
        out["dateCreated"] = _stamp(c.date_created)
        out["lastUpdated"] = _stamp(c.last_updated)
        return out

    def _find(self, raw: str) -> ValomniaContact:
        try:
            cid = int(raw)
        except ValueError:
            raise _Refused(400, "invalid_param_type",
                           f"The parameter [id] must be a number, not [{raw}].") from None
        contact = self.contacts.get(cid)
        if contact is None:
            raise _Refused(404, "not_found", f"The contact with the id {cid} doesn't exist.")
        return contact

    def _customer(self, form: Mapping[str, str]) -> int:
        """The customer a write names: by id, or by reference when ``useExternalId=true``."""
        raw = form["customerId"].strip()
        if form.get("useExternalId", "false").lower() == "true":
            # ASSUMPTION: useExternalId makes customerId the customer's reference.
            found = next((c.id for c in self.customers.values() if c.reference == raw), None)
        else:
            try:
                found = int(raw)
            except ValueError:
                raise _Refused(400, "invalid_param_type",
                               f"The parameter [customerId] must be a number, not [{raw}].") from None
        if found is None or found not in self.customers:
            # ASSUMPTION: an unknown customer is an invalid parameter, not a missing route.
            raise _Refused(400, "invalid_param", f"The customer [{raw}] doesn't exist.")
        return found

    @staticmethod
    def _check_params(form: Mapping[str, str], *, create: bool) -> None:
        unknown = sorted(set(form) - WRITABLE)
        if unknown:
            raise _Refused(400, "invalid_param", f"The parameters [{', '.join(unknown)}] you "
                                                 "provided are not valid for this request.")
        for name in REQUIRED:
            if (create or name in form) and not form.get(name, "").strip():
                raise _Refused(400, "missing_param", f"{name} parameter is missing")
        too_long = [n for n in STRINGS if len(form.get(n, "")) > MAX_LENGTH]
        if too_long:
            raise _Refused(400, "save_failed", f"Failed to save instance. [{too_long[0]}] "
                                               f"exceeds the maximum size of {MAX_LENGTH}.")

    def _check_unique(self, customer_id: int, email: str, own_id: int | None) -> None:
        if not (self.unique_email and email):
            return
        for other in self.contacts.values():
            if (other.id != own_id and other.customer_id == customer_id
                    and other.values.get("email", "").lower() == email.lower()):
                raise _Refused(400, "not_unique", f"A contact with the email [{email}] already "
                                                  "exists for this customer.")

    # -- the list -------------------------------------------------------------------------

    @staticmethod
    def _int(params: Mapping[str, str], name: str, default: int) -> int:
        raw = params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _Refused(400, "invalid_param_type",
                           f"The parameter [{name}] must be an integer, not [{raw}].") from None
        if value < 0:
            raise _Refused(400, "invalid_param", f"The parameter [{name}] must not be negative.")
        return value

    @staticmethod
    def _date(raw: str) -> datetime:
        if not _ISO_Z.fullmatch(raw):
            raise _Refused(400, "invalid_datetime_format",
                           f"Invalid datetime filter (not ISO-8601 formatted): [{raw}]")
        try:
            return datetime.strptime(raw, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise _Refused(400, "invalid_datetime_format",
                           f"Invalid datetime filter (not ISO-8601 formatted): [{raw}]") from None

    def _matches(self, c: ValomniaContact, params: Mapping[str, str],
                 bounds: list[tuple[str, str, datetime]]) -> bool:
        if "customerReference" in params and (
                self.customers[c.customer_id].reference != params["customerReference"]):
            return False
        for name in ("firstName", "lastName"):
            if name in params and c.values.get(name, "") != params[name]:
                return False
        for fld, op, bound in bounds:
            value = c.date_created if fld == "dateCreated" else c.last_updated
            ok = {"gt": value > bound, "gte": value >= bound,
                  "lt": value < bound, "lte": value <= bound}[op]
            if not ok:
                return False
        return True

    @staticmethod
    def _sort_key(c: ValomniaContact, sort: str) -> tuple[Any, int]:
        # Ties are broken by id so that offset paging over one second is stable.
        if sort == "id":
            return (c.id, c.id)
        if sort == "dateCreated":
            return (c.date_created, c.id)
        if sort == "lastUpdated":
            return (c.last_updated, c.id)
        return (c.values.get(sort, ""), c.id)

    async def _list(self, request: Request, form: dict[str, str]) -> Response:
        params = dict(request.query_params)
        unknown = sorted(set(params) - LIST_PARAMS)
        if unknown:
            raise _Refused(400, "invalid_param", f"The parameters [{', '.join(unknown)}] you "
                                                 "provided are not valid for this request.")
        asked = self._int(params, "max", MAX_PAGE_SIZE)
        if asked < 1:
            raise _Refused(400, "invalid_param", "The parameter [max] must be at least 1.")
        size = min(asked, MAX_PAGE_SIZE)
        offset = self._int(params, "offset", 0)
        order = params.get("order", "asc")
        if order not in ("asc", "desc"):
            raise _Refused(400, "invalid_param", f"The parameter [order] must be asc or desc, "
                                                 f"not [{order}].")
        sort = params.get("sort", "id")
        if sort not in SORTABLE:
            raise _Refused(400, "invalid_param", f"The sort field [{sort}] is not valid.")
        bounds = [(name.split("_")[0], name.split("_")[1], self._date(params[name]))
                  for name in sorted(DATE_FILTERS & set(params))]
        with self.lock:
            rows = sorted((c for c in self.contacts.values() if self._matches(c, params, bounds)),
                          key=lambda c: self._sort_key(c, sort), reverse=order == "desc")
            page = [self._render(c) for c in rows[offset:offset + size]]
        total = len(rows)

        def link(to: int) -> str:
            return f"{API}/contacts?" + urlencode({**params, "max": size, "offset": to})

        paging = {
            "total": total, "max": size, "offset": offset,
            "previous": link(max(0, offset - size)) if offset > 0 else None,
            "next": link(offset + size) if offset + size < total else None,
        }
        return JSONResponse({"paging": paging, "data": page})

    # -- one contact, writes -------------------------------------------------------------

    async def _show(self, request: Request, form: dict[str, str]) -> Response:
        with self.lock:
            return JSONResponse(self._render(self._find(request.path_params["cid"])))

    async def _create(self, request: Request, form: dict[str, str]) -> Response:
        self._check_params(form, create=True)
        with self.lock:
            customer_id = self._customer(form)
            values = {name: form.get(name, "").strip() for name in STRINGS}
            self._check_unique(customer_id, values["email"], None)
            now = self._now()
            contact = ValomniaContact(self._new_id(), customer_id, values, now, now)
            self.contacts[contact.id] = contact
            return JSONResponse(self._render(contact), status_code=201)

    async def _update(self, request: Request, form: dict[str, str]) -> Response:
        with self.lock:
            contact = self._find(request.path_params["cid"])
            self._check_params(form, create=False)
            # DECISIONS.md: customerId on an update moves the contact.
            customer_id = self._customer(form) if "customerId" in form else contact.customer_id
            values = dict(contact.values)
            values.update({n: form[n].strip() for n in STRINGS if n in form})
            self._check_unique(customer_id, values.get("email", ""), contact.id)
            contact.values, contact.customer_id = values, customer_id
            contact.last_updated = self._now()
            return JSONResponse(self._render(contact))

    async def _delete(self, request: Request, form: dict[str, str]) -> Response:
        with self.lock:
            contact = self._find(request.path_params["cid"])
            del self.contacts[contact.id]
        return Response(status_code=204)

    # -- admin side channel (canonical fields) and Valomnia's own fields --------------------

    def admin_create(self, org: str, fields: Mapping[str, str]) -> str:
        with self.lock:
            customer_id = int(org)
            self.add_customer(customer_id)  # as if the user created the customer first
            values = {name: "" for name in STRINGS}
            values.update({v: (fields.get(canon) or "").strip() for v, canon in CANONICAL.items()})
            now = self._now()
            # A contact entered in the UI belongs to a sales rep (``user``), like the seed's.
            contact = ValomniaContact(self._new_id(), customer_id, values, now, now, user_id=4)
            self.contacts[contact.id] = contact
            return str(contact.id)

    def admin_update(self, record_id: str, fields: Mapping[str, str]) -> None:
        with self.lock:
            contact = self.contacts[int(record_id)]
            for name, canon in CANONICAL.items():
                if canon in fields:
                    contact.values[name] = (fields[canon] or "").strip()
            if "org" in fields:
                self.add_customer(int(fields["org"]))
                contact.customer_id = int(fields["org"])
            contact.last_updated = self._now()

    def admin_delete(self, record_id: str) -> None:
        with self.lock:
            self.contacts.pop(int(record_id), None)

    def admin_dump(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"id": str(c.id), "org": str(c.customer_id),
                 **{canon: c.values.get(name, "") for name, canon in CANONICAL.items()}}
                for c in sorted(self.contacts.values(), key=lambda c: c.id)
            ]

    def set_own_fields(
        self,
        record_id: str,
        *,
        is_decision_maker: bool | None = None,
        photo: str | None = None,
        **strings: str,
    ) -> None:
        """Set Valomnia's own fields (``comment``, ``city``, …) as a user in the UI would."""
        with self.lock:
            contact = self.contacts[int(record_id)]
            bad = set(strings) - set(STRINGS)
            if bad:
                raise KeyError(f"not a Valomnia string field: {sorted(bad)}")
            contact.values.update(strings)
            if is_decision_maker is not None:
                contact.is_decision_maker = is_decision_maker
            if photo is not None:
                contact.photo = photo
            contact.last_updated = self._now()


def seeded(
    contacts: int = 20,
    customers: Iterable[int | str] = (3229, 3230),
    **options: Any,
) -> ValomniaSim:
    """A simulator with ``contacts`` plausible people spread over ``customers``."""
    ids = [str(c) for c in customers]
    sim = ValomniaSim(customers=ids, **options)
    for i in range(contacts):
        rid = sim.admin_create(ids[i % len(ids)], {
            "first_name": f"Person{i}",
            "last_name": f"Valomnia{i}",
            "email": f"person{i}@valomnia.example.com",
            "phone": f"+33 1 23 45 {i:02d} 00",
            "job_title": "Commercial" if i % 3 else "",
        })
        sim.set_own_fields(rid, is_decision_maker=i % 2 == 0, city="Paris",
                           comment=f"met at fair {i}" if i % 4 == 0 else "")
    return sim
