"""LogiSense Billing v6: contacts hang under Accounts; e-mail and phones are child records.

Why it looks the way it does (``shared/systems/logisense.md``, ``DECISIONS.md``):

* v6 contacts carry no update stamp → a full scan compared by hash.  The scan
  pages through ``Contact/Paged/Detail`` (the page asked for in a JSON
  ``Pagination`` *request header*) and keeps only members of the mapped
  accounts, read from ``Account/{id}/Detail`` — one request per account and
  per page, never one per contact.
* Email/phone/mobile/fax are *contact points* whose type ids belong to the
  contact's ContactType.  The ids are read from ``ContactPointType/`` (a
  config override wins), and each point's ``identity`` is kept in the link's
  ``extra`` so that a changed email is an *update* of the same point, sent
  with the scalar fields in one ``PATCH Contact/{id}``.
* Create and delete go through ``PATCH Account/{id}``: a new contact arrives
  with its points nested, so it never exists as an unmatchable name-only orphan.
* ``title`` is the salutation ("Mr."), not a job title (CONTRACT §4).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from syncd.config import LogisenseConfig
from syncd.connectors.base import (
    Capabilities,
    FieldLimit,
    Page,
    RemoteRecord,
    RestConnector,
    WriteResult,
)
from syncd.contact import Fields
from syncd.errors import AuthError, ConfigError, SystemUnavailable
from syncd.http import HttpClient, Response

__all__ = ["LogisenseConnector", "from_config", "point_kind"]

log = structlog.get_logger(__name__)

SCALARS = {"first_name": "firstName", "last_name": "lastName", "salutation": "title"}
POINTS = ("email", "phone", "mobile", "fax")
PAGE_SIZE = 500
# ASSUMPTION: log in again this long before the token's stated expiry (half its life at most).
REFRESH_MARGIN = timedelta(seconds=60)
LIMITS = {  # ASSUMPTION: column lengths the v6 docs do not state; the sandbox enforces the same.
    "first_name": FieldLimit(max_length=50),
    "last_name": FieldLimit(max_length=50),
    "salutation": FieldLimit(max_length=20),
    **{p: FieldLimit(max_length=255) for p in POINTS},
}
CAPABILITIES = Capabilities(
    fields=frozenset({*SCALARS, *POINTS}), incremental=False, timestamps=False, limits=LIMITS
)


def point_kind(type_name: str) -> str | None:
    """ASSUMPTION: which canonical field a contact point type name means (undocumented names)."""
    name = type_name.strip().lower()
    if "mail" in name:
        return "email"
    if "mobile" in name or "cell" in name:
        return "mobile"
    if "fax" in name:
        return "fax"
    if "phone" in name:
        return "phone"
    return None


def _error_message(response: Response) -> str:
    """``trackingId`` plus every error message, so a quarantine reason says it all."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if not isinstance(body, dict):
        return response.text[:500]
    errors = body.get("errors") or []
    parts = [f"{e.get('code', '')}: {e.get('message', '')}" for e in errors if isinstance(e, dict)]
    if body.get("error_description") or body.get("error"):
        parts.append(str(body.get("error_description") or body.get("error")))
    messages = "; ".join(parts or [response.text[:300]])
    return f"[trackingId {body.get('trackingId', '?')}] {messages}"


class _Login:
    """The ``Auth`` hook: password-grant login, again shortly before expiry and after a 401."""

    def __init__(self, cfg: LogisenseConfig, clock: Callable[[], datetime]) -> None:
        self.cfg = cfg
        self.clock = clock
        self.path = f"/AuthorizationServer/api/v{cfg.api_version}/Access/Login"
        self.token: str | None = None
        self.renew_at = datetime.min.replace(tzinfo=UTC)

    def headers(self, client: HttpClient) -> Mapping[str, str]:
        if self.token is None or self.clock() >= self.renew_at:
            self.refresh(client)
        return {"Authorization": f"Bearer {self.token}"}

    def refresh(self, client: HttpClient) -> None:
        form = {"grant_type": "password", "client_id": self.cfg.client_id,
                "username": self.cfg.username, "password": self.cfg.password.get_secret_value()}
        resp = client.request("POST", self.path, data=form, authenticate=False,
                              ok=(200, 400, 401, 403, 404), headers={"Accept": "application/json"})
        if resp.status_code == 404:
            raise ConfigError(f"{client.system}: login route {client.base_url}{self.path} "
                              "not found: check base_url and api_version")
        if resp.status_code != 200:
            raise AuthError(f"{client.system}: login refused: {_error_message(resp)}",
                            system=client.system)
        body = resp.json()
        ttl = timedelta(seconds=float(body.get("expires_in", 1800)))
        self.token = str(body["access_token"])
        self.renew_at = self.clock() + max(ttl - REFRESH_MARGIN, ttl / 2)


class LogisenseConnector(RestConnector):
    capabilities = CAPABILITIES

    def __init__(self, name: str, http: HttpClient, cfg: LogisenseConfig, auth: _Login) -> None:
        super().__init__(name, http)
        self.cfg = cfg
        self.auth = auth
        self.api = f"/ResourceServer/api/v{cfg.api_version}/"
        self.page_size = PAGE_SIZE
        self.routes: dict[str, list[str]] = {}
        self.type_ids: dict[tuple[int, str], int] | None = None
        """(contactTypeId, canonical field) → contactPointTypeId."""

    # -- start-up probe -----------------------------------------------------------------

    def _get(self, path: str, what: str = "", **kw: Any) -> Any:
        return self.http.request("GET", self.api + path, what=what, **kw).json()

    def open(self) -> None:
        """Read Metadata (log the routes offered) and the contact point types, once."""
        if self.type_ids is not None:
            return
        for entity in ("Contact", "Account"):
            resp = self.http.request("GET", f"{self.api}{entity}/Metadata", ok=(200, 404))
            if resp.status_code == 404:  # a probe, not a precondition: say so and go on
                log.warning("logisense.no_metadata", system=self.name, entity=entity)
                continue
            meta = resp.json().get("details", {})
            routing = meta.get("resourceRouting", {}).get("routes", [])
            self.routes[entity] = [f"{r.get('name')} {r.get('template')}".strip() for r in routing]
            log.info("logisense.routes", system=self.name, entity=entity,
                     routes=self.routes[entity], patch=meta.get("dataFlowPatchTypes", {}))
            if entity == "Account" and "delete" not in meta.get("dataFlowPatchTypes", {}).get(
                "contact", ["delete"]
            ):
                log.warning("logisense.no_delete", system=self.name)
                self.capabilities = dataclasses.replace(CAPABILITIES, can_delete=False)
        ids: dict[tuple[int, str], int] = {}
        for item in self._get("ContactPointType/").get("items", []):
            kind = point_kind(str(item.get("name", "")))
            key = (int(item.get("contactTypeId", 0)), kind or "")
            if kind is None:
                log.debug("logisense.point_type_unmapped", system=self.name, type=item.get("name"))
            elif key not in ids:
                ids[key] = int(item["identity"])
        for kind, tid in self.cfg.contact_point_types.items():  # the operator's word wins
            for ctype in {c for c, _ in ids} | {self.cfg.contact_type_id or 0}:
                ids[(ctype, kind)] = tid
        self.type_ids = ids
        log.info("logisense.point_types", system=self.name, count=len(ids))

    def _type_id(self, ctype: int, kind: str) -> int | None:
        assert self.type_ids is not None
        return self.type_ids.get((ctype, kind))

    # -- reading ------------------------------------------------------------------------

    def list_records(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Page]:
        self.open()
        members: dict[int, str] = {}
        for org in org_ids:
            resp = self.http.request("GET", f"{self.api}Account/{int(org)}/Detail",
                                     ok=(200, 404), what=f"account {org}")
            if resp.status_code == 404:  # an incomplete scan must not read as "all deleted"
                raise SystemUnavailable(f"{self.name}: mapped account {org} not found: "
                                        f"{_error_message(resp)}", system=self.name)
            for c in resp.json()["instance"].get("details", {}).get("contacts", []):
                members.setdefault(int(c["identity"]), org)
        number, unseen = 1, set(members)
        while unseen:
            header = json.dumps({"pageNumber": number, "pageSize": self.page_size})
            body = self._get("Contact/Paged/Detail", headers={"Pagination": header})
            result = body.get("pagedResults", {})
            items = [c for c in result.get("items", []) if c.get("identity") in unseen]
            unseen -= {c["identity"] for c in items}
            yield Page([self._record(c, members[c["identity"]]) for c in items])
            if not result.get("items") or number * self.page_size >= int(result.get("totalCount", 0)):
                break
            number += 1
        yield Page(list(self._stragglers(unseen, members)))

    def _stragglers(self, unseen: set[int], members: Mapping[int, str]) -> Iterator[RemoteRecord]:
        """Members the pages missed: offset paging skips one when another is deleted mid-scan.

        Read one by one, so a skipped contact is never taken for a deleted one;
        a 404 means it really is gone.  Costs nothing when no one moved.
        """
        for cid in sorted(unseen):
            resp = self.http.request("GET", f"{self.api}Contact/{cid}/Detail", ok=(200, 404),
                                     what=f"contact {cid}")
            if resp.status_code == 200:
                yield self._record(resp.json()["instance"], members[cid])

    def _record(self, c: Mapping[str, Any], org: str) -> RemoteRecord:
        ctype = int(c.get("contactTypeId") or 0)
        fields: Fields = {k: (c.get(v) or "").strip() for k, v in SCALARS.items()}
        points: dict[str, int] = {}
        wanted = {self._type_id(ctype, k): k for k in POINTS}
        for p in sorted(c.get("details", {}).get("contactPoints", []), key=lambda p: p["identity"]):
            kind = wanted.get(p.get("contactPointTypeId"))
            if kind and kind not in points:
                points[kind] = int(p["identity"])
                fields[kind] = (p.get("value") or "").strip()
        for kind in POINTS:
            fields.setdefault(kind, "")
        return RemoteRecord(str(c["identity"]), org, fields,
                            extra={"contactTypeId": ctype, "points": points})

    # -- writing ------------------------------------------------------------------------

    def _patch(self, path: str, body: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
        resp = self.http.request("PATCH", self.api + path, json=body, what=what)
        items: list[dict[str, Any]] = resp.json().get("results", {}).get("items", [])
        return items

    def create(self, org_id: str, fields: Fields) -> WriteResult:
        self.open()
        ctype = self.cfg.contact_type_id
        if ctype is None:
            raise self.reject("create", f"systems.{self.name}.contact_type_id is not set: "
                              "new contacts need a ContactType id")
        points = []
        for kind in POINTS:
            if fields.get(kind):
                tid = self._type_id(ctype, kind)
                if tid is None:
                    raise self.reject("create", f"ContactType {ctype} has no {kind} contact "
                                      f"point type (set contact_point_types.{kind})")
                points.append({"patchType": "create", "contactPointTypeId": tid,
                               "value": fields[kind]})
        item = {"patchType": "create", "patchClientId": 1, "contactTypeId": ctype,
                **{v: fields.get(k, "") for k, v in SCALARS.items()}, "isUsedForTax": False,
                "details": {"contactPoints": {"items": points}}}
        body = {"details": {}, "contacts": {"items": [item]}}
        results = self._patch(f"Account/{int(org_id)}", body, what="new contact")
        new = next((r for r in results if r.get("dtoTypeKey") == "contact"
                    and r.get("action") == "created"), None)
        if new is None:
            raise self.reject("create", f"no created contact in the answer: {results!r:.300}")
        extra = {"contactTypeId": ctype, "points": self._new_points(ctype, results, fields)}
        return WriteResult(str(new["identity"]), extra=extra)

    def _new_points(self, ctype: int, results: Sequence[Mapping[str, Any]],
                    fields: Mapping[str, str]) -> dict[str, int]:
        """Created points by (type, value): the answer does not echo ``patchClientId``."""
        found: dict[str, int] = {}
        for r in results:
            inst = r.get("instance") or {}
            if r.get("dtoTypeKey") != "contactPoint" or r.get("action") != "created":
                continue
            for kind in POINTS:
                if (self._type_id(ctype, kind) == inst.get("contactPointTypeId")
                        and inst.get("value") == fields.get(kind)):
                    found[kind] = int(r["identity"])
        return found

    def update(self, remote_id: str, org_id: str, changed: Fields, desired: Fields,
               extra: Mapping[str, Any]) -> WriteResult:
        self.open()
        if "contactTypeId" not in extra:  # a link without our extra: read the points once
            detail = self._get(f"Contact/{int(remote_id)}/Detail", what=f"contact {remote_id}")
            extra = self._record(detail["instance"], org_id).extra
        ctype = int(extra["contactTypeId"])
        points: dict[str, int] = {k: int(v) for k, v in extra.get("points", {}).items()}
        body: dict[str, Any] = {v: changed[k] for k, v in SCALARS.items() if k in changed}
        items: list[dict[str, Any]] = []
        for kind in POINTS:
            if kind not in changed:
                continue
            value, pid = changed[kind], points.get(kind)
            if value and pid is not None:
                items.append({"patchType": "update", "identity": pid, "value": value})
            elif value:
                tid = self._type_id(ctype, kind)
                if tid is None:
                    raise self.reject(f"update {remote_id}",
                                      f"ContactType {ctype} has no {kind} contact point type")
                items.append({"patchType": "create", "contactPointTypeId": tid, "value": value})
            elif pid is not None:
                items.append({"patchType": "delete", "identity": pid})
                points.pop(kind)
        if items:
            body["details"] = {"contactPoints": {"items": items}}
        if body:
            results = self._patch(f"Contact/{int(remote_id)}", body, what=f"contact {remote_id}")
            points.update(self._new_points(ctype, results, changed))
        return WriteResult(remote_id, extra={"contactTypeId": ctype, "points": points})

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        self.open()
        if not self.capabilities.can_delete:
            raise self.reject(f"delete {remote_id}", "the server offers no contact delete")
        body = {"contacts": {"items": [{"patchType": "delete", "identity": int(remote_id)}]}}
        resp = self.http.request("PATCH", f"{self.api}Account/{int(org_id)}", json=body,
                                 ok=(200, 404), what=f"contact {remote_id}")
        if resp.status_code == 404:  # already gone from the account: the goal is reached
            log.info("logisense.delete_gone", system=self.name, contact=remote_id)


def from_config(name: str, cfg: LogisenseConfig, **options: Any) -> LogisenseConnector:
    """Options: ``transport`` and ``sleep`` (tests), ``clock`` (token expiry), ``page_size``."""
    clock: Callable[[], datetime] = options.pop("clock", lambda: datetime.now(UTC))
    page_size = int(options.pop("page_size", PAGE_SIZE))
    auth = _Login(cfg, clock)
    http = HttpClient(name, cfg.base_url, timeout=cfg.timeout.total_seconds(), auth=auth,
                      max_rps=cfg.max_rps, error_message=_error_message,
                      headers={"Accept": "application/json"}, **options)
    connector = LogisenseConnector(name, http, cfg, auth)
    connector.page_size = page_size
    return connector
