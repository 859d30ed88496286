"""``cellctl verdict``: why a part was judged as it was, from the records, for an auditor.

Reads the records database read-only (the daemon may be running: WAL lets a reader in beside
its writer) and prints each matching verdict whole: what was sent, the scores, the evidence
(surface covered, every view's out-of-distribution distance, what stood against a PASS), the
profile and model it was judged with, and where it stands with the robot. Only light imports
at module level: ``cellctl`` builds its parser from ``add_parser``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

COLUMNS = (  # shown in this order when the file has them (schema 1 had fewer)
    "seq",
    "part_id",
    "profile",
    "verdict",
    "bin",
    "reason",
    "created_at",
    "boot_id",
    "request_id",
    "cell_id",
    "profile_sha256",
    "model_sha256",
    "latency_ms",
    "ack_state",
    "acked_at",
    "ack_res",
    "ack_detail",
    "scores",
    "timings_ms",
    "evidence",
)
JSON_COLUMNS = ("scores", "timings_ms", "evidence")
MAX_ROWS = 50  # a part id matched more often than this is listed by its latest verdicts


class NotReadable(Exception):
    """The records file cannot be read as records: its message is the one line shown."""


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:  # Any: cli's parser is a subclass
    from cellctl.commands.args import existing_file, seq_number

    p = sub.add_parser(
        "verdict",
        help="print a recorded verdict whole (scores, coverage, out-of-distribution distances, "
        "problems, profile and model, delivery): why a part passed",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=existing_file,
        default=None,
        help="cell config whose storage.records_db to read (default /etc/cellctl/cell.yaml)",
    )
    where.add_argument("--records", type=existing_file, default=None, help="the records database itself")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seq", type=seq_number, default=None, help="the verdict with this seq")
    which.add_argument(
        "--part",
        default=None,
        metavar="PART_ID",
        help="every verdict of this part id, in seq order (default: the latest verdict)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per verdict, a line each")


def main(args: argparse.Namespace) -> int:
    from cellctl.commands.common import NoCellConfig, report
    from cellctl.config import ConfigError
    from cellctl.text import printable

    try:
        path = records_path(args)
        rows = find(path, args.seq, args.part)
    except ConfigError as exc:
        report(exc)
        return 2
    except (NotReadable, NoCellConfig) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    if not rows:
        which = (
            f"seq {args.seq}" if args.seq is not None else f"part '{printable(args.part)}'" if args.part else "any part"
        )
        print(f"error: {path}: no verdict recorded for {which}", file=sys.stderr)
        return 1
    for k, row in enumerate(rows):
        if args.json:
            print(json.dumps(row, sort_keys=False))
        else:
            print(("\n" if k else "") + describe(row))
    return 0


def records_path(args: argparse.Namespace) -> Path:
    if args.records is not None:
        return Path(args.records)
    from cellctl.commands.common import installed_cell
    from cellctl.config import cell_relative

    config, cell = installed_cell(args.config, "--records")
    return cell_relative(config, cell.storage.records_db)


def find(path: Path, seq: int | None, part_id: str | None) -> list[dict[str, Any]]:
    """The matching verdicts as dicts (JSON columns parsed), oldest first."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise NotReadable(f"{path}: cannot open the records ({exc})") from exc
    try:
        have = {r[1] for r in db.execute("PRAGMA table_info(inspections)")}
        if "seq" not in have:
            raise NotReadable(f"{path}: no cellctl records (no inspections table)")
        columns = [c for c in COLUMNS if c in have]
        select = f"SELECT {', '.join(columns)} FROM inspections"  # names from COLUMNS only
        if seq is not None:
            rows = db.execute(f"{select} WHERE seq = ?", (seq,)).fetchall()
        elif part_id is not None:
            rows = db.execute(f"{select} WHERE part_id = ? ORDER BY seq DESC LIMIT ?", (part_id, MAX_ROWS)).fetchall()
        else:
            rows = db.execute(f"{select} ORDER BY seq DESC LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise NotReadable(f"{path}: cannot read the records ({exc})") from exc
    finally:
        db.close()
    return [_parsed(dict(zip(columns, row, strict=True))) for row in sorted(rows, key=lambda r: r[0])]


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    for column in JSON_COLUMNS:
        if column in row:
            with contextlib.suppress(TypeError, ValueError):  # shown as stored: a damaged row is still evidence
                row[column] = json.loads(row[column]) if row[column] is not None else None
    return row


def describe(row: dict[str, Any]) -> str:
    """The verdict as a person reads it: the outcome first, then why, then the provenance."""
    from cellctl.text import printable

    def text(value: Any) -> str:
        return printable(str(value)) if value is not None else "-"

    lines = [
        f"seq {row['seq']}  part {text(row.get('part_id'))}  profile {text(row.get('profile'))}  "
        f"{text(row.get('verdict'))} (bin {text(row.get('bin'))})",
        f"  reason      {text(row.get('reason'))}",
        f"  judged      {text(row.get('created_at'))}  boot {text(row.get('boot_id'))}  "
        f"request {text(row.get('request_id'))}",
        f"  profile     sha256 {text(row.get('profile_sha256'))}",
        f"  model       sha256 {text(row.get('model_sha256'))}",
        f"  robot       {text(row.get('ack_state'))}  at {text(row.get('acked_at'))}  res {text(row.get('ack_res'))}"
        + (f"  ({text(row['ack_detail'])})" if row.get("ack_detail") else ""),
    ]
    evidence = _object(row.get("evidence"))
    coverage = _object(evidence.get("coverage"))
    if coverage:
        lines.append("  coverage    " + "  ".join(f"{text(k)} {_num(v, 4)}" for k, v in coverage.items()))
    sharpness = _object(evidence.get("sharpness"))
    if sharpness:
        lines.append("  focus       " + "  ".join(f"{text(k)} {_num(v, 2)}" for k, v in sharpness.items()))
    noise = _object(evidence.get("noise"))
    if noise:
        lines.append("  noise       " + "  ".join(f"{text(k)} {_num(v, 2)}" for k, v in noise.items()))
    for key, title in (
        ("problems", "problems"),
        ("not_located", "not located"),
        ("short_of_coverage", "short"),
        ("out_of_focus", "unfocused"),
        ("repeated", "repeated"),
    ):
        listed = evidence.get(key)
        if isinstance(listed, list) and listed:
            lines.append(f"  {title:<11} " + "; ".join(text(p) for p in listed))
    scores = _object(row.get("scores"))
    ood = _object(evidence.get("ood"))
    view_problems = _object(evidence.get("view_problems"))
    names = list(dict.fromkeys([*scores, *ood, *view_problems]))
    if names:
        lines.append(f"  views       {len(names)}: defect probability, out-of-distribution distance")
    for name in names:
        problem = view_problems.get(name)
        lines.append(
            f"    {text(name):<16} p {_num(scores.get(name))}  ood {_num(ood.get(name))}"
            + (f"  not trusted: {text(problem)}" if problem else "")
        )
    if not evidence:
        lines.append("  evidence    none recorded (judged before records schema 4, or never inspected)")
    return "\n".join(lines)


def _object(value: Any) -> dict[str, Any]:
    """A JSON object as stored, or {} for anything else (a damaged row is shown, not fatal)."""
    return value if isinstance(value, dict) else {}


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"
