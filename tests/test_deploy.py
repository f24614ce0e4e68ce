"""The deployment files in deploy/ and config/syncd.example.toml stay true to the code.

Nothing here starts a container or a cluster: the manifests are parsed and their
wiring checked (the CronJob really runs ``syncd once``, its secrets really come
from a Secret, the ConfigMap's TOML really loads with the example Secret's keys),
the unit files are parsed and, where ``systemd-analyze`` exists, verified, and the
example configuration is checked against the pydantic models field by field, so
a new config key without documentation fails here.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr, TypeAdapter
from pydantic.fields import FieldInfo

from syncd import config as config_module
from syncd.config import Settings, load_settings
from syncd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
EXAMPLE = ROOT / "config" / "syncd.example.toml"
DAEMON_UNIT = DEPLOY / "syncd.service"
BACKFILL_UNIT = DEPLOY / "syncd-backfill.service"
UNITS = [DAEMON_UNIT, BACKFILL_UNIT]
CONFIG_FILE = "/etc/syncd/syncd.toml"
METRICS_PORT = 9464


# --- config models -------------------------------------------------------------------


def _kind_models() -> dict[str, type[BaseModel]]:
    """{kind → model} from the discriminated union, so a new kind is picked up here."""
    union = typing.get_args(config_module.SystemConfig)[0]
    models: dict[str, type[BaseModel]] = {}
    for model in typing.get_args(union):
        (kind,) = typing.get_args(model.model_fields["kind"].annotation)
        models[kind] = model
    return models


def _is_secret(field: FieldInfo) -> bool:
    ann = field.annotation
    return ann is SecretStr or SecretStr in typing.get_args(ann)


def _secret_fields(model: type[BaseModel]) -> list[str]:
    return [name for name, field in model.model_fields.items() if _is_secret(field)]


SECRET_KEYS = sorted({k for m in _kind_models().values() for k in _secret_fields(m)})


def _secret_env(toml: dict[str, Any], value: str = "placeholder") -> dict[str, str]:
    """The SYNCD_SYSTEMS__<NAME>__<KEY> variables the systems of ``toml`` need."""
    models = _kind_models()
    return {
        f"SYNCD_SYSTEMS__{name.upper()}__{key.upper()}": f"{value}-{name}-{key}"
        for name, table in toml.get("systems", {}).items()
        for key in _secret_fields(models[table["kind"]])
    }


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No SYNCD_* variable of the machine running the tests leaks into a load."""
    for name in list(os.environ):
        if name.upper().startswith("SYNCD_"):
            monkeypatch.delenv(name)
    return monkeypatch


# --- Kubernetes manifests --------------------------------------------------------------


def _docs(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def _all_docs() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in _docs(path)]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in _all_docs()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    template = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    spec: dict[str, Any] = template["template"]["spec"]
    return spec


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    containers = _pod_spec(doc)["containers"]
    assert len(containers) == 1, "one syncd container per pod"
    container: dict[str, Any] = containers[0]
    return container


def _argv(container: dict[str, Any]) -> list[str]:
    return [str(a) for a in [*container.get("command", []), *container.get("args", [])]]


GLOBAL_OPTIONS = {"--config", "--log-level"}  # syncd's options that come before the command


def _command(argv: list[str]) -> list[str]:
    """``syncd --config X run --metrics-port N`` → ``["run", "--metrics-port", "N"]``."""
    rest = argv[1:]
    while rest and rest[0] in GLOBAL_OPTIONS:
        rest = rest[2:]
    return rest


def _config_of(argv: list[str]) -> str:
    return argv[argv.index("--config") + 1]


def _all_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(doc)
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_manifests_parse_and_are_complete() -> None:
    names = {p.name for p in K8S.glob("*.yaml")}
    assert {"cronjob.yaml", "deployment.yaml", "configmap.yaml", "secret.example.yaml"} <= names
    for doc in _all_docs():
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc


def test_cronjob_runs_syncd_once_without_overlap() -> None:
    cron = _one("CronJob")
    assert cron["apiVersion"] == "batch/v1"
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert len(spec["schedule"].split()) == 5
    assert isinstance(spec["startingDeadlineSeconds"], int) and spec["startingDeadlineSeconds"] > 0
    job = spec["jobTemplate"]["spec"]
    assert isinstance(job["backoffLimit"], int)
    restart = job["template"]["spec"]["restartPolicy"]
    assert restart in {"Never", "OnFailure"}
    if "podFailurePolicy" in job:
        assert restart == "Never", "podFailurePolicy requires restartPolicy: Never"
    argv = _argv(_container(cron))
    assert argv[0] == "syncd"
    assert _command(argv) == ["once"]


def test_deployment_runs_one_daemon_with_health_probes() -> None:
    dep = _one("Deployment")
    assert dep["apiVersion"] == "apps/v1"
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = _container(dep)
    argv = _argv(container)
    assert argv[0] == "syncd"
    assert _command(argv) == ["run", "--metrics-port", str(METRICS_PORT)]
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    assert METRICS_PORT in ports.values()

    def port(ref: int | str) -> int:
        return ports[ref] if isinstance(ref, str) else ref

    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz", probe
        assert port(get["port"]) == METRICS_PORT, probe
    assert _pod_spec(dep)["terminationGracePeriodSeconds"] >= 30

    service = _one("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert any(port(p.get("targetPort", p["port"])) == METRICS_PORT
               for p in service["spec"]["ports"])


@pytest.mark.parametrize("kind", ["CronJob", "Deployment"])
def test_workload_reads_config_map_and_secrets(kind: str) -> None:
    doc = _one(kind)
    spec = _pod_spec(doc)
    config_map = _one("ConfigMap")
    assert "syncd.toml" in config_map["data"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in _all_containers(doc):
        argv = _argv(container)
        assert argv[0] == "syncd"
        assert _config_of(argv) == CONFIG_FILE, container["name"]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        mount = mounts[str(Path(CONFIG_FILE).parent)]
        assert mount.get("readOnly") is True
        assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]

        # Store URL: from a Secret, and that Secret's example is Postgres.
        env = {e["name"]: e for e in container.get("env", [])}
        ref = env["SYNCD_STORE__URL"]["valueFrom"]["secretKeyRef"]
        store = _one("Secret", ref["name"])
        assert store["stringData"][ref["key"]].startswith("postgresql+psycopg://")

        # System secrets: a whole Secret whose keys are all SYNCD_* variables.
        refs = [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s]
        assert refs == ["syncd-secrets"], f"{container['name']}: envFrom secretRef {refs}"
        for name in refs:
            keys = _one("Secret", name)["stringData"]
            assert all(k.startswith("SYNCD_") and "__" in k for k in keys), keys


@pytest.mark.parametrize("kind", ["CronJob", "Deployment"])
def test_workload_holds_no_plaintext_secret(kind: str) -> None:
    doc = _one(kind)
    secretish = re.compile(
        "|".join([r"__URL$", *(f"__{k.upper()}$" for k in SECRET_KEYS), "PASSWORD", "TOKEN"])
    )
    for container in _all_containers(doc):
        for item in container.get("env", []):
            if secretish.search(item["name"]):
                assert "value" not in item, f"{item['name']} must come from a Secret"
                assert "secretKeyRef" in item["valueFrom"]
            # No credentials embedded in a plain value either.
            assert not re.search(r"://[^/\s]*:[^/\s]*@", str(item.get("value", ""))), item
    text = yaml.safe_dump(doc)
    assert "CHANGE-ME" not in text
    assert not re.search(r"postgresql\S*://", text)


@pytest.mark.parametrize("kind", ["CronJob", "Deployment"])
def test_workload_runs_as_non_root(kind: str) -> None:
    doc = _one(kind)
    pod = _pod_spec(doc)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"].get("runAsUser", 1) != 0
    assert pod.get("automountServiceAccountToken") is False
    for container in _all_containers(doc):
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]


def test_secret_example_holds_placeholders_only() -> None:
    for doc in _docs(K8S / "secret.example.yaml"):
        assert doc["kind"] == "Secret"
        assert "data" not in doc, "use stringData with visible placeholders"
        for key, value in doc["stringData"].items():
            assert "CHANGE-ME" in value, f"{key} looks like a real value"


def test_config_map_loads_with_the_example_secrets(clean_env: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """The ConfigMap's TOML and the example Secret fit together: nothing missing, no extra."""
    text = _one("ConfigMap")["data"]["syncd.toml"]
    toml = tomllib.loads(text)
    _assert_no_secret_in_file(toml)
    secrets = _one("Secret", "syncd-secrets")["stringData"]
    assert set(secrets) == set(_secret_env(toml)), "Secret keys != the systems' secret fields"
    for name, value in secrets.items():
        clean_env.setenv(name, value)
    clean_env.setenv("SYNCD_STORE__URL", _one("Secret", "syncd-store")["stringData"]["url"])
    path = tmp_path / "syncd.toml"
    path.write_text(text)
    settings = load_settings(path)
    assert settings.store.url.startswith("postgresql+psycopg://")
    assert settings.enabled_systems() == list(toml["systems"])


# --- systemd units ---------------------------------------------------------------------


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(path)
    return parser


def _all_values(path: Path, key: str) -> list[str]:
    """Every value of a key that may repeat (Environment=, SystemCallFilter=)."""
    return re.findall(rf"^{key}=(.*)$", path.read_text(), re.MULTILINE)


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
}


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_unit_runs_as_dynamic_user_with_state_and_secrets(path: Path) -> None:
    unit = _unit(path)
    for key in ("After", "Wants"):
        assert "network-online.target" in " ".join(_all_values(path, key)).split(), key
    service = unit["Service"]
    assert service["DynamicUser"] == "yes"
    assert service["StateDirectory"] == "syncd"
    assert service["EnvironmentFile"] == "-/etc/syncd/secrets.env"
    env = dict(v.split("=", 1) for v in _all_values(path, "Environment"))
    assert env["SYNCD_STORE__URL"] == "sqlite:////var/lib/syncd/syncd.db"
    assert service["KillSignal"] == "SIGTERM"
    assert service["TimeoutStopSec"] == "60"
    for key, value in HARDENING.items():
        assert service.get(key) == value, f"{path.name}: {key}={service.get(key)!r}"
    for line in [*_all_values(path, "ExecStart"), *_all_values(path, "ExecStartPre")]:
        argv = shlex.split(line)
        assert argv[0].startswith("/") and argv[0].endswith("/syncd"), line
        assert _config_of(argv) == CONFIG_FILE, line


def test_daemon_unit() -> None:
    unit = _unit(DAEMON_UNIT)
    service = unit["Service"]
    assert _command(shlex.split(service["ExecStart"])) == [
        "run", "--metrics-port", str(METRICS_PORT)
    ]
    assert service["Restart"] == "on-failure"
    assert "2" in service["RestartPreventExitStatus"].split()  # config error: don't loop
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_backfill_unit_shares_the_daemon_setup() -> None:
    daemon, backfill = _unit(DAEMON_UNIT)["Service"], _unit(BACKFILL_UNIT)["Service"]
    assert backfill["Type"] == "oneshot"
    assert _command(shlex.split(backfill["ExecStart"])) == ["backfill", "$BACKFILL_ARGS"]
    assert backfill.get("Restart", "no") == "no"
    # Same dynamic user (so the same owner of /var/lib/syncd) and same sandbox.
    for key in ("User", "Group", "StateDirectory", "EnvironmentFile", "WorkingDirectory"):
        assert backfill.get(key) == daemon.get(key), key
    sandbox = re.compile(r"^(Protect|Private|Restrict|NoNew|Lock|Memory|SystemCall|Capab|UMask)")
    for key in daemon:
        if sandbox.match(key):
            assert backfill.get(key) == daemon[key], key
    for key in ("Environment", "SystemCallFilter"):
        assert _all_values(BACKFILL_UNIT, key)[:3] == _all_values(DAEMON_UNIT, key)[:3]


def _verify(units: list[Path]) -> tuple[int, list[str]]:
    cmd = ["systemd-analyze", "verify", "--man=no", *map(str, units)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          cwd=units[0].parent, check=False)
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


def _copy_runnable(src: Path, dest_dir: Path, extra: str = "") -> Path:
    """The unit with its syncd binary replaced by /bin/true, which exists everywhere."""
    text = re.sub(r"^(Exec\w*=)\S+", r"\1/bin/true", src.read_text(), flags=re.MULTILINE)
    text = text.replace("[Service]\n", f"[Service]\n{extra}", 1)
    dest = dest_dir / src.name
    dest.write_text(text)
    return dest


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    mine = re.compile("|".join(re.escape(u.name) for u in UNITS))

    # First prove this systemd-analyze reports a bad key, else a pass means nothing.
    broken = tmp_path / "broken"
    broken.mkdir()
    _, lines = _verify([_copy_runnable(DAEMON_UNIT, broken, "NoSuchKeyForSyncd=1\n")])
    if not any("NoSuchKeyForSyncd" in line for line in lines):
        pytest.skip(f"systemd-analyze verify does not work here: {lines}")

    good = tmp_path / "good"
    good.mkdir()
    copies = [_copy_runnable(u, good) for u in UNITS]
    code, lines = _verify(copies)
    about_ours = [line for line in lines if mine.search(line)]
    assert not about_ours, "\n".join(about_ours)
    assert code == 0, "\n".join(lines)


# --- Dockerfile ------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    return [
        (ins.upper(), rest.strip())
        for ins, _, rest in (ln.partition(" ") for ln in lines if ln and not ln.startswith("#"))
    ]


def test_dockerfile() -> None:
    steps = _dockerfile()
    stages = [i for i, (ins, _) in enumerate(steps) if ins == "FROM"]
    assert stages and all(steps[i][1].split()[0] == "python:3.11-slim" for i in stages)
    final = steps[stages[-1]:]
    users = [rest for ins, rest in final if ins == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    entry = [json.loads(rest) for ins, rest in final if ins == "ENTRYPOINT"]
    assert entry and entry[-1] == ["syncd"]
    cmd = [json.loads(rest) for ins, rest in final if ins == "CMD"]
    assert cmd and cmd[-1] == ["run"]
    runs = " ; ".join(rest for ins, rest in steps if ins == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs)
    assert not re.search(r"\[dev\]|pytest|ruff|mypy", runs), "no dev dependencies in the image"
    # The build context is the repository root: every COPY source must exist.
    for ins, rest in steps:
        if ins == "COPY" and not rest.startswith("--from"):
            *sources, _dest = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


# --- config/syncd.example.toml ---------------------------------------------------------


def _sections(text: str) -> dict[str, str]:
    """{table header → its text} (commented lines included)."""
    parts = re.split(r"^\[([^\]\n]+)\][^\n]*$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _key_lines(section: str, key: str) -> list[str]:
    """The values of ``key = ...`` lines, active or commented out."""
    return re.findall(rf"^[ \t]*#?[ \t]*{re.escape(key)}[ \t]*=[ \t]*(.+)$", section, re.MULTILINE)


def _example_models() -> dict[str, type[BaseModel]]:
    """{table header → the model that validates it}, for every table of the example."""
    toml = tomllib.loads(EXAMPLE.read_text())
    models: dict[str, type[BaseModel]] = {}
    for name, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            models[name] = field.annotation
    for name, table in toml.get("systems", {}).items():
        models[f"systems.{name}"] = _kind_models()[table["kind"]]
    return models


def _assert_no_secret_in_file(toml: dict[str, Any]) -> None:
    for name, table in toml.get("systems", {}).items():
        for key in _secret_fields(_kind_models()[table["kind"]]):
            assert key not in table, f"systems.{name}.{key} must come from the environment"
    assert "@" not in toml.get("store", {}).get("url", ""), "no credentials in the store URL"


def test_example_loads_when_secrets_come_from_env(clean_env: pytest.MonkeyPatch) -> None:
    toml = tomllib.loads(EXAMPLE.read_text())
    env = _secret_env(toml)
    for name, value in env.items():
        clean_env.setenv(name, value)
    settings = load_settings(EXAMPLE)
    assert {type(cfg) for cfg in settings.systems.values()} == set(_kind_models().values()), (
        "the example shows one system of every kind"
    )
    for name, cfg in settings.systems.items():
        for key in _secret_fields(type(cfg)):
            value = getattr(cfg, key).get_secret_value()
            assert value == env[f"SYNCD_SYSTEMS__{name.upper()}__{key.upper()}"]
    assert sorted(settings.organizations) == ["acme", "globex"]
    assert set(settings.organizations["acme"]) == set(settings.enabled_systems())  # all of them


def test_example_holds_no_secret(clean_env: pytest.MonkeyPatch) -> None:
    toml = tomllib.loads(EXAMPLE.read_text())
    _assert_no_secret_in_file(toml)
    with pytest.raises(ConfigError, match=r"syncd\.example\.toml"):
        load_settings(EXAMPLE)
    sections = _sections(EXAMPLE.read_text())
    for name, table in toml["systems"].items():
        for key in _secret_fields(_kind_models()[table["kind"]]):
            text = sections[f"systems.{name}"]
            assert re.search(rf"^#[ \t]*{key}[ \t]*=", text, re.MULTILINE), (name, key)
            assert f"SYNCD_SYSTEMS__{name.upper()}__{key.upper()}" in text, (name, key)


def test_example_has_every_top_level_table() -> None:
    text = EXAMPLE.read_text()
    for name in Settings.model_fields:
        assert re.search(rf"^\[{name}[.\]]", text, re.MULTILINE), f"no [{name}...] table"


@pytest.mark.parametrize("header", sorted(_example_models()))
def test_example_documents_every_key(header: str) -> None:
    section = _sections(EXAMPLE.read_text())[header]
    model = _example_models()[header]
    missing = [key for key in model.model_fields if not _key_lines(section, key)]
    assert not missing, f"[{header}] does not document {missing}"


def _validator(field: FieldInfo) -> TypeAdapter[Any]:
    """Validates a value as the field would (durations parsed, bounds checked)."""
    annotation: Any = field.annotation
    if field.metadata:
        annotation = Annotated[(annotation, *field.metadata)]
    return TypeAdapter(annotation)


@pytest.mark.parametrize("header", sorted(_example_models()))
def test_example_shows_every_default(header: str) -> None:
    """Each optional key has a line (active or commented out) holding its real default."""
    section = _sections(EXAMPLE.read_text())[header]
    model = _example_models()[header]
    wrong = []
    for key, field in model.model_fields.items():
        if field.is_required():
            continue
        default = field.get_default(call_default_factory=True)
        if default is None:  # "unset" has no TOML spelling; documenting the key suffices
            continue
        shown = []
        for raw in _key_lines(section, key):
            try:
                shown.append(_validator(field).validate_python(tomllib.loads(f"v = {raw}")["v"]))
            except (tomllib.TOMLDecodeError, ValueError):
                continue
        if default not in shown:
            wrong.append(f"{key} (default {default!r}, shown {shown!r})")
    assert not wrong, f"[{header}]: " + "; ".join(wrong)


# --- every command line above is one the CLI accepts -----------------------------------


def _command_lines() -> list[tuple[str, list[str]]]:
    lines = []
    for unit in UNITS:
        for key in ("ExecStartPre", "ExecStart"):
            for value in _all_values(unit, key):
                argv = [a for a in shlex.split(value) if a != "$BACKFILL_ARGS"]
                lines.append((f"{unit.name} {key}", argv))
    for kind in ("CronJob", "Deployment"):
        for container in _all_containers(_one(kind)):
            lines.append((f"{kind} {container['name']}", _argv(container)))
    steps = _dockerfile()
    entry = next(json.loads(rest) for ins, rest in reversed(steps) if ins == "ENTRYPOINT")
    cmd = next(json.loads(rest) for ins, rest in reversed(steps) if ins == "CMD")
    lines.append(("Dockerfile", [*entry, *cmd]))
    return lines


@pytest.mark.parametrize(
    ("where", "argv"), [pytest.param(w, a, id=w) for w, a in _command_lines()]
)
def test_command_line_parses_with_the_cli(where: str, argv: list[str]) -> None:
    """The deploy files and syncd.cli agree on where options go (exit 2 is not restarted)."""
    cli = pytest.importorskip("syncd.cli")
    parser = getattr(cli, "_parser", None)
    if parser is None:
        pytest.skip("syncd.cli has no _parser() to check against")
    assert Path(argv[0]).name == "syncd", where
    try:
        args = parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"{where}: the CLI rejects {shlex.join(argv[1:])}")
    assert args.command == _command(argv)[0], where
    if "--config" in argv:
        assert args.config == CONFIG_FILE, where
