"""A simulated Zoho Books v3 (contact persons under parent contacts) with its OAuth server.

Faithful to seed 002, ``shared/systems/zoho_books.md``, the OpenAPI file in
``shared/specs/`` and the readings fixed in ``DECISIONS.md``, so that the
connector's tests mean something.  One port serves both Zoho hosts:

* ``{url}/accounts`` (:data:`ACCOUNTS_PREFIX`) plays ``accounts.zoho.com``:
  ``POST /accounts/oauth/v2/token?grant_type=refresh_token&client_id=…&client_secret=…&refresh_token=…``
  (query string or form body) → ``{"access_token", "expires_in": 3600, "api_domain",
  "token_type": "Bearer"}``.  ``api_domain`` is this server's own origin.  A refresh
  token mints at most 10 access tokens in any 10 minutes; the 11th is refused.
* ``{url}/books/v3`` (:data:`API_PREFIX`) plays ``www.zohoapis.com/books/v3``.
  The config therefore says ``accounts_url = "{url}/accounts"`` and
  ``base_url = "{url}/books/v3"`` (see :func:`config_for`).

Every Books call needs ``Authorization: Zoho-oauthtoken <token>`` (401 with
``code`` 57 otherwise, also once the token's hour is over) and the
``organization_id`` query parameter (400 when missing, 401 when it names an
organization the token's user is not in).  Reads of persons are nested under
the parent contact, writes are flat with ``contact_id`` in the JSON body, and
the verdict is ``code`` (0 = success) in every body.

Rate limits per organization, counted on the injectable ``clock`` (UTC):
``per_minute`` calls per calendar minute and ``daily_limit`` calls per UTC day,
both answered with HTTP 429, a non-zero ``code`` and no ``Retry-After``; the
two differ in their message, as DECISIONS.md fixes.

Zoho-specific switches beyond the shared faults (``POST /_admin/zoho``, or the
attributes of the same names): ``expire_tokens`` (every access token dies now),
``person_as_array`` (create/update answer ``contact_person`` as a one-element
array, as the OpenAPI file shows), ``soft_error_next`` (the next N Books calls
answer HTTP 200 with a non-zero ``code``: success is ``code == 0``, not the
status) and ``daily_limit``.  A create whose answer is lost is the shared
``lose_next`` fault.

Where the vendor's documents are silent the simulator picks one reading and
names it as an ``ASSUMPTION`` constant below, so a real server that differs is
a one-place change on both sides.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncd.sandbox.common import Simulator, utc_now

__all__ = [
    "ACCOUNTS_PREFIX",
    "API_PREFIX",
    "CODE_DAILY_LIMIT",
    "CODE_INVALID_VALUE",
    "CODE_MINUTE_LIMIT",
    "CODE_NOT_FOUND",
    "CODE_TOO_LONG",
    "CODE_UNAUTHORIZED",
    "DAILY_LIMIT_MESSAGE",
    "FIELDS",
    "MAX_LENGTHS",
    "MAX_PER_PAGE",
    "MINUTE_LIMIT_MESSAGE",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "SANDBOX_ORGANIZATION_ID",
    "SANDBOX_REFRESH_TOKEN",
    "ZohoBooksSim",
    "config_for",
    "seeded",
]

ACCOUNTS_PREFIX = "/accounts"
"""Where the simulated accounts server lives on the simulator's port."""
API_PREFIX = "/books/v3"
"""Where the simulated Books API lives on the simulator's port."""

SANDBOX_ORGANIZATION_ID = "10234695"
SANDBOX_CLIENT_ID = "1000.SANDBOXCLIENT"
SANDBOX_CLIENT_SECRET = "sandbox-only-secret"  # noqa: S105 - the simulator's published login
SANDBOX_REFRESH_TOKEN = "1000.sandbox.refresh"  # noqa: S105 - the simulator's published login

TOKEN_TTL = 3600
"""Access token life in seconds [Z6]."""
REFRESH_LIMIT = 10
REFRESH_WINDOW = timedelta(minutes=10)
"""At most 10 access tokens per refresh token in 10 minutes [Z6]."""
MAX_PER_PAGE = 200
"""[Z2] default and largest page.  ASSUMPTION: a bigger ``per_page`` is served as 200
(and ``page_context.per_page`` says so) rather than refused."""

FIELDS: dict[str, str] = {
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "phone": "phone",
    "mobile": "mobile",
    "designation": "job_title",
    "department": "department",
    "salutation": "salutation",
}
"""Zoho contact-person field → canonical field (CONTRACT §4; no fax)."""

MAX_LENGTHS: dict[str, int] = {
    "first_name": 100, "last_name": 100, "email": 100,
    "phone": 50, "mobile": 50, "designation": 50, "department": 50, "skype": 50,
    "salutation": 25,
}
"""[Z1]/[Z2] maximum lengths, by Zoho field."""

_STRINGS = (*FIELDS, "skype")

# Error codes and messages.  Zoho's error page [Z7] documents the body shape and the
# HTTP statuses but not the code table; the codes below follow third-party troubleshooting
# guides where one exists and are otherwise our reading (ASSUMPTION, each one constant).
CODE_UNAUTHORIZED = 57
UNAUTHORIZED_MESSAGE = "You are not authorized to perform this operation"
CODE_ORG_REQUIRED = 6042  # ASSUMPTION
ORG_REQUIRED_MESSAGE = ("This user belongs to multiple organizations, hence the parameter "
                        "CompanyID/CompanyName is required for associating this user to a "
                        "specific organization.")
CODE_ORG_UNKNOWN = 6041  # ASSUMPTION
CODE_MINUTE_LIMIT = 45
MINUTE_LIMIT_MESSAGE = "API call limit exceeded. Please try again later."
"""DECISIONS.md: the per-minute 429's message."""
CODE_DAILY_LIMIT = 46  # ASSUMPTION
DAILY_LIMIT_MESSAGE = ("You have reached the maximum number of API calls allowed for the day. "
                       "Please try again tomorrow.")
"""DECISIONS.md: the daily cap's message names the day."""
CODE_NOT_FOUND = 1002
CODE_INTERNAL = 1000
CODE_INVALID_VALUE = 4  # ASSUMPTION: missing or invalid values
CODE_TOO_LONG = 15  # ASSUMPTION
CODE_INVALID_URL = 5  # ASSUMPTION
CODE_METHOD = 37  # ASSUMPTION
REFRESH_LIMIT_ERROR = {
    "error_description": "You have made too many requests continuously. "
                         "Please try again after some time.",
    "error": "Access Denied",
    "status": "failure",
}
"""ASSUMPTION: the accounts server's answer (HTTP 400) once the refresh limit is hit."""

ORG_TIMEZONE = timezone(timedelta(hours=5, minutes=30))
"""Parent timestamps carry the organization's offset (``+0530`` in Zoho's samples)."""

Handler = Callable[[Request, "_Org", dict[str, Any] | None], Awaitable[Response]]


@dataclass
class _Person:
    contact_person_id: str
    contact_id: str
    values: dict[str, str]
    is_primary_contact: bool = False
    enable_portal: bool = False
    communication_preference: dict[str, bool] = field(
        default_factory=lambda: {"is_sms_enabled": False, "is_whatsapp_enabled": False})


@dataclass
class _Parent:
    contact_id: str
    contact_name: str
    created_time: datetime
    last_modified_time: datetime
    persons: list[str] = field(default_factory=list)


@dataclass
class _Org:
    organization_id: str
    parents: dict[str, _Parent] = field(default_factory=dict)
    minute: tuple[datetime, int] | None = None
    day: tuple[date, int] | None = None


class _Refused(Exception):
    """A Books call refused with Zoho's ``{code, message}`` body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _stamp(when: datetime) -> str:
    """Zoho's parent timestamp: org offset, no colon (``2013-10-07T18:24:51+0530``)."""
    return when.astimezone(ORG_TIMEZONE).strftime("%Y-%m-%dT%H:%M:%S%z")


def config_for(url: str) -> dict[str, Any]:
    """The ``[systems.*]`` table pointing syncd at a simulator served on ``url``."""
    return {
        "kind": "zoho_books",
        "base_url": url + API_PREFIX,
        "accounts_url": url + ACCOUNTS_PREFIX,
        "organization_id": SANDBOX_ORGANIZATION_ID,
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET,
        "refresh_token": SANDBOX_REFRESH_TOKEN,
    }


class ZohoBooksSim(Simulator):
    """Zoho Books contact persons, one or more organizations, in memory.

    ``organizations`` maps organization id → parent contact ids; ``clock``
    (timezone-aware) drives token expiry, the refresh limit and both rate limits.
    """

    kind = "zoho_books"

    login_paths = (ACCOUNTS_PREFIX,)

    def __init__(
        self,
        *,
        organizations: Mapping[str, Iterable[str]] | None = None,
        client_id: str = SANDBOX_CLIENT_ID,
        client_secret: str = SANDBOX_CLIENT_SECRET,
        refresh_token: str = SANDBOX_REFRESH_TOKEN,
        per_minute: int = 100,
        daily_limit: int = 1000,
        token_ttl: int = TOKEN_TTL,
        person_as_array: bool = False,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_tokens = {refresh_token}
        self.per_minute = per_minute
        self.daily_limit = daily_limit
        self.token_ttl = token_ttl
        self.person_as_array = person_as_array
        self.soft_error_next = 0
        self.clock = clock
        self.tokens: dict[str, datetime] = {}
        self._minted: dict[str, deque[datetime]] = {}
        self._ids = itertools.count(460000000041001)
        self.persons: dict[str, _Person] = {}
        self.orgs: dict[str, _Org] = {}
        if organizations is None:
            organizations = {SANDBOX_ORGANIZATION_ID: ("460000000026049", "460000000026050")}
        for org_id, parents in organizations.items():
            org = self.orgs.setdefault(str(org_id), _Org(str(org_id)))
            for pid in parents:
                self._add_parent(org, str(pid))
        self.default_org = next(iter(self.orgs))
        super().__init__()

    # -- time, ids, parents --------------------------------------------------------------

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _add_parent(self, org: _Org, contact_id: str) -> _Parent:
        now = self._now()
        parent = _Parent(contact_id, f"Company {contact_id[-4:]}", now, now)
        org.parents[contact_id] = parent
        return parent

    def _parent(self, contact_id: str) -> tuple[_Org, _Parent] | None:
        for org in self.orgs.values():
            if contact_id in org.parents:
                return org, org.parents[contact_id]
        return None

    def expire_tokens(self) -> None:
        """Every access token dies now, as an hour passing or a revocation would."""
        with self.lock:
            self.tokens.clear()

    # -- answers ---------------------------------------------------------------------------

    @staticmethod
    def _answer(code: int, message: str, status: int = 200, **extra: Any) -> JSONResponse:
        return JSONResponse({"code": code, "message": message, **extra}, status_code=status)

    def throttle_response(self) -> Response:
        with self.lock:
            self.counters["throttled"] += 1
        return self._answer(CODE_MINUTE_LIMIT, MINUTE_LIMIT_MESSAGE, 429)

    def _person_json(self, p: _Person, *, with_parent: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if with_parent:
            out["contact_id"] = p.contact_id
        out["contact_person_id"] = p.contact_person_id
        for name in ("salutation", "first_name", "last_name", "email", "phone", "mobile",
                     "skype", "designation", "department"):
            out[name] = p.values.get(name, "")
        out["is_primary_contact"] = p.is_primary_contact
        out["is_added_in_portal"] = p.enable_portal
        out["communication_preference"] = dict(p.communication_preference)
        return out

    def _person_answer(self, p: _Person, message: str, status: int) -> JSONResponse:
        body: Any = self._person_json(p, with_parent=True)
        return self._answer(0, message, status,
                            contact_person=[body] if self.person_as_array else body)

    def _parent_json(self, parent: _Parent, *, with_persons: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "contact_id": parent.contact_id,
            "contact_name": parent.contact_name,
            "company_name": parent.contact_name,
            "contact_type": "customer",
            "status": "active",
            "created_time": _stamp(parent.created_time),
            "last_modified_time": _stamp(parent.last_modified_time),
        }
        if with_persons:
            out["contact_persons"] = [self._person_json(self.persons[pid], with_parent=False)
                                      for pid in parent.persons]
        return out

    # -- validation --------------------------------------------------------------------------

    @staticmethod
    def _check_values(body: Mapping[str, Any], *, require_first: bool) -> dict[str, str]:
        """The string fields of a write body, checked; raises :class:`_Refused`."""
        values: dict[str, str] = {}
        for name in _STRINGS:
            if name not in body:
                continue
            value = body[name]
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise _Refused(400, CODE_INVALID_VALUE, f"Invalid value passed for {name}")
            if len(value) > MAX_LENGTHS[name]:
                raise _Refused(400, CODE_TOO_LONG, f"Please ensure that the {name} has less "
                                                   f"than {MAX_LENGTHS[name]} characters.")
            values[name] = value
        if require_first and not values.get("first_name", "").strip():
            raise _Refused(400, CODE_INVALID_VALUE, "Please enter the first name of the "
                                                    "contact person.")
        return values

    @staticmethod
    def _apply_flags(p: _Person, body: Mapping[str, Any]) -> None:
        if isinstance(body.get("enable_portal"), bool):
            p.enable_portal = body["enable_portal"]
        pref = body.get("communication_preference")
        if isinstance(pref, dict):
            for key in ("is_sms_enabled", "is_whatsapp_enabled"):
                if isinstance(pref.get(key), bool):
                    p.communication_preference[key] = pref[key]

    def _make_primary(self, parent: _Parent, p: _Person) -> None:
        for pid in parent.persons:
            self.persons[pid].is_primary_contact = pid == p.contact_person_id

    # -- routing ---------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        a = API_PREFIX
        g = self._guarded
        return [
            # Under /_admin, so neither counted nor faulted (see common.py).
            Route("/_admin/zoho", self._admin_zoho, methods=["POST"]),
            Route(f"{ACCOUNTS_PREFIX}/oauth/v2/token", self._token, methods=["POST"]),
            Route(f"{a}/contacts", g(self._contacts), methods=["GET"]),
            Route(f"{a}/contacts/contactpersons", g(self._create), methods=["POST"]),
            Route(f"{a}/contacts/contactpersons/{{pid}}", g(self._update), methods=["PUT"]),
            Route(f"{a}/contacts/contactpersons/{{pid}}", g(self._delete), methods=["DELETE"]),
            Route(f"{a}/contacts/contactpersons/{{pid}}/primary", g(self._primary),
                  methods=["POST"]),
            Route(f"{a}/contacts/{{cid}}", g(self._contact), methods=["GET"]),
            Route(f"{a}/contacts/{{cid}}", g(self._contact_put), methods=["PUT"]),
            Route(f"{a}/contacts/{{cid}}/contactpersons", g(self._list), methods=["GET"]),
            Route(f"{a}/contacts/{{cid}}/contactpersons/{{pid}}", g(self._get), methods=["GET"]),
        ]

    def _build(self) -> Any:
        app = super()._build()

        async def http_error(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            if status == 405:
                return self._answer(CODE_METHOD, "The HTTP method is not allowed for the "
                                                 "requested resource.", 405)
            return self._answer(CODE_INVALID_URL, "Invalid URL Passed", status)

        app.add_exception_handler(HTTPException, http_error)
        return app

    def _guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Every Books route: token, organization, rate limits, JSON body, then the handler."""

        async def endpoint(request: Request) -> Response:
            raw = await request.body() if request.method in ("POST", "PUT") else b""
            try:
                with self.lock:
                    org = self._admit(request)
                body: dict[str, Any] | None = None
                if request.method in ("POST", "PUT") and not request.url.path.endswith(
                        "/primary"):
                    try:
                        parsed = json.loads(raw or b"null")
                    except ValueError:
                        parsed = None
                    if not isinstance(parsed, dict):
                        raise _Refused(400, CODE_INVALID_VALUE,
                                       "Invalid value passed for JSONString")
                    body = parsed
                with self.lock:
                    if self.soft_error_next > 0:
                        self.soft_error_next -= 1
                        self.counters["soft_error"] += 1
                        return self._answer(CODE_INTERNAL, "Internal error")
                return await handler(request, org, body)
            except _Refused as exc:
                return self._answer(exc.code, exc.message, exc.status)

        return endpoint

    def _admit(self, request: Request) -> _Org:
        """Token, then organization, then the per-minute and daily budgets (under the lock)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        now = self._now()
        expires = self.tokens.get(token.strip()) if scheme == "Zoho-oauthtoken" else None
        if expires is None or expires <= now:
            self.counters["unauthorized"] += 1
            raise _Refused(401, CODE_UNAUTHORIZED, UNAUTHORIZED_MESSAGE)
        org_id = request.query_params.get("organization_id", "").strip()
        if not org_id:
            raise _Refused(400, CODE_ORG_REQUIRED, ORG_REQUIRED_MESSAGE)
        org = self.orgs.get(org_id)
        if org is None:
            raise _Refused(401, CODE_ORG_UNKNOWN, "This user is not associated with the "
                                                  f"CompanyID/CompanyName:{org_id}.")
        today = now.date()
        day_count = org.day[1] if org.day and org.day[0] == today else 0
        if day_count >= self.daily_limit:
            self.counters["daily_capped"] += 1
            raise _Refused(429, CODE_DAILY_LIMIT, DAILY_LIMIT_MESSAGE)
        minute = now.replace(second=0, microsecond=0)
        minute_count = org.minute[1] if org.minute and org.minute[0] == minute else 0
        if minute_count >= self.per_minute:
            self.counters["throttled"] += 1
            raise _Refused(429, CODE_MINUTE_LIMIT, MINUTE_LIMIT_MESSAGE)
        org.day = (today, day_count + 1)
        org.minute = (minute, minute_count + 1)
        return org

    # -- the accounts server -----------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        params = dict(request.query_params)
        if request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            params.update(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        with self.lock:
            self.counters["login"] += 1
            if params.get("grant_type") != "refresh_token":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            if (params.get("client_id") != self.client_id
                    or params.get("client_secret") != self.client_secret):
                return JSONResponse({"error": "invalid_client"})
            refresh = params.get("refresh_token", "")
            if refresh not in self.refresh_tokens:
                # Zoho answers a bad refresh token with HTTP 200 and an ``error`` member.
                return JSONResponse({"error": "invalid_code"})
            now = self._now()
            minted = self._minted.setdefault(refresh, deque())
            while minted and minted[0] <= now - REFRESH_WINDOW:
                minted.popleft()
            if len(minted) >= REFRESH_LIMIT:
                self.counters["refresh_refused"] += 1
                return JSONResponse(REFRESH_LIMIT_ERROR, status_code=400)
            minted.append(now)
            token = "1000." + secrets.token_hex(16)
            self.tokens[token] = now + timedelta(seconds=self.token_ttl)
        return JSONResponse({
            "access_token": token,
            "scope": "ZohoBooks.contacts.READ ZohoBooks.contacts.CREATE "
                     "ZohoBooks.contacts.UPDATE ZohoBooks.contacts.DELETE",
            "api_domain": f"{request.url.scheme}://{request.url.netloc}",
            "token_type": "Bearer",
            "expires_in": self.token_ttl,
        })

    # -- Books: parents ----------------------------------------------------------------------

    @staticmethod
    def _paging(request: Request) -> tuple[int, int]:
        try:
            page = int(request.query_params.get("page", "1"))
            per_page = int(request.query_params.get("per_page", str(MAX_PER_PAGE)))
        except ValueError:
            raise _Refused(400, CODE_INVALID_VALUE, "Invalid value passed for page") from None
        if page < 1 or per_page < 1:
            raise _Refused(400, CODE_INVALID_VALUE, "Invalid value passed for page")
        return page, min(per_page, MAX_PER_PAGE)

    async def _contacts(self, request: Request, org: _Org, body: dict[str, Any] | None) -> Response:
        page, per_page = self._paging(request)
        column = request.query_params.get("sort_column", "contact_name")
        order = request.query_params.get("sort_order", "A")
        if column not in ("contact_name", "created_time", "last_modified_time"):
            raise _Refused(400, CODE_INVALID_VALUE, "Invalid value passed for sort_column")
        with self.lock:
            parents = sorted(org.parents.values(), key=lambda p: (getattr(p, column),
                                                                   p.contact_id),
                             reverse=order == "D")
            rows = [self._parent_json(p, with_persons=False)
                    for p in parents[(page - 1) * per_page: page * per_page]]
            more = len(parents) > page * per_page
        return self._answer(0, "success", contacts=rows, page_context={
            "page": page, "per_page": per_page, "has_more_page": more,
            "sort_column": column, "sort_order": order})

    def _own_parent(self, org: _Org, contact_id: str) -> _Parent:
        parent = org.parents.get(contact_id)
        if parent is None:
            raise _Refused(404, CODE_NOT_FOUND, "Contact does not exist.")
        return parent

    async def _contact(self, request: Request, org: _Org, body: dict[str, Any] | None) -> Response:
        with self.lock:
            parent = self._own_parent(org, request.path_params["cid"])
            return self._answer(0, "success", contact=self._parent_json(parent, with_persons=True))

    async def _contact_put(self, request: Request, org: _Org, body: dict[str, Any] | None) -> Response:
        """The trap [Z3]: ``contact_persons`` here is the complete list; the rest are deleted."""
        assert body is not None
        with self.lock:
            parent = self._own_parent(org, request.path_params["cid"])
            if isinstance(body.get("contact_name"), str) and body["contact_name"].strip():
                parent.contact_name = body["contact_name"]
            items = body.get("contact_persons")
            if items is not None:
                if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                    raise _Refused(400, CODE_INVALID_VALUE,
                                   "Invalid value passed for contact_persons")
                checked = [(i, self._check_values(i, require_first=True)) for i in items]
                kept: list[str] = []
                for item, values in checked:
                    pid = str(item.get("contact_person_id") or "")
                    person = self.persons.get(pid) if pid in parent.persons else None
                    if person is None:
                        person = _Person(self._new_id(), parent.contact_id, {})
                        self.persons[person.contact_person_id] = person
                    person.values = values
                    self._apply_flags(person, item)
                    kept.append(person.contact_person_id)
                for pid in parent.persons:
                    if pid not in kept:
                        del self.persons[pid]
                parent.persons = kept
                if kept and not any(self.persons[p].is_primary_contact for p in kept):
                    self.persons[kept[0]].is_primary_contact = True
            parent.last_modified_time = self._now()
            return self._answer(0, "Contact information has been saved.",
                                contact=self._parent_json(parent, with_persons=True))

    # -- Books: contact persons ------------------------------------------------------------------

    async def _list(self, request: Request, org: _Org, body: dict[str, Any] | None) -> Response:
        page, per_page = self._paging(request)
        with self.lock:
            parent = self._own_parent(org, request.path_params["cid"])
            ids = sorted(parent.persons, key=int)
            rows = [self._person_json(self.persons[pid], with_parent=False)
                    for pid in ids[(page - 1) * per_page: page * per_page]]
            more = len(ids) > page * per_page
        return self._answer(0, "success", contact_persons=rows, page_context={
            "page": page, "per_page": per_page, "has_more_page": more,
            "sort_column": "contact_person_id", "sort_order": "A"})

    def _own_person(self, org: _Org, pid: str) -> tuple[_Parent, _Person]:
        person = self.persons.get(pid)
        if person is None or person.contact_id not in org.parents:
            raise _Refused(404, CODE_NOT_FOUND, "Contact person does not exist.")
        return org.parents[person.contact_id], person

    async def _get(self, request: Request, org: _Org, body: dict[str, Any] | None) -> Response:
        with self.lock:
            parent, person = self._own_person(org, request.path_params["pid"])
            if parent.contact_id != request.path_params["cid"]:
                raise _Refused(404, CODE_NOT_FOUND, "Contact person does not exist.")
            return self._answer(0, "success",
                                contact_person=self._person_json(person, with_parent=True))

    async def _create(self, request: Request, org: _Org, body: dict[str, Any] | None) -> Response:
        assert body is not None
        contact_id = str(body.get("contact_id") or "").strip()
        if not contact_id:
            raise _Refused(400, CODE_INVALID_VALUE, "Invalid value passed for contact_id")
        values = self._check_values(body, require_first=True)
        with self.lock:
            parent = self._own_parent(org, contact_id)
            person = _Person(self._new_id(), contact_id, values)
            self._apply_flags(person, body)
            self.persons[person.contact_person_id] = person
            parent.persons.append(person.contact_person_id)
            if body.get("is_primary_contact") is True or len(parent.persons) == 1:
                self._make_primary(parent, person)
            return self._person_answer(person, "Contact person's information has been saved.",
                                       201)

    async def _update(self, request: Request, org: _Org, body: dict[str, Any] | None) -> Response:
        """Partial: fields left out keep their value, an empty string clears one.

        [Z2] requires ``contact_id`` and ``first_name`` on every update; a
        different ``contact_id`` is refused (DECISIONS.md: no moving persons).
        """
        assert body is not None
        contact_id = str(body.get("contact_id") or "").strip()
        if not contact_id:
            raise _Refused(400, CODE_INVALID_VALUE, "Invalid value passed for contact_id")
        values = self._check_values(body, require_first=True)
        with self.lock:
            parent, person = self._own_person(org, request.path_params["pid"])
            if contact_id != person.contact_id:
                raise _Refused(400, CODE_INVALID_VALUE, "The contact person does not belong "
                                                        f"to the contact {contact_id}.")
            person.values.update(values)
            self._apply_flags(person, body)
            if body.get("is_primary_contact") is True:
                self._make_primary(parent, person)
            return self._person_answer(person, "Contact person's information has been saved.",
                                       200)

    async def _delete(self, request: Request, org: _Org, body: dict[str, Any] | None) -> Response:
        with self.lock:
            parent, person = self._own_person(org, request.path_params["pid"])
            parent.persons.remove(person.contact_person_id)
            del self.persons[person.contact_person_id]
        return self._answer(0, "The contact person has been deleted.")

    async def _primary(self, request: Request, org: _Org, body: dict[str, Any] | None) -> Response:
        with self.lock:
            parent, person = self._own_person(org, request.path_params["pid"])
            self._make_primary(parent, person)
        return self._answer(0, "This contact person has been marked as your primary contact "
                               "person.")

    # -- Zoho-specific admin switches -------------------------------------------------------------

    async def _admin_zoho(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            if body.get("expire_tokens"):
                self.tokens.clear()
            if "person_as_array" in body:
                self.person_as_array = bool(body["person_as_array"])
            if "soft_error_next" in body:
                self.soft_error_next = int(body["soft_error_next"])
            if "daily_limit" in body:
                self.daily_limit = int(body["daily_limit"])
            return JSONResponse({"person_as_array": self.person_as_array,
                                 "soft_error_next": self.soft_error_next,
                                 "daily_limit": self.daily_limit,
                                 "tokens": len(self.tokens)})

    # -- the admin side channel, in canonical fields ----------------------------------------------

    def admin_create(self, org: str, fields: Mapping[str, str]) -> str:
        """A person under parent contact ``org`` (created in the default organization if new)."""
        with self.lock:
            found = self._parent(str(org))
            parent = found[1] if found else self._add_parent(self.orgs[self.default_org], str(org))
            values = {zoho: (fields.get(canon) or "").strip() for zoho, canon in FIELDS.items()}
            person = _Person(self._new_id(), parent.contact_id, values)
            self.persons[person.contact_person_id] = person
            parent.persons.append(person.contact_person_id)
            if len(parent.persons) == 1:
                person.is_primary_contact = True
            return person.contact_person_id

    def admin_update(self, record_id: str, fields: Mapping[str, str]) -> None:
        # DECISIONS.md: the sandbox does not bump the parent on a person edit.
        with self.lock:
            person = self.persons[str(record_id)]
            for zoho, canon in FIELDS.items():
                if canon in fields:
                    person.values[zoho] = (fields[canon] or "").strip()

    def admin_delete(self, record_id: str) -> None:
        with self.lock:
            person = self.persons.pop(str(record_id), None)
            if person is not None:
                found = self._parent(person.contact_id)
                if found is not None:
                    found[1].persons.remove(person.contact_person_id)

    def admin_dump(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"id": p.contact_person_id, "org": p.contact_id,
                 **{canon: p.values.get(zoho, "") for zoho, canon in FIELDS.items()}}
                for p in sorted(self.persons.values(), key=lambda p: int(p.contact_person_id))
            ]

    def admin_touch_parent(self, contact_id: str) -> None:
        """A user edits the parent contact itself: its ``last_modified_time`` moves."""
        with self.lock:
            found = self._parent(contact_id)
            if found is None:
                raise KeyError(contact_id)
            found[1].last_modified_time = self._now()


def seeded(
    persons: int = 20,
    parents: Iterable[str] = ("460000000026049", "460000000026050"),
    **options: Any,
) -> ZohoBooksSim:
    """A simulator with ``persons`` plausible people spread over ``parents``."""
    parent_ids = [str(p) for p in parents]
    options.setdefault("organizations", {SANDBOX_ORGANIZATION_ID: parent_ids})
    sim = ZohoBooksSim(**options)
    for i in range(persons):
        sim.admin_create(
            parent_ids[i % len(parent_ids)],
            {
                "first_name": f"Person{i}",
                "last_name": f"Zoho{i}",
                "email": f"person{i}@zoho.example.com",
                "phone": f"+1-925-921-{i:04d}",
                "salutation": "Ms." if i % 2 else "Mr.",
                "job_title": "Buyer" if i % 3 else "",
            },
        )
    return sim
