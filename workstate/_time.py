"""Instants: the one place that checks, normalizes, renders and parses them (spec section 2)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .errors import InvalidTimestamp, NaiveDatetime

__all__ = ["UTC", "MICROSECOND", "EARLIEST", "LATEST", "aware", "parse_timestamp", "render_timestamp"]

MICROSECOND = timedelta(microseconds=1)
EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)
"""The earliest instant workstate accepts (years render as four digits from here on)."""
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""The latest instant workstate accepts: far enough from ``datetime.max`` that no deadline overflows."""

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)


def aware(value: object, param: str = "now") -> datetime:
    """Return ``value`` as a UTC ``datetime``; raise a typed error if it has no offset or is out of range."""
    if type(value) is datetime and value.tzinfo is UTC and EARLIEST <= value <= LATEST:
        return value  # the common case, kept cheap
    if not isinstance(value, datetime):
        raise NaiveDatetime(f"{param} must be a timezone-aware datetime, got {value!r}", param=param)
    try:
        offset = value.utcoffset()
        if offset is None:
            raise NaiveDatetime(f"{param} must be timezone-aware, got naive {value.isoformat()}", param=param)
        result = value.astimezone(UTC)
    except (ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, NaiveDatetime):
            raise
        raise InvalidTimestamp(f"{param} has an unusable timezone or is out of range: {exc}", param=param) from None
    if not EARLIEST <= result <= LATEST:
        raise InvalidTimestamp(
            f"{param} must lie between the years 1000 and 9000, got {result.isoformat()}", param=param
        )
    return result


def render_timestamp(value: datetime) -> str:
    """Render an instant as the spec does: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, always in UTC."""
    value = aware(value, "timestamp")
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str, param: str = "timestamp") -> datetime:
    """Parse any RFC 3339 timestamp with an offset into a UTC ``datetime``.

    Fractions finer than a microsecond are accepted only when the extra digits are zeros
    (an instant workstate cannot represent would silently compare equal to another one).
    """
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidTimestamp(f"{param} must be an RFC 3339 timestamp with an offset, got {text!r}", param=param)
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    micro = 0
    if frac:
        if len(frac) > 6 and frac[6:].strip("0"):
            raise InvalidTimestamp(f"{param} is finer than a microsecond: {text!r}", param=param)
        micro = int(frac[:6].ljust(6, "0"))
    try:
        offset = timedelta(0)
        if not zulu:
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError("offset out of range")
            offset = timedelta(hours=int(off_h), minutes=int(off_m)) * (1 if sign == "+" else -1)
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
        instant = (local - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidTimestamp(f"{param} is not a valid instant: {text!r} ({exc})", param=param) from None
    return aware(instant, param)
