"""The console over real HTTP: every page and endpoint, the token rules, CSRF, the lockout,
escaping, and what each action does to the store (CONTRACT §7).

The console is served by uvicorn on a free 127.0.0.1 port from the same code
``syncd web`` runs, over a store a real cycle filled (two memory systems).
"""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from syncd.cli import main
from syncd.config import load_settings
from syncd.model import Conflict
from syncd.store import Store
from syncd.store.history import person_changes, runs
from syncd.store.repo import Failure
from syncd.web import Console
from syncd.web.auth import Lockout
from tests.conftest import PG_URL
from tests.e2e import crm, write_config

TOKEN = "console-token-for-tests-7f3a"
EVIL = "<script>alert(1)</script>"
ADA = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@acme.example",
       "phone": "+1 555 0100"}
PAGES = ["/", "/errors", "/errors.csv", "/conflicts", "/people?q=ada", "/runs"]
APIS = ["/api/status", "/api/runs", "/api/people?q=ada", "/api/errors", "/api/conflicts"]


@dataclass
class Site:
    url: str
    store: Store
    cfg: Path
    ada: str
    evil: str
    grace: str

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)  # type: ignore[arg-type]

    def bearer(self) -> httpx.Client:
        return self.client(headers={"Authorization": f"Bearer {TOKEN}"})

    def quarantined(self) -> dict[tuple[str, str], Failure]:
        return {(f.system, f.golden_id): f for f in self.store.failures(quarantined=True)}


def _gid(store: Store, email: str) -> str:
    state = store.load_state()
    return next(g.id for g in state.goldens.values() if g.fields.get("email") == email)


def _quarantine(store: Store, gid: str, error: str) -> None:
    with store.write() as conn:
        store.record_failure(conn, Failure("billing", gid, "update", "9", 5, error, "h", True,
                                           None, datetime.now(UTC)))


def _build(tmp: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("SYNCD_STORE__URL", url)
    monkeypatch.setenv("SYNCD_WEB__TOKEN", TOKEN)
    cfg = write_config(tmp, '\n[systems.h]\nkind = "harvest"\nbase_url = "http://127.0.0.1:9"\n'
                            'username = "u"\npassword = "hunter2-system-secret"\nenabled = false\n')
    store = Store(url)
    store.upgrade()
    crm(tmp).add("1", ADA, "1001")
    crm(tmp).add("1", {"first_name": "Grace", "last_name": "Hopper",
                       "email": "grace@acme.example"}, "1002")
    crm(tmp).add("1", {"first_name": EVIL, "last_name": "Evil", "email": "evil@acme.example"},
                 "1003")
    assert main(["--config", str(cfg), "--log-level", "warning", "once"]) == 0
    ada, grace, evil = (_gid(store, f"{n}@acme.example") for n in ("ada", "grace", "evil"))
    _quarantine(store, ada, "billing: PUT /contacts/9 (update): HTTP 422 'ada@acme.example' "
                            "email is not allowed")
    _quarantine(store, grace, "billing: PUT /contacts/9 (update): HTTP 422 'grace@acme.example' "
                              "email is not allowed")
    _quarantine(store, evil, f"billing: HTTP 400 {EVIL}")
    with store.write() as conn:
        store.save_conflicts(conn, [Conflict(ada, "phone", (
            ("crm", "+1 555 0100", datetime(2026, 1, 1, tzinfo=UTC)),
            ("billing", "+1 555 0199", datetime(2026, 1, 2, tzinfo=UTC))), "crm", "+1 555 0100",
            "newest")], datetime.now(UTC))
    console = Console(load_settings(cfg), port=0).start()
    try:
        yield Site(console.url, store, cfg, ada, evil, grace)
    finally:
        console.stop()
        store.close()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    yield from _build(tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}", monkeypatch)


@pytest.fixture(params=["sqlite", "postgres"])
def any_site(request: pytest.FixtureRequest, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'syncd.db'}"
    else:
        url = f"{PG_URL}?options=-csearch_path%3D{request.getfixturevalue('pg_schema')}"
    yield from _build(tmp_path, url, monkeypatch)


def login(c: httpx.Client) -> str:
    """Log in through the form; the CSRF token the pages' forms carry."""
    answer = c.post("/login", data={"token": TOKEN, "next": "/errors"})
    assert answer.status_code == 303 and answer.headers["location"] == "/errors"
    found = re.search(r'name="csrf" value="([^"]+)"', c.get("/errors").text)
    assert found
    return found.group(1)


# -- the token ------------------------------------------------------------------------------

def test_healthz_needs_no_token(site: Site) -> None:
    with site.client() as c:
        assert c.get("/healthz").json() == {"ok": True}


def test_without_the_token_pages_show_the_login_form_and_the_api_answers_401(site: Site) -> None:
    with site.client() as c:
        for path in PAGES:
            answer = c.get(path)
            assert answer.status_code == 401, path
            assert 'action="/login"' in answer.text and "Ada" not in answer.text, path
        for path in [*APIS, f"/api/people/{site.ada}", f"/api/people/{site.ada}/history"]:
            answer = c.get(path)
            assert answer.status_code == 401 and "error" in answer.json(), path
        assert c.post("/api/errors/1/retry").status_code == 401
        assert c.post("/api/undo", json={"changes": [1]}).status_code == 401
    assert len(site.quarantined()) == 3


def test_every_page_and_endpoint_answers_with_the_bearer_token(any_site: Site) -> None:
    site = any_site
    with site.bearer() as c:
        for path in [*PAGES, f"/people/{site.ada}", *APIS, f"/api/people/{site.ada}",
                     f"/api/people/{site.ada}/history", "/login"]:
            assert c.get(path).status_code == 200, path
        overview = c.get("/").text
        assert "crm" in overview and "billing" in overview and 'class="badge ok"' in overview
        status = c.get("/api/status").json()
        assert status["people"] == 3 and len(status["quarantine"]) == 3
        assert status["systems"]["crm"]["state"] == "ok"
        assert status["systems"]["h"]["state"] == "off"
        assert status["systems"]["billing"]["linked"] == 3
        runs = c.get("/api/runs").json()["runs"]
        assert runs[0]["kind"] == "once" and runs[0]["systems"]["billing"]["created"] == 3
        assert "Lovelace" in c.get(f"/people/{site.ada}").text
        assert c.get("/people/nobody").status_code == 404
        assert c.get("/api/people/nobody").status_code == 404
        conflicts = c.get("/api/conflicts").json()["conflicts"]
        assert conflicts[0]["person"] == site.ada and conflicts[0]["field"] == "phone"
        assert "+1 555 0199" in c.get("/conflicts").text


def test_a_wrong_or_malformed_token_is_401(site: Site) -> None:
    with site.client(headers={"Authorization": "Bearer not-it"}) as c:
        assert c.get("/api/status").status_code == 401
    with site.client(headers={"Authorization": f"Basic {TOKEN}"}) as c:
        assert c.get("/api/status").status_code == 401
    with site.client() as c:
        c.cookies.set("syncd_session", "forged.value.here")
        assert c.get("/").status_code == 401


def test_login_sets_a_signed_httponly_strict_cookie(site: Site) -> None:
    with site.client() as c:
        wrong = c.post("/login", data={"token": "nope", "next": "/"})
        assert wrong.status_code == 401 and "Wrong token" in wrong.text
        assert "set-cookie" not in wrong.headers
        answer = c.post("/login", data={"token": TOKEN, "next": "https://evil.example/"})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        cookie = answer.headers["set-cookie"]
        assert "syncd_session=" in cookie and TOKEN not in cookie
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert c.get("/").status_code == 200
        assert c.get("/api/status").status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/").text)
        assert csrf
        assert c.post("/logout", data={"csrf": csrf.group(1)}).status_code == 303
        c.cookies.clear()
        assert c.get("/").status_code == 401


def test_five_wrong_tokens_then_429_for_the_rest_of_the_minute(site: Site) -> None:
    with site.client() as c:
        for _ in range(8):  # missing tokens are a plain 401 and do not count
            assert c.get("/api/status").status_code == 401
        for _ in range(5):
            assert c.get("/api/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        blocked = c.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) <= 60
        assert c.post("/login", data={"token": TOKEN}).status_code == 429
        assert c.get("/").status_code == 429
        assert c.get("/healthz").status_code == 200


def test_the_lockout_ends_with_its_minute() -> None:
    now = [1000.0]
    lockout = Lockout(clock=lambda: now[0])
    for _ in range(4):
        lockout.wrong("10.0.0.1")
        now[0] += 10
    assert lockout.blocked_for("10.0.0.1") == 0
    now[0] += 25  # the first wrong one is 65 s old: four within the minute, not five
    lockout.wrong("10.0.0.1")
    assert lockout.blocked_for("10.0.0.1") == 0
    lockout.wrong("10.0.0.1")
    assert 0 < lockout.blocked_for("10.0.0.1") <= 60
    assert lockout.blocked_for("10.0.0.2") == 0
    now[0] += 61
    assert lockout.blocked_for("10.0.0.1") == 0


# -- CSRF and the actions -------------------------------------------------------------------

def test_a_cookie_post_without_its_csrf_token_is_refused_and_changes_nothing(site: Site) -> None:
    ada_id = next(e["id"] for e in site.bearer().get("/api/errors").json()["errors"]
                  if e["person"] == site.ada)
    with site.client() as c:
        login(c)
        assert c.post(f"/errors/{ada_id}/retry", data={"back": "/errors"}).status_code == 403
        assert c.post(f"/errors/{ada_id}/retry", data={"csrf": "guess"}).status_code == 403
        assert c.post("/errors/all/drop", data={}).status_code == 403
        assert c.post(f"/api/errors/{ada_id}/retry").status_code == 403
    assert len(site.quarantined()) == 3
    assert not site.store.load_state().links[(site.ada, "billing")].excluded


def test_retry_one_from_the_page_releases_it_for_the_next_cycle(any_site: Site) -> None:
    site = any_site
    with site.client() as c:
        csrf = login(c)
        page = c.get("/errors").text
        ada_id = next(e["id"] for e in c.get("/api/errors").json()["errors"]
                      if e["person"] == site.ada)
        assert f'action="/errors/{ada_id}/retry"' in page
        answer = c.post(f"/errors/{ada_id}/retry", data={"csrf": csrf, "back": "/errors"})
        assert answer.status_code == 303 and answer.headers["location"].startswith("/errors?done=")
        assert "1 retried" in c.get(answer.headers["location"]).text
    left = site.quarantined()
    assert ("billing", site.ada) not in left and len(left) == 2
    ada = next(f for f in site.store.failures() if f.golden_id == site.ada)
    assert ada.attempts == 0 and not ada.quarantined


def test_drop_by_api_excludes_the_person_from_that_system(any_site: Site) -> None:
    site = any_site
    with site.bearer() as c:
        errors = c.get("/api/errors").json()["errors"]
        evil = next(e for e in errors if e["person"] == site.evil)
        assert {"id", "person", "name", "email", "ids", "label", "system", "action", "field",
                "error", "attempts"} <= set(evil)
        assert c.post(f"/api/errors/{evil['id']}/drop").json() == {"dropped": [evil["id"]]}
        assert c.post(f"/api/errors/{evil['id']}/drop").status_code == 404
        assert c.post("/api/errors/99999/retry").status_code == 404
    assert ("billing", site.evil) not in site.quarantined()
    assert site.store.load_state().links[(site.evil, "billing")].excluded


def test_a_group_of_one_kind_is_retried_together(site: Site) -> None:
    with site.client() as c:
        csrf = login(c)
        errors = c.get("/api/errors").json()["errors"]
        groups = {e["group"] for e in errors if e["person"] in (site.ada, site.grace)}
        assert len(groups) == 1  # the same error for two people, ids and emails aside
        (group,) = groups
        assert "2 writes:" in c.get("/errors").text
        answer = c.post(f"/errors/group/{group}/retry", data={"csrf": csrf, "back": "/errors"})
        assert answer.status_code == 303
    assert set(site.quarantined()) == {("billing", site.evil)}


def test_retry_all_with_a_bearer_token_needs_no_csrf(site: Site) -> None:
    with site.bearer() as c:
        assert c.post("/errors/all/retry", data={"back": "/errors"}).status_code == 303
    assert site.quarantined() == {}


def test_quarantine_list_json_shows_the_same_ids(site: Site) -> None:
    listed = subprocess.run([sys.executable, "-m", "syncd", "--config", str(site.cfg), "quarantine",
                             "list", "--json"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    cli = {(q["person"], q["id"]) for q in json.loads(listed.stdout)["quarantined"]}
    api = {(e["person"], e["id"]) for e in site.bearer().get("/api/errors").json()["errors"]}
    assert cli == api and len(api) == 3


def test_errors_csv_has_every_quarantined_write_and_defuses_formulas(site: Site) -> None:
    with site.bearer() as c:
        answer = c.get("/errors.csv")
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert {r["person"] for r in rows} == {site.ada, site.grace, site.evil}
    assert all(not r["error"].startswith("=") for r in rows)
    assert any(r["email"] == "ada@acme.example" and r["field"] == "email" for r in rows)


def test_history_and_undo_through_the_api(site: Site) -> None:
    with site.bearer() as c:
        history = c.get(f"/api/people/{site.ada}/history").json()
        assert history["person"] == site.ada and history["available"] is True
        email = next(ch for ch in history["changes"] if ch["field"] == "email")
        assert (email["old"], email["new"], email["source"]) == ("", "ada@acme.example", "crm")
        assert c.get("/api/people/nobody/history").status_code == 404
        unknown = c.post("/api/undo", json={"changes": [987654]})
        assert unknown.status_code == 404 and "987654" in unknown.json()["error"]
        done = c.post("/api/undo", json={"changes": [email["id"]]})
        assert done.status_code == 200 and done.json()["undone"] == [email["id"]]
        assert len(done.json()["changes"]) == 1
        again = c.post("/api/undo", json={"changes": [email["id"]]})
        assert again.status_code == 409 and again.json()["refused"][0]["id"] == email["id"]
        assert c.post("/api/undo", json={"nonsense": True}).status_code == 400
    assert site.store.load_state().goldens[site.ada].fields["email"] == ""


# -- what the pages show --------------------------------------------------------------------

def test_a_contact_named_like_a_script_shows_as_text(site: Site) -> None:
    with site.bearer() as c:
        for path in ["/people?q=evil", f"/people/{site.evil}", "/errors", "/"]:
            text = c.get(path).text
            assert EVIL not in text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in c.get(f"/people/{site.evil}").text
        assert "&lt;script&gt;" in c.get("/errors").text


def test_search_by_name_email_phone_and_remote_id(site: Site) -> None:
    with site.bearer() as c:
        def found(q: str) -> list[str]:
            return [p["person"] for p in c.get("/api/people", params={"q": q}).json()["people"]]

        assert found("lovelace") == [site.ada]
        assert found("GRACE@ACME.EXAMPLE") == [site.grace]
        assert found("555 0100") == [site.ada]
        assert found("crm:1002") == [site.grace]
        assert found("1003") == [site.evil]
        assert found(site.ada[:8]) == [site.ada]
        assert found("nobody-at-all") == []
        assert set(found("acme.example")) == {site.ada, site.grace, site.evil}
        person = c.get("/api/people", params={"q": "ada"}).json()["people"][0]
        assert person["organization"] == "acme" and person["ids"]["crm"] == "1001"
        assert "Lovelace" in c.get("/people", params={"q": "ada"}).text


def test_no_secret_reaches_a_page_or_the_api(site: Site) -> None:
    with site.client() as c:
        login(c)
        for path in [*PAGES, f"/people/{site.ada}", *APIS, f"/api/people/{site.ada}"]:
            text = c.get(path).text
            assert "hunter2-system-secret" not in text and TOKEN not in text, path


def test_the_person_page_shows_copies_failures_and_conflicts(site: Site) -> None:
    with site.bearer() as c:
        text = c.get(f"/people/{site.ada}").text
        doc = c.get(f"/api/people/{site.ada}").json()
    assert doc["systems"]["crm"]["remote_id"] == "1001" and doc["organization"] == "acme"
    assert doc["failures"][0]["quarantined"] is True and doc["conflicts"][0]["field"] == "phone"
    assert "1001" in text and "email is not allowed" in text and "+1 555 0199" in text
    fid = next(e["id"] for e in site.bearer().get("/api/errors").json()["errors"]
               if e["person"] == site.ada)
    assert f'action="/errors/{fid}/retry"' in text


# -- starting it ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_web_without_a_token_exits_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    result = subprocess.run([sys.executable, "-m", "syncd", "--config", str(cfg), "web"],
                            capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in __import__("os").environ.items()
                                 if k != "SYNCD_WEB__TOKEN"})
    assert result.returncode == 2 and "SYNCD_WEB__TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_console_binds_loopback_unless_told_otherwise(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_WEB__TOKEN", TOKEN)
    settings = load_settings(write_config(tmp_path))
    console = Console(settings, port=0)
    try:
        assert console.sock.getsockname()[0] == "127.0.0.1"
        assert console.url.startswith("http://127.0.0.1:")
    finally:
        console.sock.close()
    taken = Console(settings, port=0)
    try:
        with pytest.raises(Exception, match=f"cannot listen on 127.0.0.1:{taken.port}"):
            Console(settings, port=taken.port)
    finally:
        taken.sock.close()


def test_run_with_the_console_enabled_and_no_token_exits_2_before_any_cycle(tmp_path: Path) -> None:
    import os

    cfg = write_config(tmp_path, "\n[web]\nenabled = true\nport = 0\n")
    result = subprocess.run([sys.executable, "-m", "syncd", "--config", str(cfg), "run"],
                            capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "SYNCD_WEB__TOKEN"})
    assert result.returncode == 2 and "web.token" in result.stderr
    assert not (tmp_path / "syncd.db").exists()  # stopped before the daemon opened the store


def test_run_serves_the_console_on_loopback_when_enabled(tmp_path: Path) -> None:
    import os

    port = _free_port()
    cfg = write_config(tmp_path, f"\n[web]\nenabled = true\nport = {port}\n")
    proc = subprocess.Popen([sys.executable, "-m", "syncd", "--config", str(cfg), "run"],
                            env={**os.environ, "SYNCD_WEB__TOKEN": TOKEN},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/status",
                                   headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
                # The daemon polls each system in a job of its own: the first run may be
                # another system's, with crm still "never polled" (delayed) until its own.
                if answer.json()["systems"]["crm"]["state"] != "delayed":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "no answer"
            time.sleep(0.3)
        assert answer.json()["systems"]["crm"]["state"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert TOKEN not in out + err


def test_use_this_value_instead_is_written_everywhere_by_the_next_cycle(any_site: Site) -> None:
    site = any_site
    with site.client() as c:
        csrf = login(c)
        page = c.get("/conflicts").text
        (conflict,) = c.get("/api/conflicts").json()["conflicts"]
        assert f'action="/conflicts/{conflict["id"]}/use"' in page
        assert c.post(f"/conflicts/{conflict['id']}/use",
                      data={"system": "billing"}).status_code == 403  # no CSRF token
        answer = c.post(f"/conflicts/{conflict['id']}/use",
                        data={"csrf": csrf, "system": "billing", "back": "/conflicts"})
        assert answer.status_code == 303
        assert "the next cycle writes the value everywhere" in c.get(answer.headers["location"]).text
        assert "pwned" not in c.get("/conflicts?done=pwned").text
        assert c.post(f"/api/conflicts/{conflict['id']}/use", json={"system": "nope"},
                      headers={"X-CSRF-Token": csrf}).status_code == 404
    assert site.store.load_state().goldens[site.ada].fields["phone"] == "+1 555 0199"
    assert site.store.conflicts()[0]["resolved"] is True
    used = person_changes(site.store, site.ada)[0]  # kept as an operator change, in a run
    assert (used.field, used.new, used.source) == ("phone", "+1 555 0199", "operator")
    assert runs(site.store, 1)[0]["kind"] == "console"
    assert main(["--config", str(site.cfg), "--log-level", "warning", "once"]) in (0, 1)
    phones = {r.fields["email"]: r.fields.get("phone") for r in crm(site.cfg.parent).records.values()}
    assert phones["ada@acme.example"] == "+1 555 0199"


def test_a_body_that_is_not_json_or_nested_too_deep_is_a_400_naming_the_shape(site: Site) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    with site.bearer() as c:
        for body in (b"{not json", deep):
            undo = c.post("/api/undo", content=body)
            assert undo.status_code == 400 and "changes" in undo.json()["error"]
            use = c.post("/api/conflicts/1/use", content=body)
            assert use.status_code == 400 and "system" in use.json()["error"]
