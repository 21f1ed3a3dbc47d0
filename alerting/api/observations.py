"""A patient's readings of one kind over a range, bucketed by the store for charts.

``bucket=auto`` picks the smallest width from a ladder of round widths that keeps the
chart at most :data:`AUTO_POINTS` buckets; an explicit width (seconds) may give at most
:data:`MAX_POINTS`. Buckets are aligned on the Unix epoch (``time_bucket`` on TimescaleDB,
integer epoch arithmetic on SQLite), so the same range gives the same buckets on both.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from alerting.api._context import CallerDep, IsoTime, patient_route
from alerting.api.models import ObservationSeries, point_out
from alerting.api.problems import PROBLEM_RESPONSES, ApiProblem
from wardwatch.vocabulary import KINDS

router = APIRouter(prefix="/api/v1", tags=["observations"], responses=PROBLEM_RESPONSES)

AUTO_POINTS = 400
"""Most buckets ``bucket=auto`` gives (about one per two pixels of a chart)."""
MAX_POINTS = 2000
"""Most buckets an explicit width may give."""
DEFAULT_RANGE = timedelta(days=7)
LADDER: tuple[int, ...] = (
    60,
    300,
    600,
    900,
    1800,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
)
"""Round bucket widths (seconds) ``bucket=auto`` chooses from."""


def auto_width(span: timedelta) -> int:
    """The smallest round width giving at most :data:`AUTO_POINTS` buckets over ``span``."""
    seconds = span.total_seconds()
    for width in LADDER:
        if seconds / width <= AUTO_POINTS:
            return width
    days = math.ceil(seconds / AUTO_POINTS / 86400)
    return days * 86400


def buckets_over(span: timedelta, width: int) -> int:
    """How many epoch-aligned buckets of ``width`` seconds ``span`` may touch (at most)."""
    return math.ceil(span.total_seconds() / width) + 1


def unit_of(kind: str) -> str | None:
    """The canonical unit of ``kind``'s values (a panel's: its first component's)."""
    found = KINDS[kind]
    if found.canonical_unit is None and found.components:
        return KINDS[found.components[0]].canonical_unit
    return found.canonical_unit


def _parse_bucket(bucket: str) -> int | None:
    """None for ``auto``, else the width in seconds (ApiProblem 422 otherwise)."""
    if bucket == "auto":
        return None
    if not bucket.isdigit() or int(bucket) < 1:
        raise ApiProblem(
            422, "bad-bucket", f"bucket must be auto or whole seconds >= 1, not {bucket[:20]!r}"
        )
    return int(bucket)


@router.get("/patients/{patient_id}/observations", name=patient_route("observations.search"))
def observations(
    patient_id: str,
    caller: CallerDep,
    kind: Annotated[str, Query(description="measurement kind (vocabulary), e.g. blood_pressure")],
    start: Annotated[
        IsoTime | None, Query(description="from (inclusive); default end - 7 days")
    ] = None,
    end: Annotated[IsoTime | None, Query(description="to (exclusive); default now")] = None,
    bucket: Annotated[str, Query(description="auto, or a bucket width in seconds")] = "auto",
) -> ObservationSeries:
    """Readings of one kind in ``[start, end)``: count, mean, min, max per bucket, and per
    panel component (blood pressure's systolic, diastolic...)."""
    resource = f"Observation?patient={patient_id}&kind={kind}"
    patient = caller.visible_patient(patient_id, "observations.search", resource)
    try:
        if kind not in KINDS:
            raise ApiProblem(422, "unknown-kind", f"kind {kind[:40]!r} is not a measurement kind")
        for name, value in (("start", start), ("end", end)):
            if value is not None and value.tzinfo is None:
                raise ApiProblem(422, "bad-time", f"{name} needs a time zone (Z or +hh:mm)")
        until = end if end is not None else caller.now()
        since = start if start is not None else until - DEFAULT_RANGE
        if since >= until:
            raise ApiProblem(422, "bad-range", "start must be before end")
        width = _parse_bucket(bucket)
        if width is None:
            width = auto_width(until - since)
        elif buckets_over(until - since, width) > MAX_POINTS:
            raise ApiProblem(
                422,
                "too-many-points",
                f"{buckets_over(until - since, width)} buckets of {width} s: at most {MAX_POINTS}",
            )
    except ApiProblem as exc:
        caller.audit(
            "observations.search",
            "invalid",
            patient=patient.id,
            resource=resource,
            detail=exc.detail,
        )
        raise
    rows = caller.store.bucket_observations(
        patient.id, kind, since, until, timedelta(seconds=width)
    )
    caller.audit(
        "observations.search",
        "success",
        patient=patient.id,
        resource=resource,
        detail=f"{len(rows)} buckets of {width} s",
    )
    return ObservationSeries(
        patient=patient.id,
        kind=kind,
        unit=unit_of(kind),
        start=since,
        end=until,
        bucket_seconds=width,
        points=[point_out(b) for b in rows],
    )
