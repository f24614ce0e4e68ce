"""Commands only: parse, call, format (rich tables for people, ``--json`` for scripts).

Exit codes (CONTRACT §3): 0 done; 1 some records failed; 2 usage or
configuration; 3 a safety guard; 4 a system unreachable or refusing us.

Everything printed passes ``syncd.redact`` first: a system's error message may
quote our own request, password included.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from syncd.config import Settings, config_path, load_settings
from syncd.engine.report import CycleReport
from syncd.engine.writes import derive_writes
from syncd.errors import ConfigError, SyncdError
from syncd.logs import configure_logging
from syncd.redact import redact, redact_value

__all__ = ["main"]

out = Console(soft_wrap=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncd", description="Two-way contact sync.")
    parser.add_argument("--config", help="TOML file (default $SYNCD_CONFIG or ./syncd.toml)")
    parser.add_argument("--log-level", default=None,
                        help="debug | info | warning | error (default info; warning for demo)")
    sub = parser.add_subparsers(dest="command", required=True)

    once = sub.add_parser("once", help="one cycle: poll, reconcile, push")
    once.add_argument("--dry-run", action="store_true", help="print planned writes, change nothing")
    once.add_argument("--json", action="store_true")
    once.add_argument("--force-delete", action="store_true", help="override the mass-delete guard")

    run = sub.add_parser("run", help="the daemon")
    run.add_argument("--metrics-port", type=int, default=None)
    run.add_argument("--force-delete", action="store_true")

    back = sub.add_parser("backfill", help="re-read everything ignoring watermarks")
    back.add_argument("--system", action="append", default=None)
    back.add_argument("--since", default=None, help="ISO 8601 date-time")
    back.add_argument("--json", action="store_true")
    back.add_argument("--force-delete", action="store_true")

    status = sub.add_parser("status", help="per-system state")
    status.add_argument("--json", action="store_true")

    conflicts = sub.add_parser("conflicts", help="conflicts resolved by policy")
    conflicts.add_argument("--json", action="store_true")

    quarantine = sub.add_parser("quarantine", help="records that need a person")
    quarantine.add_argument("action", nargs="?", choices=["list", "retry", "drop"], default="list")
    quarantine.add_argument("--system")
    quarantine.add_argument("--person")
    quarantine.add_argument("--json", action="store_true")

    db = sub.add_parser("db", help="store maintenance")
    db.add_argument("action", choices=["upgrade"])

    sandbox = sub.add_parser("sandbox", help="serve the simulated APIs on 127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8700)
    sandbox.add_argument("--contacts", type=int, default=20)
    sandbox.add_argument("--write-config", default=None)

    sub.add_parser("demo", help="run a few cycles against the in-process sandbox")
    return parser


def _emit(doc: Any) -> None:
    sys.stdout.write(redact(json.dumps(redact_value(doc), indent=2, default=str)) + "\n")


def _say(text: str) -> None:
    out.print(redact(text))


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    table = Table(title=redact(title))
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(redact(cell) for cell in row))
    out.print(table)


def _print_report(report: CycleReport) -> None:
    _table("dry run: nothing was changed" if report.dry_run else "cycle",
           ("system", "read", "created", "updated", "deleted", "conflicts", "rejected", "failed",
            "requests", "error"),
           [[name, str(s.read), str(s.created), str(s.updated), str(s.deleted), str(s.conflicts),
             str(s.rejected), str(s.failed), str(s.requests), s.error or ""]
            for name, s in sorted(report.systems.items())])
    for write in report.planned:
        _say(f"would {write.describe()}")
    for rej in report.rejections:
        _say(f"[yellow]rejected[/] {rej.describe()}")
    for error in report.errors:
        _say(f"[red]error[/] {error}")


def cmd_once(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.app import syncer

    with syncer(settings) as s:
        report = s.run_once(dry_run=args.dry_run, force_delete=args.force_delete)
    _emit(report.as_dict()) if args.json else _print_report(report)
    return report.exit_code


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.daemon import backfill

    since = _parse_since(args.since) if args.since else None
    report = backfill(settings, systems=args.system, since=since, force_delete=args.force_delete)
    _emit(report.as_dict()) if args.json else _print_report(report)
    return report.exit_code


def _parse_since(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since: not an ISO 8601 date-time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.app import build_connectors, migrated_store
    from syncd.engine.cycle import system_infos

    with migrated_store(settings) as store:
        marks = store.watermarks()
        counts = store.counts()
        failures = store.failures()
        last = store.last_runs(1)
        recent = store.last_runs(BUDGET_RUNS)
        state = store.load_state()
    connectors = build_connectors(settings)
    try:
        writes, rejections = derive_writes(state, system_infos(settings, connectors).values())
    finally:
        for c in connectors.values():
            c.close()
    rows: dict[str, dict[str, Any]] = {}
    for name in settings.systems:
        mark = marks.get(name)
        rows[name] = {
            "enabled": settings.systems[name].enabled,
            "kind": settings.systems[name].kind,
            "last_poll": mark.last_poll_at.isoformat() if mark and mark.last_poll_at else None,
            "last_success": mark.last_success_at.isoformat() if mark and mark.last_success_at else None,
            "watermark": mark.cursor.isoformat() if mark and mark.cursor else None,
            "last_error": mark.last_error if mark else None,
            "linked": counts["linked"].get(name, 0),
            "pending_writes": sum(1 for w in writes if w.system == name),
            "rejected": sum(1 for r in rejections if r.system == name),
            "quarantined": sum(1 for f in failures if f.system == name and f.quarantined),
            "budget": _budget(name, connectors.get(name), recent),
        }
    run: dict[str, Any] | None = {
        "kind": last[0]["kind"],
        "finished_at": last[0]["finished_at"].isoformat() if last[0]["finished_at"] else None,
        "exit_code": last[0]["exit_code"],
    } if last else None
    doc = {
        "last_run": run,
        "systems": rows,
        "people": sum(1 for g in state.goldens.values() if not g.deleted),
        "open_conflicts": counts["conflicts"]["open"],
    }
    if args.json:
        _emit(doc)
        return 0
    ran = f"; last run {run['kind']} at {run['finished_at']}, exit {run['exit_code']}" if run else ""
    columns = ("kind", "last_poll", "watermark", "linked", "pending_writes", "quarantined",
               "last_error")
    _table(f"{doc['people']} people, {doc['open_conflicts']} conflicts logged{ran}",
           ("system", *columns),
           [[name, *(str(row[c]) if row[c] is not None else "-" for c in columns)]
            for name, row in rows.items()])
    for name, row in rows.items():
        if row["budget"]:
            b = row["budget"]
            _say(f"{name}: {b['used']} of {b['limit']} requests used today, "
                 f"resets {b['resets_at']}")
    return 0


BUDGET_RUNS = 5000
"""How many recent runs are summed for a daily budget (a day of 1-minute cycles, and more)."""


def _budget(name: str, connector: Any, runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """A connector with a daily request budget: today's spend, summed from the stored runs.

    Summed from the runs rather than asked of the connector, so that a budget
    spent by earlier ``once`` processes shows as well.
    """
    budget = getattr(connector, "budget", None)
    if budget is None or not hasattr(budget, "window"):
        return None
    start, end = budget.window(datetime.now(UTC))
    used = 0
    for run in runs:
        at = run["started_at"]
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        if at >= start:
            used += int(run["summary"].get("systems", {}).get(name, {}).get("requests", 0))
    return {"used": used, "limit": budget.limit, "resets_at": end.isoformat()}


def cmd_conflicts(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.app import migrated_store

    with migrated_store(settings) as store:
        rows = store.conflicts()
    if args.json:
        _emit({"conflicts": rows})
        return 0
    _table(f"{len(rows)} conflicts (newest first)",
           ("at", "person", "field", "candidates", "winner", "policy"),
           [[r["at"], r["person"], r["field"],
             "; ".join(f"{c['system']}={c['value']!r}" for c in r["candidates"]),
             f"{r['winner']}={r['value']!r}", r["policy"]] for r in rows])
    return 0


def cmd_quarantine(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.app import migrated_store
    from syncd.store.admin import drop_quarantined

    with migrated_store(settings) as store:
        if args.action == "retry":
            n = store.retry_quarantined(args.system, args.person)
            doc: dict[str, Any] = {"retried": n}
        elif args.action == "drop":
            doc = {"dropped": drop_quarantined(store, args.system, args.person)}
        else:
            doc = {"quarantined": [
                {"system": f.system, "person": f.golden_id, "action": f.action,
                 "remote_id": f.remote_id, "attempts": f.attempts, "error": f.last_error,
                 "since": f.updated_at.isoformat()}
                for f in store.quarantined(args.system, args.person)
            ]}
    if args.json:
        _emit(doc)
    elif args.action == "list":
        _table(f"{len(doc['quarantined'])} quarantined writes",
               ("system", "person", "action", "attempts", "error"),
               [[r["system"], r["person"], r["action"], str(r["attempts"]), r["error"]]
                for r in doc["quarantined"]])
    else:
        _say(", ".join(f"{k}: {v}" for k, v in doc.items()))
    return 0


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.app import open_store

    store = open_store(settings)
    try:
        store.check_usable()
        with store.unusable_as("cannot be migrated"):
            store.upgrade()
    finally:
        store.close()
    out.print("store is at the latest schema")
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.daemon import run_daemon

    return run_daemon(settings, metrics_port=args.metrics_port, force_delete=args.force_delete)


def cmd_sandbox(settings: Settings | None, args: argparse.Namespace) -> int:
    from syncd.sandbox.serve import serve_forever

    return serve_forever(args.port, args.contacts, args.write_config)


def cmd_demo(settings: Settings | None, args: argparse.Namespace) -> int:
    from syncd.sandbox.demo import run_demo

    return run_demo(out)


COMMANDS = {
    "once": cmd_once,
    "run": cmd_run,
    "backfill": cmd_backfill,
    "status": cmd_status,
    "conflicts": cmd_conflicts,
    "quarantine": cmd_quarantine,
    "db": cmd_db,
}


def _load(path: str | None) -> Settings:
    """The settings, with an unreadable file (a directory, no permission) as one exit-2 line."""
    try:
        return load_settings(path)
    except OSError as exc:
        raise ConfigError(
            f"{config_path(path)}: cannot read the configuration file: {exc.strerror or exc}"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # The demo's tables are its output: only problems go to the log there.
    configure_logging(args.log_level or ("warning" if args.command == "demo" else "info"))
    try:
        if args.command == "sandbox":
            return cmd_sandbox(None, args)
        if args.command == "demo":
            return cmd_demo(None, args)
        settings = _load(args.config)
        return COMMANDS[args.command](settings, args)
    except SyncdError as exc:
        sys.stderr.write(redact(f"syncd: {exc}") + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("syncd: interrupted\n")
        return 130
