"""PostgreSQL values into their published JSON form: one converter per type, fed the server's own text output.

Both paths see the same text: pgoutput sends every value as its type's output
function prints it, and the polling SELECTs read every column whose type needs it
as that same text (``table.output_text``), in sessions with the same fixed
settings (``SESSION_SETTINGS``).  The same function then turns that text into
the published value, so a value looks the same whichever path carried it.
Only types that psycopg loads to exactly what the converter would give (integers,
text, boolean) are read natively, so they cost no Python work per value.

The JSON forms are documented in docs/architecture.md ("PostgreSQL types").  A
value that has no exact form raises ``UnconvertibleValue``; the row builder puts
the row in the quarantine with the column named.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from liberation_assets.core.errors import UnconvertibleValue
from liberation_assets.core.readers.pg_catalog import (
    BOOL,
    BYTEA,
    DATE,
    FLOAT4,
    FLOAT8,
    INT2,
    INT4,
    INT8,
    MONEY,
    OID,
    TIME,
    TIMESTAMP,
    TIMESTAMPTZ,
    TIMETZ,
    XID,
)

# re-exported: what the engine imports from here (the types in pg_catalog.py, the SELECT types in pg_sql_types.py)
from liberation_assets.core.readers.pg_catalog import PgType as PgType
from liberation_assets.core.readers.pg_catalog import TypeCatalog as TypeCatalog
from liberation_assets.core.readers.pg_sql_types import SqlTypeName as SqlTypeName
from liberation_assets.core.readers.pg_sql_types import Unconvertible as Unconvertible

Converter = Callable[[str], Any]

SESSION_SETTINGS: dict[str, str] = {
    "TimeZone": "UTC",
    "DateStyle": "ISO",
    "IntervalStyle": "iso_8601",
    "extra_float_digits": "1",
    "lc_monetary": "C",
    "bytea_output": "hex",
}
"""The text forms the converters parse: set on every session that reads values (SELECT and walsender)."""
SESSION_OPTIONS = " ".join(f"-c {name}={value}" for name, value in SESSION_SETTINGS.items())


# -- scalar converters ---------------------------------------------------------------------------------------
def _bool(text: str) -> bool:
    return text == "t"


_FLOAT_SPECIALS = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity"}


def _float(text: str) -> float | str:
    """PostgreSQL prints the shortest text that reads back to the same float; NaN and ±Infinity stay strings."""
    special = _FLOAT_SPECIALS.get(text)
    return special if special is not None else float(text)


def _money(text: str) -> str:
    """``$1,234.56`` / ``-$1,234.56`` (lc_monetary C) → ``1234.56`` / ``-1234.56``."""
    negative = text.startswith("-") or text.startswith("(")
    amount = text.translate(_MONEY_NOISE)
    return "-" + amount if negative else amount


_MONEY_NOISE = str.maketrans("", "", "$,-() ")


def _bytea(text: str) -> str:
    if not text.startswith("\\x"):
        raise UnconvertibleValue("bytea not in hex output (bytea_output must be hex)")
    return base64.b64encode(bytes.fromhex(text[2:])).decode("ascii")


def _expanded_year(text: str) -> str:
    """A date part ``YYYY-MM-DD`` with PostgreSQL's year (possibly 5+ digits, possibly `` BC``) → ISO 8601."""
    bc = text.endswith(" BC")
    if bc:
        text = text[:-3]
    year, rest = text.split("-", 1)
    number = 1 - int(year) if bc else int(year)
    if 0 <= number <= 9999:
        return f"{number:04d}-{rest}"
    return f"{'+' if number > 0 else '-'}{abs(number):04d}-{rest}"


def _date(text: str) -> str:
    if len(text) == 10 or text in ("infinity", "-infinity"):
        return text
    return _expanded_year(text)


def _fraction6(clock: str) -> str:
    """``HH:MM:SS[.f]`` with the fraction padded to six digits (PostgreSQL drops trailing zeros)."""
    dot = clock.find(".")
    if dot < 0 or len(clock) - dot == 7:
        return clock
    return clock + "0" * (7 - (len(clock) - dot))


def _time(text: str) -> str:
    return _fraction6(text)


def _timetz(text: str) -> str:
    """``12:00:00.5+05:30`` → ``12:00:00.500000+05:30``; ``12:00:00-08`` → ``12:00:00-08:00``."""
    sign = max(text.rfind("+"), text.rfind("-"))
    clock, offset = text[:sign], text[sign:]
    if len(offset) == 3:
        offset += ":00"
    return _fraction6(clock) + offset


def _utc_timestamp(text: str) -> str:
    """``YYYY-MM-DD HH:MM:SS[.f][+00][ BC]`` (a UTC session) → ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``."""
    if text == "infinity" or text == "-infinity":
        return text
    bc = text.endswith(" BC")
    if bc:
        text = text[:-3]
    if text.endswith("+00"):
        text = text[:-3]
    day, clock = text.split(" ", 1)
    if bc or len(day) != 10:
        day = _expanded_year(day + (" BC" if bc else ""))
    return f"{day}T{_fraction6(clock)}Z"


def _timestamptz(text: str) -> str:
    if not (text.endswith("+00") or text.endswith("+00 BC") or text.endswith("infinity")):
        raise UnconvertibleValue(f"timestamptz {text!r} not printed in UTC (the session TimeZone must be UTC)")
    return _utc_timestamp(text)


_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu"})


def naive_timestamp(zone: ZoneInfo | None) -> Converter:
    """A naive timestamp read in ``zone`` the way ``ts AT TIME ZONE zone`` does it, published in UTC."""
    if zone is None or str(getattr(zone, "key", "UTC")) in _UTC_NAMES:
        return _utc_timestamp

    def in_zone(text: str) -> str:
        if text == "infinity" or text == "-infinity":
            return text
        if text.endswith(" BC") or text.index("-") != 4:
            raise UnconvertibleValue(
                f"naive timestamp {text!r} is outside years 1..9999: it cannot be placed in {zone.key}"
            )
        local = datetime.fromisoformat(text)
        try:
            earlier = local.replace(tzinfo=zone)
            later = local.replace(tzinfo=zone, fold=1)
            # PostgreSQL: a time in a spring-forward gap takes the offset before the jump, an ambiguous time
            # the offset after the jump back: in both cases the smaller of the two offsets.
            offset_early, offset_late = earlier.utcoffset(), later.utcoffset()
            chosen = (
                later
                if offset_early is not None and offset_late is not None and offset_late < offset_early
                else earlier
            )
            instant = chosen.astimezone(timezone.utc)
        except (OverflowError, ValueError):
            raise UnconvertibleValue(
                f"naive timestamp {text!r} in {zone.key} falls outside years 1..9999 in UTC"
            ) from None
        return _iso_utc(instant)

    return in_zone


def instant_reader(oid: int) -> Callable[[str], datetime | str]:
    """timestamptz text (a naive timestamp: read as UTC) → an aware datetime, for the outbox's ``occurred_at``
    (its Kafka timestamp); what Python cannot hold (infinity, BC, years past 9999) stays text."""
    published = _timestamptz if oid == TIMESTAMPTZ else _utc_timestamp

    def read(text: str) -> datetime | str:
        value = published(text)
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value

    return read


def _iso_utc(instant: datetime) -> str:
    body = instant.replace(tzinfo=None).isoformat()
    return body + "Z"


def _identity(text: str) -> str:
    return text


_SCALARS: dict[int, Converter] = {
    BOOL: _bool,
    BYTEA: _bytea,
    INT2: int,
    INT4: int,
    INT8: int,
    OID: int,
    XID: int,
    FLOAT4: _float,
    FLOAT8: _float,
    MONEY: _money,
    DATE: _date,
    TIME: _time,
    TIMETZ: _timetz,
    TIMESTAMPTZ: _timestamptz,
}


def converter(pg_type: PgType, zone: ZoneInfo | None) -> Converter:
    """Text output of this type → its JSON value.  Everything not listed is published as the text itself."""
    if pg_type.element is not None:
        item = converter(pg_type.element, zone)
        delimiter = pg_type.delimiter
        return lambda text: parse_array(text, item, delimiter)
    if pg_type.oid == TIMESTAMP:
        return naive_timestamp(zone)
    return _SCALARS.get(pg_type.oid, _identity)


def guarded(convert: Converter) -> Converter:
    """Any failure of a converter is an ``UnconvertibleValue`` (a row problem), never a crash of the stream."""
    if convert is _timestamptz:
        return _timestamptz_guarded
    return _guard(convert)


def _guard(convert: Converter) -> Converter:
    def safe(text: str) -> Any:
        try:
            return convert(text)
        except UnconvertibleValue:
            raise
        except (ValueError, OverflowError, IndexError, ArithmeticError) as exc:
            raise UnconvertibleValue(f"cannot convert {text[:80]!r}: {exc}") from None

    return safe


_timestamptz_slow = _guard(_timestamptz)


def _timestamptz_guarded(text: str) -> str:
    """``guarded(_timestamptz)`` with the two shapes of nearly every value first, where slicing is the whole
    conversion and nothing can fail, so no guard is called (issue 18): ``YYYY-MM-DD HH:MM:SS[.ffffff]+00``."""
    size = len(text)
    if size == 29:
        if text[26:] == "+00" and text[19] == "." and text[10] == " " and text[4] == "-":
            return text[:10] + "T" + text[11:26] + "Z"
    elif size == 22:
        if text[19:] == "+00" and text[16] == ":" and text[13] == ":" and text[10] == " " and text[4] == "-":
            return text[:10] + "T" + text[11:19] + "Z"
    return str(_timestamptz_slow(text))


_INFALLIBLE = frozenset({BOOL, INT2, INT4, INT8, OID, XID})
"""Types whose converter cannot fail on the server's own output (digits, ``t``/``f``): no guard needed."""


def value_converter(pg_type: PgType, zone: ZoneInfo | None) -> Converter | None:
    """The converter a row builder calls per value, chosen once per column: None when the server's text is
    already the published value (text, json, uuid, ...: no call at all), unguarded when it cannot fail."""
    convert = converter(pg_type, zone)
    if convert is _identity:
        return None
    if pg_type.element is None and pg_type.oid in _INFALLIBLE:
        return convert
    return guarded(convert)


# -- arrays --------------------------------------------------------------------------------------------------
def parse_array(text: str, item: Converter, delimiter: str = ",") -> list[Any]:
    """A (possibly nested) array literal such as ``{1,2,NULL}`` or ``{{"a b",c},{d,e}}``, elements converted."""
    if text.startswith("["):
        raise UnconvertibleValue(f"array with non-default lower bounds ({text[: text.find('=')]}) has no JSON form")
    value, end = _array(text, 0, item, delimiter)
    if end != len(text):
        raise UnconvertibleValue(f"trailing characters in array {text[:80]!r}")
    return value


def _array(text: str, i: int, item: Converter, delimiter: str) -> tuple[list[Any], int]:
    if text[i] != "{":
        raise ValueError(f"expected '{{' at {i} in {text!r}")
    i += 1
    out: list[Any] = []
    if text[i] == "}":
        return out, i + 1
    stops = delimiter + "}"
    while True:
        char = text[i]
        if char == "{":
            nested, i = _array(text, i, item, delimiter)
            out.append(nested)
        elif char == '"':
            i += 1
            chars = []
            while text[i] != '"':
                if text[i] == "\\":
                    i += 1
                chars.append(text[i])
                i += 1
            i += 1
            out.append(item("".join(chars)))
        else:
            end = i
            while text[end] not in stops:
                end += 1
            raw = text[i:end]
            out.append(None if raw == "NULL" else item(raw))
            i = end
        if text[i] == delimiter:
            i += 1
            continue
        if text[i] == "}":
            return out, i + 1
        raise ValueError(f"unexpected {text[i]!r} at {i} in {text!r}")
