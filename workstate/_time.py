"""Instants: the one place that checks, normalizes, renders and parses them (api.md §2); and
:func:`shown`, how every error message shows a value it was given (short and escaped)."""

from __future__ import annotations

import re
import reprlib
from datetime import UTC, datetime, timedelta

from .errors import InvalidTimestamp, NaiveDatetime

__all__ = [
    "EARLIEST",
    "LATEST",
    "MICROSECOND",
    "SHOWN",
    "UTC",
    "aware",
    "parse_timestamp",
    "read_timestamp",
    "render_timestamp",
    "shown",
]

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
        raise NaiveDatetime(f"{param} must be a timezone-aware datetime, got {shown(value)}", param=param)
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
    A valid timestamp that names no instant workstate can hold (see :func:`read_timestamp`) is
    refused like an invalid one.
    """
    instant = read_timestamp(text, param)
    if instant is None:
        raise InvalidTimestamp(
            f"{param} names an instant workstate cannot hold (finer than a microsecond, a leap second, "
            f"or outside the years 1000 to 9000): {shown(text)}",
            param=param,
        )
    return instant


def read_timestamp(text: str, param: str = "timestamp") -> datetime | None:
    """The UTC instant an RFC 3339 timestamp with an offset names, or None when it is valid RFC 3339 but
    names an instant workstate cannot hold: a fraction finer than a microsecond (digits past the sixth
    that are not all zeros), a leap second (second ``60``), or an instant outside :data:`EARLIEST` ..
    :data:`LATEST` (``0000-01-01T00:00:00Z`` and ``9999-12-31T23:59:59.999999-01:00`` among them).

    Anything that is not RFC 3339 (the grammar of its part 5.6, months 01-12, the days of the month,
    hours 00-23, minutes 00-59, seconds 00-60, offsets up to ``23:59``) raises
    :class:`~workstate.errors.InvalidTimestamp`.
    """
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidTimestamp(f"{param} must be an RFC 3339 timestamp with an offset, got {shown(text)}", param=param)
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    y, mo, d, h, mi, s = int(year), int(month), int(day), int(hour), int(minute), int(second)
    oh, om = (0, 0) if zulu else (int(off_h), int(off_m))
    if not (1 <= mo <= 12 and 1 <= d <= _days_in_month(y, mo) and h <= 23 and mi <= 59 and s <= 60) or (
        oh > 23 or om > 59
    ):
        raise InvalidTimestamp(f"{param} is not a valid instant: {shown(text)}", param=param)
    if s == 60 or (frac is not None and len(frac) > 6 and frac[6:].strip("0")):
        return None  # a leap second, or finer than a microsecond: RFC 3339, but no instant workstate holds
    micro = int(frac[:6].ljust(6, "0")) if frac else 0
    offset = timedelta(hours=oh, minutes=om) * (-1 if sign == "-" else 1)
    try:
        instant = (datetime(y, mo, d, h, mi, s, micro) - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # year 0, or past datetime.max in UTC
        return None
    return instant if EARLIEST <= instant <= LATEST else None


def _days_in_month(year: int, month: int) -> int:
    """The days of a month of the proleptic Gregorian calendar, for any four-digit year (0000 included)."""
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


# --- how an error message shows what it was given ---------------------------------------------------------------

SHOWN = 64
"""The most characters of a value an error message shows (:func:`shown`)."""
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = SHOWN
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4
_REPR.maxlevel = 2


def shown(value: object) -> str:
    """How an error message shows a value it was given: ``repr``-escaped and cut short.

    A string shows its first :data:`SHOWN` characters and, when there are more, how many it has
    (``'abc…'... (8,388,608 characters)``); any other value its ``reprlib`` rendering, cut to as many. The one
    rule every error message of workstate (and of its reference server) follows, so that no answer
    is ever as large as the input it refuses, and what it shows is printable ASCII or escaped.
    """
    if isinstance(value, str):
        if len(value) <= SHOWN:
            return repr(value)
        return f"{value[:SHOWN]!r}... ({len(value):,} characters)"
    text = _REPR.repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."
