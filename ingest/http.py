"""The ingest HTTP API: FHIR writes (same rules as MQTT) and audited FHIR reads.

Writes: ``POST /fhir/Bundle`` and ``POST /fhir/Observation`` answer a ``batch-response``
Bundle / an OperationOutcome: ``201 Created`` for a new observation, ``200 OK`` for one
already stored, ``422`` with an OperationOutcome for a quarantined one.

Reads (``docs/api.md``): ``GET /fhir/Observation?patient=&code=&date=&_count=`` (a
``searchset`` Bundle, keyset-paged) and ``GET /fhir/Observation/{id}``. They need the read
token, never the write token; with no read token configured every read is refused. Every
read, allowed or refused, is appended to the store's audit trail before data leaves.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import FastAPI, Request, Response

from ingest.errors import StoreError
from ingest.fhir_search import ID, ObservationSearch, SearchParameterError, parse_search
from ingest.pipeline import IngestPipeline, IngestResult, utcnow
from wardwatch.store import AuditEvent, Store, StoredObservation

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
MIN_TOKEN_LENGTH = 16
ANONYMOUS = "anonymous"


def _outcome(code: str, reason: str, *, issue: str = "invalid") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": issue, "details": {"text": f"{code}: {reason}"}}],
    }


def _fhir(doc: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=FHIR_JSON, headers=headers)


def _batch_response(result: IngestResult) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    new_left = result.stored
    for ident in result.accepted:
        # The pipeline does not say which accepted entries were new; report counts honestly.
        status = "201 Created" if new_left > 0 else "200 OK"
        new_left -= 1
        entries.append({"response": {"status": status, "location": f"Observation/{ident}"}})
    for _ident, code, reason in result.rejected:
        entries.append(
            {"response": {"status": "422 Unprocessable Entity", "outcome": _outcome(code, reason)}}
        )
    return {"resourceType": "Bundle", "type": "batch-response", "entry": entries}


def _lenient(request: Request) -> bool:
    """``Prefer: handling=lenient`` (RFC 7240; preferences separated by ``,`` or ``;``)."""
    prefer = request.headers.get("prefer", "").replace(";", ",")
    return any(p.replace(" ", "").lower() == "handling=lenient" for p in prefer.split(","))


def _resource(row: StoredObservation) -> dict[str, Any]:
    doc = orjson.loads(row.resource)
    if not isinstance(doc, dict):  # ingest stores only validated objects
        raise StoreError(f"stored observation {row.identifier} is not a JSON object")
    doc["id"] = row.identifier
    return doc


# -- the app --------------------------------------------------------------------------------


def create_app(
    pipeline: IngestPipeline,
    *,
    token: str | None = None,
    read_token: str | None = None,
    read_principal: str = "read-service",
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """The ingest HTTP API.

    With ``token`` set, writes need ``Authorization: Bearer <token>``. Reads need
    ``Bearer <read_token>`` and are audited as ``read_principal``; without a read token
    every read is refused (403).
    """
    if read_token is not None:
        if len(read_token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the read token must be at least {MIN_TOKEN_LENGTH} characters")
        if token is not None and hmac.compare_digest(read_token, token):
            raise ValueError("the read token must differ from the write token")
    store = pipeline.store
    app = FastAPI(title="wardwatch ingest", version="1")

    def authorised(request: Request) -> bool:
        if token is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def unauthorised() -> Response:
        return _fhir(
            _outcome("unauthorised", "a valid bearer token is required"),
            401,
            {"WWW-Authenticate": "Bearer"},
        )

    async def audit(
        request: Request,
        principal: str,
        action: str,
        outcome: str,
        *,
        patient: str | None,
        resource: str,
        detail: str | None = None,
    ) -> Response | None:
        """Append the audit event; on failure, the 503 to answer instead of the data."""
        event = AuditEvent(
            at=clock(),
            principal=principal,
            action=action,
            outcome=outcome,
            patient=patient,
            resource=resource[:2000],
            remote=request.client.host if request.client else None,
            detail=detail,
        )
        try:
            await asyncio.to_thread(store.record_audit, event)
        except StoreError:
            log.exception("audit trail unavailable; refusing the %s", action)
            return _fhir(
                _outcome(
                    "audit-unavailable",
                    "the read cannot be audited, so it is refused",
                    issue="transient",
                ),
                503,
            )
        return None

    async def reader(
        request: Request, action: str, patient: str | None, resource: str
    ) -> str | Response:
        """The principal of a read, or the (audited) refusal to answer."""
        if read_token is None:
            reason, status, headers = "reads are disabled: no read token is configured", 403, None
        else:
            given = request.headers.get("authorization", "")
            if hmac.compare_digest(given.encode(), f"Bearer {read_token}".encode()):
                return read_principal
            reason = "a valid read bearer token is required"
            status, headers = 401, {"WWW-Authenticate": "Bearer"}
        failed = await audit(
            request, ANONYMOUS, action, "refused", patient=patient, resource=resource, detail=reason
        )
        code = "forbidden" if status == 403 else "unauthorised"
        issue = "forbidden" if status == 403 else "login"
        return failed or _fhir(_outcome(code, reason, issue=issue), status, headers)

    @app.post("/fhir/Bundle")
    async def post_bundle(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        body = await request.body()
        result = await asyncio.to_thread(pipeline.ingest_bundle, body, source="http:/fhir/Bundle")
        return _fhir(_batch_response(result))

    @app.post("/fhir/Observation")
    async def post_observation(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        body = await request.body()
        result = await asyncio.to_thread(
            pipeline.ingest_observation, body, source="http:/fhir/Observation"
        )
        if result.rejected:
            _ident, code, reason = result.rejected[0]
            return _fhir(_outcome(code, reason), 422)
        status = 201 if result.stored else 200
        return _fhir(
            {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "information",
                        "code": "informational",
                        "details": {"text": "created" if result.stored else "already stored"},
                    }
                ],
            },
            status,
            {"Location": f"Observation/{result.accepted[0]}"},
        )

    @app.get("/fhir/Observation")
    async def search_observations(request: Request) -> Response:
        items = request.query_params.multi_items()
        resource = "Observation?" + urlencode(items)
        asked = [v.removeprefix("Patient/") for k, v in items if k == "patient"]
        who = await reader(request, "search", asked[0] if len(asked) == 1 else None, resource)
        if isinstance(who, Response):
            return who
        try:
            search = parse_search(items, lenient=_lenient(request))
        except SearchParameterError as exc:
            failed = await audit(
                request, who, "search", "invalid", patient=None, resource=resource, detail=str(exc)
            )
            return failed or _fhir(_outcome(exc.code, str(exc)), 400)
        patient = search.query.patient
        try:
            rows, total = await asyncio.to_thread(_run_search, store, search)
        except StoreError:
            log.exception("observation search failed")
            failed = await audit(
                request, who, "search", "error", patient=patient, resource=resource
            )
            return failed or _fhir(
                _outcome("store", "the store is unavailable", issue="transient"), 503
            )
        base = str(request.base_url).rstrip("/")
        page = rows[: search.count]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if total is not None:
            bundle["total"] = total
        self_params = search.params + (
            [("_page", request.query_params["_page"])] if search.after else []
        )
        links = [{"relation": "self", "url": f"{base}/fhir/Observation?{urlencode(self_params)}"}]
        if len(rows) > search.count and page:
            token_ = search.page_token(page[-1])
            query = urlencode([*search.params, ("_page", token_)])
            links.append({"relation": "next", "url": f"{base}/fhir/Observation?{query}"})
        bundle["link"] = links
        entries: list[dict[str, Any]] = [
            {
                "fullUrl": f"{base}/fhir/Observation/{row.identifier}",
                "resource": _resource(row),
                "search": {"mode": "match"},
            }
            for row in page
        ]
        if search.warnings:
            entries.append(
                {
                    "resource": {
                        "resourceType": "OperationOutcome",
                        "issue": [
                            {"severity": "warning", "code": "not-supported", "details": {"text": w}}
                            for w in search.warnings
                        ],
                    },
                    "search": {"mode": "outcome"},
                }
            )
        if entries:
            bundle["entry"] = entries
        failed = await audit(
            request,
            who,
            "search",
            "success",
            patient=patient,
            resource=resource,
            detail=f"{len(page)} entries",
        )
        log.debug("search by %s returned %d entries", who, len(page))
        return failed or _fhir(bundle)

    @app.get("/fhir/Observation/{observation_id}")
    async def read_observation(observation_id: str, request: Request) -> Response:
        resource = f"Observation/{observation_id}"
        who = await reader(request, "read", None, resource)
        if isinstance(who, Response):
            return who
        if not ID.match(observation_id):
            failed = await audit(request, who, "read", "invalid", patient=None, resource=resource)
            return failed or _fhir(_outcome("invalid-id", "not a FHIR resource id"), 400)
        try:
            row = await asyncio.to_thread(store.get_observation, observation_id)
        except StoreError:
            log.exception("observation read failed")
            failed = await audit(request, who, "read", "error", patient=None, resource=resource)
            return failed or _fhir(
                _outcome("store", "the store is unavailable", issue="transient"), 503
            )
        if row is None:
            failed = await audit(request, who, "read", "not-found", patient=None, resource=resource)
            return failed or _fhir(
                _outcome("not-found", f"no Observation {observation_id}", issue="not-found"), 404
            )
        failed = await audit(
            request, who, "read", "success", patient=row.patient, resource=resource
        )
        return failed or _fhir(_resource(row))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _run_search(
    store: Store, search: ObservationSearch
) -> tuple[list[StoredObservation], int | None]:
    """One page (plus one row to know if another follows) and the total, from the store."""
    if search.matches_nothing:
        return [], 0 if search.total else None
    rows: list[StoredObservation] = []
    if search.count > 0:
        rows = store.search_observations(search.query, limit=search.count + 1, after=search.after)
    total = store.count_matching(search.query) if search.total else None
    return rows, total
