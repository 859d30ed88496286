"""The overdrive limits of the Gardasoft RT-series outputs: ONE table.

Read by the profile model (``LightingSettings`` refuses a setting beyond them, so
``cellctl check`` does), by the driver (``check_limits`` before sending RS/RT) and by the
emulator (it clips as the controller does). Changing a limit here changes all three.

Overdrive above 100 % is only safe for short pulses: the controller clips it and the LEDs
age. 201-300 % at <= 10 ms is Gardasoft's published example (at 20 % duty); 101-200 % at
<= 50 ms is OUR ASSUMPTION, not confirmed against the RT manual: check it on the real
controller. Not modelled: the duty-cycle limit (20 % at 201-300 %).
"""

from __future__ import annotations

CONTINUOUS_MAX_PCT = 100.0
# (highest brightness %, longest pulse ms or None = any width), ascending in brightness
STROBE_LIMITS: tuple[tuple[float, float | None], ...] = ((100.0, None), (200.0, 50.0), (300.0, 10.0))
LIMITS_TEXT = "continuous 0-100 %; strobe 0-100 % any width, 101-200 % <= 50 ms, 201-300 % <= 10 ms"


def overdrive_problem(mode: str, intensity_pct: float, pulse_width_ms: float) -> str | None:
    """Why this brightness / pulse is beyond the controller's limits, or None if it is within."""
    if not intensity_pct >= 0.0:  # also NaN
        return f"intensity {intensity_pct:g} % is not a brightness ({LIMITS_TEXT})"
    if mode == "continuous":
        if intensity_pct > CONTINUOUS_MAX_PCT:
            return f"{intensity_pct:g} % continuous is beyond the limit; above 100 % needs mode: strobe ({LIMITS_TEXT})"
        return None
    for top_pct, max_width_ms in STROBE_LIMITS:
        if intensity_pct <= top_pct:
            if max_width_ms is not None and not pulse_width_ms <= max_width_ms:
                return (
                    f"{intensity_pct:g} % with a {pulse_width_ms:g} ms pulse is beyond the overdrive "
                    f"limit: up to {top_pct:g} % allows at most {max_width_ms:g} ms ({LIMITS_TEXT})"
                )
            return None
    return f"{intensity_pct:g} % is beyond the limit ({LIMITS_TEXT})"


def strobe_max_pct(pulse_width_ms: float) -> float:
    """Highest strobe brightness the limits allow for a pulse of this width."""
    allowed = [top for top, width in STROBE_LIMITS if width is None or pulse_width_ms <= width]
    return max(allowed)
