"""RFC 9457 problem details: every error answer of the nurse API, and where they come from.

Domain code (alerting, access, stores) raises its own exceptions (``alerting.errors``,
``wardwatch.errors``); only here, at the edge, do they become HTTP statuses. A route that
refuses something itself raises :class:`ApiProblem`. Every handler answers
``application/problem+json`` with ``type``, ``title``, ``status``, ``detail`` and
``instance`` (the request path), and keeps an exception's headers (``WWW-Authenticate``,
``Allow``, ``Retry-After``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from wardwatch.errors import WardwatchError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://wardwatch.invalid/problems/"
"""Problem ``type`` URIs: ``<base><slug>``, documented in docs/api.md ("Nurse API")."""


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = Field(description="URI naming the kind of problem")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(default=None, description="the request path")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="validation errors (422 only): where and what"
    )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_JSON: {}}}
    for status in (400, 401, 403, 404, 409, 422, 500, 503)
}
"""OpenAPI ``responses=`` for a route: the problem shapes it may answer."""


class ApiProblem(Exception):  # noqa: N818 -- a problem document, not an error type
    """A refusal decided by a route (not found, forbidden, bad parameter...)."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = dict(headers or {})
        super().__init__(detail)


def not_found(what: str) -> ApiProblem:
    """The 404 for something absent *or* not visible to the caller (never says which)."""
    return ApiProblem(404, "not-found", f"{what} not found")


def forbidden(detail: str) -> ApiProblem:
    """The 403 for an action the caller's role may not take."""
    return ApiProblem(403, "forbidden", detail)


# Domain error code -> HTTP status. Codes not listed answer 400 (a refusal of the input).
_STATUS_BY_CODE: Mapping[str, int] = {
    "alert-not-found": 404,
    "proposal-not-found": 404,
    "patient-not-found": 404,
    "not-found": 404,
    "bad-transition": 409,
    "proposal-decided": 409,
    "conflict": 409,
    "silence-not-found": 404,
    "bad-threshold-override": 422,
    "bad-care-plan-change": 422,
    "bad-rule": 422,
    "unknown-kind": 422,
    "bad-unit": 422,
    "unauthenticated": 401,
    "login-failed": 401,
    "login-throttled": 429,
    "forbidden": 403,
    "store": 503,
}


def problem_response(
    status: int,
    slug: str,
    detail: str | None,
    instance: str | None,
    *,
    headers: Mapping[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """A ``application/problem+json`` answer."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = Problem(
        type=TYPE_BASE + slug,
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        errors=errors,
    ).model_dump(exclude_none=True)
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def _refused(request: Request, status: int, detail: str | None) -> None:
    """Let the app audit a 401/403 raised before a route knew its caller."""
    hook = getattr(request.app.state, "refusal_hook", None)
    if status in (401, 403) and callable(hook):
        hook(request, status, detail)


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")
    except ValueError:
        return "error"


async def _api_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    if not hasattr(request.state, "principal"):  # refused before the caller was known
        _refused(request, exc.status, exc.detail)
    return problem_response(exc.status, exc.slug, exc.detail, request.url.path, headers=exc.headers)


def _documented_methods(request: Request) -> list[str] | None:
    """The methods the app's OpenAPI document gives the request's path (None: no path)."""
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            return sorted(method.upper() for method in operations)
    return None


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    _refused(request, exc.status_code, detail)
    headers = dict(exc.headers or {})
    status = exc.status_code
    allowed = _documented_methods(request) if status in (404, 405) else None
    if allowed is not None and request.method not in allowed:
        # The page's mount answers 404 (GET) or 405 "GET, HEAD" on API paths, the router
        # names one route's methods: a documented path gets a 405 naming all of them.
        status, detail = 405, f"{request.method} is not allowed here"
        headers["Allow"] = ", ".join(allowed)
    return problem_response(
        status,
        _slug(status),
        detail,
        request.url.path,
        headers=headers,
    )


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        # ``input`` can echo a request body (patient data): location and message only.
        {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    where = ", ".join(".".join(e["loc"]) for e in errors) or "request"
    return problem_response(
        422, "invalid-request", f"invalid {where}", request.url.path, errors=errors
    )


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WardwatchError)
    status = _STATUS_BY_CODE.get(exc.code, 400)
    _refused(request, status, exc.code)
    if status >= 500:
        log.error("%s on %s %s: %s", exc.code, request.method, request.url.path, exc)
        return problem_response(status, exc.code, "the store is unavailable", request.url.path)
    headers: dict[str, str] = {}
    if status == 429:
        headers["Retry-After"] = str(getattr(exc, "retry_after", 60))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
        # One message for every reason (unknown, expired, revoked): nothing to probe.
        return problem_response(
            401, "unauthenticated", "authentication required", request.url.path, headers=headers
        )
    return problem_response(status, exc.code, str(exc), request.url.path, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "internal-error", "internal error", request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem details."""
    app.add_exception_handler(ApiProblem, _api_problem)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(WardwatchError, _domain)
    app.add_exception_handler(Exception, _unexpected)


__all__ = [
    "PROBLEM_JSON",
    "PROBLEM_RESPONSES",
    "ApiProblem",
    "Problem",
    "forbidden",
    "install_problem_handlers",
    "not_found",
    "problem_response",
]
