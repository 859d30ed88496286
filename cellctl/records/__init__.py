"""Inspection records in SQLite (WAL, synchronous FULL), written before a verdict is sent.

Two tables. ``accepted`` holds the parts in the fixture: a row is written (and fsynced) when a
part is taken, before acquisition starts, so its seq is durable and never reused, and a part
whose daemon dies mid-inspection is found at the next start and judged RECHECK
("interrupted"). ``inspections`` holds one row per judged part with the verdict message as
sent, the evidence it was judged on (coverage, out-of-distribution distances, problems; read
back with ``Records.evidence``) and where it stands with the robot (``AckState``); judging a
part moves it from one table to the other in one transaction. The schema is built and migrated by ordered steps keyed by
``PRAGMA user_version`` (``_migrations``).

All SQLite work runs on one dedicated thread: never on the event loop, serialized without
locks. Every SQLite or OS failure (disk full, read-only, file vanished) becomes a
``RecordsError``: the caller decides what the cell does about it.
"""

from cellctl.records._base import Accepted, AckState, Record, RecordsError
from cellctl.records._migrations import MIGRATED_BOOT_ID, SCHEMA_VERSION, schema_problem
from cellctl.records._store import Records

__all__ = [
    # the store
    "Records",
    "RecordsError",
    "SCHEMA_VERSION",
    "schema_problem",  # read-only: what opening the file would refuse (`cellctl check`)
    # what it holds
    "Accepted",
    "AckState",
    "Record",
    "MIGRATED_BOOT_ID",
]
