from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """Pixels copied out of the acquisition buffer, with the format they were delivered in.

    ``pixel_format`` is what the device says the buffer holds (GenICam PFNC name), which is
    what the host must convert from, whatever was requested.
    """

    data: np.ndarray
    pixel_format: str
    frame_id: int
    timestamp_s: float
    complete: bool = True
