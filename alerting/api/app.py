"""The nurse API and page: one FastAPI app over a store (``docs/api.md``, "Nurse API").

Everything is under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``; no Swagger UI, it
would load from a CDN); the page (``alerting/web/``) is served at ``/``. Every error is an
RFC 9457 problem (:mod:`alerting.api.problems`). Routes are thin: authorisation and audit
in :mod:`alerting.api._context`, lifecycle in the engine, care plans in
:mod:`alerting.careplans`, login in :mod:`alerting.api.auth`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from alerting.access import AccessService
from alerting.api import alerts, audit, devices, events, observations, patients, proposals
from alerting.api._context import Services, audit_unauthenticated
from alerting.api.auth import router as auth_router
from alerting.api.problems import install_problem_handlers
from alerting.engine import AlertEngine, utcnow
from wardwatch import __version__
from wardwatch.store import Store

API_PREFIX = "/api/v1"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"


def web_root() -> Path:
    """Where the page's static files are (package data of ``alerting``)."""
    return Path(str(resources.files("alerting") / "web"))


def create_app(
    store: Store,
    *,
    engine: AlertEngine | None = None,
    access: AccessService | None = None,
    clock: Callable[[], datetime] = utcnow,
    static: bool = True,
    sse_poll_seconds: float = 1.0,
    sse_ping_seconds: float = 15.0,
) -> FastAPI:
    """The app. ``engine`` takes the person actions (one is made over ``store`` when not
    given: it records them and their alert events; delivery is the dispatcher's);
    ``access`` authenticates callers (an :class:`AccessService` over ``store`` by
    default); ``clock`` stamps actions and audit events; ``static`` serves the page."""
    app = FastAPI(
        title="wardwatch nurse API",
        version=__version__,
        openapi_url=OPENAPI_URL,
        docs_url=None,
        redoc_url=None,
    )
    app.state.store = store
    app.state.engine = engine if engine is not None else AlertEngine(store, clock=clock)
    app.state.access = access if access is not None else AccessService(store, clock)
    app.state.services = Services(
        store=store,
        engine=app.state.engine,
        clock=clock,
        sse_poll_seconds=sse_poll_seconds,
        sse_ping_seconds=sse_ping_seconds,
    )
    app.state.refusal_hook = audit_unauthenticated
    install_problem_handlers(app)

    @app.middleware("http")
    async def _headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.url.path.startswith(API_PREFIX):
            # Patient data: never kept by browsers or shared caches.
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.include_router(auth_router)
    for module in (patients, observations, devices, alerts, proposals, events, audit):
        app.include_router(module.router)
    if static:
        app.mount("/", StaticFiles(directory=web_root(), html=True), name="web")
    return app


__all__ = ["API_PREFIX", "OPENAPI_URL", "create_app", "web_root"]
