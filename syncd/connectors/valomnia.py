"""Valomnia contacts (people of a *Customer*): mapping and endpoints.

Why it looks the way it does (``shared/systems/valomnia.md``, ``DECISIONS.md``):

* the login is a Spring Security form (:func:`login_form`); its answer — or
  the ``/login/ajaxSuccess`` page a 302 leads to — carries the ``token`` that
  every call sends back as ``Cookie: JSESSIONID=<token>``.  An expired session
  (401, or a redirect to a login page) logs in again once;
* one ``GET /api/v1.0/contacts`` listing for every customer, paged by
  ``max``/``offset`` up to ``paging.total``; contacts of unmapped customers come
  too, so one of ours moved there is seen as out of scope, not deleted;
* a move to another customer is an update carrying ``customerId``;
  incremental reads add ``lastUpdated_gte`` (inclusive, second grain,
  :func:`last_updated_param`) sorted ascending, so many contacts stamped in
  the same second are all read and re-seen ones are recognised by hash;
* a query the server calls invalid (``invalid_datetime_format``,
  ``invalid_param``) is a configuration problem: the system stops for the
  cycle with the API's own message, it is never retried;
* writes are form-encoded; only mapped fields are sent, so Valomnia's own
  (``comment``, ``isDecisionMaker``, address, ``photo``, ``user``) are never
  cleared.  A 405 on DELETE means the server offers none (DECISIONS.md): the
  connector says so once and stops offering deletes to the planner.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.config import ValomniaConfig
from syncd.connectors.base import (
    Capabilities,
    FieldLimit,
    Listing,
    RemoteRecord,
    RestConnector,
    WriteResult,
    parse_iso,
)
from syncd.connectors.paging import OffsetPaging
from syncd.contact import Fields
from syncd.errors import AuthError, SystemUnavailable
from syncd.http import (
    Auth,
    FormLoginCookie,
    HttpClient,
    Response,
    default_rules,
    json_body,
    vendor_message,
)
from syncd.model import MOVED_FROM

__all__ = [
    "API", "CAPABILITIES", "CONNECTOR", "FIELDS", "MAX_LENGTH", "PAGE_SIZE", "ValomniaConnector",
    "error_message", "from_config", "last_updated_param", "login_form", "token_from_login",
    "validate_response",
]

API = "/api/v1.0/contacts"
"""The hrefs of the vendor's reference read ``/api/v1.0/…`` [V1]-[V3]."""
LOGIN_PATH = "/j_spring_security_check"

FIELDS: dict[str, str] = {
    "first_name": "firstName",
    "last_name": "lastName",
    "email": "email",
    "phone": "phone",
    "mobile": "mobile",
    "fax": "fax",
    "job_title": "fonction",
}
"""Canonical field → Valomnia parameter (CONTRACT §4); the customer is the organization."""

MAX_LENGTH = 255
"""ASSUMPTION (DECISIONS.md): every string is limited to 255 characters."""
PAGE_SIZE = 100
"""``max`` defaults to 100 and larger values are undocumented: stay at 100."""
OVERLAP = timedelta(seconds=1)
"""``lastUpdated`` has second grain: re-read at least one whole second."""
REQUIRED = ("first_name", "last_name")
"""Required on create [V2]; the server also refuses to blank them on update."""
CONFIG_ERRORS = frozenset({"invalid_datetime_format", "invalid_param", "invalid_param_type"})
"""A listing refused with one of these is our query's fault: retrying cannot help."""

CAPABILITIES = Capabilities(
    fields=frozenset(FIELDS),
    incremental=True,
    can_delete=True,
    can_move=True,
    timestamps=True,
    limits={f: FieldLimit(MAX_LENGTH, required_on_create=f in REQUIRED, required=f in REQUIRED)
            for f in FIELDS},
    overlap=OVERLAP,
)


def login_form(cfg: ValomniaConfig) -> dict[str, str]:
    """ASSUMPTION: the form body works like [V5]'s query string (Spring reads both)."""
    return {"j_username": cfg.username, "j_password": cfg.password.get_secret_value(),
            "ajax": "true"}


def token_from_login(response: Response) -> str | None:
    """The ``token`` of ``{"success": true, "token": ...}`` (direct, or after the 302)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("success") is not True:
        return None
    token = body.get("token")
    return token if isinstance(token, str) and token else None


def last_updated_param(since: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, floored to the second: the only accepted shape."""
    if since.tzinfo is None:
        raise ValueError("lastUpdated_gte needs a timezone-aware datetime")
    return since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error_code(response: Response) -> str:
    body = json_body(response)
    return str(body.get("error") or "") if isinstance(body, dict) else ""


def _words(body: dict[str, Any]) -> str | None:
    """``error: error_description`` of the vendor's error body."""
    return f"{body.get('error') or ''}: {body.get('error_description') or ''}".strip(": ") or None


error_message = vendor_message(_words)


def validate_response(response: Response, message: str) -> None:
    """The default rules, plus Valomnia's own session and query signals.

    ASSUMPTION (undocumented): a redirect to a login page, or an HTML page
    where the API answers JSON, is an expired session — a 401 in effect.
    """
    status = response.status_code
    location = response.headers.get("Location", "")
    if 300 <= status < 400 and "login" in location.lower():
        raise AuthError(f"HTTP {status}: session expired (redirect to {location})")
    ctype = response.headers.get("Content-Type", "")
    if status == 200 and ctype.startswith("text/html") and "/api/" in response.request.url.path:
        raise AuthError("HTTP 200 with an HTML page: session expired")
    if (status == 400 and response.request.method == "GET"
            and _error_code(response) in CONFIG_ERRORS):
        raise SystemUnavailable(f"configuration error: the server refused our query: "
                                f"HTTP 400 {message}")
    default_rules(response, message)


class ValomniaConnector(RestConnector):
    """Contacts of the mapped Valomnia customers; organizations are customer ids."""

    capabilities = CAPABILITIES
    items_key = "data"
    body_format = "form"
    default_headers = {"Accept": "application/json"}
    error_message = staticmethod(error_message)
    validate_response = staticmethod(validate_response)

    def __init__(self, name: str, http: HttpClient, cfg: ValomniaConfig, **options: Any) -> None:
        super().__init__(name, http, cfg, **options)
        self.cfg: ValomniaConfig = cfg
        self.page_size = int(options.get("page_size", PAGE_SIZE))

    def make_auth(self) -> Auth:
        return FormLoginCookie(LOGIN_PATH, lambda: login_form(self.cfg), token_from_login)

    # -- reading --------------------------------------------------------------------------

    def listings(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Listing]:
        """One listing for every customer, oldest change first (the planner keeps ours)."""
        if not org_ids:
            return
        params: dict[str, str] = {"sort": "lastUpdated", "order": "asc"}
        if since is not None:
            params["lastUpdated_gte"] = last_updated_param(since)
        yield Listing(API, params=params, what="list contacts", ascending=True,
                      paginator=OffsetPaging(size=self.page_size, total=self._total))

    @staticmethod
    def _total(body: Any) -> int | None:
        total = body["paging"]["total"]
        return int(total) if total is not None else None

    def record(self, item: Any, listing: Listing | None = None) -> RemoteRecord:
        customer = item.get("customer") or {}
        return RemoteRecord(
            remote_id=str(item["id"]),
            org_id=str(customer["id"]),
            fields={f: str(item.get(v) or "").strip() for f, v in FIELDS.items()},
            updated_at=parse_iso(item.get("lastUpdated")),
        )

    # -- writing --------------------------------------------------------------------------

    def _written(self, body: Any) -> RemoteRecord | None:
        """The contact a write answers with, when it is one."""
        if isinstance(body, Mapping) and body.get("id") is not None and body.get("customer"):
            return self.record(body)
        return None

    def create(self, org_id: str, fields: Fields) -> WriteResult:
        values = {f: (fields.get(f) or "").strip() for f in FIELDS}
        what = f"create contact {values['first_name']} {values['last_name']} (customer {org_id})"
        self.check(what, values, creating=True)
        form = {"customerId": org_id,
                **{FIELDS[f]: v for f, v in values.items() if v or f in REQUIRED}}
        _, body = self.send("POST", API, form, what=what, idempotent=False, ok=())
        echoed = self._written(body)
        if echoed is None:  # it may exist all the same: the next poll matches it
            raise self.unknown(what, "the answer carries no contact id")
        return WriteResult(echoed.remote_id, values, echoed.updated_at)

    def update(self, remote_id: str, org_id: str, changed: Fields, desired: Fields,
               extra: Mapping[str, Any]) -> WriteResult:
        """PUT only the changed mapped fields: the update is partial (DECISIONS.md)."""
        holds = {f: (desired.get(f) or "").strip() for f in FIELDS}
        delta = {FIELDS[f]: (v or "").strip() for f, v in changed.items() if f in FIELDS}
        if MOVED_FROM in extra:
            delta["customerId"] = org_id
        what = f"update contact {remote_id}"
        self.check(what, holds, creating=False)
        if not delta:
            return WriteResult(remote_id, holds)
        _, body = self.send("PUT", f"{API}/{remote_id}", delta, what=what)
        echoed = self._written(body)
        return WriteResult(remote_id, holds, echoed.updated_at if echoed else None)

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        """DELETE → 204; 404 is already gone (the goal); 405 turns deletes off, said once."""
        what = f"delete contact {remote_id}"
        if self.remove("DELETE", f"{API}/{remote_id}", what=what, ok=(405,)).status_code == 405:
            # ASSUMPTION (DECISIONS.md): 405 on DELETE means no delete exists — say so once.
            self.stop_deleting("valomnia.no_delete",
                               detail="DELETE answered 405: deletes are not propagated to this system")
            raise self.reject(what, "the server offers no contact delete (HTTP 405); deletes "
                              "are off for this system")


CONNECTOR = ValomniaConnector
from_config = ValomniaConnector.from_config
