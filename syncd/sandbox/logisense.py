"""A simulated LogiSense Billing v6 (EngageIP): accounts, contacts, contact points.

It follows ``shared/systems/logisense.md`` and the readings fixed in
``DECISIONS.md`` so that the connector's tests mean something: a form login
that hands out expiring Bearer tokens, the JSON ``Pagination`` *request
header*, contact points as separate child records whose type ids depend on
the contact's ``contactTypeId``, membership and create/delete only through
``PATCH Account/{id}``, and errors as ``{trackingId, errors: [...]}`` listing
every problem of a request at once.  Every answer carries a ``trackingId``.

Where the vendor's documents are silent the simulator picks one reading and
names it as an ``ASSUMPTION`` constant below, so a real server that differs
is a one-place change on both sides.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncd.sandbox.common import Simulator, utc_now

__all__ = [
    "DEFAULT_CONTACT_TYPES",
    "FIRST_NAME_MAX",
    "LAST_NAME_MAX",
    "MAX_PAGE_SIZE",
    "POINT_VALUE_MAX",
    "TITLE_MAX",
    "LogisenseSim",
]

AUTH_PREFIX = "/AuthorizationServer/api/v6"
API_PREFIX = "/ResourceServer/api/v6"

# ASSUMPTION: length limits of the Contact columns (Metadata/sql shows no lengths).
FIRST_NAME_MAX = 50
LAST_NAME_MAX = 50
TITLE_MAX = 20
# ASSUMPTION: a contact point value holds at most 255 characters.
POINT_VALUE_MAX = 255
# ASSUMPTION: the largest page the Paged endpoints serve; bigger requests are refused.
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 20
# The documented default token life [L2].
TOKEN_TTL = 1800.0

DEFAULT_CONTACT_TYPES: dict[int, str] = {3: "Billing", 9: "Other"}
"""ContactType id → name.  Contacts created in the "UI" get type 3; syncd is configured with 9."""

# Names of the contact point types each contact type owns, in id order.  The
# names for mobile and fax are undocumented; "Mobile" and "Fax" are our reading.
POINT_TYPE_NAMES = ("Email", "Phone", "Mobile", "Fax", "Address")
CANONICAL_POINTS = {"email": "Email", "phone": "Phone", "mobile": "Mobile", "fax": "Fax"}
CANONICAL_SCALARS = {"first_name": "firstName", "last_name": "lastName", "salutation": "title"}


@dataclass
class _Point:
    identity: int
    type_id: int
    value: str
    contact_id: int


@dataclass
class _Contact:
    identity: int
    contact_type_id: int
    title: str = ""
    first_name: str = ""
    last_name: str = ""
    is_used_for_tax: bool = False
    points: list[_Point] = field(default_factory=list)


@dataclass
class _Account:
    identity: int
    name: str
    contacts: list[int] = field(default_factory=list)
    last_update: datetime = field(default_factory=utc_now)


class _Problem(Exception):
    """One request's validation failures, answered together as one error body."""

    def __init__(self, status: int, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(m for _, m in errors))
        self.status = status
        self.errors = errors


class LogisenseSim(Simulator):
    """LogiSense v6 contacts, in memory.

    ``point_type_base`` moves the contact point type ids (a server whose ids
    differ from ours must still work); ``token_ttl`` shortens token life for
    tests; ``clock`` lets a test move time.  ``echo_login`` is the fault of a
    misconfigured server seen in the field: every login answers 400 with the
    request echoed in its message (the raw form, its fields, and as Basic
    credentials), so the tests can prove that no password leaks from syncd.
    """

    kind = "logisense"

    login_paths = ("/Access/Login",)

    def __init__(
        self,
        *,
        client_id: str = "syncd",
        username: str = "api",
        password: str = "secret",  # noqa: S107 - the sandbox's published demo login
        token_ttl: float = TOKEN_TTL,
        contact_types: Mapping[int, str] | None = None,
        point_type_base: int = 40,
        ui_contact_type: int = 3,
        accounts: Iterable[int] = (16, 17),
        clock: Callable[[], datetime] = utc_now,
        echo_login: bool = False,
        deletes: bool = True,
    ) -> None:
        self.echo_login = echo_login
        self.deletes = deletes
        """False: a server whose Account Metadata offers no contact delete, and refuses one."""
        self.client_id = client_id
        self.username = username
        self.password = password
        self.token_ttl = token_ttl
        self.clock = clock
        self.contact_types = dict(contact_types or DEFAULT_CONTACT_TYPES)
        self.ui_contact_type = ui_contact_type
        self.point_types: dict[int, dict[str, Any]] = {}
        ids = itertools.count(point_type_base)
        for ct in sorted(self.contact_types):
            for name in POINT_TYPE_NAMES:
                tid = next(ids)
                self.point_types[tid] = {
                    "identity": tid,
                    "name": name,
                    "contactTypeId": ct,
                    "dataTypeId": 1,
                    "isRequired": False,
                    "allowMultiple": name == "Address",
                    "isCore": name in ("Email", "Phone"),
                }
            ids = itertools.count(next(ids) + 10)  # gaps, so ids never line up by accident
        self.accounts: dict[int, _Account] = {a: _Account(a, f"Account {a}") for a in accounts}
        self.contacts: dict[int, _Contact] = {}
        self._contact_ids = itertools.count(1871)
        self._point_ids = itertools.count(7400)
        self.tokens: dict[str, datetime] = {}
        self.refresh_tokens: set[str] = set()
        self.logins: list[dict[str, str]] = []
        """Every login form received (the test checks its fields)."""
        self.log: deque[dict[str, Any]] = deque(maxlen=2000)
        """Recent vendor requests: method, path, Authorization, Pagination, JSON body."""
        super().__init__()

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _tracking() -> str:
        return str(uuid.uuid4())

    def _json(self, body: dict[str, Any], status: int = 200) -> JSONResponse:
        return JSONResponse({"trackingId": self._tracking(), **body}, status_code=status)

    def _errors(self, status: int, errors: list[tuple[str, str]]) -> JSONResponse:
        items = [{"code": c, "message": m} for c, m in errors]
        return self._json({"errors": items}, status)

    def throttle_response(self) -> Response:
        # The vendor documents no throttle; a plain 429 in its error shape is our reading.
        return self._errors(429, [("TooManyRequests", "Too many requests, slow down.")])

    def point_type_id(self, contact_type: int, name: str) -> int:
        for tid, pt in self.point_types.items():
            if pt["contactTypeId"] == contact_type and pt["name"] == name:
                return tid
        raise KeyError((contact_type, name))

    def expire_tokens(self) -> None:
        """Forget every access token, as a server restart or revocation would."""
        with self.lock:
            self.tokens.clear()

    def _contact_dto(self, c: _Contact, *, detail: bool) -> dict[str, Any]:
        dto: dict[str, Any] = {
            "identity": c.identity,
            "contactTypeId": c.contact_type_id,
            "contactTypeName": self.contact_types.get(c.contact_type_id, ""),
            "title": c.title or None,
            "firstName": c.first_name or None,
            "lastName": c.last_name or None,
            "isUsedForTax": c.is_used_for_tax,
        }
        if detail:
            dto["details"] = {
                "contactPoints": [self._point_dto(p) for p in c.points],
                "address": None,
            }
        return dto

    def _point_dto(self, p: _Point) -> dict[str, Any]:
        return {
            "identity": p.identity,
            "contactPointTypeId": p.type_id,
            "contactPointTypeName": self.point_types[p.type_id]["name"],
            "value": p.value,
            "contactId": p.contact_id,
        }

    def _account_of(self, contact_id: int) -> _Account | None:
        return next((a for a in self.accounts.values() if contact_id in a.contacts), None)

    def _touch(self, contact_id: int) -> None:
        account = self._account_of(contact_id)
        if account is not None:
            account.last_update = self.clock()

    # -- validation ------------------------------------------------------------------------

    def _check_scalars(self, body: Mapping[str, Any], errors: list[tuple[str, str]]) -> None:
        for key, limit in (("firstName", FIRST_NAME_MAX), ("lastName", LAST_NAME_MAX),
                           ("title", TITLE_MAX)):
            value = body.get(key)
            if value is not None and not isinstance(value, str):
                errors.append(("InvalidType", f"'{key}' must be a string."))
            elif value is not None and len(value) > limit:
                errors.append((
                    "MaxLength",
                    f"'{key}' must be {limit} characters or fewer. You entered {len(value)}.",
                ))
        if "contactTypeId" in body and body["contactTypeId"] not in self.contact_types:
            errors.append(("NotFound", f"ContactType {body['contactTypeId']} does not exist."))

    def _check_points(
        self, contact_type: int, existing: list[_Point], items: Any,
        errors: list[tuple[str, str]],
    ) -> None:
        if not isinstance(items, list):
            errors.append(("InvalidPatch", "'details.contactPoints.items' must be a list."))
            return
        own = {p.identity: p for p in existing}
        kinds = [p.type_id for p in existing]
        for n, item in enumerate(items, 1):
            ptype = item.get("patchType") if isinstance(item, dict) else None
            where = f"contactPoints item {n}"
            if ptype not in ("create", "update", "delete"):
                errors.append(("InvalidPatchType", f"{where}: patchType must be create, update "
                                                   "or delete."))
                continue
            assert isinstance(item, dict)
            if ptype == "create":
                tid = item.get("contactPointTypeId")
                pt = self.point_types.get(tid) if isinstance(tid, int) else None
                if pt is None:
                    errors.append(("NotFound", f"{where}: ContactPointType {tid} does not exist."))
                    continue
                if pt["contactTypeId"] != contact_type:
                    errors.append(("InvalidContactPointType",
                                   f"{where}: ContactPointType {tid} ({pt['name']}) does not "
                                   f"belong to ContactType {contact_type}."))
                    continue
                if not pt["allowMultiple"] and tid in kinds:
                    errors.append(("AllowMultiple", f"{where}: the contact already has a "
                                                    f"{pt['name']} contact point."))
                kinds.append(int(pt["identity"]))
            elif item.get("identity") not in own:
                errors.append(("NotFound", f"{where}: ContactPoint {item.get('identity')} "
                                           "does not exist on this contact."))
                continue
            if ptype in ("create", "update"):
                value = item.get("value")
                if not isinstance(value, str) or not value.strip():
                    errors.append(("Required", f"{where}: 'value' is required."))
                elif len(value) > POINT_VALUE_MAX:
                    errors.append(("MaxLength", f"{where}: 'value' must be {POINT_VALUE_MAX} "
                                                f"characters or fewer. You entered {len(value)}."))

    def _apply_points(self, c: _Contact, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for item in items:
            ptype = item["patchType"]
            if ptype == "create":
                p = _Point(next(self._point_ids), item["contactPointTypeId"], item["value"],
                           c.identity)
                c.points.append(p)
                results.append(self._result(p.identity, "created", "contactPoint",
                                            self._point_dto(p)))
            elif ptype == "update":
                p = next(p for p in c.points if p.identity == item["identity"])
                p.value = item["value"]
                results.append(self._result(p.identity, "updated", "contactPoint",
                                            self._point_dto(p)))
            else:
                p = next(p for p in c.points if p.identity == item["identity"])
                c.points.remove(p)
                results.append(self._result(p.identity, "deleted", "contactPoint", None))
        return results

    @staticmethod
    def _result(identity: int, action: str, key: str, instance: Any) -> dict[str, Any]:
        return {"identity": identity, "action": action, "dtoTypeKey": key, "instance": instance}

    @staticmethod
    def _point_items(body: Mapping[str, Any]) -> Any:
        details = body.get("details") or {}
        cps = details.get("contactPoints") if isinstance(details, dict) else None
        if cps is None:
            return []
        return cps.get("items", []) if isinstance(cps, dict) else cps

    # -- the vendor's routes ---------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        r = API_PREFIX
        return [
            Route(f"{AUTH_PREFIX}/Access/Login", self._login, methods=["POST"]),
            Route(f"{r}/Contact/Metadata", self._guarded(self._metadata_contact), methods=["GET"]),
            Route(f"{r}/Account/Metadata", self._guarded(self._metadata_account), methods=["GET"]),
            Route(f"{r}/ContactPointType/", self._guarded(self._point_types), methods=["GET"]),
            Route(f"{r}/Contact/", self._guarded(self._contact_all), methods=["GET"]),
            Route(f"{r}/Contact/", self._guarded(self._contact_post), methods=["POST"]),
            Route(f"{r}/Contact/Paged", self._guarded(self._contact_paged), methods=["GET"]),
            Route(f"{r}/Contact/Paged/Detail", self._guarded(self._contact_paged), methods=["GET"]),
            Route(f"{r}/Contact/{{cid:int}}", self._guarded(self._contact_get), methods=["GET"]),
            Route(f"{r}/Contact/{{cid:int}}/Detail", self._guarded(self._contact_get), methods=["GET"]),
            Route(f"{r}/Contact/{{cid:int}}", self._guarded(self._contact_put), methods=["PUT"]),
            Route(f"{r}/Contact/{{cid:int}}", self._guarded(self._contact_patch), methods=["PATCH"]),
            Route(f"{r}/Account/{{aid:int}}/Detail", self._guarded(self._account_detail), methods=["GET"]),
            Route(f"{r}/Account/{{aid:int}}", self._guarded(self._account_patch), methods=["PATCH"]),
        ]

    def _build(self) -> Any:
        app = super()._build()

        async def not_found(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            return self._errors(status, [("NotFound" if status == 404 else "Error",
                                          f"No route {request.method} {request.url.path}.")])

        app.add_exception_handler(HTTPException, not_found)
        return app

    def _guarded(
        self, handler: Callable[[Request, dict[str, Any] | None], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Every API route: the token is checked and a write's JSON body parsed first."""

        async def endpoint(request: Request) -> Response:
            body = await self._guard(request)
            if isinstance(body, Response):
                return body
            return await handler(request, body)

        return endpoint

    async def _guard(self, request: Request) -> JSONResponse | dict[str, Any] | None:
        """Check the Bearer token; parse a JSON body for writes (None when there is none)."""
        auth = request.headers.get("authorization", "")
        body: dict[str, Any] | None = None
        if request.method in ("POST", "PUT", "PATCH"):
            try:
                parsed = json.loads(await request.body() or b"null")
            except ValueError:
                parsed = None
            body = parsed if isinstance(parsed, dict) else None
        with self.lock:
            self.log.append({
                "method": request.method, "path": request.url.path, "authorization": auth,
                "pagination": request.headers.get("pagination"), "json": body,
            })
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            expires = self.tokens.get(token)
            if expires is None or expires <= self.clock():
                self.counters["unauthorized"] += 1
                return self._errors(401, [("Unauthorized", "Authorization has been denied "
                                                           "for this request.")])
        if request.method in ("POST", "PUT", "PATCH") and body is None:
            return self._errors(400, [("InvalidBody", "The request body must be a JSON object.")])
        return body

    async def _login(self, request: Request) -> Response:
        # Parsed by hand: Starlette's form parser needs python-multipart, not a dependency.
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("application/x-www-form-urlencoded"):
            return JSONResponse({"error": "invalid_request", "error_description":
                                 "The login takes a form (application/x-www-form-urlencoded)."},
                                status_code=400)
        raw = (await request.body()).decode()
        form = dict(parse_qsl(raw, keep_blank_values=True))
        with self.lock:
            self.logins.append(form)
            self.counters["login"] += 1
            if self.echo_login:
                basic = base64.b64encode(
                    f"{form.get('username')}:{form.get('password')}".encode()).decode()
                return JSONResponse({"error": "invalid_request", "error_description":
                                     f"Cannot process request body {raw!r} (fields {form!r}, "
                                     f"Basic {basic})"}, status_code=400)
            if form.get("grant_type") != "password" or form.get("client_id") != self.client_id:
                return JSONResponse({"error": "invalid_client",
                                     "error_description": "Unknown client or grant type."},
                                    status_code=400)
            if form.get("username") != self.username or form.get("password") != self.password:
                return JSONResponse({"error": "invalid_grant", "error_description":
                                     "The user name or password is incorrect."},
                                    status_code=400)
            now = self.clock()
            token, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            self.tokens[token] = now + timedelta(seconds=self.token_ttl)
            self.refresh_tokens.add(refresh)
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        return JSONResponse({
            "access_token": token, "refresh_token": refresh, "token_type": "bearer",
            "expires_in": int(self.token_ttl) if self.token_ttl >= 1 else self.token_ttl,
            ".issued": now.astimezone(UTC).strftime(fmt),
            ".expires": (now + timedelta(seconds=self.token_ttl)).astimezone(UTC).strftime(fmt),
            "audience": self.client_id, "actingOwnerId": 1,
        })

    def _metadata(self, entity: str, routes: list[tuple[str, str]],
                  patch_types: dict[str, list[str]], filters: list[str]) -> dict[str, Any]:
        key = entity[0].lower() + entity[1:]
        return {
            "dtoTypeKey": key,
            "dtoTypeTableKey": entity,
            "details": {
                "pagination": {"pageNumber": 1, "pageSize": DEFAULT_PAGE_SIZE},
                "updateRequest": {"filters": filters},
                "dataFlowPatchTypes": patch_types,
                "jsonDataSupport": False,
                "resourceRouting": {
                    "name": entity, "shortName": key, "prefix": f"api/v6/{entity}",
                    "routes": [{"name": f"{entity}.{n}", "template": t} for n, t in routes],
                },
            },
        }

    async def _metadata_contact(self, request: Request, body: dict[str, Any] | None) -> Response:
        routes = [("Get", ""), ("GetPaged", "Paged"), ("GetPagedDetail", "Paged/Detail"),
                  ("Get", "{id:int}"), ("GetDetail", "{id:int}/Detail"), ("Patch", "{id:int}"),
                  ("Post", ""), ("Put", "{id:int}"), ("Get", "Metadata"),
                  ("GetMetadata", "Metadata/{option}")]
        patch = {"contact": ["create", "update", "delete"],
                 "contactPoint": ["create", "update", "delete"],
                 "address": ["create", "update", "delete", "attach", "detach"]}
        filters = ["contactTypeId", "title", "firstName", "lastName", "isUsedForTax"]
        return self._json(self._metadata("Contact", routes, patch, filters))

    async def _metadata_account(self, request: Request, body: dict[str, Any] | None) -> Response:
        routes = [("Get", ""), ("GetPaged", "Paged"), ("Get", "{id:int}"),
                  ("GetDetail", "{id:int}/Detail"), ("Patch", "{id:int}"), ("Post", ""),
                  ("Put", "{id:int}"), ("Get", "Metadata"), ("GetMetadata", "Metadata/{option}")]
        contact = ["create", "update", "delete"] if self.deletes else ["create", "update"]
        patch = {"account": ["create", "update"], "contact": contact,
                 "contactPoint": ["create", "update", "delete"]}
        return self._json(self._metadata("Account", routes, patch, ["name"]))

    async def _point_types(self, request: Request, body: dict[str, Any] | None) -> Response:
        with self.lock:
            items = [dict(pt, contactTypeName=self.contact_types[pt["contactTypeId"]])
                     for pt in self.point_types.values()]
        return self._json({"totalCount": len(items), "items": items})

    async def _contact_all(self, request: Request, body: dict[str, Any] | None) -> Response:
        with self.lock:
            items = [self._contact_dto(c, detail=False) for c in self.contacts.values()]
        return self._json({"totalCount": len(items), "items": items})

    async def _contact_paged(self, request: Request, body: dict[str, Any] | None) -> Response:
        raw = request.headers.get("pagination")
        try:
            page = json.loads(raw) if raw else {}
            number = int(page.get("pageNumber", 1))
            size = int(page.get("pageSize", DEFAULT_PAGE_SIZE))
        except (ValueError, TypeError, AttributeError):
            return self._errors(400, [("InvalidPagination", "The Pagination header must be "
                                       'JSON like {"pageNumber": 1, "pageSize": 20}.')])
        if number < 1 or not 1 <= size <= MAX_PAGE_SIZE:
            return self._errors(400, [("InvalidPagination", f"pageNumber must be >= 1 and "
                                       f"pageSize between 1 and {MAX_PAGE_SIZE}.")])
        detail = request.url.path.endswith("/Detail")
        with self.lock:
            ordered = [self.contacts[k] for k in sorted(self.contacts)]
            chunk = ordered[(number - 1) * size : number * size]
            items = [self._contact_dto(c, detail=detail) for c in chunk]
        return self._json({
            "pagination": {"pageNumber": number, "pageSize": size, "excludeTotalCount": False},
            "pagedResults": {"totalCount": len(ordered), "items": items},
        })

    async def _contact_get(self, request: Request, body: dict[str, Any] | None) -> Response:
        cid = request.path_params["cid"]
        with self.lock:
            c = self.contacts.get(cid)
            if c is None:
                return self._errors(404, [("NotFound", f"Contact {cid} does not exist.")])
            dto = self._contact_dto(c, detail=request.url.path.endswith("/Detail"))
        return self._json({"instance": dto})

    async def _contact_post(self, request: Request, body: dict[str, Any] | None) -> Response:
        assert body is not None
        errors: list[tuple[str, str]] = []
        self._check_scalars(body, errors)
        if "contactTypeId" not in body:
            errors.append(("Required", "'contactTypeId' is required."))
        if errors:
            return self._errors(400, errors)
        with self.lock:
            c = _Contact(next(self._contact_ids), int(body["contactTypeId"]))
            self._set_scalars(c, body)
            self.contacts[c.identity] = c
            dto = self._contact_dto(c, detail=False)
        return self._json({"type": "create", "results": {"totalCount": 1, "items": [dto]}})

    @staticmethod
    def _set_scalars(c: _Contact, body: Mapping[str, Any]) -> None:
        if "contactTypeId" in body:
            c.contact_type_id = int(body["contactTypeId"])
        if "title" in body:
            c.title = body["title"] or ""
        if "firstName" in body:
            c.first_name = body["firstName"] or ""
        if "lastName" in body:
            c.last_name = body["lastName"] or ""
        if "isUsedForTax" in body:
            c.is_used_for_tax = bool(body["isUsedForTax"])

    async def _contact_put(self, request: Request, body: dict[str, Any] | None) -> Response:
        assert body is not None
        cid = request.path_params["cid"]
        with self.lock:
            c = self.contacts.get(cid)
            if c is None:
                return self._errors(404, [("NotFound", f"Contact {cid} does not exist.")])
            errors: list[tuple[str, str]] = []
            if body.get("identity", cid) != cid:
                errors.append(("IdentityMismatch", "'identity' does not match the route."))
            self._check_scalars(body, errors)
            if errors:
                return self._errors(400, errors)
            self._set_scalars(c, body)
            self._touch(cid)
            dto = self._contact_dto(c, detail=False)
        return self._json({"type": "update", "results": {"totalCount": 1, "items": [dto]}})

    async def _contact_patch(self, request: Request, body: dict[str, Any] | None) -> Response:
        assert body is not None
        cid = request.path_params["cid"]
        with self.lock:
            c = self.contacts.get(cid)
            if c is None:
                return self._errors(404, [("NotFound", f"Contact {cid} does not exist.")])
            errors: list[tuple[str, str]] = []
            self._check_scalars(body, errors)
            if (body.get("contacts") or {}).get("items"):
                errors.append(("InvalidPatch", "Contacts are added to or removed from an "
                                               "Account: use PATCH Account/{id}."))
            ctype = int(body.get("contactTypeId", c.contact_type_id))
            items = self._point_items(body)
            self._check_points(ctype, c.points, items, errors)
            if errors:
                return self._errors(400, errors)
            results: list[dict[str, Any]] = []
            keys = ("contactTypeId", "title", "firstName", "lastName", "isUsedForTax")
            scalars: dict[str, Any] = {k: body[k] for k in keys if k in body}
            if scalars:
                self._set_scalars(c, scalars)
                results.append(self._result(c.identity, "updated", "contact",
                                            self._contact_dto(c, detail=False)))
            results += self._apply_points(c, items)
            self._touch(cid)
        return self._json({"type": "patch",
                           "results": {"totalCount": len(results), "items": results}})

    async def _account_detail(self, request: Request, body: dict[str, Any] | None) -> Response:
        aid = request.path_params["aid"]
        with self.lock:
            a = self.accounts.get(aid)
            if a is None:
                return self._errors(404, [("NotFound", f"Account {aid} does not exist.")])
            contacts = [self._contact_dto(self.contacts[i], detail=False) for i in a.contacts]
            instance = {
                "identity": a.identity, "name": a.name,
                "lastUpdate": a.last_update.isoformat().replace("+00:00", "Z"),
                "details": {"contacts": contacts},
            }
        return self._json({"instance": instance})

    async def _account_patch(self, request: Request, body: dict[str, Any] | None) -> Response:
        assert body is not None
        aid = request.path_params["aid"]
        with self.lock:
            a = self.accounts.get(aid)
            if a is None:
                return self._errors(404, [("NotFound", f"Account {aid} does not exist.")])
            items = (body.get("contacts") or {}).get("items", [])
            errors: list[tuple[str, str]] = []
            missing: list[tuple[str, str]] = []
            for n, item in enumerate(items, 1):
                ptype = item.get("patchType")
                if ptype == "create":
                    self._check_scalars(item, errors)
                    ctype = item.get("contactTypeId")
                    if ctype is None:
                        errors.append(("Required", f"contacts item {n}: 'contactTypeId' is "
                                                   "required."))
                    elif ctype in self.contact_types:
                        self._check_points(ctype, [], self._point_items(item), errors)
                elif ptype == "delete" and self.deletes:
                    if item.get("identity") not in a.contacts:
                        missing.append(("NotFound", f"contacts item {n}: Contact "
                                        f"{item.get('identity')} is not on Account {aid}."))
                else:
                    errors.append(("InvalidPatchType", f"contacts item {n}: patchType must be "
                                                       "create or delete here."))
            if errors or missing:
                return self._errors(400 if errors else 404, errors + missing)
            results: list[dict[str, Any]] = []
            for item in items:
                if item["patchType"] == "create":
                    c = _Contact(next(self._contact_ids), int(item["contactTypeId"]))
                    self._set_scalars(c, item)
                    self.contacts[c.identity] = c
                    a.contacts.append(c.identity)
                    results.append(self._result(c.identity, "created", "contact",
                                                self._contact_dto(c, detail=False)))
                    results += self._apply_points(c, self._point_items(item))
                else:
                    cid = item["identity"]
                    a.contacts.remove(cid)
                    self.contacts.pop(cid, None)
                    results.append(self._result(cid, "deleted", "contact", None))
            a.last_update = self.clock()
        return self._json({"type": "patch",
                           "results": {"totalCount": len(results), "items": results}})

    # -- the admin side channel, in canonical fields ---------------------------------------

    def admin_create(self, org: str, fields: Mapping[str, str]) -> str:
        with self.lock:
            aid = int(org)
            account = self.accounts.setdefault(aid, _Account(aid, f"Account {aid}"))
            c = _Contact(next(self._contact_ids), self.ui_contact_type)
            self.contacts[c.identity] = c
            account.contacts.append(c.identity)
            self._admin_set(c, fields)
            account.last_update = self.clock()
            return str(c.identity)

    def admin_update(self, record_id: str, fields: Mapping[str, str]) -> None:
        with self.lock:
            c = self.contacts[int(record_id)]
            self._admin_set(c, fields)
            self._touch(c.identity)

    def _admin_set(self, c: _Contact, fields: Mapping[str, str]) -> None:
        scalars = {CANONICAL_SCALARS[k]: v for k, v in fields.items() if k in CANONICAL_SCALARS}
        self._set_scalars(c, scalars)
        for canon, name in CANONICAL_POINTS.items():
            if canon not in fields:
                continue
            tid = self.point_type_id(c.contact_type_id, name)
            current = next((p for p in c.points if p.type_id == tid), None)
            value = fields[canon] or ""
            if current is not None and value:
                current.value = value
            elif current is not None:
                c.points.remove(current)
            elif value:
                c.points.append(_Point(next(self._point_ids), tid, value, c.identity))

    def admin_delete(self, record_id: str) -> None:
        with self.lock:
            cid = int(record_id)
            self.contacts.pop(cid, None)
            for a in self.accounts.values():
                if cid in a.contacts:
                    a.contacts.remove(cid)
                    a.last_update = self.clock()

    def admin_dump(self) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for c in self.contacts.values():
                account = self._account_of(c.identity)
                row: dict[str, Any] = {
                    "id": str(c.identity),
                    "org": str(account.identity) if account else "",
                    "first_name": c.first_name, "last_name": c.last_name,
                    "salutation": c.title,
                }
                for canon, name in CANONICAL_POINTS.items():
                    point = next((p for p in c.points
                                  if self.point_types[p.type_id]["name"] == name), None)
                    row[canon] = point.value if point else ""
                out.append(row)
            return out
