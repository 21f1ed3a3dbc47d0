"""TimescaleDB side of :mod:`wardwatch.store_charts` (mixed into
:class:`ingest.stores.timescale.TimescaleStore`).

Buckets are ``time_bucket`` with the Unix epoch as origin (TimescaleDB's default origin is
2000-01-03), so both stores cut the same buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, LiteralString, TypeVar

from ingest.stores._mixins import TimescaleMixin
from wardwatch.store import CareTeam
from wardwatch.store_charts import BucketStats, DevicePairing, ObservationBucket, check_width

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")

_BUCKET: LiteralString = (
    "time_bucket(make_interval(secs => %(w)s), at, TIMESTAMPTZ '1970-01-01 00:00:00+00')"
)
_WHERE: LiteralString = (
    "WHERE patient = %(patient)s AND kind = %(kind)s AND at >= %(start)s AND at < %(end)s"
)
_VALUES: LiteralString = (
    "SELECT " + _BUCKET + " AS b, count(*), count(value), avg(value), min(value), max(value) "
    "FROM observations " + _WHERE + " GROUP BY b ORDER BY b"
)
_COMPONENTS: LiteralString = (
    "SELECT " + _BUCKET + " AS b, c.key, avg(c.value::float8), min(c.value::float8), "
    "max(c.value::float8) FROM observations, jsonb_each(observations.components) AS c "
    + _WHERE
    + " AND jsonb_typeof(c.value) = 'number' GROUP BY b, c.key ORDER BY b, c.key"
)


def _utc(at: datetime) -> datetime:
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC)


class TimescaleChartsMixin(TimescaleMixin):
    """Methods of :class:`wardwatch.store_charts.ChartStore` on TimescaleDB."""

    def bucket_observations(
        self, patient: str, kind: str, start: datetime, end: datetime, width: timedelta
    ) -> list[ObservationBucket]:
        """A patient's readings of ``kind`` in ``[start, end)`` in epoch-aligned buckets."""
        args = {
            "w": check_width(width),
            "patient": patient,
            "kind": kind,
            "start": _utc(start),
            "end": _utc(end),
        }

        def read(
            cur: psycopg.Cursor[tuple[Any, ...]],
        ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            cur.execute(_VALUES, args)
            values = cur.fetchall()
            cur.execute(_COMPONENTS, args)
            return values, cur.fetchall()

        values, parts = self._run("bucket_observations", read)
        components: dict[datetime, dict[str, BucketStats]] = {}
        for b, key, mean, low, high in parts:
            components.setdefault(_utc(b), {})[str(key)] = BucketStats(
                float(mean), float(low), float(high)
            )
        return [
            ObservationBucket(
                start=_utc(b),
                count=int(count),
                value=(BucketStats(float(mean), float(low), float(high)) if with_value else None),
                components=components.get(_utc(b), {}),
            )
            for b, count, with_value, mean, low, high in values
        ]

    def list_device_pairings(self, patient: str | None = None) -> list[DevicePairing]:
        """Device pairings, ordered by device, optionally of one patient."""
        if patient is None:
            rows = self._query(
                "list_device_pairings",
                "SELECT device, patient, paired_at FROM device_pairings "
                'ORDER BY device COLLATE "C"',
            )
        else:
            rows = self._query(
                "list_device_pairings",
                "SELECT device, patient, paired_at FROM device_pairings WHERE patient = %s "
                'ORDER BY device COLLATE "C"',
                (patient,),
            )
        return [DevicePairing(str(d), str(p), _utc(at)) for d, p, at in rows]

    def last_reading_times(self, patients: Sequence[str]) -> dict[str, datetime]:
        """The time of each patient's latest observation (patients without one left out)."""
        if not patients:
            return {}
        # One index probe per patient on (patient, at DESC), not a scan of the hypertable.
        rows = self._query(
            "last_reading_times",
            "SELECT p, (SELECT o.at FROM observations o WHERE o.patient = p "
            "ORDER BY o.at DESC LIMIT 1) FROM unnest(%s::text[]) AS p",
            (list(dict.fromkeys(patients)),),
        )
        return {str(p): _utc(at) for p, at in rows if at is not None}

    def list_care_teams(self) -> list[CareTeam]:
        """Every care team, ordered by id (byte order, like SQLite)."""
        rows = self._query(
            "list_care_teams",
            'SELECT id, name, notify_urls FROM care_teams ORDER BY id COLLATE "C"',
        )
        return [
            CareTeam(str(i), str(n), tuple(str(u) for u in urls) if isinstance(urls, list) else ())
            for i, n, urls in rows
        ]
