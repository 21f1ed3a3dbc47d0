"""Live alert changes as Server-Sent Events (``GET /api/v1/events``).

The stream follows the store's alert change feed (``list_alert_events(after_id=...)``),
so it sees every change whichever process made it (ingest's engine, the dispatcher,
another API replica). Each change to an alert the caller may see is sent as
``event: alert``, ``id: <alert event id>``, ``data: <the alert as GET /alerts/{id} shows
it, without events>``; several changes of one alert in one poll are sent once, with the
latest id. A client that reconnects with ``Last-Event-ID`` (browsers do) gets what it
missed; without it the stream starts at the newest change. A comment line (``: ping``)
every ``sse_ping_seconds`` keeps proxies from closing an idle stream. Every alert sent is
audited (``events.push``), as is the subscription (``events.subscribe``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from alerting.api._context import Caller, CallerDep, patient_route
from alerting.api.alerts import snoozes
from alerting.api.models import alert_out
from alerting.api.problems import PROBLEM_RESPONSES, ApiProblem
from wardwatch.store import Alert
from wardwatch.store_alerts import AlertEvent

router = APIRouter(prefix="/api/v1", tags=["events"], responses=PROBLEM_RESPONSES)

PAGE = 200
"""Alert events read per poll."""


def latest_event_id(caller: Caller) -> int:
    """The id of the newest alert event (0 when there is none)."""
    cursor = 0
    while True:
        page = caller.store.list_alert_events(after_id=cursor, limit=1000)
        if not page or page[-1].id is None:
            return cursor
        cursor = page[-1].id


def _changes(caller: Caller, after: int) -> tuple[int, list[tuple[int, Alert]], int]:
    """One poll: (new cursor, [(event id, alert)] the caller sees, events read)."""
    events: list[AlertEvent] = caller.store.list_alert_events(after_id=after, limit=PAGE)
    last: dict[int, int] = {}
    cursor = after
    for event in events:
        if event.id is not None:
            cursor = max(cursor, event.id)
            last[event.alert_id] = event.id
    visible: list[tuple[int, Alert]] = []
    seen: dict[str, bool] = {}
    for alert_id, event_id in sorted(last.items(), key=lambda item: item[1]):
        alert = caller.store.get_alert(alert_id)
        if alert is None:
            continue
        if alert.patient not in seen:
            patient = caller.store.get_patient(alert.patient)  # fresh: teams can change
            seen[alert.patient] = patient is not None and caller.principal.sees(patient)
        if seen[alert.patient]:
            visible.append((event_id, alert))
    return cursor, visible, len(events)


def _messages(caller: Caller, changes: list[tuple[int, Alert]]) -> list[ServerSentEvent]:
    snoozed = snoozes(caller, caller.now())
    messages: list[ServerSentEvent] = []
    for event_id, alert in changes:
        patient = caller.store.get_patient(alert.patient)
        if patient is None or alert.id is None:
            continue
        caller.audit("events.push", "success", patient=alert.patient, resource=f"Alert/{alert.id}")
        data = alert_out(alert, patient, snoozed.get(alert.id)).model_dump_json()
        messages.append(ServerSentEvent(data=data, event="alert", id=str(event_id)))
    return messages


async def _stream(request: Request, caller: Caller, after: int) -> AsyncIterator[ServerSentEvent]:
    poll = caller.services.sse_poll_seconds
    cursor = after
    while not await request.is_disconnected():
        cursor, changes, read = await asyncio.to_thread(_changes, caller, cursor)
        for message in await asyncio.to_thread(_messages, caller, changes):
            yield message
        if read < PAGE:
            await asyncio.sleep(poll)


@router.get(
    "/events",
    name=patient_route("events.subscribe"),
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "alert changes"}},
)
async def events(
    request: Request,
    caller: CallerDep,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> EventSourceResponse:
    """Server-Sent Events: every change of an alert the caller may see."""
    if last_event_id is not None and not last_event_id.isdigit():
        raise ApiProblem(422, "bad-last-event-id", "Last-Event-ID must be an alert event id")
    if last_event_id is not None:
        after = int(last_event_id)
    else:
        after = await asyncio.to_thread(latest_event_id, caller)
    await asyncio.to_thread(
        caller.audit, "events.subscribe", "success", resource="Alert", detail=f"after {after}"
    )
    return EventSourceResponse(
        _stream(request, caller, after),
        ping=max(1, round(caller.services.sse_ping_seconds)),
        headers={"Cache-Control": "no-store"},
    )
