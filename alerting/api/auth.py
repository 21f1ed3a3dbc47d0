"""Login, logout and the caller: ``router`` and the ``current_principal`` dependency.

- ``POST /api/v1/auth/login`` ``{username, password}`` → ``{token, expires_at, user}`` and
  the session cookie ``wardwatch_session`` (HttpOnly, SameSite=Strict, Path=/, Max-Age the
  session's lifetime; Secure unless the page is served over plain http on a loopback
  address, where browsers would drop a Secure cookie).
- ``POST /api/v1/auth/logout`` ends the presented session and clears the cookie.
- ``GET /api/v1/me``: who the caller is, what their role may do, when the token expires.

:func:`current_principal` reads ``Authorization: Bearer <token>`` (scripts, services) or
else the session cookie (the page). A cookie-authenticated unsafe request (POST, PUT,
PATCH, DELETE) must carry ``X-Wardwatch-CSRF: 1``: a cross-site form cannot set a custom
header, and SameSite=Strict already keeps the cookie off cross-site requests.

Errors are RFC 9457 problem details (:mod:`alerting.api.problems`): 401 with
``WWW-Authenticate: Bearer``, 403 for a missing CSRF header, 429 with ``Retry-After`` when
logins are throttled. The reason a token or login was refused goes to the audit trail,
never to the client. The :class:`~alerting.access.AccessService` is
``request.app.state.access``.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from alerting.access import MAX_PASSWORD_LENGTH, AccessService, Action, Principal
from alerting.api.problems import PROBLEM_RESPONSES, ApiProblem
from alerting.errors import AuthenticationError, LoginFailedError, LoginThrottledError
from wardwatch.store_access import AccessToken, Role

SESSION_COOKIE: Final = "wardwatch_session"
CSRF_HEADER: Final = "X-Wardwatch-CSRF"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_REALM: Final = 'Bearer realm="wardwatch"'

# Declared for the OpenAPI document (security schemes); the checks are done below.
_bearer_scheme = HTTPBearer(auto_error=False, description="session or API token")
_cookie_scheme = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description=f"session cookie (unsafe methods also need the header {CSRF_HEADER}: 1)",
)


class LoginRequest(BaseModel):
    """A login form."""

    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=4 * MAX_PASSWORD_LENGTH)


class UserInfo(BaseModel):
    """The caller as the page shows them."""

    username: str
    display_name: str
    role: Role
    teams: list[str]


class LoginAnswer(BaseModel):
    """A new session: the token (also set as the cookie) and when it expires."""

    token: str
    expires_at: datetime
    user: UserInfo


class Me(UserInfo):
    """The caller, what their role may do and how they authenticated."""

    actions: list[Action]
    via: str = Field(description="session or api")
    expires_at: datetime | None = Field(description="when the presented token expires")


def access_service(request: Request) -> AccessService:
    """The app's access service (503 problem if the app was built without one)."""
    found = getattr(request.app.state, "access", None)
    if not isinstance(found, AccessService):
        raise ApiProblem(503, "access-unavailable", "logins are not configured on this server")
    return found


def remote_address(request: Request) -> str | None:
    """The client's address (the proxy's, unless uvicorn trusts its forwarded headers)."""
    return request.client.host if request.client is not None else None


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def secure_cookie(request: Request) -> bool:
    """Whether the session cookie is marked Secure: always, except over plain http to a
    loopback address (the local demo), where a browser would not store it."""
    return request.url.scheme != "http" or not _is_loopback(request.url.hostname)


def _cookie_header(request: Request, value: str, max_age: int) -> str:
    """One ``Set-Cookie`` value for the session cookie (``max_age`` 0 deletes it)."""
    parts = [f"{SESSION_COOKIE}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly"]
    parts.append("SameSite=Strict")
    if secure_cookie(request):
        parts.append("Secure")
    return "; ".join(parts)


def _unauthenticated(*, invalid_token: bool, clear_cookie: str | None = None) -> ApiProblem:
    challenge = f'{_REALM}, error="invalid_token"' if invalid_token else _REALM
    headers = {"WWW-Authenticate": challenge}
    if clear_cookie is not None:
        headers["Set-Cookie"] = clear_cookie
    return ApiProblem(401, "unauthenticated", "authentication required", headers=headers)


def _presented(request: Request) -> tuple[str, str] | None:
    """The token presented and how (``bearer`` or ``cookie``), or None.

    An Authorization header that is not ``Bearer <token>`` is a 401: it is not silently
    replaced by the cookie.
    """
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated(invalid_token=True)
        return token.strip(), "bearer"
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie, "cookie"
    return None


def current_principal(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)] = None,
    _cookie: Annotated[str | None, Depends(_cookie_scheme)] = None,
) -> Principal:
    """The authenticated caller (401 / 403 problems otherwise).

    Also sets ``request.state.principal`` and ``request.state.access_token`` (the token's
    record) for later use in the request.
    """
    presented = _presented(request)
    if presented is None:
        raise _unauthenticated(invalid_token=False)
    token, how = presented
    service = access_service(request)
    try:
        principal, record = service.authenticate_token(token)
    except AuthenticationError as exc:
        request.state.auth_refusal = exc.reason
        clear = _cookie_header(request, '""', 0) if how == "cookie" else None
        raise _unauthenticated(invalid_token=True, clear_cookie=clear) from exc
    unsafe = request.method not in SAFE_METHODS
    if how == "cookie" and unsafe and request.headers.get(CSRF_HEADER) != "1":
        raise ApiProblem(
            403,
            "csrf-header-missing",
            f"a cookie-authenticated {request.method} needs the header {CSRF_HEADER}: 1",
        )
    request.state.principal = principal
    request.state.access_token = record
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]

router = APIRouter(tags=["auth"])


def _user_info(principal: Principal) -> UserInfo:
    return UserInfo(
        username=principal.username,
        display_name=principal.display_name,
        role=principal.role,
        teams=sorted(principal.teams),
    )


@router.post(
    "/api/v1/auth/login",
    response_model=LoginAnswer,
    responses={**PROBLEM_RESPONSES, 429: PROBLEM_RESPONSES[401]},
    summary="Log in with a user name and password; sets the session cookie",
)
def login(form: LoginRequest, request: Request, response: Response) -> LoginAnswer:
    """Check the password and start a session (audited, rate limited)."""
    service = access_service(request)
    try:
        token, record = service.login(form.username, form.password, remote_address(request))
    except LoginThrottledError as exc:
        raise ApiProblem(
            429,
            "login-throttled",
            "too many failed logins; try again later",
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
    except LoginFailedError as exc:
        raise ApiProblem(
            401,
            "login-failed",
            "wrong user name or password",
            headers={"WWW-Authenticate": _REALM},
        ) from exc
    principal = service.authenticate(token)
    assert record.expires_at is not None
    lifetime = int((record.expires_at - service.clock()).total_seconds())
    response.headers["Set-Cookie"] = _cookie_header(request, token, max(lifetime, 0))
    response.headers["Cache-Control"] = "no-store"
    return LoginAnswer(
        token=token,
        expires_at=record.expires_at.astimezone(UTC),
        user=_user_info(principal),
    )


@router.post(
    "/api/v1/auth/logout",
    status_code=204,
    responses=PROBLEM_RESPONSES,
    summary="End the presented session and clear the session cookie",
)
def logout(request: Request, principal: PrincipalDep) -> Response:
    """Revoke the session token (an API token is left alone: revoke it with the CLI)."""
    presented = _presented(request)
    assert presented is not None  # current_principal accepted one
    access_service(request).logout(presented[0], remote_address(request))
    response = Response(status_code=204)
    response.headers["Set-Cookie"] = _cookie_header(request, '""', 0)
    return response


@router.get(
    "/api/v1/me",
    response_model=Me,
    responses=PROBLEM_RESPONSES,
    summary="The caller: name, role, teams, allowed actions",
)
def me(request: Request, principal: PrincipalDep) -> Me:
    """Who the caller is and what they may do."""
    record: AccessToken = request.state.access_token
    return Me(
        **_user_info(principal).model_dump(),
        actions=principal.actions(),
        via=principal.via,
        expires_at=None if record.expires_at is None else record.expires_at.astimezone(UTC),
    )


__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "LoginAnswer",
    "LoginRequest",
    "Me",
    "PrincipalDep",
    "access_service",
    "current_principal",
    "remote_address",
    "router",
    "secure_cookie",
]
