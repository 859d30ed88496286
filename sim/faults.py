"""Named faults that ``cellctl sim --faults`` injects at random parts (deterministic per seed)."""

from __future__ import annotations

FAULT_NAMES: tuple[str, ...] = (
    "camera-timeout",
    "camera-disconnect",
    "incomplete-frame",
    "stepper-alarm",
    "serial-garbage",
    "serial-unplug",
    "light-fault",
    "model-nan",
    "model-error",
    "records-readonly",
    "disk-full",
    "profile-refused",
    "daemon-kill",
    "sighup",
)
