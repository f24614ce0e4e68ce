"""Commands only: parse, call, format (rich tables for people, ``--json`` for scripts).

Exit codes (CONTRACT §3): 0 done; 1 some records failed; 2 usage or
configuration; 3 a safety guard; 4 a system unreachable or refusing us.

Everything printed passes ``syncd.redact`` first: a system's error message may
quote our own request, password included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from syncd.config import Settings, config_path, load_settings
from syncd.engine.report import CycleReport
from syncd.errors import ConfigError, SyncdError
from syncd.logs import configure_logging
from syncd.people import People, format_changes
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
    quarantine.add_argument("--person", help="email, name, system:remote-id or person id")
    quarantine.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="one person: every system's copy, pending writes, failures")
    show.add_argument("query", help="email, name, system:remote-id or person id")
    show.add_argument("--json", action="store_true")

    _history_parsers(sub)

    db = sub.add_parser("db", help="store maintenance")
    db.add_argument("action", choices=["upgrade"])

    sandbox = sub.add_parser("sandbox", help="serve the simulated APIs on 127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8700)
    sandbox.add_argument("--contacts", type=int, default=20)
    sandbox.add_argument("--write-config", default=None)

    sub.add_parser("demo", help="run a few cycles against the in-process sandbox")

    web = sub.add_parser("web", help="serve the operator's console (needs SYNCD_WEB__TOKEN)")
    web.add_argument("--host", default=None, help="address to bind (default [web] host, 127.0.0.1)")
    web.add_argument("--port", type=int, default=None, help="port (default [web] port, 8787)")
    return parser


def _emit(doc: Any) -> None:
    sys.stdout.write(redact(json.dumps(redact_value(doc), indent=2, default=str)) + "\n")


def _say(text: str) -> None:
    out.print(redact(text))


Column = str | tuple[str, dict[str, Any]]


def _table(title: str, columns: Sequence[Column], rows: Iterable[Sequence[str]],
           *, caption: str | None = None, lines: bool = False) -> None:
    """A rich table that stays readable at 80 columns.

    The first column names the row (a system, a write): it never wraps, so a
    system name is never cut to ``harv…``; the other columns wrap instead.
    """
    rows = [[redact(cell) for cell in row] for row in rows]
    table = Table(title=redact(title), caption=caption, show_lines=lines, caption_justify="left")
    for i, col in enumerate(columns):
        header, opts = (col, {}) if isinstance(col, str) else col
        if i == 0:
            widest = max([len(header), *(len(line) for r in rows for line in r[0].splitlines())])
            opts = {"no_wrap": True, "min_width": widest, **opts}
        table.add_column(header, overflow="fold", **opts)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _when(value: datetime | str | None) -> str:
    """A time to the second in UTC, short enough for a table cell (``--json`` has it whole)."""
    if value is None:
        return "-"
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ago(value: str | None, now: datetime) -> str:
    """How long ago, in one unit (``42s ago``, ``5m ago``, ``3h ago``, ``12d ago``): narrow
    enough that a status row stays one line at 80 columns (``--json`` has the time whole)."""
    if value is None:
        return "-"
    when = datetime.fromisoformat(value)
    seconds = int((now - (when if when.tzinfo else when.replace(tzinfo=UTC))).total_seconds())
    amount = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if amount >= size or unit == "s":
            span = f"{amount // size}{unit}"
            break
    return "now" if amount == 0 else f"{span} ago" if seconds > 0 else f"in {span}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _print_report(report: CycleReport) -> None:
    _table("dry run: nothing was changed" if report.dry_run else "cycle",
           ("system", "read", "new", "upd", "del", "confl", "rej", "fail", "req"),
           [[name, str(s.read), *map(str, report.changes(name)), str(s.conflicts),
             str(s.rejected), str(s.failed), str(s.requests)]
            for name, s in sorted(report.systems.items())],
           caption=("new/upd/del: records it would create, update, delete there\n" if report.dry_run
                    else "new/upd/del: records created, updated, deleted there\n")
                   + "confl: conflicts won; rej: rejected; fail: failed; req: HTTP requests")
    for name, s in sorted(report.systems.items()):
        if s.error:
            _say(f"[red]{name}[/]: {escape(s.error)}")
    if report.dry_run:
        plan = report.plan()
        if not plan:
            _say("no writes planned: every system is up to date")
        _table(f"{len(plan)} planned writes", ("write", "person, then each field: old → new"),
               [[f"{p['action']} {p['system']}" + (f"/{p['remote_id']}" if p["remote_id"] else ""),
                 "\n".join([p["label"], *(f"  {c}" for c in format_changes(p["changes"])),
                            *([f"  moved from {p['moved_from']}"] if "moved_from" in p else [])])]
                for p in plan], lines=True) if plan else None
    for rej in report.rejections:
        who = report.people.label(rej.golden_id) if report.people else None
        _say(f"[yellow]rejected[/] {escape(rej.describe(who))}")
    shown = {s.error for s in report.systems.values()}
    for error in report.errors:
        if error not in shown:
            _say(f"[red]error[/] {escape(error)}")


def cmd_once(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.app import syncer

    with syncer(settings) as s:
        report = s.run_once(dry_run=args.dry_run, force_delete=args.force_delete)
    _emit(report.as_dict()) if args.json else _print_report(report)
    return report.exit_code


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.backfill import backfill

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
    from syncd.app import migrated_store
    from syncd.readside import connected, status

    with migrated_store(settings) as store, connected(settings) as connectors:
        doc = status(settings, store, connectors)
    rows: dict[str, dict[str, Any]] = doc["systems"]
    run: dict[str, Any] | None = doc["last_run"]
    if args.json:
        _emit(doc)
        return 0
    now = datetime.now(UTC)
    ran = (f"; last run {run['kind']} at {_when(run['finished_at'])} UTC, exit {run['exit_code']}"
           if run else "")
    _table(f"{doc['people']} people, {doc['open_conflicts']} conflicts logged{ran}",
           ("system", ("last poll", {"no_wrap": True}), ("watermark", {"no_wrap": True}),
            "linked", "pending", "quarantined"),
           [[name + ("" if row["enabled"] else " (off)"),
             _ago(row["last_poll"], now), _ago(row["watermark"], now),
             str(row["linked"]), str(row["pending_writes"]), str(row["quarantined"])]
            for name, row in rows.items()], lines=True)
    for name, row in rows.items():
        if row["rejected"]:
            _say(f"[yellow]{name}[/]: {row['rejected']} writes not sent: a value breaks the "
                 "field limits (`syncd once --dry-run` names them)")
    for name, row in rows.items():
        if row["last_error"]:
            _say(f"[red]{name}[/]: last error: {escape(row['last_error'])}")
    for q in doc["quarantine"]:
        _say(f"[yellow]quarantined[/] {q['action']} {q['system']} for {escape(q['label'])}")
    for name, row in rows.items():
        if row["budget"]:
            b = row["budget"]
            _say(f"{name}: {b['used']} of {b['limit']} requests used today, "
                 f"resets {b['resets_at']}"
                 + (f"; resting until {b['capped_until']} (daily cap)" if b["capped_until"] else ""))
    for name, rule in settings.fields.items():
        _say(f"field policy [bold]{name}[/]: {escape(rule.text())}")
    for name, rule in settings.fields.items():
        _say(f"field policy [bold]{name}[/]: {escape(rule.text())}")
    return 0


def _print_conflicts(title: str, rows: list[dict[str, Any]], *, person: bool = True) -> None:
    _table(title,
           ("when (UTC)", *(("person",) if person else ()), "field", "values (✓ won)"),
           [[_when(r["at"]).replace(" ", "\n"), *((r["label"],) if person else ()), r["field"],
             "\n".join([*(f"{c['system']}: {c['value']!r}" + (" ✓" if c["system"] == r["winner"]
                                                             else "")
                          for c in r["candidates"]), f"by {r['policy']}"])]
            for r in rows], lines=True)


def cmd_conflicts(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.app import migrated_store
    from syncd.readside import conflict_rows

    with migrated_store(settings) as store:
        rows = conflict_rows(store.conflicts(), People(store.load_state()))
    if args.json:
        _emit({"conflicts": rows})
        return 0
    _print_conflicts(f"{len(rows)} conflicts (newest first)", rows)
    return 0


def cmd_quarantine(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.app import migrated_store
    from syncd.readside import one_person, quarantine_rows
    from syncd.store.admin import drop_quarantined

    with migrated_store(settings) as store:
        people = People(store.load_state())
        who = one_person(people, args.person) if args.person else None
        gid = who.id if who else None
        if args.action == "retry":
            n = store.retry_quarantined(args.system, gid)
            doc: dict[str, Any] = {"retried": n}
        elif args.action == "drop":
            doc = {"dropped": drop_quarantined(store, args.system, gid)}
        else:
            doc = {"quarantined": quarantine_rows(store, people, args.system, gid)}
        if who is not None:
            doc["person"] = {**who.as_dict(), "label": who.label()}
    if args.json:
        _emit(doc)
    elif args.action == "list":
        _table(f"{len(doc['quarantined'])} quarantined writes",
               ("write", "person", "tries", "error"),
               [[f"{r['action']} {r['system']}" + (f"/{r['remote_id']}" if r["remote_id"] else ""),
                 r["label"], str(r["attempts"]), r["error"]]
                for r in doc["quarantined"]], lines=True)
    else:
        done = next(f"{k}: {v}" for k, v in doc.items() if k != "person")
        _say(escape(done + (f" ({who.label()})" if who else "")))
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    """One person as every system holds them, and what is still to happen to them."""
    from syncd.app import migrated_store
    from syncd.readside import Ambiguous, connected, one_person, person
    from syncd.store.history import person_changes

    with migrated_store(settings) as store:
        state = store.load_state()
        people = People(state)
        try:
            who = one_person(people, args.query)
        except Ambiguous as exc:
            if not args.json:
                raise
            _emit({"query": args.query, "error": str(exc).split(":", 1)[0],
                   "candidates": [{**p.as_dict(), "label": p.label()} for p in exc.candidates]})
            sys.stderr.write(redact(f"syncd: {exc}") + "\n")
            return exc.exit_code
        with connected(settings) as connectors:
            doc = person(settings, store, connectors, state, people, who.id)
        recent = [c.as_dict() for c in person_changes(store, who.id, limit=_SHOW_CHANGES)]
        doc["history"] = recent
    if args.json:
        _emit(doc)
        return 0
    _print_person(doc)
    _print_changes(f"last {len(recent)} changes (newest first; all: syncd history)", recent)
    return 0


def _print_person(doc: dict[str, Any]) -> None:
    state = " [red](deleted)[/]" if doc["deleted"] else ""
    _say(f"[bold]{escape(doc['label'])}[/]{state}")
    _say(f"person {doc['person']}, organization {doc['organization'] or '-'}")
    golden: dict[str, str] = doc["golden"]
    linked = {n: s for n, s in doc["systems"].items() if "fields" in s}
    names = sorted({f for f, v in golden.items() if v}
                   | {f for s in linked.values() for f, v in s["fields"].items() if v})
    _table("golden record (and where a system holds otherwise)",
           ("field", "golden", "differs in"),
           [[f, golden.get(f) or "-",
             "\n".join(f"{n}: {s['fields'].get(f) or '(empty)'}" for n, s in linked.items()
                       if f in s["fields"] and s["fields"].get(f, "") != golden.get(f, ""))
             or "-"]
            for f in names])
    _table("systems", ("system", "id", "changed there (UTC)", "synced (UTC)"),
           [[n, (s.get("remote_id") or "-") + (" (dropped)" if s.get("excluded") else ""),
             _when(s.get("remote_updated_at")), _when(s.get("updated_at"))]
            if s["linked"] or s.get("excluded") else [n, "not linked", "-", "-"]
            for n, s in doc["systems"].items()])
    if doc["pending"]:
        _say(f"pending writes ({len(doc['pending'])}):")
        for p in doc["pending"]:
            target = f"{p['system']}/{p['remote_id']}" if p["remote_id"] else p["system"]
            _say(f"  {p['action']} {target}")
            for line in format_changes(p["changes"]):
                _say(f"    {escape(line)}")
    else:
        _say("pending writes: none, every system is up to date")
    for r in doc["rejected"]:
        _say(f"[yellow]rejected[/] {r['action']} {r['system']}: field {r['field']}: "
             f"{escape(r['reason'])}")
    for f in doc["failures"]:
        state = "quarantined" if f["quarantined"] else f"retry at {_when(f['next_retry_at'])} UTC"
        _say(f"[red]failed[/] {f['action']} {f['system']} ({f['attempts']} tries, {state}): "
             f"{escape(f['error'])}")
    if doc["conflicts"]:
        _print_conflicts(f"{len(doc['conflicts'])} conflicts (newest first)", doc["conflicts"],
                         person=False)
    else:
        _say("conflicts: none logged")


# -- history, runs and undo (CONTRACT §5) ---------------------------------------------------

_SHOW_CHANGES = 5
"""How many of a person's changes ``show`` lists."""


def _history_parsers(sub: Any) -> None:
    hist = sub.add_parser("history", help="one person's changes, newest first")
    hist.add_argument("query", help="email, person id or system:remote-id")
    hist.add_argument("--json", action="store_true")
    hist.add_argument("--limit", type=int, default=None)

    runs = sub.add_parser("runs", help="recent runs, newest first")
    runs.add_argument("--json", action="store_true")
    runs.add_argument("--limit", type=int, default=20)

    undo = sub.add_parser("undo", help="set changed fields back (the next cycle pushes them)")
    undo.add_argument("changes", nargs="*", type=int, metavar="CHANGE_ID")
    undo.add_argument("--run", type=int, default=None, metavar="RUN_ID",
                      help="every change of this run, newest first")
    undo.add_argument("--dry-run", action="store_true", help="show the writes it would cause")
    undo.add_argument("--force", action="store_true", help="undo superseded changes too")
    undo.add_argument("--json", action="store_true")


def _print_changes(title: str, changes: list[dict[str, Any]]) -> None:
    if not changes:
        _say("changes: none kept")
        return
    _table(title, ("change", "when (UTC)", "field: old → new", "source"),
           [[f"{c['id']}\nrun {c['run']}", _when(c["at"]).replace(" ", "\n"),
             format_changes({c["field"]: {"old": c["old"] or None, "new": c["new"] or None}})[0],
             c["source"] + (" (conflict)" if c["conflict"] else "")]
            for c in changes], lines=True)


def _limit(args: argparse.Namespace) -> None:
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit: give a number of at least 1, not {args.limit}")


def cmd_history(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.app import migrated_store
    from syncd.readside import one_person
    from syncd.store.history import person_changes

    _limit(args)

    with migrated_store(settings) as store:
        state = store.load_state()
        who = one_person(People(state), args.query)
        changes = [c.as_dict() for c in person_changes(store, who.id, args.limit)]
    golden = state.goldens.get(who.id)
    doc = {**who.as_dict(), "label": who.label(), "organization": golden.org if golden else None,
           "deleted": who.deleted, "changes": changes}
    if args.json:
        _emit(doc)
        return 0
    gone = " [red](deleted)[/]" if who.deleted else ""
    _say(f"[bold]{escape(who.label())}[/]{gone}")
    _print_changes(f"{len(changes)} changes (newest first)", changes)
    return 0


def cmd_runs(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.app import migrated_store
    from syncd.readside import runs

    _limit(args)
    with migrated_store(settings) as store:
        listed = runs(store, args.limit)
    if args.json:
        _emit({"runs": listed})
        return 0
    _table(f"{len(listed)} runs (newest first)",
           ("run", "kind", "started (UTC)\nfinished", "exit", "changes",
            "per system: created/updated/deleted/failed"),
           [[str(r["id"]), r["kind"], f"{_when(r['started'])}\n{_when(r['finished'])}",
             "-" if r["exit_code"] is None else str(r["exit_code"]), str(r["changes"]),
             "\n".join(f"{n} " + "/".join(str(c[k]) for k in ("created", "updated", "deleted",
                                                                "failed"))
                       for n, c in r["systems"].items()) or "-"]
            for r in listed], lines=True)
    return 0


def cmd_undo(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.app import build_connectors, migrated_store
    from syncd.engine.cycle import system_infos
    from syncd.engine.undo import undo

    if bool(args.changes) == (args.run is not None):
        raise ConfigError("undo: give change ids (see `syncd history`) or --run RUN_ID, not both")
    connectors = build_connectors(settings) if args.dry_run else {}
    try:
        with migrated_store(settings) as store:
            result = undo(store, ids=args.changes, run=args.run, force=args.force,
                          dry_run=args.dry_run, now=datetime.now(UTC),
                          systems=system_infos(settings, connectors).values())
    finally:
        for c in connectors.values():
            c.close()
    if args.json:
        _emit(result.as_dict())
        return result.exit_code
    doc = result.as_dict()
    verb = "would undo" if args.dry_run else "undid"
    _say(f"{verb} {len(result.undone)} changes"
         + (f" as changes {', '.join(map(str, result.changes))} (run {result.run}); "
            "the next cycle sends them" if result.changes else ""))
    for r in result.refused:
        _say(f"[yellow]refused[/] change {r.id}: {escape(r.reason)}")
    if args.dry_run:
        for p in doc["planned"]:
            target = f"{p['system']}/{p['remote_id']}" if p["remote_id"] else p["system"]
            _say(f"  {p['action']} {target} for {escape(p['label'])}")
            for line in format_changes(p["changes"]):
                _say(f"    {escape(line)}")
    return result.exit_code


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

    if not settings.web.enabled:
        return run_daemon(settings, metrics_port=args.metrics_port, force_delete=args.force_delete)
    from syncd.web import Console

    console = Console(settings).start()  # no token or a port in use: exit 2 before any cycle
    try:
        return run_daemon(settings, metrics_port=args.metrics_port, force_delete=args.force_delete)
    finally:
        console.stop()


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    """The operator's console in the foreground (CONTRACT §7)."""
    from syncd.web import serve

    return serve(settings, host=args.host, port=args.port)


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
    "show": cmd_show,
    "history": cmd_history,
    "runs": cmd_runs,
    "undo": cmd_undo,
    "db": cmd_db,
    "web": cmd_web,
}


def _load(path: str | None) -> Settings:
    """The settings, with an unreadable file (a directory, no permission) as one exit-2 line.

    A missing file is the first thing a new user meets: say where we looked
    and how to get a file, not just "not found".
    """
    file = config_path(path)
    if not file.exists():
        how = (f"--config {path}" if path else
               f"$SYNCD_CONFIG={os.environ['SYNCD_CONFIG']}" if os.environ.get("SYNCD_CONFIG")
               else "the default ./syncd.toml ($SYNCD_CONFIG is not set)")
        raise ConfigError(
            f"{file}: configuration file not found (looked at {file.absolute()}, from {how}).\n"
            "To start: copy config/syncd.example.toml to ./syncd.toml and fill it in, or run "
            "`syncd sandbox --write-config syncd.toml` for simulated systems to try syncd on; "
            "then pass --config PATH or set $SYNCD_CONFIG."
        )
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
