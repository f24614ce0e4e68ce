"""Settings (``syncd.config``): durations, the secrets a configuration names, URL errors.

How a configuration error reaches the operator (exit 2, file and key named)
is tested through the command line in ``test_cli``; the shipped example and
the deployment's configuration in ``test_deploy``.
"""

from __future__ import annotations

from datetime import timedelta

import hypothesis.strategies as st
import pytest
from hypothesis import given

from syncd.config import Settings, parse_duration
from syncd.store import Store


@given(n=st.integers(0, 10_000), unit=st.sampled_from(["s", "m", "h", "d"]))
def test_durations_parse(n: int, unit: str) -> None:
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration(f"{n}{unit}") == timedelta(seconds=n * seconds)


def test_settings_name_every_secret_with_its_basic_partners() -> None:
    cfg = Settings.model_validate({
        "store": {"url": "postgresql+psycopg://syncd:pg%40pass@db/syncd"},
        "systems": {
            "light": {"kind": "lightening", "base_url": "http://l", "token": "tok-123"},
            "harvest": {"kind": "harvest", "base_url": "http://h", "username": "ops",
                        "password": "hv-pass"},
            "zoho": {"kind": "zoho_books", "organization_id": "1", "client_id": "cid",
                     "client_secret": "zs-secret", "refresh_token": "zr-token"},
            "mem": {"kind": "memory"},
        },
    })
    assert cfg.secrets() == {
        "tok-123": frozenset(), "hv-pass": {"ops"}, "zs-secret": {"cid"},
        "zr-token": {"cid"}, "pg@pass": frozenset(),
    }


# The store's check of its configured URL (store/repo.py): to join test_store.py.
def test_store_url_errors_hide_the_password() -> None:
    from syncd.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        Store("nosuchdriver://user:topsecret@host/db")
    assert "topsecret" not in str(info.value)
