"""The records schema as an ordered list of steps, keyed by ``PRAGMA user_version``.

A file at version N gets steps N+1.. in order; each step runs in one transaction together with
its version bump, so a crash or a full disk half-way leaves the file at the last complete
version, and the next start carries on from there. A new file is built by the same steps, so
there is one schema, not a "fresh" one and a "migrated" one. A file newer than this cellctl is
refused, never touched.

Version 1 (user_version 0: it never set it): ``inspections`` only. Version 2: ``accepted``.
Version 3 (robot link v2): the ids a v2 verdict and ack carry, and ack results. Verdicts not
yet acknowledged are re-encoded as v2 verdicts (boot id ``migrated``, no request id) so they can
still be resent; acknowledged ones keep the message exactly as it was sent. Version 4: each
judged part's evidence (coverage, out-of-distribution distances, problems), ``{}`` for the rows
judged before.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Callable
from typing import Any

import structlog
from pydantic import ValidationError

from cellctl.link.protocol import MAX_SCORES, Verdict
from cellctl.outcome import BIN_OF, Bin, Outcome
from cellctl.records._base import RecordsError, transaction
from cellctl.text import NAME_MAX, TEXT_MAX, printable, unsafe_character

log = structlog.get_logger("cellctl.records")

MIGRATED_BOOT_ID = "migrated"  # the boot id of verdicts judged before verdicts carried one
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _v1_inspections(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS inspections (
    seq          INTEGER PRIMARY KEY,   -- verdict sequence number of this cell
    cell_id      TEXT NOT NULL,
    part_id      TEXT NOT NULL,
    profile      TEXT NOT NULL,
    model_sha256 TEXT,
    verdict      TEXT NOT NULL,         -- PASS | REJECT | RECHECK
    reason       TEXT NOT NULL,
    scores       TEXT NOT NULL,         -- JSON {view: defect probability}
    timings_ms   TEXT NOT NULL,         -- JSON {step: milliseconds}
    latency_ms   REAL NOT NULL,
    created_at   TEXT NOT NULL,         -- UTC, ISO 8601
    message      TEXT NOT NULL,         -- the verdict exactly as sent
    ack_state    TEXT NOT NULL DEFAULT 'pending',  -- see AckState
    acked_at     TEXT
)"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS inspections_pending ON inspections (ack_state) WHERE ack_state != 'acked'")


def _v2_accepted(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS accepted (
    seq          INTEGER PRIMARY KEY,   -- taken when the part was accepted; the verdict carries it
    cell_id      TEXT NOT NULL,
    part_id      TEXT NOT NULL,
    profile      TEXT NOT NULL,
    accepted_at  TEXT NOT NULL
)"""
    )


def _v3_link_v2(db: sqlite3.Connection) -> None:
    for column in (
        "boot_id TEXT",  # the run of the daemon that judged the part
        "request_id TEXT",  # the robot's request the part answered
        "profile_sha256 TEXT",
        "bin INTEGER",  # as sent; an ack must name the same bin
        "ack_res INTEGER",  # the robot's result code (0: acted on it)
        "ack_detail TEXT",
    ):
        db.execute(f"ALTER TABLE inspections ADD COLUMN {column}")
    db.execute("ALTER TABLE accepted ADD COLUMN request_id TEXT")
    db.execute("ALTER TABLE accepted ADD COLUMN boot_id TEXT")
    db.execute("UPDATE inspections SET bin = json_extract(message, '$.bin') WHERE json_valid(message)")
    # the outbox reads undelivered rows in seq order at every start; acked ones are the bulk
    db.execute("DROP INDEX IF EXISTS inspections_pending")
    db.execute("CREATE INDEX inspections_undelivered ON inspections (seq) WHERE ack_state IN ('pending', 'expired')")
    rows = db.execute(
        "SELECT seq, cell_id, part_id, profile, model_sha256, verdict, reason, scores, latency_ms, message"
        " FROM inspections WHERE ack_state IN ('pending', 'expired') ORDER BY seq"
    ).fetchall()
    for row in rows:
        verdict = _as_v2(row)
        if verdict is None:
            continue  # kept as it was; the outbox logs it as unreadable at every start
        db.execute(
            "UPDATE inspections SET message = ?, boot_id = ?, bin = ? WHERE seq = ?",
            (verdict.model_dump_json(), verdict.boot_id, int(verdict.bin), verdict.seq),
        )


def _v4_evidence(db: sqlite3.Connection) -> None:
    # JSON (cellctl.records.Record.evidence): what an auditor is shown beside the scores. Older
    # rows never had it: an empty object, not a guess
    db.execute("ALTER TABLE inspections ADD COLUMN evidence TEXT NOT NULL DEFAULT '{}'")


Step = Callable[[sqlite3.Connection], None]
MIGRATIONS: tuple[tuple[int, Step], ...] = (
    (1, _v1_inspections),
    (2, _v2_accepted),
    (3, _v3_link_v2),
    (4, _v4_evidence),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def user_version(db: sqlite3.Connection) -> int:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    return int(version)


def migrate(db: sqlite3.Connection, where: str) -> None:
    """Bring ``db`` (autocommit connection) to SCHEMA_VERSION, or RecordsError if it is newer."""
    first = version = user_version(db)
    _refuse_newer(version, where)
    for target, step in MIGRATIONS:
        if version >= target:
            continue
        with transaction(db):
            # read again under the write lock: another process may have migrated meanwhile
            version = user_version(db)
            _refuse_newer(version, where)
            if version < target:
                step(db)
                db.execute(f"PRAGMA user_version = {target}")
                version = target
    if version != first:
        log.info("records.migrated", path=where, from_version=first, to_version=version)


def _refuse_newer(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise RecordsError(
            f"records {where}: schema version {version} is newer than this cellctl's version {SCHEMA_VERSION};"
            " use the cellctl that wrote it, or another records file"
        )


def schema_problem(db: sqlite3.Connection) -> str | None:
    """Why ``migrate`` would refuse ``db`` or fail on it, found without writing to it (None if
    it would not): a schema newer than this cellctl, or tables that are not the records'
    (the steps fail on them, or leave them without the columns the records need). The
    file's schema is copied into memory and migrated there. sqlite3.Error if it cannot be
    read (not a database)."""
    version = user_version(db)
    if version > SCHEMA_VERSION:
        return f"schema version {version} is newer than this cellctl's version {SCHEMA_VERSION}"
    rows = db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).fetchall()
    order = {"table": 0, "index": 1, "view": 2, "trigger": 3}
    copy, fresh = sqlite3.connect(":memory:"), sqlite3.connect(":memory:")
    try:
        for kind, name, sql in sorted(rows, key=lambda r: order.get(r[0], 4)):
            try:
                copy.execute(sql)
            except sqlite3.Error as exc:
                return f"its {kind} {name!r} cannot be read ({exc})"
        _steps(copy, version)
        _steps(fresh, 0)
        for table in ("inspections", "accepted"):
            need = _columns(fresh, table)
            missing = [c for c in need if c not in _columns(copy, table)]
            if missing:
                more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
                named = ", ".join(missing[:3]) + more
                return f"table {table} is not the records' (no column {named}): not a cellctl records file"
    except sqlite3.Error as exc:
        return f"not a cellctl records schema at version {version}: migrating it fails ({exc})"
    finally:
        copy.close()
        fresh.close()
    return None


def _steps(db: sqlite3.Connection, version: int) -> None:
    for target, step in MIGRATIONS:
        if version < target:
            step(db)


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")]  # names from a fixed list


# ---------------------------------------------------------------------- v1/v2 messages -> v2 verdicts
def _as_v2(row: tuple[Any, ...]) -> Verdict | None:
    """The v2 verdict of an undelivered row written by schema 1 or 2, or None if it has none."""
    seq, cell_id, part_id, profile, model_sha256, outcome, reason, scores, latency_ms, message = row
    old = _json_object(message)  # the message as sent: bin, max_score and worst_view live only there
    try:
        verdict = Outcome(outcome)
        bin_ = Bin(old["bin"]) if isinstance(old.get("bin"), int) else BIN_OF[verdict]
        return Verdict(
            cell_id=_name(cell_id),
            boot_id=MIGRATED_BOOT_ID,
            seq=int(seq),
            request_id=None,
            part_id=_name(part_id),
            profile=_name(profile),
            model_sha256=model_sha256 if isinstance(model_sha256, str) and _SHA256.match(model_sha256) else None,
            verdict=verdict,
            bin=bin_,
            reason=printable(str(reason))[:TEXT_MAX],
            scores=_scores(scores),
            max_score=_number(old.get("max_score")),
            worst_view=_name(old["worst_view"]) if isinstance(old.get("worst_view"), str) else None,
            latency_ms=max(0.0, _number(latency_ms) or 0.0),
        )
    except (ValueError, KeyError, TypeError) as exc:  # ValidationError is a ValueError
        detail = exc.errors(include_url=False)[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        log.error("records.unmigrated_verdict", seq=seq, part_id=printable(str(part_id)), error=printable(detail))
        return None


def _json_object(text: object) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _name(value: object) -> str:
    """A name as the v2 protocol takes it; names the v1 link let through are escaped."""
    text = str(value)
    if unsafe_character(text) is None and 0 < len(text) <= NAME_MAX:
        return text
    return printable(text)[:NAME_MAX] or "unnamed"


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _scores(text: object) -> dict[str, float | None]:
    scores = _json_object(text)
    return {_name(view): _number(p) for view, p in list(scores.items())[:MAX_SCORES]}
