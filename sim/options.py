"""URL options of the in-process ``sim://`` backends (camera, stage, lighting).

``sim://?seed=S&time_scale=X``: used only when no simulated world is in the device context
(``cellctl sim`` makes the world itself); ``cellctl check`` and ``run`` validate them.
"""

from __future__ import annotations

from pydantic import Field

from cellctl.drivers import SettingsModel


class SimOptions(SettingsModel):
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="simulator seed")
    time_scale: float = Field(
        default=1.0,
        ge=0.0,
        le=1000.0,
        allow_inf_nan=False,
        description="1 = real-time mechanics and transfers, 0 = none",
    )
