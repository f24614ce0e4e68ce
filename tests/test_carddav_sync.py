"""CardDAV + a memory system through whole cycles, against real Radicale and Xandikos:
create, quiet, update and delete both ways, the 412 path, and hostile servers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.model import Discovered, Watermark
from syncd.sandbox.carddav import CarddavSim
from syncd.store import Store
from syncd.store.migrate import upgrade
from tests.dav import ORG, Pair, book, dav_server, pair, sim

__all__ = ["book", "dav_server", "sim"]  # the fixtures, for pytest

ADA = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
       "phone": "+44 20 7946 0000", "job_title": "Analyst"}
BOB = {"first_name": "Bob", "last_name": "Babbage", "email": "bob@example.com",
       "mobile": "+44 7700 900123"}


@pytest.fixture
def two(sim: CarddavSim, sqlite_store: Store) -> Pair:
    return pair(sim, sqlite_store)


def settled(p: Pair) -> Pair:
    """A first sync of Ada (memory) and Bob (address book), checked, then a quiet cycle."""
    p.mem.add("org-mem", ADA)
    p.sim.admin_create(ORG, BOB)
    first = p.cycle()
    assert first.exit_code == 0, first.errors
    assert p.card("ada@example.com")["last_name"] == "Lovelace"
    assert p.person("bob@example.com")[1]["mobile"] == "+44 7700 900123"
    p.cycle()
    return p


def assert_quiet(p: Pair) -> None:
    mem, dav = p.mem.writes, p.sim.writes()
    report = p.cycle()
    assert report.exit_code == 0, report.errors
    assert report.writes == 0 and p.mem.writes == mem and p.sim.writes() == dav


def test_create_both_ways_then_quiet(two: Pair) -> None:
    settled(two)
    assert_quiet(two)
    card = two.card("ada@example.com")
    assert card["org"] == ORG and card["job_title"] == "Analyst"


def test_update_both_ways(two: Pair) -> None:
    settled(two)
    rid, _ = two.person("ada@example.com")
    two.mem.edit(rid, job_title="Countess")
    two.cycle()
    assert two.card("ada@example.com")["job_title"] == "Countess"
    bob = two.card("bob@example.com")
    two.sim.admin_update(bob["id"], {"phone": "+44 20 1234 5678", "department": "Engines"})
    two.cycle()
    fields = two.person("bob@example.com")[1]
    assert fields["phone"] == "+44 20 1234 5678"
    assert_quiet(two)


def test_delete_both_ways(two: Pair) -> None:
    settled(two)
    rid, _ = two.person("ada@example.com")
    two.mem.remove(rid)
    two.cycle()
    assert [c for c in two.sim.admin_dump() if c["email"] == "ada@example.com"] == []
    two.sim.admin_delete(two.card("bob@example.com")["id"])
    report = two.cycle()
    assert report.exit_code == 0, report.errors
    with pytest.raises(KeyError):
        two.person("bob@example.com")
    assert_quiet(two)


def test_a_card_edited_between_read_and_write_is_planned_again_not_overwritten(
    two: Pair,
) -> None:
    settled(two)
    rid, _ = two.person("ada@example.com")
    ada = two.card("ada@example.com")
    two.mem.edit(rid, job_title="Countess")
    # Another client (a phone) edits the card after our read, before our PUT lands.
    two.sim.hostile.before_write = lambda path: two.sim.admin_update(
        ada["id"], {"mobile": "+44 7700 900999"})
    report = two.cycle()
    assert report.exit_code == 0, report.errors  # a 412 is no failure ...
    assert report.systems["book"].failed == 0 and report.systems["book"].updated == 0
    assert two.card("ada@example.com")["job_title"] == "Analyst"  # ... and no overwrite
    assert two.store.failures() == []
    report = two.cycle()  # re-read, planned again
    assert report.exit_code == 0, report.errors
    card = two.card("ada@example.com")
    assert card["job_title"] == "Countess" and card["mobile"] == "+44 7700 900999"
    assert two.person("ada@example.com")[1]["mobile"] == "+44 7700 900999"
    assert_quiet(two)


def test_a_server_that_rewrites_every_card_causes_no_echo(two: Pair) -> None:
    two.sim.hostile.rewrite = True
    settled(two)
    _, text = next(v for v in two.sim.cards().values() if "ada@example.com" in v[1])
    assert "Rewriting Server" in text  # the server stored its own version
    assert_quiet(two)
    rid, _ = two.person("ada@example.com")
    two.mem.edit(rid, job_title="Countess")
    two.cycle()
    assert two.card("ada@example.com")["job_title"] == "Countess"
    assert_quiet(two)


def test_a_server_without_sync_collection_still_sees_deletions(two: Pair) -> None:
    two.sim.hostile.no_sync = True
    settled(two)
    assert two.book.open() == Discovered(incremental=False)
    assert_quiet(two)
    two.sim.admin_delete(two.card("bob@example.com")["id"])
    two.cycle()
    with pytest.raises(KeyError):
        two.person("bob@example.com")


def test_an_expired_sync_token_falls_back_and_still_sees_deletions(two: Pair) -> None:
    settled(two)
    two.sim.admin_delete(two.card("bob@example.com")["id"])
    two.sim.hostile.expire_next = 1
    report = two.cycle()
    assert report.exit_code == 0, report.errors
    assert two.sim.hostile.expire_next == 0
    with pytest.raises(KeyError):
        two.person("bob@example.com")
    assert_quiet(two)


def test_the_sync_token_is_the_watermark_and_survives_a_restart(two: Pair) -> None:
    settled(two)
    token = two.store.watermarks()["book"].token
    assert token
    two.restart()
    before = two.sim.counters.copy()
    assert_quiet(two)
    asked = two.sim.counters - before
    assert asked["REPORT"] == 1 and asked["PROPFIND"] == 1  # one sync report (+ discovery)
    # A deletion read from the sync report in a fresh process: mapped through the links.
    two.restart()
    two.sim.admin_delete(two.card("bob@example.com")["id"])
    two.cycle()
    with pytest.raises(KeyError):
        two.person("bob@example.com")


def test_a_duplicate_uid_is_rejected_and_reported_never_merged(two: Pair) -> None:
    if two.sim.server.kind != "radicale":
        pytest.skip("written past the server into Radicale's folder")
    settled(two)
    text = ("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:twin\r\nFN:Tw In\r\nN:In;Tw;;;\r\n"
            f"EMAIL:{{}}@example.com\r\nORG:{ORG}\r\nEND:VCARD\r\n")
    two.sim.put_raw(text.format("twin1"), "twin1")
    two.sim.put_behind(text.format("twin2"), "twin2")
    report = two.cycle()
    assert report.exit_code == 1
    assert any("UID twin" in e and "not merged" in e for e in report.errors), report.errors
    assert not [r for r in two.mem.records.values()
                if r.fields.get("email", "").startswith("twin")]


def test_vcard_4_folded_lines_and_non_ascii_names(two: Pair) -> None:
    title = "Directrice " + "générale des opérations " * 8
    assert len(title) > 200
    raw = f"TITLE:{title}"
    folded = "\r\n ".join(raw[i:i + 70] for i in range(0, len(raw), 70))
    href = two.sim.put_raw(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:zoe-1\r\nFN:Zoë Ångström\r\n"
        "N:Ångström;Zoë;;Dr.;\r\nEMAIL;TYPE=home:zoe@home.example\r\n"
        "EMAIL;PREF=1;TYPE=work:zoe@example.com\r\nTEL;VALUE=uri;TYPE=\"work,voice\":"
        f"tel:+46-8-123-456\r\n{folded}\r\nORG:{ORG};R&D\r\n"
        "PHOTO;MEDIATYPE=image/png:http://example.com/z.png\r\nX-PRONOUNS:she/her\r\n"
        "END:VCARD\r\n", "zoe")
    two.mem.add("org-mem", {"first_name": "太郎", "last_name": "山田",
                            "email": "taro@example.com"})
    report = two.cycle()
    assert report.exit_code == 0, report.errors
    _, zoe = two.person("zoe@example.com")
    assert (zoe["first_name"], zoe["last_name"], zoe["salutation"]) == ("Zoë", "Ångström", "Dr.")
    assert zoe["job_title"] == " ".join(title.split()) and zoe["phone"] == "+46-8-123-456"
    assert zoe["department"] == "R&D"
    taro = two.card("taro@example.com")
    assert (taro["first_name"], taro["last_name"]) == ("太郎", "山田")
    two.cycle()
    rid, _ = two.person("zoe@example.com")
    two.mem.edit(rid, mobile="+46 70 111")
    two.cycle()
    _, text = two.sim.cards()[href]
    assert "VERSION:4.0" in text and "X-PRONOUNS:she/her" in text
    assert "zoe@home.example" in text and "PHOTO" in text
    assert two.card("zoe@example.com")["mobile"] == "+46 70 111"
    assert_quiet(two)


def test_mass_delete_guard_holds_for_an_address_book(two: Pair) -> None:
    for i in range(10):
        two.sim.admin_create(ORG, {"first_name": f"P{i}", "last_name": "Many",
                                   "email": f"p{i}@example.com"})
    two.cycle()
    two.cycle()
    for card in two.sim.admin_dump()[:8]:
        two.sim.admin_delete(card["id"])
    report = two.cycle()
    assert report.exit_code == 3
    assert len(two.mem.records) == 10


def test_no_create_into_an_address_book_whose_read_failed(two: Pair) -> None:
    settled(two)
    two.mem.add("org-mem", {"first_name": "Cy", "last_name": "New", "email": "cy@example.com"})
    two.sim.faults.error_next = 50
    report = two.cycle()
    assert report.exit_code == 4
    two.sim.faults.error_next = 0
    assert not [c for c in two.sim.admin_dump() if c["email"] == "cy@example.com"]
    two.cycle()
    assert two.card("cy@example.com")["last_name"] == "New"


def test_token_round_trips_through_either_store(sim: CarddavSim, store: Store) -> None:
    p = pair(sim, store)
    p.sim.admin_create(ORG, BOB)
    p.cycle()
    token = store.watermarks()["book"].token
    assert token and p.person("bob@example.com")


def test_migration_0005_keeps_the_watermarks_it_finds(tmp_path: Path) -> None:
    old = Store(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(old.engine, "0004")
    when = datetime(2026, 11, 1, tzinfo=UTC)
    with old.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO watermark (system, cursor) VALUES ('harvest', ?)",
                             (when.isoformat(),))
    old.upgrade()
    assert old.watermarks()["harvest"].cursor == when
    assert old.watermarks()["harvest"].token is None
    with old.write() as conn:
        old.save_watermarks(conn, [Watermark("book", when, token="http://t/1")])
    assert old.watermarks()["book"].token == "http://t/1"
    old.close()
