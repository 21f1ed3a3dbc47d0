"""``wardwatch serve``: the nurse API and page on uvicorn.

Binding a non-loopback address serves patient data and session cookies over the network,
so it is refused without TLS (``--tls-cert`` and ``--tls-key``) unless the operator says a
TLS-terminating reverse proxy is in front (``--behind-proxy``, which also makes uvicorn
trust that proxy's forwarded headers for the client address and scheme).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, tls: bool, behind_proxy: bool) -> str | None:
    """Why serving on ``host`` this way is refused, or None."""
    if is_loopback(host) or tls or behind_proxy:
        return None
    return (
        f"refusing to serve patient data on {host} over plain http: give --tls-cert and "
        "--tls-key, or --behind-proxy when a TLS reverse proxy is in front"
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from alerting.api.app import create_app
    from alerting.engine import AlertEngine
    from ingest.errors import StoreError
    from ingest.stores import open_store

    if (args.tls_cert is None) != (args.tls_key is None):
        sys.stderr.write("wardwatch serve: --tls-cert and --tls-key go together\n")
        return 2
    tls = args.tls_cert is not None
    refusal = check_binding(args.host, tls, args.behind_proxy)
    if refusal is not None:
        sys.stderr.write(f"wardwatch serve: {refusal}\n")
        return 2
    try:
        store = open_store(args.store)
    except StoreError as exc:
        sys.stderr.write(f"wardwatch serve: {exc}\n")
        return 2
    try:
        app = create_app(store, engine=AlertEngine(store), static=not args.no_page)
        options: dict[str, Any] = {"host": args.host, "port": args.port, "log_level": "warning"}
        if tls:
            options |= {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key}
        if args.behind_proxy:
            options |= {"proxy_headers": True, "forwarded_allow_ips": args.forwarded_allow_ips}
        scheme = "https" if tls else "http"
        shown = f"[{args.host}]" if ":" in args.host else args.host
        sys.stdout.write(f"wardwatch serve: {scheme}://{shown}:{args.port}/\n")
        sys.stdout.flush()
        uvicorn.Server(uvicorn.Config(app, **options)).run()
    finally:
        store.close()
    return 0


def register_serve(sub: Any) -> None:
    """Add ``serve`` to the ``wardwatch`` subcommands (``sub`` from add_subparsers)."""
    serve = sub.add_parser(
        "serve",
        help="run the nurse API and page (docs/api.md, 'Nurse API')",
        description="Serve the nurse API under /api/v1 and the worklist page at /. "
        "Users, teams and patients: `wardwatch admin`.",
    )
    serve.add_argument("--store", required=True, help="sqlite:PATH or postgresql://...")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--tls-cert", help="PEM certificate (with --tls-key): serve https")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument(
        "--behind-proxy",
        action="store_true",
        help="a TLS reverse proxy is in front: allow a non-loopback --host over http and "
        "trust the proxy's X-Forwarded-* headers",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="with --behind-proxy: the proxy addresses trusted (default 127.0.0.1)",
    )
    serve.add_argument("--no-page", action="store_true", help="serve the API only")
    serve.set_defaults(handler=_cmd_serve)


__all__ = ["check_binding", "is_loopback", "register_serve"]
