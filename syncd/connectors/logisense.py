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
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from syncd.config import LogisenseConfig
from syncd.connectors.base import (
    Capabilities,
    FieldLimit,
    Listing,
    RemoteRecord,
    RestConnector,
    WriteResult,
)
from syncd.connectors.paging import HeaderPage
from syncd.contact import Fields
from syncd.errors import BadAnswer, OutcomeUnknown, SystemUnavailable
from syncd.http import Auth, HttpClient, OAuth2Grant, Response

__all__ = ["CONNECTOR", "LogisenseConnector", "from_config", "point_kind"]

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


class LogisenseConnector(RestConnector):
    capabilities = CAPABILITIES
    default_headers = {"Accept": "application/json"}
    error_message = staticmethod(_error_message)

    def __init__(self, name: str, http: HttpClient, cfg: LogisenseConfig, **options: Any) -> None:
        super().__init__(name, http, cfg, **options)
        self.cfg: LogisenseConfig = cfg
        self.api = f"/ResourceServer/api/v{cfg.api_version}/"
        self.page_size = int(options.get("page_size", PAGE_SIZE))
        self.routes: dict[str, list[str]] = {}
        self.type_ids: dict[tuple[int, str], int] | None = None
        """(contactTypeId, canonical field) → contactPointTypeId."""
        self._members: dict[int, str] = {}
        self._unseen: set[int] = set()

    def make_auth(self) -> Auth:
        cfg = self.cfg
        return OAuth2Grant(
            f"/AuthorizationServer/api/v{cfg.api_version}/Access/Login",
            lambda: {"grant_type": "password", "client_id": cfg.client_id,
                     "username": cfg.username, "password": cfg.password.get_secret_value()},
            margin=REFRESH_MARGIN, clock=self.clock,
        )

    # -- start-up probe -----------------------------------------------------------------

    def _get(self, path: str, what: str, **kw: Any) -> Any:
        response = self.http.request("GET", self.api + path, what=what, **kw)
        return self.decode(response, what) if response.status_code == 200 else None

    def open(self) -> None:
        """Read Metadata (log the routes offered) and the contact point types, once."""
        if self.type_ids is not None:
            return
        for entity in ("Contact", "Account"):
            meta = self._get(f"{entity}/Metadata", f"{entity} metadata", ok=(404,))
            if meta is None:  # a probe, not a precondition: say so and go on
                log.warning("logisense.no_metadata", system=self.name, entity=entity)
                continue
            details = meta.get("details", {}) if isinstance(meta, dict) else {}
            routing = details.get("resourceRouting", {}).get("routes", [])
            patch = details.get("dataFlowPatchTypes", {})
            self.routes[entity] = [f"{r.get('name')} {r.get('template')}".strip() for r in routing]
            log.debug("logisense.routes", system=self.name, entity=entity,
                      routes=self.routes[entity], patch=patch)
            if entity == "Account" and "delete" not in patch.get("contact", ["delete"]):
                log.warning("logisense.no_delete", system=self.name)
                self.capabilities = dataclasses.replace(CAPABILITIES, can_delete=False)
        ids: dict[tuple[int, str], int] = {}
        types = self._get("ContactPointType/", "contact point types")
        for item in types.get("items", []) if isinstance(types, dict) else []:
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
        log.debug("logisense.point_types", system=self.name, count=len(ids))

    def _type_id(self, ctype: int, kind: str) -> int | None:
        assert self.type_ids is not None
        return self.type_ids.get((ctype, kind))

    # -- reading ------------------------------------------------------------------------

    def listings(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Listing]:
        """Members from each mapped account, then the paged contacts until all were seen.

        Members the pages missed (offset paging skips one when another is
        deleted mid-scan) are read one by one, so a skipped contact is never
        taken for a deleted one; a 404 means it really is gone.
        """
        self.open()
        self._members = {}
        for org in org_ids:
            detail = self._get(f"Account/{int(org)}/Detail", f"account {org}", ok=(404,))
            if detail is None:  # an incomplete scan must not read as "all deleted"
                raise SystemUnavailable(f"{self.name}: mapped account {org} not found",
                                        system=self.name)
            for c in detail["instance"].get("details", {}).get("contacts", []):
                self._members.setdefault(int(c["identity"]), org)
        self._unseen = set(self._members)
        if self._unseen:
            yield Listing(self.api + "Contact/Paged/Detail", what="contacts", orgs=frozenset(org_ids),
                          paginator=HeaderPage(self._total, size=self.page_size),
                          done=lambda: not self._unseen)
        for cid in sorted(self._unseen):
            yield Listing(f"{self.api}Contact/{cid}/Detail", what=f"contact {cid}", ok=(404,),
                          orgs=frozenset(org_ids))

    @staticmethod
    def _total(body: Any) -> int:
        return int(body["pagedResults"].get("totalCount", 0))

    def items(self, body: Any, listing: Listing) -> Sequence[Any]:
        found = body["pagedResults"]["items"] if "pagedResults" in body else [body["instance"]]
        if not isinstance(found, list):
            raise TypeError(f"expected a list of contacts, got {type(found).__name__}")
        self._unseen -= {c.get("identity") for c in found if isinstance(c, dict)}
        return found

    def item_id(self, item: Any) -> str | None:
        return str(item["identity"]) if isinstance(item, dict) and "identity" in item else None

    def record(self, item: Any, listing: Listing | None = None) -> RemoteRecord:
        return self._record(item, self._members.get(int(item["identity"]), ""))

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

    def _patch(self, path: str, body: Mapping[str, Any], what: str,
               idempotent: bool = False) -> list[dict[str, Any]]:
        """One PATCH; an answer we cannot read leaves a create's outcome unknown."""
        _, answer = self.send("PATCH", self.api + path, body, what=what, idempotent=idempotent)
        try:
            items = answer["results"]["items"] if answer is not None else []
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise TypeError(type(items).__name__)
        except (KeyError, TypeError) as exc:
            error = OutcomeUnknown if not idempotent else BadAnswer
            raise error(f"{self.name}: PATCH {path} ({what}): answer without results "
                        f"({type(exc).__name__}: {exc})", system=self.name) from None
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
        if new is None:  # it may exist all the same: the next poll tells
            raise OutcomeUnknown(f"{self.name}: create under account {org_id}: no created "
                                 f"contact in the answer: {results!r:.300}", system=self.name)
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
            detail = self._get(f"Contact/{int(remote_id)}/Detail", f"contact {remote_id}")
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
            creates = any(i["patchType"] == "create" for i in items)
            results = self._patch(f"Contact/{int(remote_id)}", body, f"contact {remote_id}",
                                  idempotent=not creates)
            points.update(self._new_points(ctype, results, changed))
        return WriteResult(remote_id, extra={"contactTypeId": ctype, "points": points})

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        self.open()
        if not self.capabilities.can_delete:
            raise self.reject(f"delete {remote_id}", "the server offers no contact delete")
        body = {"contacts": {"items": [{"patchType": "delete", "identity": int(remote_id)}]}}
        resp, _ = self.send("PATCH", f"{self.api}Account/{int(org_id)}", body, ok=(404,),
                            what=f"contact {remote_id}", idempotent=True, read_answer=False)
        if resp.status_code == 404:  # already gone from the account: the goal is reached
            log.info("logisense.delete_gone", system=self.name, contact=remote_id)


CONNECTOR = LogisenseConnector
from_config = LogisenseConnector.from_config
