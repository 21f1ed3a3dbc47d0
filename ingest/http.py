"""HTTP receiver: ``POST /fhir/Bundle`` and ``POST /fhir/Observation`` (same rules as MQTT).

Answers with a FHIR ``batch-response`` Bundle: ``201 Created`` for a new observation,
``200 OK`` for one already stored, ``422`` with an OperationOutcome for a quarantined one.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from ingest.pipeline import IngestPipeline, IngestResult

FHIR_JSON = "application/fhir+json"


def _outcome(code: str, reason: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "invalid", "details": {"text": f"{code}: {reason}"}}
        ],
    }


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


def create_app(pipeline: IngestPipeline, *, token: str | None = None) -> FastAPI:
    """The ingest HTTP API. With ``token`` set, requests need ``Authorization: Bearer <token>``."""
    app = FastAPI(title="wardwatch ingest", version="1")

    def authorised(request: Request) -> bool:
        if token is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def unauthorised() -> Response:
        return JSONResponse(
            _outcome("unauthorised", "a valid bearer token is required"),
            status_code=401,
            media_type=FHIR_JSON,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.post("/fhir/Bundle")
    async def post_bundle(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        body = await request.body()
        result = await asyncio.to_thread(pipeline.ingest_bundle, body, source="http:/fhir/Bundle")
        return JSONResponse(_batch_response(result), media_type=FHIR_JSON)

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
            return JSONResponse(_outcome(code, reason), status_code=422, media_type=FHIR_JSON)
        status = 201 if result.stored else 200
        return JSONResponse(
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
            status_code=status,
            media_type=FHIR_JSON,
            headers={"Location": f"Observation/{result.accepted[0]}"},
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
