"""Configuration: one TOML file plus ``SYNCD_*`` environment overrides (CONTRACT §2).

Every model forbids unknown keys, so a typo is an error that names the key and
the file instead of a silently ignored setting.  Secrets are ``SecretStr`` and
may come from the environment only (``SYNCD_SYSTEMS__HARVEST__PASSWORD``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import time as dt_time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from syncd.contact import FIELDS
from syncd.errors import ConfigError
from syncd.model import ConflictPolicy, DeletePolicy, FieldPolicy
from syncd.redact import use_settings

__all__ = [
    "ConflictPolicy",
    "DeletePolicy",
    "FieldConfig",
    "Settings",
    "SystemConfig",
    "WebConfig",
    "config_path",
    "load_settings",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """``30s``, ``5m``, ``6h``, ``1d`` (a bare number is seconds)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2) or "s"])
    raise ValueError(f"bad duration {value!r}: use a number with s, m, h or d, e.g. '5m'")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(_Strict):
    url: str = "sqlite:///syncd.db"
    keep_runs: Duration = timedelta(days=90)
    """How long a cycle's run row (``status``, daily budgets) is kept; older ones are dropped."""
    keep_history: Duration = timedelta(days=365)
    """How long each change to a golden record is kept (``syncd history``, ``undo``); a run
    is kept as long as a change of its is.  ``0s`` keeps no history at all."""


class SyncConfig(_Strict):
    interval: Duration = timedelta(minutes=5)
    full_scan_interval: Duration = timedelta(hours=6)
    conflict: ConflictPolicy = ConflictPolicy.NEWEST
    priority: list[str] = Field(default_factory=list)
    deletes: DeletePolicy = DeletePolicy.PROPAGATE
    max_delete_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    clock_skew: Duration = timedelta(seconds=60)
    max_attempts: int = Field(default=5, ge=1)
    default_region: str = "US"
    """Region of phones written without a country code (first-sync matching in E.164)."""
    batch_records: int = Field(default=20_000, ge=1)
    """A cycle that reads more records than this and must match them (a first sync)
    keeps them compressed and plans a group of people at a time (``engine.batch``)."""


class FieldConfig(_Strict):
    """``[fields.NAME]``: one canonical field's policy (CONTRACT §6); unset keys keep the
    behaviour without a policy."""

    sources: list[str] | None = None
    targets: list[str] | None = None
    never_clear: bool = False
    conflict: ConflictPolicy | None = None
    priority: list[str] | None = None

    def problems(self, name: str, systems: Mapping[str, object]) -> list[str]:
        """What is wrong with this table, each naming its key and the offending name."""
        found: list[str] = []
        for key in ("sources", "targets", "priority"):
            for system in getattr(self, key) or ():
                if system not in systems:
                    found.append(f"fields.{name}.{key} names unknown system {system!r}")
        if self.sources is not None and self.targets is not None:
            for system in self.sources:
                if system in systems and system not in self.targets:
                    found.append(f"fields.{name}.sources names {system!r}, which is not in "
                                 f"fields.{name}.targets (a source must receive the field)")
        return found

    def summary(self) -> dict[str, Any]:
        """The keys set in the table, as ``status --json`` lists the active policies."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def text(self) -> str:
        """One line for ``syncd status``: ``sources logisense; never_clear``."""
        parts = []
        for key, value in self.summary().items():
            if value is True:
                parts.append(key)
            else:
                parts.append(f"{key} {', '.join(value) if isinstance(value, list) else value}")
        return "; ".join(parts) or "no rule"

    def policy(self) -> FieldPolicy:
        return FieldPolicy(
            sources=None if self.sources is None else frozenset(self.sources),
            targets=None if self.targets is None else frozenset(self.targets),
            never_clear=self.never_clear,
            conflict=self.conflict,
            priority=None if self.priority is None else tuple(self.priority),
        )


class _SystemBase(_Strict):
    enabled: bool = True
    read_only: bool = False
    interval: Duration | None = None
    timeout: Duration = timedelta(seconds=30)
    max_rps: float | None = Field(default=None, gt=0)
    max_in_flight: int = Field(default=4, ge=1, le=32)
    """Writes a push may have in flight to this system at once.

    Requests wait on the network, not on us: with 100 ms per answer, one at a
    time caps a push at ~10 writes/s whatever the API allows.  A few in flight
    let the push reach ``max_rps`` (or the documented limit) instead; the rate
    limiter still paces them.  Connectors whose API is better served one at a
    time (Harvest, Zoho Books) cap it at 1 whatever this says.
    """
    max_wait: Duration = timedelta(minutes=2)
    """The longest throttle wait sat out within a cycle; a longer one gives the system up."""
    throttle_window: Duration = timedelta(seconds=60)
    """How long a rate-limit answer without ``Retry-After`` (Zoho's 429) blocks the system."""
    max_response_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    """A larger answer is refused unread, so a runaway server cannot exhaust memory."""


class MemoryConfig(_SystemBase):
    """An in-process system for tests, benchmarks and trials; ``path`` keeps it in a JSON file."""

    kind: Literal["memory"]
    path: str | None = None
    incremental: bool = False


class LighteningConfig(_SystemBase):
    kind: Literal["lightening"]
    base_url: str
    token: SecretStr


class HarvestConfig(_SystemBase):
    kind: Literal["harvest"]
    base_url: str
    username: str
    password: SecretStr


class ZohoBooksConfig(_SystemBase):
    kind: Literal["zoho_books"]
    base_url: str = "https://www.zohoapis.com/books/v3"
    accounts_url: str = "https://accounts.zoho.com"
    organization_id: str
    client_id: str
    client_secret: SecretStr
    refresh_token: SecretStr
    daily_budget: int = Field(default=1000, gt=0)
    """Requests per day this organization may make (Zoho's plan cap: 1 000 Free … 10 000)."""
    daily_budget_reset: dt_time = dt_time(0, 0)
    """UTC time of day at which Zoho's daily count starts again (ASSUMPTION: midnight UTC)."""


class LogisenseConfig(_SystemBase):
    kind: Literal["logisense"]
    base_url: str
    contact_type_id: int | None = None
    client_id: str
    username: str
    password: SecretStr
    api_version: int = 6
    contact_point_types: dict[str, int] = Field(default_factory=dict)


class ValomniaConfig(_SystemBase):
    kind: Literal["valomnia"]
    base_url: str
    username: str
    password: SecretStr


class CarddavConfig(_SystemBase):
    """One CardDAV address-book collection (CONTRACT §8); ``[organizations]`` map ``ORG`` names."""

    kind: Literal["carddav"]
    url: str
    """The address book collection itself, e.g. ``https://dav.example.com/alice/contacts/``."""
    username: str = ""
    password: SecretStr = SecretStr("")
    multiget_batch: int = Field(default=100, ge=1, le=1000)
    """Cards fetched per ``addressbook-multiget`` request."""

    @property
    def base_url(self) -> str:
        """The server's origin: hrefs in answers are absolute paths below it."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


class WebConfig(_Strict):
    """The console (``syncd web``; ``syncd run`` too when ``enabled``): CONTRACT §7."""

    enabled: bool = False
    host: str = "127.0.0.1"
    """Loopback unless told otherwise: the console acts on the store."""
    port: int = Field(default=8787, ge=0, le=65535)
    token: SecretStr | None = None
    """From ``SYNCD_WEB__TOKEN``; without one the console does not start (exit 2)."""


SystemConfig = Annotated[
    MemoryConfig
    | LighteningConfig
    | HarvestConfig
    | ZohoBooksConfig
    | LogisenseConfig
    | ValomniaConfig
    | CarddavConfig,
    Field(discriminator="kind"),
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SYNCD_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    store: StoreConfig = Field(default_factory=StoreConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    systems: dict[str, SystemConfig] = Field(default_factory=dict)
    organizations: dict[str, dict[str, str]] = Field(default_factory=dict)
    web: WebConfig = Field(default_factory=WebConfig)
    fields: dict[str, FieldConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fields_are_known(self) -> Settings:
        problems: list[str] = []
        for name, rule in self.fields.items():
            if name not in FIELDS:
                problems.append(f"fields.{name}: unknown field (one of: {', '.join(FIELDS)}; "
                                "the organization follows moves, not field policies)")
            else:
                problems.extend(rule.problems(name, self.systems))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def field_policies(self) -> dict[str, FieldPolicy]:
        """The ``[fields.*]`` tables as the planner's ``Policy.fields``."""
        return {name: rule.policy() for name, rule in self.fields.items()}

    @model_validator(mode="after")
    def _names_exist(self) -> Settings:
        for name in self.sync.priority:
            if name not in self.systems:
                raise ValueError(f"sync.priority names unknown system {name!r}")
        for org, ids in self.organizations.items():
            for name in ids:
                if name not in self.systems:
                    raise ValueError(f"organizations.{org} names unknown system {name!r}")
        return self

    def secrets(self) -> dict[str, frozenset[str]]:
        """Every configured secret, with the names sent beside it in HTTP Basic.

        Collected by type, not by name: any ``SecretStr`` of any system (a new
        connector's secret is covered without a change here), plus the password
        inside the store URL.  The names are the system's ``username`` and
        ``client_id``, for ``base64(name:secret)`` — what redaction must mask.
        """
        found: dict[str, set[str]] = {}
        for system in self.systems.values():
            names = {str(v) for k in ("username", "client_id") if (v := getattr(system, k, None))}
            for field_name in type(system).model_fields:
                value = getattr(system, field_name)
                if isinstance(value, SecretStr) and value.get_secret_value():
                    found.setdefault(value.get_secret_value(), set()).update(names)
        if self.web.token is not None and self.web.token.get_secret_value():
            found.setdefault(self.web.token.get_secret_value(), set())
        store_password = _url_password(self.store.url)
        if store_password:
            found.setdefault(store_password, set())
        return {secret: frozenset(names) for secret, names in found.items()}

    def system_interval(self, name: str) -> timedelta:
        return self.systems[name].interval or self.sync.interval

    def enabled_systems(self) -> list[str]:
        return [name for name, cfg in self.systems.items() if cfg.enabled]

    def org_map(self, system: str) -> dict[str, str]:
        """{parent id in ``system`` → organization key}."""
        return {ids[system]: org for org, ids in self.organizations.items() if system in ids}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _TOML_FILE.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


# The TOML path is handed to settings_customise_sources through this holder
# because pydantic-settings builds its sources from the class, not the call.
_TOML_FILE: dict[str, Path | None] = {"path": None}


def _url_password(url: str) -> str | None:
    """The password in a database URL (``scheme://user:password@host/db``), decoded."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def config_path(explicit: str | None = None) -> Path:
    """``--config PATH``, else ``$SYNCD_CONFIG``, else ``./syncd.toml``."""
    return Path(explicit or os.environ.get("SYNCD_CONFIG") or "syncd.toml")


def _describe(error: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
    # Discriminated unions add the kind tag to the path; drop it for the reader.
    for kind in ("memory", "lightening", "harvest", "zoho_books", "logisense", "valomnia",
                 "carddav"):
        loc = loc.replace(f".{kind}.", ".", 1) if f".{kind}." in loc else loc
    kind_of = error["type"]
    if kind_of == "extra_forbidden":
        problem = "unknown key"
    elif kind_of == "missing":
        problem = "required key is missing"
    else:
        problem = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {problem}" if loc else problem


def load_settings(path: Path | str | None = None, *, must_exist: bool = True) -> Settings:
    """Read and validate the configuration; every problem becomes one ``ConfigError``.

    The loaded secrets become the process-wide redactor's (``syncd.redact``).
    """
    file = config_path(str(path) if path else None)
    if not file.exists():
        if must_exist:
            raise ConfigError(f"{file}: configuration file not found")
        _TOML_FILE["path"] = None
    else:
        try:
            with file.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        _TOML_FILE["path"] = file
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(_describe(dict(e)) for e in exc.errors())
        raise ConfigError(f"{file}: {problems}") from None
    finally:
        _TOML_FILE["path"] = None
    # From here on every log line, printed message and stored error masks these secrets.
    use_settings(settings)
    return settings
