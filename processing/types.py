"""The ``boolean``, ``date`` and ``datetime`` column types: their config options (validated, errors naming the key
path), the text forms they accept, and the regular expression both engines parse them with.

Standard library only (``config`` and the Spark engine import it). The Arrow parsing is ``processing/typecast.py``;
the Spark SQL one ``processing/spark/features.py``; both use ``pattern`` below, so they accept the same texts.

Parsing a date or datetime text: the text (surrounding whitespace removed) must match the whole pattern; its parts
(year, month, day, hour, minute, second, fraction, offset) are range-checked (a day beyond the month's last day is
invalid, not rolled over as C's ``strptime`` does); a value without an offset is in the column's ``timezone``
(default UTC) and stored in UTC. A local time that does not exist in that zone (the hour skipped when clocks go
forward) is invalid; one that occurs twice (clocks go back) is the earlier instant.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

from processing.errors import ConfigError

NEW_TYPES = ("boolean", "date", "datetime")
TEMPORAL_TYPES = ("date", "datetime")
TRUE_TEXTS = ("true", "t", "yes", "y", "1")
FALSE_TEXTS = ("false", "f", "no", "n", "0")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
MICROS_PER_DAY = 86_400_000_000
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class TypeOptions:
    """A column's type options: ``format`` (a strptime format; None = ISO-8601) and ``timezone`` (IANA, datetime)."""

    format: str | None = None
    timezone: str = "UTC"


# ---- patterns --------------------------------------------------------------------------------------------------
# Components, by group name: Y (4-digit year), y (2-digit), m, b (month name), d, H, I (12-hour), p (AM/PM), M, S,
# f (fraction: 1-9 digits, truncated to microseconds), z (Z or an offset +hh, +hhmm, +hh:mm).
_PARTS = {
    "Y": "[0-9]{4}", "y": "[0-9]{2}", "m": "1[0-2]|0?[1-9]", "d": "3[01]|[12][0-9]|0?[1-9]",
    "b": "(?i:" + "|".join(sorted({*MONTHS, *(m[:3] for m in MONTHS)}, key=lambda s: (-len(s), s))) + ")",
    "H": "2[0-3]|[01]?[0-9]", "I": "1[0-2]|0?[1-9]", "p": "(?i:am|pm)", "M": "[0-5]?[0-9]", "S": "[0-5]?[0-9]",
    "f": "[0-9]{1,9}", "z": "[Zz]|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?",
}
_DIRECTIVES = {"Y": "Y", "y": "y", "m": "m", "d": "d", "b": "b", "B": "b", "H": "H", "I": "I", "p": "p", "M": "M",
               "S": "S", "f": "f", "z": "z"}
_TIME_PARTS = ("H", "I", "p", "M", "S", "f", "z")


@dataclass(frozen=True)
class Pattern:
    """A parse pattern: ``groups`` in order; ``regex(style)`` renders it with named groups for RE2/Python
    (``"python"``: ``(?P<name>...)``) or Java (``"java"``: ``(?<name>...)``), anchored."""

    body: str  # with "\x00name\x00" where group ``name`` goes
    groups: tuple[str, ...]

    def regex(self, style: str = "python") -> str:
        out = self.body
        for g in self.groups:
            out = out.replace(f"\x00{g}\x00", f"(?P<{g}>{_PARTS[g]})" if style == "python" else f"(?<{g}>{_PARTS[g]})")
        return f"^{out}$"


# ISO-8601: 2024-03-01; 2024-03-01T05:00, 2024-03-01 05:00:00.5, with an optional Z or offset after a time.
ISO_DATE = Pattern("\x00Y\x00-\x00m\x00-\x00d\x00", ("Y", "m", "d"))
ISO_DATETIME = Pattern("\x00Y\x00-\x00m\x00-\x00d\x00(?:[T ]\x00H\x00:\x00M\x00(?::\x00S\x00(?:[.,]\x00f\x00)?)?"
                       "\x00z\x00?)?", ("Y", "m", "d", "H", "M", "S", "f", "z"))
# In the ISO patterns every part is two digits (the shared _PARTS accept one for strptime formats).
_ISO_STRICT = {"m": "0[1-9]|1[0-2]", "d": "0[1-9]|[12][0-9]|3[01]", "H": "[01][0-9]|2[0-3]", "M": "[0-5][0-9]",
               "S": "[0-5][0-9]"}


def pattern(kind: str, options: TypeOptions) -> Pattern:
    """The pattern a ``date``/``datetime`` column's texts must match."""
    if options.format is None:
        return ISO_DATE if kind == "date" else ISO_DATETIME
    return format_pattern(options.format, "<format>")


def iso_regex(kind: str, style: str = "python") -> str:
    pat = ISO_DATE if kind == "date" else ISO_DATETIME
    out = pat.body
    for g in pat.groups:
        part = _ISO_STRICT.get(g, _PARTS[g])
        out = out.replace(f"\x00{g}\x00", f"(?P<{g}>{part})" if style == "python" else f"(?<{g}>{part})")
    return f"^{out}$"


def regex(kind: str, options: TypeOptions, style: str = "python") -> str:
    """The anchored regular expression (named groups) of a ``date``/``datetime`` column."""
    return iso_regex(kind, style) if options.format is None else pattern(kind, options).regex(style)


def format_pattern(fmt: str, path: str) -> Pattern:
    """A strptime format as a Pattern. Directives: %Y %y %m %d %b %B %H %I %p %M %S %f %z %%; other text is
    literal (a space matches one space).

    Raises:
        ConfigError: an unsupported or repeated directive, naming ``path``.
    """
    body, groups, i = [], [], 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            body.append(re.escape(ch))
            i += 1
            continue
        if i + 1 >= len(fmt):
            raise ConfigError(f"{path}: format {fmt!r} ends with a lone '%'")
        d = fmt[i + 1]
        i += 2
        if d == "%":
            body.append("%")
            continue
        if d not in _DIRECTIVES:
            raise ConfigError(f"{path}: unsupported directive %{d} in format {fmt!r} (supported: "
                              f"{' '.join('%' + k for k in _DIRECTIVES)} %%)")
        name = _DIRECTIVES[d]
        if name in groups:
            raise ConfigError(f"{path}: directive %{d} appears twice in format {fmt!r}")
        groups.append(name)
        body.append(f"\x00{name}\x00")
    if not any(g in groups for g in ("Y", "y")):
        raise ConfigError(f"{path}: format {fmt!r} needs a year (%Y or %y)")
    if ("I" in groups) != ("p" in groups) or ("I" in groups and "H" in groups):
        raise ConfigError(f"{path}: format {fmt!r}: use %H, or %I with %p")
    return Pattern("".join(body), tuple(groups))


# ---- config --------------------------------------------------------------------------------------------------


def parse_column(value: dict[str, Any], path: str) -> tuple[str, TypeOptions]:
    """A ``columns.<name>`` object: ``{"type", "format", "timezone"}``. Returns the type and its options.

    Raises:
        ConfigError: naming the key path (``columns.time_hour.timezone: unknown time zone 'Mars/Base'``).
    """
    allowed = ("type", "format", "timezone")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown key (allowed: {', '.join(allowed)})")
    kind = value.get("type")
    fmt = value.get("format")
    tz = value.get("timezone", "UTC")
    if "format" in value:
        if kind not in TEMPORAL_TYPES:
            raise ConfigError(f"{path}.format: only date and datetime columns take a format, {kind!r} does not")
        if not isinstance(fmt, str) or not fmt:
            raise ConfigError(f"{path}.format: expected a strptime format string, got {fmt!r}")
        pat = format_pattern(fmt, f"{path}.format")
        if kind == "date" and any(g in pat.groups for g in _TIME_PARTS):
            raise ConfigError(f"{path}.format: a date format cannot hold a time of day or an offset "
                              f"(use type \"datetime\"), got {fmt!r}")
    if "timezone" in value:
        if kind != "datetime":
            raise ConfigError(f"{path}.timezone: only datetime columns take a time zone, {kind!r} does not")
        if not isinstance(tz, str) or not tz:
            raise ConfigError(f"{path}.timezone: expected an IANA time zone name, got {tz!r}")
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{path}.timezone: unknown time zone {tz!r} (expected an IANA name such as "
                              f"'America/New_York' or 'UTC')") from None
    return str(kind), TypeOptions(fmt, tz)


def canonical_fill(value: Any, kind: str, options: TypeOptions, path: str) -> Any:
    """A fill value (``imputation.<c>.value``/``fallback``) of a new type in its canonical form: a boolean for
    ``boolean`` (JSON true/false or one of the accepted texts), ``YYYY-MM-DD`` for ``date``, ``YYYY-MM-DDTHH:MM:SSZ``
    (UTC; ``.ffffff`` when not whole seconds) for ``datetime`` (ISO-8601; without an offset in the column's zone).

    Raises:
        ConfigError: naming ``path``.
    """
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in (*TRUE_TEXTS, *FALSE_TEXTS):
            return value.strip().lower() in TRUE_TEXTS
        raise ConfigError(f"{path}: expected true or false for a boolean column, got {value!r}")
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected an ISO-8601 {kind} text, got {type(value).__name__}")
    micros = parse_text(value, kind, TypeOptions(None, options.timezone))
    if micros is None:
        example = "2024-03-01" if kind == "date" else "2024-03-01T05:00:00Z"
        raise ConfigError(f"{path}: {value!r} is not an ISO-8601 {kind} (e.g. {example!r})")
    return format_micros(micros, kind)


def format_micros(micros: int, kind: str) -> str:
    """A date (days x MICROS_PER_DAY) or an instant as its output text: ``2024-03-01``, ``2024-03-01T05:00:00Z``."""
    stamp = EPOCH + datetime.timedelta(microseconds=micros)
    if kind == "date":
        return stamp.strftime("%Y-%m-%d")
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    return (text + f".{stamp.microsecond:06d}" if stamp.microsecond else text) + "Z"


def median_info(strategy: str, kind: str, exact: float) -> dict[str, Any]:
    """The imputation record of a date/datetime median ``exact`` (days / microseconds since the epoch, numpy's
    interpolating median): ``value`` rounded half to even to a whole day / microsecond, ``computed`` the exact
    middle instant as text."""
    unit = MICROS_PER_DAY if kind == "date" else 1
    return {"strategy": strategy, "value": format_micros(round(exact) * unit, kind),
            "computed": format_micros(round(exact * unit), "datetime"), "source": "statistic"}


def parse_text(text: str, kind: str, options: TypeOptions) -> int | None:
    """One text parsed as the engines parse a column (the standard-library version, for config values and tests):
    microseconds since the epoch in UTC (a date: its midnight), or None when invalid."""
    m = re.fullmatch(regex(kind, options)[1:-1], text.strip())
    if m is None:
        return None
    parts = m.groupdict()
    year = int(parts["Y"]) if parts.get("Y") else None
    if year is None:
        yy = int(parts["y"])
        year = 2000 + yy if yy < 69 else 1900 + yy
    if parts.get("b"):
        month = next(i for i, name in enumerate(MONTHS, 1) if name.startswith(parts["b"].lower()[:3]))
    else:
        month = int(parts.get("m") or 1)
    day = int(parts.get("d") or 1)
    if parts.get("I"):
        hour = int(parts["I"]) % 12 + (12 if parts["p"].lower() == "pm" else 0)
    else:
        hour = int(parts.get("H") or 0)
    minute, second = int(parts.get("M") or 0), int(parts.get("S") or 0)
    frac = int((parts.get("f") or "").ljust(9, "0")[:6] or 0)
    try:  # the wall-clock time, held in a UTC datetime until its zone is applied
        wall = datetime.datetime(year, month, day, hour, minute, second, frac, tzinfo=datetime.UTC)
    except ValueError:
        return None
    if kind == "date":
        return _micros(wall - EPOCH)
    z = parts.get("z")
    if z:
        offset = 0 if z in ("Z", "z") else offset_seconds(z)
        return _micros(wall - EPOCH - datetime.timedelta(seconds=offset))
    zone = zoneinfo.ZoneInfo(options.timezone)
    aware = wall.replace(tzinfo=zone, fold=0)  # fold 0: of a repeated hour, the earlier instant
    if aware.astimezone(datetime.UTC).astimezone(zone).replace(tzinfo=datetime.UTC) != wall:
        return None  # skipped by a clock change
    return _micros(aware - EPOCH)


def _micros(delta: datetime.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def offset_seconds(z: str) -> int:
    """``+05``, ``+0530``, ``-05:30`` -> seconds east of UTC."""
    digits = z[1:].replace(":", "")
    seconds = int(digits[:2]) * 3600 + (int(digits[2:4]) * 60 if len(digits) > 2 else 0)
    return -seconds if z[0] == "-" else seconds
