"""Store contract for what the nurse API reads beyond rows: chart buckets, pairings, recency.

Part of :class:`wardwatch.store.Store` (it inherits :class:`ChartStore`).
Implemented by ``ingest/stores/sqlite_charts.py`` and ``ingest/stores/timescale_charts.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from wardwatch.store import CareTeam


@dataclass(frozen=True, slots=True)
class BucketStats:
    """Mean, minimum and maximum of one value over a bucket's readings."""

    mean: float
    min: float
    max: float


@dataclass(frozen=True, slots=True)
class ObservationBucket:
    """The readings of one kind in ``[start, start + width)``, summarised.

    ``value`` is None when no reading of the bucket has a plain value (a blood-pressure
    panel carries only ``components``); ``count`` counts every reading of the bucket.
    """

    start: datetime
    count: int
    value: BucketStats | None
    components: Mapping[str, BucketStats] = field(default_factory=dict)
    """Per panel component (``systolic``...), the components present in the bucket."""


@dataclass(frozen=True, slots=True)
class DevicePairing:
    """A device and the patient it measures, since when."""

    device: str
    patient: str
    paired_at: datetime


class ChartStore(Protocol):
    """Aggregates for charts and worklists."""

    def bucket_observations(
        self, patient: str, kind: str, start: datetime, end: datetime, width: timedelta
    ) -> list[ObservationBucket]:
        """A patient's readings of ``kind`` in ``[start, end)`` grouped in buckets of
        ``width`` (whole seconds, at least one) aligned on the Unix epoch, oldest first;
        empty buckets are left out. Panel components (vocabulary) are summarised too."""
        ...

    def list_device_pairings(self, patient: str | None = None) -> list[DevicePairing]:
        """Device pairings, ordered by device, optionally of one patient."""
        ...

    def last_reading_times(self, patients: Sequence[str]) -> dict[str, datetime]:
        """The time of each patient's latest observation (patients without one left out)."""
        ...

    def list_care_teams(self) -> list[CareTeam]:
        """Every care team, ordered by id."""
        ...


def check_width(width: timedelta) -> int:
    """A bucket width as whole seconds; ValueError unless it is a positive whole second."""
    seconds = width.total_seconds()
    if seconds < 1 or seconds != int(seconds):
        raise ValueError(f"bucket width {width} is not a positive whole number of seconds")
    return int(seconds)


__all__ = ["BucketStats", "ChartStore", "DevicePairing", "ObservationBucket", "check_width"]
