"""A simulated Lightening contacts API (freight-forwarding SaaS, ``/contact``).

Faithful to seed 000, ``systems/lightening.md`` and the readings fixed in
``systems/DECISIONS.md``, so that the connector's tests mean something:

* ``Authorization: <token>`` compared verbatim; anything else is HTTP 401
  ``{"result": false, "error": "Unauthorized"}`` (DECISIONS).  A token can be
  made to expire (constructor, :meth:`LighteningSim.expire_token` or
  ``POST /_admin/token``) to play a revoked credential;
* ``GET /contact?customer_id[]=1&customer_id[]=7``: the PHP-style array is
  required, there is no paging and no changed-since filter;
* ``GET /contact/{id}`` → ``{"entity": {...}, "result": true}`` (DECISIONS);
* ``POST /contact`` (JSON, carries ``customer_id``) → ``{"msg", "id", "result"}``
  with the new id as a string; ``POST /contact/{id}`` updates only the keys
  sent, ``name`` required every time, ``customer_id`` moves the contact;
* ``GET /contact/{id}/delete`` — a GET that deletes, and both of its
  documented answers say ``"result": false``;
* every failure is HTTP 200 with ``"result": false`` and ``error`` (text) or
  ``errors`` (field → message); the documented limits are enforced, never
  truncated;
* booleans are read back as ``"1"``/``"0"``, ``id`` as a string,
  ``customer_id`` as an int, timestamps ``YYYY-MM-DD HH:MM:SS`` in UTC;
* its delete is a ``GET …/delete``: :meth:`LighteningSim.is_write` says so,
  so the shared ``lose_next`` fault (applied, answer lost) covers it too.

Where the vendor's documents and DECISIONS.md are both silent the simulator
picks one reading and names it ``ASSUMPTION`` below, so a real server that
differs is a one-place change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncd.sandbox.common import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    Simulator,
    utc_now,
)

__all__ = [
    "BOOLEANS",
    "CANONICAL",
    "LIMITS",
    "SANDBOX_TOKEN",
    "LighteningContact",
    "LighteningSim",
    "join_name",
    "seeded",
    "split_name",
]

SANDBOX_TOKEN = "sandbox-lightening-token"  # noqa: S105 - a local simulator's published token

LIMITS: dict[str, int] = {
    "name": 64,
    "email": 191,
    "tel": 32,
    "tel1": 32,
    "fax": 32,
    "mobile": 32,
    "role": 32,
    "department": 64,
    "customer_custom_identifier": 16,
}
"""Documented maximum lengths [S1]; a longer value is refused with ``errors``."""

BOOLEANS = ("is_active", "portal_active", "milestone")
"""Written as 1/0, read back as the strings ``"1"``/``"0"`` [S1]."""

CANONICAL: dict[str, str] = {
    "email": "email",
    "tel": "phone",
    "mobile": "mobile",
    "fax": "fax",
    "role": "job_title",
    "department": "department",
}
"""Lightening field → canonical field (CONTRACT §4); ``name`` is split separately."""

PORTAL_PASSWORD = (8, 32)
PROFILE_ID_MAX = 4294967295
STAMP = "%Y-%m-%d %H:%M:%S"
"""DECISIONS: timestamps are ``YYYY-MM-DD HH:MM:SS`` in UTC."""

# ASSUMPTION: "valid locale string" read as ll or ll_CC (en, en_US, fr_FR).
_LOCALE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# DECISIONS: the list takes a PHP-style array, customer_id[]=1 (or customer_id[0]=1).
_ARRAY_KEY = re.compile(r"^customer_id\[\d*\]$")

REQUIRED = "Field is required."
NOTHING_SENT = "Nothing sent for request."
BUSY = "The contact could not be saved. Please try again later."
"""What Lightening answers (HTTP 200) when it did not save a write and asks for another try."""
NOT_FOUND = "Entity not found."
DELETED = "Entity has been successfully deleted."
CREATED = "Successfully created entity."
UPDATED = "Successfully updated entity."

Handler = Callable[[Request], Awaitable[Response]]


def join_name(first: str, last: str) -> str:
    """CONTRACT §4: Lightening's one ``name`` is ``first last``."""
    return " ".join(part for part in (first.strip(), last.strip()) if part)


def split_name(name: str) -> tuple[str, str]:
    """CONTRACT §4: split on the last space; a single word is the last name."""
    first, _, last = " ".join(name.split()).rpartition(" ")
    return first, last


@dataclass
class LighteningContact:
    """One contact in Lightening's own shape: string values keyed by the API's names."""

    id: int
    customer_id: int
    values: dict[str, str]
    created_at: datetime
    updated_at: datetime
    portal_password: str = field(default="", repr=False)


def _defaults() -> dict[str, str]:
    """What the UI fills in for a new contact (values as the list shows them)."""
    return {
        "name": "", "email": "", "email2": "", "email3": "", "tel": "", "tel1": "",
        "fax": "", "mobile": "", "role": "", "department": "",
        "is_active": "1", "portal_active": "0", "milestone": "0",
        "customer_portal_profile_id": "1", "cost_center_id": "0",
        "customer_custom_identifier": "", "locale": "en_US",
    }


def _result(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _failure(errors: Mapping[str, str]) -> JSONResponse:
    return _result({"errors": dict(errors), "result": False})


def _as_int(value: Any) -> int | None:
    """An integer sent as a JSON number or a digit string (bools are not integers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value.strip())
    return None


class LighteningSim(Simulator):
    """Lightening contacts under customers, in memory.

    ``customers`` (when given) is the set of customer ids that exist: a create
    or move to another id is refused.  ``token_expired`` starts with the token
    refused.  ``clock`` lets a test move time.  ``busy_next``: the next N creates
    or updates are answered "could not be saved, try again later" and not applied.
    """

    kind = "lightening"

    def is_write(self, method: str, path: str) -> bool:
        return super().is_write(method, path) or (method == "GET" and path.endswith("/delete"))

    def __init__(
        self,
        *,
        token: str = SANDBOX_TOKEN,
        customers: Iterable[int | str] | None = None,
        token_expired: bool = False,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.token = token
        self.token_expired = token_expired
        self.customers: set[int] | None = None if customers is None else {
            int(c) for c in customers
        }
        self.clock = clock
        self.contacts: dict[int, LighteningContact] = {}
        self.busy_next = 0
        self._next_id = 411  # the note's example id is 412
        super().__init__()
        # Outermost, so a delete is counted even when a fault answers it.
        self.app.add_middleware(_CountDeletes, sim=self)

    # -- shared hooks -----------------------------------------------------------------

    def writes(self) -> int:
        """Deletes are GETs here: count them as the writes they are."""
        return super().writes() + self.counters.get("delete", 0)

    def throttle_response(self) -> Response:
        # Not documented, and DECISIONS is silent: a plain 429 in the vendor's error shape.
        return _result({"error": "Too Many Requests", "result": False}, 429)

    def expire_token(self, expired: bool = True) -> None:
        """Refuse the configured token from now on (or accept it again)."""
        with self.lock:
            self.token_expired = expired

    # -- time and ids -------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # -- routing ------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/contact", self._guard(self._list), methods=["GET"]),
            Route("/contact", self._guard(self._create), methods=["POST"]),
            Route("/contact/{cid}", self._guard(self._show), methods=["GET"]),
            Route("/contact/{cid}", self._guard(self._update), methods=["POST"]),
            Route("/contact/{cid}/delete", self._guard(self._delete), methods=["GET"]),
            Route("/_admin/token", self._admin_token, methods=["POST"]),
        ]

    def _guard(self, handler: Handler) -> Handler:
        """The token first (verbatim, DECISIONS), then the handler."""

        async def guarded(request: Request) -> Response:
            with self.lock:
                ok = not self.token_expired and request.headers.get("authorization") == self.token
            if not ok:
                return _result({"result": False, "error": "Unauthorized"}, 401)
            if request.method == "POST":
                with self.lock:
                    busy, self.busy_next = self.busy_next > 0, max(0, self.busy_next - 1)
                if busy:
                    self.counters["busy"] += 1
                    return _result({"result": False, "error": BUSY})
            return await handler(request)

        return guarded

    async def _admin_token(self, request: Request) -> Response:
        """``{"expired": true}`` refuses the token, ``false`` accepts it again."""
        body = await request.json()
        self.expire_token(bool(body.get("expired", True)))
        return JSONResponse({"expired": self.token_expired})

    # -- rendering and parsing ------------------------------------------------------------

    def _render(self, c: LighteningContact) -> dict[str, Any]:
        """One entity in the key order and value types of the seed's example."""
        v = c.values
        return {
            "email": v["email"], "tel": v["tel"], "tel1": v["tel1"], "fax": v["fax"],
            "mobile": v["mobile"], "role": v["role"], "department": v["department"],
            "milestone": v["milestone"], "cost_center_id": v["cost_center_id"],
            "email2": v["email2"], "email3": v["email3"],
            "customer_portal_profile_id": v["customer_portal_profile_id"],
            "customer_name": f"Customer {c.customer_id}",
            "customer_account": f"C{c.customer_id:05d}",
            "customer_id": c.customer_id,
            "portal_profile": v["customer_portal_profile_id"],
            "name": v["name"],
            "cost_center_name": "",
            "customer_custom_identifier": v["customer_custom_identifier"],
            "portal_fullname": "", "portal_branch_id": "",
            "vendor_account": "", "vendor_id": "", "vendor_name": "", "vendor_type": 1,
            "id": str(c.id),
            "created_at": c.created_at.strftime(STAMP),
            "updated_at": c.updated_at.strftime(STAMP),
            "is_active": v["is_active"], "portal_active": v["portal_active"],
            "locale": v["locale"],
            "customer_portal_profile_name": "",
        }

    @staticmethod
    async def _body(request: Request) -> dict[str, Any] | None:
        """The JSON object sent (DECISIONS: JSON bodies); None when nothing usable came.

        A form-encoded or empty body reaches a JSON-reading server as nothing,
        hence the vendor's "Nothing sent for request." for it.
        """
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) and body else None

    def _validate(
        self, body: Mapping[str, Any], *, creating: bool
    ) -> tuple[dict[str, str], dict[str, str], int | None, str | None]:
        """(errors, values to store, customer id, portal password) of one write.

        Every problem of the request is reported at once, one message per field.
        """
        errors: dict[str, str] = {}
        values: dict[str, str] = {}
        if "create_method" in body:
            errors["create_method"] = "Not allowed."
        name = body.get("name")
        if name is None or (isinstance(name, str) and not name.strip()):
            errors["name"] = REQUIRED  # on every update too [S1]
        for key, limit in LIMITS.items():
            if key not in body:
                continue
            value = "" if body[key] is None else body[key]
            if not isinstance(value, str):
                errors[key] = "Field must be a string."
            elif len(value) > limit:
                errors[key] = f"Field may not be greater than {limit} characters."
            elif key == "email" and value and not _EMAIL.match(value):
                errors[key] = "Field must be a valid email address."
            if key not in errors:
                values[key] = value.strip() if key == "name" else value
        for key in BOOLEANS:
            if key in body:
                flag = body[key]
                if flag in (1, 0, "1", "0") and not isinstance(flag, float):
                    values[key] = "1" if flag in (1, "1") else "0"
                else:
                    errors[key] = "Field must be true or false (1 or 0)."
        if "customer_portal_profile_id" in body:
            pid = _as_int(body["customer_portal_profile_id"])
            if pid is None or not 0 <= pid <= PROFILE_ID_MAX:
                errors["customer_portal_profile_id"] = (
                    f"Field must be an integer between 0 and {PROFILE_ID_MAX}.")
            else:
                values["customer_portal_profile_id"] = str(pid)
        if "cost_center_id" in body:
            ccid = _as_int(body["cost_center_id"])
            if ccid is None:
                errors["cost_center_id"] = "Field must be an integer."
            else:
                values["cost_center_id"] = str(ccid)
        if "locale" in body:
            locale = body["locale"]
            if not isinstance(locale, str) or not _LOCALE.match(locale):
                errors["locale"] = "Field must be a valid locale."
            else:
                values["locale"] = locale
        password: str | None = None
        if "portal_password" in body:
            pw = body["portal_password"]
            low, high = PORTAL_PASSWORD
            if not isinstance(pw, str) or not low <= len(pw) <= high:
                errors["portal_password"] = f"Field must be between {low} and {high} characters."
            else:
                password = pw
        customer: int | None = None
        if "customer_id" in body or creating:
            customer = _as_int(body.get("customer_id"))
            if body.get("customer_id") in (None, ""):
                errors["customer_id"] = REQUIRED
            elif customer is None or customer < 1:
                errors["customer_id"] = "Field must be an integer."
            elif self.customers is not None and customer not in self.customers:
                errors["customer_id"] = "Customer not found."
        return errors, values, customer, password

    def _customer_ids(self, request: Request) -> list[int] | dict[str, str]:
        """The ``customer_id`` array of a list call, or the ``errors`` to answer."""
        params = request.query_params.multi_items()
        raw = [v for k, v in params if _ARRAY_KEY.match(k)]
        if not raw:
            if any(k == "customer_id" for k, _ in params):
                return {"customer_id": "Field must be an array."}
            return {"customer_id": REQUIRED}
        ids = [_as_int(v) for v in raw]
        if any(i is None for i in ids):
            return {"customer_id": "Each customer id must be an integer."}
        return [i for i in ids if i is not None]

    def _get(self, request: Request) -> LighteningContact | None:
        cid = _as_int(request.path_params["cid"])
        return None if cid is None else self.contacts.get(cid)

    # -- vendor endpoints -----------------------------------------------------------------

    async def _list(self, request: Request) -> Response:
        wanted = self._customer_ids(request)
        if isinstance(wanted, dict):
            return _failure(wanted)
        with self.lock:
            entities = [
                self._render(c)
                for c in sorted(self.contacts.values(), key=lambda c: c.id)
                if c.customer_id in wanted
            ]
        return _result({"entities": entities, "result": True})

    async def _show(self, request: Request) -> Response:
        with self.lock:
            contact = self._get(request)
            if contact is None:
                # ASSUMPTION: the same answer as a delete of an unknown id.
                return _result({"msg": NOT_FOUND, "result": False})
            return _result({"entity": self._render(contact), "result": True})

    async def _create(self, request: Request) -> Response:
        body = await self._body(request)
        if body is None:
            return _result({"error": NOTHING_SENT, "result": False})
        errors, values, customer, password = self._validate(body, creating=True)
        if errors:
            return _failure(errors)
        assert customer is not None
        with self.lock:
            now = self._now()
            contact = LighteningContact(
                self._new_id(), customer, {**_defaults(), **values}, now, now, password or ""
            )
            self.contacts[contact.id] = contact
        return _result({"msg": CREATED, "id": str(contact.id), "result": True})

    async def _update(self, request: Request) -> Response:
        body = await self._body(request)
        with self.lock:
            contact = self._get(request)
            if contact is None:
                return _result({"msg": NOT_FOUND, "result": False})
            if body is None:
                return _result({"error": NOTHING_SENT, "result": False})
            errors, values, customer, password = self._validate(body, creating=False)
            if errors:
                return _failure(errors)
            contact.values.update(values)
            if customer is not None:  # DECISIONS: customer_id in an update moves the contact
                contact.customer_id = customer
            if password is not None:
                contact.portal_password = password
            contact.updated_at = self._now()
        return _result({"msg": UPDATED, "result": True})

    async def _delete(self, request: Request) -> Response:
        with self.lock:
            contact = self._get(request)
            if contact is None:
                return _result({"msg": NOT_FOUND, "result": False})
            del self.contacts[contact.id]
        # Documented: a successful delete also says "result": false.
        return _result({"msg": DELETED, "result": False})

    # -- admin side channel (canonical fields) -------------------------------------------

    def admin_create(self, org: str, fields: Mapping[str, str]) -> str:
        with self.lock:
            customer = int(org)
            if self.customers is not None:
                self.customers.add(customer)  # as if the user created the customer first
            now = self._now()
            contact = LighteningContact(self._new_id(), customer, _defaults(), now, now)
            self._admin_set(contact, fields)
            self.contacts[contact.id] = contact
            return str(contact.id)

    def admin_update(self, record_id: str, fields: Mapping[str, str]) -> None:
        with self.lock:
            contact = self.contacts[int(record_id)]
            self._admin_set(contact, fields)
            if "org" in fields:
                contact.customer_id = int(fields["org"])
            contact.updated_at = self._now()

    @staticmethod
    def _admin_set(contact: LighteningContact, fields: Mapping[str, str]) -> None:
        if "first_name" in fields or "last_name" in fields:
            first, last = split_name(contact.values["name"])
            contact.values["name"] = join_name(
                fields.get("first_name", first) or "", fields.get("last_name", last) or ""
            )
        for native, canon in CANONICAL.items():
            if canon in fields:
                contact.values[native] = (fields[canon] or "").strip()

    def admin_delete(self, record_id: str) -> None:
        with self.lock:
            self.contacts.pop(int(record_id), None)

    def admin_dump(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = []
            for c in sorted(self.contacts.values(), key=lambda c: c.id):
                first, last = split_name(c.values["name"])
                rows.append({
                    "id": str(c.id),
                    "org": str(c.customer_id),
                    "first_name": first,
                    "last_name": last,
                    **{canon: c.values[native] for native, canon in CANONICAL.items()},
                })
            return rows


class _CountDeletes:
    """Counts ``GET …/delete`` under ``"delete"`` before any fault can answer it."""

    def __init__(self, app: ASGIApp, sim: LighteningSim) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] == "http" and scope["method"] == "GET" and path.endswith("/delete") \
                and not path.startswith("/_admin"):
            with self.sim.lock:
                self.sim.counters["delete"] += 1
        await self.app(scope, receive, send)


def seeded(
    contacts: int = 20,
    customers: Iterable[int | str] = (1, 2),
    **options: Any,
) -> LighteningSim:
    """A simulator with ``contacts`` plausible people spread over ``customers``."""
    customer_ids = [str(c) for c in customers]
    sim = LighteningSim(customers=customer_ids, **options)
    for i in range(contacts):
        sim.admin_create(
            customer_ids[i % len(customer_ids)],
            {
                "first_name": f"Person{i}",
                "last_name": f"Lightening{i}",
                "email": f"person{i}@lightening.example.com",
                "phone": f"+1 555 03{i:02d}",
                "job_title": "Buyer" if i % 3 else "",
                "department": "Purchasing" if i % 2 else "",
            },
        )
    return sim
