"""FHIR search parameters of ``GET /fhir/Observation``: parsing and paging (pure, no I/O).

What the read API accepts (``docs/api.md``): ``patient`` (required), ``code``, ``date``
with the prefixes eq/ge/gt/le/lt on FHIR date precision, ``_count``, ``_total`` and the
opaque keyset cursor ``_page``. Anything else is an error unless the client asked for
lenient handling.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import orjson

from ingest.errors import IngestError
from wardwatch.store import ObservationQuery, StoredObservation
from wardwatch.vocabulary import KINDS, LOINC_SYSTEM, MDC_SYSTEM, MeasurementKind

DEFAULT_COUNT = 50
MAX_COUNT = 1000
SEARCH_PARAMETERS = ("patient", "code", "date", "_count", "_total", "_page")
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_PREFIXES = ("eq", "ge", "gt", "le", "lt")


class SearchParameterError(IngestError):
    """A read request names an unknown parameter or gives an invalid value (HTTP 400)."""

    code = "invalid-search"


def _code_table() -> dict[tuple[str, str], MeasurementKind]:
    table: dict[tuple[str, str], MeasurementKind] = {}
    for spec in KINDS.values():
        for loinc in (spec.loinc, *spec.loinc_by_unit.values(), *spec.also_loinc):
            table.setdefault((LOINC_SYSTEM, loinc), spec)
        if spec.mdc_code is not None:
            table.setdefault((MDC_SYSTEM, str(spec.mdc_code)), spec)
    heart_rate = KINDS["heart_rate"]
    # pulse rate from a cuff (149546) or an oximeter (149530) is stored as heart_rate
    for mdc in ("149546", "149530"):
        table.setdefault((MDC_SYSTEM, mdc), heart_rate)
    return table


CODES: dict[tuple[str, str], MeasurementKind] = _code_table()


def kinds_for_token(token: str) -> frozenset[str]:
    """Kinds a ``code`` token (``system|code`` or a bare code) names; empty if none."""
    if "|" in token:
        system, code = token.split("|", 1)
        if not system or not code:
            raise SearchParameterError(f"code {token!r}: give system|code or a bare code")
        spec = CODES.get((system, code))
        return frozenset() if spec is None else frozenset({spec.name})
    if not token:
        raise SearchParameterError("code has an empty value")
    return frozenset(spec.name for (_system, code), spec in CODES.items() if code == token)


def date_range(text: str) -> tuple[datetime, datetime]:
    """The instants ``[low, high)`` a FHIR date/dateTime search value covers (its precision)."""
    match = _DATE.match(text)
    if match is None:
        hint = " (encode '+' in an offset as %2B)" if " " in text else ""
        raise SearchParameterError(f"date {text!r} is not a FHIR date or dateTime{hint}")
    g = match.groupdict()
    if g["hour"] is not None and g["tz"] is None:
        raise SearchParameterError(f"date {text!r} has a time but no time zone (Z or +hh:mm)")
    fraction = g["fraction"] or ""
    if len(fraction) > 6:
        raise SearchParameterError(f"date {text!r}: more precise than microseconds")
    try:
        tz = UTC
        if g["tz"] not in (None, "Z"):
            sign = -1 if g["tz"][0] == "-" else 1
            offset = timedelta(hours=int(g["tz"][1:3]), minutes=int(g["tz"][4:6]))
            tz = timezone(sign * offset)
        low = datetime(
            int(g["year"]),
            int(g["month"] or 1),
            int(g["day"] or 1),
            int(g["hour"] or 0),
            int(g["minute"] or 0),
            int(g["second"] or 0),
            int(fraction.ljust(6, "0")) if fraction else 0,
            tzinfo=tz,
        )
    except ValueError as exc:
        raise SearchParameterError(f"date {text!r} is not a valid time: {exc}") from None
    if g["month"] is None:
        high = low.replace(year=low.year + 1)
    elif g["day"] is None:
        high = low.replace(year=low.year + low.month // 12, month=low.month % 12 + 1)
    elif g["hour"] is None:
        high = low + timedelta(days=1)
    elif g["second"] is None:
        high = low + timedelta(minutes=1)
    elif not fraction:
        high = low + timedelta(seconds=1)
    else:
        high = low + timedelta(microseconds=10 ** (6 - len(fraction)))
    return low.astimezone(UTC), high.astimezone(UTC)


@dataclass(slots=True)
class ObservationSearch:
    """A parsed ``GET /fhir/Observation`` request."""

    query: ObservationQuery
    count: int = DEFAULT_COUNT
    total: bool = True
    after: tuple[datetime, str] | None = None
    matches_nothing: bool = False
    """A code names no kind we store, or the date bounds exclude each other."""
    params: list[tuple[str, str]] = field(default_factory=list)
    """The parameters used (without ``_page``), in order: the self and next links."""
    warnings: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """Digest of the query a page token belongs to (a token is refused on another)."""
        text = orjson.dumps(sorted(p for p in self.params if p[0] not in ("_count", "_total")))
        return hashlib.sha256(text).hexdigest()[:16]

    def page_token(self, last: StoredObservation) -> str:
        """The opaque cursor of the page after ``last``."""
        doc = {"at": last.at.astimezone(UTC).isoformat(), "id": last.identifier}
        doc["q"] = self.fingerprint()
        return base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")

    def read_page_token(self, token: str) -> tuple[datetime, str]:
        """Decode a cursor made by :meth:`page_token` for this same query."""
        try:
            doc = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            at, ident, fingerprint = doc["at"], doc["id"], doc["q"]
            cursor = (datetime.fromisoformat(at), str(ident))
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
            raise SearchParameterError("_page is not a page token of this server") from None
        if fingerprint != self.fingerprint() or cursor[0].tzinfo is None:
            raise SearchParameterError("_page belongs to a different search")
        return cursor


def _single(name: str, values: Sequence[str]) -> str:
    if len(values) != 1:
        raise SearchParameterError(f"{name} may be given once, got {len(values)} values")
    return values[0]


def parse_search(items: Sequence[tuple[str, str]], *, lenient: bool = False) -> ObservationSearch:
    """Parse search parameters; unknown ones are an error unless ``lenient`` (then ignored)."""
    given: dict[str, list[str]] = {}
    warnings: list[str] = []
    for name, value in items:
        if name not in SEARCH_PARAMETERS:
            if not lenient:
                raise SearchParameterError(
                    f"unknown or unsupported parameter {name!r} (supported: "
                    f"{', '.join(SEARCH_PARAMETERS)}; send 'Prefer: handling=lenient' to "
                    "ignore unknown parameters)"
                )
            warnings.append(f"parameter {name!r} is not supported and was ignored")
            continue
        given.setdefault(name, []).append(value)
    if "patient" not in given:
        raise SearchParameterError("patient is required: Observations are searched per patient")
    patient = _single("patient", given["patient"]).removeprefix("Patient/")
    if not ID.match(patient):
        raise SearchParameterError(f"patient {patient!r} is not a Patient id or Patient/<id>")
    params: list[tuple[str, str]] = [("patient", patient)]
    matches_nothing = False
    kinds: frozenset[str] | None = None
    for value in given.get("code", []):
        found: set[str] = set()
        for token in value.split(","):
            named = kinds_for_token(token)
            if not named:
                warnings.append(f"code {token!r} is not a code wardwatch stores")
            found |= named
        kinds = frozenset(found) if kinds is None else kinds & found  # repeated: AND
        params.append(("code", value))
    if kinds is not None and not kinds:
        matches_nothing = True
    start: datetime | None = None
    end: datetime | None = None
    for value in given.get("date", []):
        prefix, text = (value[:2], value[2:]) if value[:2] in _PREFIXES else ("eq", value)
        if value[:2].isalpha() and value[:2] not in _PREFIXES:
            raise SearchParameterError(
                f"date prefix {value[:2]!r} is not supported (use {', '.join(_PREFIXES)})"
            )
        low, high = date_range(text)
        lower = {"eq": low, "ge": low, "gt": high}.get(prefix)
        upper = {"eq": high, "le": high, "lt": low}.get(prefix)
        if lower is not None and (start is None or lower > start):
            start = lower
        if upper is not None and (end is None or upper < end):
            end = upper
        params.append(("date", value))
    if start is not None and end is not None and start >= end:
        matches_nothing = True
    count = DEFAULT_COUNT
    if "_count" in given:
        raw = _single("_count", given["_count"])
        if not raw.isdigit():
            raise SearchParameterError(f"_count {raw!r} is not a non-negative integer")
        count = min(int(raw), MAX_COUNT)
    params.append(("_count", str(count)))
    total = True
    if "_total" in given:
        raw = _single("_total", given["_total"])
        if raw not in ("none", "estimate", "accurate"):
            raise SearchParameterError(f"_total {raw!r} is not none, estimate or accurate")
        total = raw != "none"
        params.append(("_total", raw))
    query = ObservationQuery(patient, tuple(sorted(kinds or ())), start, True, end, False)
    search = ObservationSearch(query, count, total, None, matches_nothing, params, warnings)
    if "_page" in given:
        search.after = search.read_page_token(_single("_page", given["_page"]))
    return search
