"""The arguments ``cellctl sim --json`` would parse, for calling ``simulate`` in process."""

from __future__ import annotations

import argparse
from pathlib import Path


def sim_args(tmp_path: Path, parts: int, **kw: object) -> argparse.Namespace:
    """Seed 7, 20 % defective, time scale 0, records kept in ``tmp_path``; ``kw`` overrides."""
    base: dict[str, object] = dict(
        parts=parts,
        seed=7,
        defect_rate=0.2,
        profile=None,
        time_scale=0.0,
        config=None,
        records=tmp_path / "records.db",
        json=True,
        faults="",
        via_bridge=False,
        log_level=None,
    )
    return argparse.Namespace(**{**base, **kw})
