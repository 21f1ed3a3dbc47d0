"""SQLite side of :mod:`wardwatch.store_charts` (a SqliteStore mixin).

Buckets use integer epoch arithmetic on ``strftime('%s', at)`` (whole seconds, UTC), with
a floor that stays right before 1970, so they line up with TimescaleDB's ``time_bucket``
given the epoch as origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.stores._mixins import SqliteMixin
from ingest.stores._rows import from_iso, iso, loads
from wardwatch.store import CareTeam
from wardwatch.store_charts import BucketStats, DevicePairing, ObservationBucket, check_width

_EPOCH = "CAST(strftime('%s', at) AS INTEGER)"
_BUCKET = f"({_EPOCH} - ((({_EPOCH} % :w) + :w) % :w))"

_VALUES = f"""
    SELECT {_BUCKET} AS b, count(*), count(value), avg(value), min(value), max(value)
    FROM observations
    WHERE patient = :patient AND kind = :kind AND at >= :start AND at < :end
    GROUP BY b ORDER BY b
"""

_COMPONENTS = f"""
    SELECT {_BUCKET} AS b, c.key, avg(c.value), min(c.value), max(c.value)
    FROM observations, json_each(observations.components) AS c
    WHERE patient = :patient AND kind = :kind AND at >= :start AND at < :end
      AND c.type IN ('integer', 'real')
    GROUP BY b, c.key ORDER BY b, c.key
"""


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class SqliteChartsMixin(SqliteMixin):
    """Methods of :class:`wardwatch.store_charts.ChartStore` on SQLite."""

    def bucket_observations(
        self, patient: str, kind: str, start: datetime, end: datetime, width: timedelta
    ) -> list[ObservationBucket]:
        """A patient's readings of ``kind`` in ``[start, end)`` in epoch-aligned buckets."""
        args = {
            "w": check_width(width),
            "patient": patient,
            "kind": kind,
            "start": iso(start),
            "end": iso(end),
        }
        with self._lock:
            values = self._db.execute(_VALUES, args).fetchall()
            parts = self._db.execute(_COMPONENTS, args).fetchall()
        components: dict[int, dict[str, BucketStats]] = {}
        for b, key, mean, low, high in parts:
            components.setdefault(int(b), {})[str(key)] = BucketStats(
                float(mean), float(low), float(high)
            )
        return [
            ObservationBucket(
                start=datetime.fromtimestamp(int(b), UTC),
                count=int(count),
                value=(BucketStats(float(mean), float(low), float(high)) if with_value else None),
                components=components.get(int(b), {}),
            )
            for b, count, with_value, mean, low, high in values
        ]

    def list_device_pairings(self, patient: str | None = None) -> list[DevicePairing]:
        """Device pairings, ordered by device, optionally of one patient."""
        sql = "SELECT device, patient, paired_at FROM device_pairings"
        args: list[Any] = []
        if patient is not None:
            sql += " WHERE patient = ?"
            args.append(patient)
        rows = self._query(sql + " ORDER BY device", args)
        return [DevicePairing(str(d), str(p), _utc(from_iso(str(at)))) for d, p, at in rows]

    def last_reading_times(self, patients: Sequence[str]) -> dict[str, datetime]:
        """The time of each patient's latest observation (patients without one left out)."""
        found: dict[str, datetime] = {}
        for patient in dict.fromkeys(patients):
            rows = self._query("SELECT max(at) FROM observations WHERE patient = ?", (patient,))
            if rows and rows[0][0] is not None:
                found[patient] = from_iso(str(rows[0][0]))
        return found

    def list_care_teams(self) -> list[CareTeam]:
        """Every care team, ordered by id."""
        rows = self._query("SELECT id, name, notify_urls FROM care_teams ORDER BY id")
        return [
            CareTeam(str(i), str(n), tuple(str(u) for u in _list(loads(urls))))
            for i, n, urls in rows
        ]


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []
