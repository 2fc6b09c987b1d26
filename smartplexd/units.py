"""Human units in config and rules: sizes (``10GB``, ``1.5TiB``), durations (``90d``, ``12h``), percents.

Sizes follow the SI/IEC convention the *arrs and Plex use: ``GB`` = 10^9 bytes, ``GiB`` = 2^30 bytes.
Durations accept ``s m h d w y`` (a year is 365 days) and combinations such as ``1d12h``.
"""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400, "y": 365 * 86_400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdwy])")


def parse_size(value: str | int | float) -> int:
    """Bytes from ``10GB``/``1.5TiB``/``500``; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like 10GB or 1.5TiB")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return int(value)
    match = _SIZE.match(str(value))
    unit = match.group(2).lower() if match else ""
    if not match or (unit not in _SIZE_UNITS and unit != ""):
        raise ValueError(f"not a size: {value!r} (use e.g. 500MB, 10GB, 1.5TiB)")
    return int(float(match.group(1)) * _SIZE_UNITS.get(unit, 1))


def parse_duration(value: str | int | float) -> float:
    """Seconds from ``90d``/``12h``/``1d12h``/``30`` (plain numbers are seconds)."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a string like 90d, 12h or 1d12h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 15m, 12h, 90d, 2w, 1y, 1d12h)")
    return float(sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def parse_percent(value: str | int | float) -> float:
    """0..100 from ``10%`` or ``10``."""
    text = str(value).strip().rstrip("%").strip()
    try:
        pct = float(text)
    except ValueError:
        raise ValueError(f"not a percentage: {value!r} (use e.g. 10%)") from None
    if not 0 <= pct <= 100:
        raise ValueError(f"a percentage must be between 0 and 100, got {value!r}")
    return pct


def format_size(n: int | float | None) -> str:
    """``1.5 GB`` style (SI), for tables and the status page."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} PB"


def format_duration(seconds: float | None) -> str:
    """``3d 4h``/``12m 5s``, for ETAs and ages."""
    if seconds is None:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return " ".join(parts[:2])
