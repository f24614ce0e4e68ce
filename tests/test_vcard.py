"""vCard ↔ canonical fields (CONTRACT §8): which property holds which field, both ways."""

from __future__ import annotations

import pytest

from syncd.connectors.vcard import apply, new_card, read_card

CARD3 = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:u-1\r\nFN:Ada Lovelace\r\nN:Lovelace;Ada;Augusta;Lady;\r\n"
    "EMAIL;TYPE=INTERNET,HOME:ada@home.example\r\nEMAIL;TYPE=INTERNET,WORK:ada@work.example\r\n"
    "TEL;TYPE=HOME:+44 1\r\nTEL:+44 2\r\nTEL;TYPE=CELL:+44 3\r\nTEL;TYPE=WORK,FAX:+44 4\r\n"
    "TITLE:Analyst\r\nORG:Acme Inc;Research;Engines\r\nNOTE:keep\r\nEND:VCARD\r\n"
)


def test_a_3_0_card_reads_into_the_mapped_fields() -> None:
    card = read_card(CARD3)
    assert (card.uid, card.org, card.version) == ("u-1", "Acme Inc", "3.0")
    assert card.fields == {
        "first_name": "Ada", "last_name": "Lovelace", "salutation": "Lady",
        "email": "ada@work.example", "phone": "+44 2", "mobile": "+44 3", "fax": "+44 4",
        "job_title": "Analyst", "department": "Research",
    }


def test_a_preferred_email_comes_first() -> None:
    text = CARD3.replace("EMAIL;TYPE=INTERNET,HOME:", "EMAIL;TYPE=INTERNET,HOME,PREF:")
    assert read_card(text).fields["email"] == "ada@home.example"


def test_a_4_0_card_reads_tel_uris_and_pref_parameters() -> None:
    text = ("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:1\r\nFN:Zoë\r\nN:Å;Zoë;;;\r\n"
            "EMAIL;TYPE=home:z@home.example\r\nEMAIL;PREF=1:z@pref.example\r\n"
            "TEL;VALUE=uri;TYPE=\"voice,work\":tel:+1-555-0100\r\nEND:VCARD\r\n")
    card = read_card(text)
    assert card.version == "4.0" and card.fields["email"] == "z@pref.example"
    assert card.fields["phone"] == "+1-555-0100" and card.org == ""


def test_a_folded_long_line_reads_as_one_value() -> None:
    note = "x" * 200
    folded = "TITLE:" + "\r\n ".join(note[i:i + 60] for i in range(0, 200, 60))
    text = CARD3.replace("TITLE:Analyst", folded)
    assert read_card(text).fields["job_title"] == note


def test_a_card_with_only_fn_splits_it_on_the_last_space() -> None:
    text = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:f\r\nFN:Jean Paul Sartre\r\nEND:VCARD\r\n"
    fields = read_card(text).fields
    assert (fields["first_name"], fields["last_name"]) == ("Jean Paul", "Sartre")


def test_apply_changes_only_the_chosen_properties() -> None:
    desired = {**read_card(CARD3).fields, "email": "ada@new.example", "phone": "",
               "first_name": "Augusta", "department": "Analytics"}
    out = apply(CARD3, "Acme Inc", desired)
    card = read_card(out)
    assert card.fields["email"] == "ada@new.example" and card.fields["phone"] == ""
    assert card.fields["department"] == "Analytics"
    for kept in ("ada@home.example", "TEL;TYPE=HOME:+44 1", "NOTE:keep",
                 "N:Lovelace;Augusta;Augusta;Lady;", "ORG:Acme Inc;Analytics;Engines",
                 "FN:Augusta Lovelace"):
        assert kept in out, kept


def test_apply_adds_a_missing_property_with_the_written_types() -> None:
    text = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:a\r\nFN:A\r\nN:A;;;;\r\nEND:VCARD\r\n"
    out = apply(text, "Org", {"phone": "+1", "mobile": "+2", "fax": "+3", "email": "a@x.org"})
    for line in ("TEL;TYPE=WORK,VOICE:+1", "TEL;TYPE=CELL:+2", "TEL;TYPE=FAX:+3",
                 "EMAIL;TYPE=WORK:a@x.org", "ORG:Org"):
        assert line in out, line


@pytest.mark.parametrize("name", [("Zoë", "Ångström"), ("太郎", "山田"), ("Łukasz", "Żółć")])
def test_new_cards_round_trip_non_ascii_names(name: tuple[str, str]) -> None:
    fields = {"first_name": name[0], "last_name": name[1], "email": "n@example.com"}
    text = new_card("id-1", "Acme Inc", fields)
    assert "VERSION:3.0" in text and f"FN:{name[0]} {name[1]}" in text
    card = read_card(text)
    assert (card.fields["first_name"], card.fields["last_name"]) == name
    assert card.uid == "id-1" and card.org == "Acme Inc"


def test_a_card_without_names_gets_a_full_name_all_the_same() -> None:
    text = new_card("id-2", "", {"email": "only@example.com"})
    assert "FN:only@example.com" in text and "ORG" not in text


def test_not_a_vcard_is_an_error() -> None:
    with pytest.raises(Exception):  # vobject raises its own error types
        read_card("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
